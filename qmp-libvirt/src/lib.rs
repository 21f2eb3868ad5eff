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
//! Nothing here does I/O except [`blocking`], a minimal transport behind the
//! `std` feature:
//!
//! ```no_run
//! # #[cfg(feature = "std")]
//! # fn main() -> Result<(), qmp_libvirt::blocking::ClientError> {
//! use qmp_libvirt::blocking::Client;
//!
//! let mut client = Client::connect("qemu+tcp://127.0.0.1/system")?;
//! let vm = client.lookup_domain_by_name("vm1")?;
//! let reply = client.monitor_command(&vm, r#"{"execute":"query-status"}"#)?;
//! println!("{reply}");
//! client.close()
//! # }
//! # #[cfg(not(feature = "std"))]
//! # fn main() {}
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod blocking;
pub mod conn;
pub mod error;
pub mod uri;
pub mod wire;

pub use conn::{CallId, Config, Connection, Output, Reply};
pub use error::{Error, ErrorKind, LibvirtError, ProtocolError, UsageError};
