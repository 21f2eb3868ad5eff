//! Runtime-agnostic drivers for [`qmp_proto`]: one blocking driver over
//! `std::io`, one async driver over `futures-io`.
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

pub mod blocking;
mod call;
pub mod child;
mod config;
mod deadlines;
mod error;
mod events;
pub mod fd;
mod hub;
mod json;
#[cfg(feature = "mock")]
pub mod mock;
pub mod nonblocking;
pub mod qemu;
mod qmp;
mod reconnect;
mod session;
mod slot;
pub mod tcp;
pub mod unix;

pub use call::{AddFdInfo, Call};
pub use child::ChildExit;
pub use config::{ArgumentCheck, CheckError, Config};
pub use error::{CommandError, Disconnect, Error, ErrorClass, HandshakeStep, Result};
pub use events::{Event, EventDecodeError, EventFilter, Gap, RecvTimeoutError, Subscription};
pub use hub::EventHub;
pub use json::Json;
pub use qmp::{AsyncQmp, Qmp};
pub use qmp_proto::{
    Command, ConnectionLimits, Empty, EventData, EventEnum, ProtocolError, Timestamp, UsageError,
    Version,
};
pub use reconnect::{LinkState, Reconnect, WhileReconnecting};
pub use session::Greeting;

/// What every adapter re-exports, so their APIs stay the same.
pub mod prelude {
    #[cfg(feature = "mock")]
    pub use crate::mock::{MockQemu, MockReply, MockRequest};
    pub use crate::qemu::{GuestAgentBuilder, GuestAgentProcess, Qemu, QemuBuilder};
    pub use crate::{
        AddFdInfo, ArgumentCheck, AsyncQmp, Call, ChildExit, Command, CommandError, Config,
        ConnectionLimits, Disconnect, Empty, Error, ErrorClass, Event, EventData, EventDecodeError,
        EventEnum, EventFilter, EventHub, Gap, Greeting, HandshakeStep, Json, LinkState,
        ProtocolError, Qmp, Reconnect, RecvTimeoutError, Result, Subscription, Timestamp,
        UsageError, Version, WhileReconnecting,
    };
}
