//! Runtime-agnostic drivers for [`qmp_proto`]: one blocking driver over
//! `std::io`, one async driver over `futures-io`.
#![deny(missing_docs)]

pub mod blocking;
mod call;
mod config;
mod error;
mod events;
pub mod fd;
mod json;
pub mod mock;
pub mod nonblocking;
pub mod qemu;
mod session;
mod slot;
pub mod testing;

pub use call::{AddFdInfo, Call};
pub use config::Config;
pub use error::{CommandError, Disconnect, Error, Result};
pub use events::{Event, EventFilter, Lagged, RecvTimeoutError, Subscription};
pub use json::Json;
pub use qmp_proto::{Command, Empty, Timestamp, Version};
pub use session::Greeting;
