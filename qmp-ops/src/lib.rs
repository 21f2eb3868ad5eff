//! VM operations that wait for their outcome, written once for blocking and
//! async QMP clients.
//!
//! An operation (hot-plugging a device, unplugging it and waiting until it
//! is gone, reading a file through the guest agent) is a sans-IO state
//! machine: it implements [`Operation`], which says what to do next ([`Step`]:
//! send this command, watching these events; wait for a watched event until
//! this deadline; sleep this long; done). Two small drivers run every
//! operation: [`run`] over a blocking [`qmp_io::Qmp`] client and
//! [`run_async`] over an async [`qmp_io::AsyncQmp`] client on any runtime.
//!
//! Events are subscribed to before the command that causes them is sent, so
//! none is missed, and an event QEMU stamped before the send is discarded,
//! so none is taken for an older one's outcome ([`Await`], [`Options`]).
//! Every failure is an [`OpError`] naming the operation, the step, the cause
//! and the state it left, after undoing what it could.
//!
//! ```no_run
//! use std::time::Duration;
//! use qmp_ops::device::DeviceDel;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let qmp = qmp_std::connect_unix("/run/vm/qmp.sock", qmp_std::Config::default())?;
//! let gone = qmp_ops::run(&qmp, DeviceDel::new("usb1", Duration::from_secs(5)))?;
//! println!("removed at {:?}", gone.timestamp());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod base64;
pub mod block;
pub mod device;
mod drive;
mod error;
mod execute;
pub mod guest;
pub mod machine;
pub mod migration;
pub mod nbd;
mod op;
pub mod sequence;
mod wait;

pub use drive::{
    Agent, AsyncAgent, Options, Timer, WithAgent, run, run_async, run_async_guarded,
    run_async_with, run_with,
};
pub use error::{Cause, OpError};
pub use execute::Execute;
pub use op::{Cleanup, Input, Operation, Step, Want};
pub use wait::{Await, Awaited};
