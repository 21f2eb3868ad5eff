//! QMP for QEMU that libvirt runs: libvirt's own RPC protocol, without the
//! libvirt C library.
//!
//! libvirtd owns the QMP socket of every QEMU it starts. Its RPC protocol
//! (XDR over a unix socket or TCP) has a QEMU program that carries whole QMP
//! commands and replies as strings and delivers QMP events per domain. This
//! crate speaks that protocol sans-IO, in the style of `qmp-proto`:
//!
//! - [`wire`]: the XDR codec (decoding with `nom`), the packet header and the
//!   procedures used here, with their arguments and results.
//! - [`conn`]: the connection state machine: the handshake, calls matched to
//!   replies by serial, events dispatched by program and procedure, keepalive
//!   PINGs answered.
//! - [`uri`]: the libvirt URIs users write (`qemu:///system`,
//!   `qemu+tcp://host/system`, `?socket=PATH`), resolved to where to connect
//!   and the name to open.
//!
//! Behind the `std` feature, the transports, driven by those:
//!
//! - [`Client`] and [`Libvirt`]: the blocking client API shared with the
//!   QMP socket clients ([`qmp_io::Qmp`]): `execute`, `execute_raw`,
//!   `subscribe`, timeouts, the same [`qmp_io::Error`]. A reader thread
//!   answers keepalive while the caller idles.
//! - [`nonblocking::Client`] and [`nonblocking::Libvirt`]: the same over any
//!   async runtime qmp-io supports ([`qmp_io::AsyncQmp`]).
//! - [`blocking`]: a minimal one-call-at-a-time transport for every libvirt
//!   procedure this crate knows.
//!
//! Code written for a socket client switches transport by its constructor:
//!
//! ```no_run
//! # #[cfg(feature = "std")]
//! # fn main() -> qmp_io::Result<()> {
//! use qmp_io::{Config, Qmp};
//!
//! fn status(qmp: &impl Qmp) -> qmp_io::Result<qmp_io::Json> {
//!     qmp.execute_raw("query-status", ())
//! }
//!
//! let vm = qmp_libvirt::Client::connect("qemu+tcp://127.0.0.1/system", "vm1", Config::default())?;
//! println!("{}", status(&vm)?);
//! # Ok(()) }
//! # #[cfg(not(feature = "std"))]
//! # fn main() {}
//! ```
//!
//! What libvirt cannot carry (`exec-oob`, file descriptors, guest agent
//! commands) fails at once with [`qmp_io::Error::Unsupported`]; libvirt's own
//! refusals (no such domain, not running, read-only, authentication) are
//! [`qmp_io::Error::Transport`] holding an [`Error`] whose
//! [`kind`](Error::kind) says which.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// No panic reachable from peer input: outside tests, every index, slice and
// arithmetic step is checked, or allowed on its line with the reason it
// cannot fail.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod blocking;
#[cfg(feature = "std")]
mod client;
pub mod conn;
pub mod error;
#[cfg(feature = "std")]
pub mod nonblocking;
#[cfg(feature = "std")]
mod qmp;
#[cfg(feature = "std")]
mod session;
pub mod uri;
#[cfg(feature = "std")]
pub mod virsh;
pub mod wire;

#[cfg(feature = "std")]
pub use client::{Client, Libvirt};
pub use conn::{CallId, Config, Connection, Output, Reply};
pub use error::{Error, ErrorKind, LibvirtError, ProtocolError, UsageError};
