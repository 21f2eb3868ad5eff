//! Every QMP command and event typed, generated from the schemas of the QEMUs
//! this project tests against (7.2 and 10.0), and the guest agent's commands.
//!
//! - [`commands`]: one type per command, its arguments, implementing
//!   [`qmp_proto::Command`] with its typed result.
//! - [`events`]: one type per event's data, implementing [`QapiEvent`] (the
//!   core's `EventData`, so `EventFilter::of::<events::Stop>()` and
//!   `event.typed::<events::Stop>()` work with every client), and
//!   [`events::Event`] over all of them (`event.to_enum()` in a client).
//! - [`types`]: the types they use.
//!
//! Every item says which QEMUs have it. Nothing breaks on another QEMU:
//! enums keep unknown values (`Other`), unions keep unknown branches, unknown
//! members are ignored, and a member only one of the two QEMUs has is an
//! `Option`.
//!
//! ```
//! use qmp_proto::Command;
//! use qmp_qapi::commands::QueryStatus;
//! use qmp_qapi::types::{RunState, StatusInfo};
//!
//! assert_eq!(QueryStatus::NAME, "query-status");
//! let reply = r#"{"running": true, "status": "running"}"#;
//! let status: <QueryStatus as Command>::Returns = serde_json::from_str(reply).unwrap();
//! assert_eq!(status.status, RunState::Running);
//! ```
#![no_std]
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

#[macro_use]
mod macros;
mod nullable;
mod union;

#[allow(
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation,
    clippy::too_many_lines
)]
mod generated;

pub use generated::{commands, events, types};

pub mod qga;
pub mod schema;

pub use schema::Schema;

/// A typed event's data: `NAME` is the event it belongs to. The core's
/// [`EventData`](qmp_proto::EventData) under the name this crate's generated
/// code uses, so every event type here works with the clients' typed event
/// filters (`EventFilter::of::<events::Stop>()`).
pub use qmp_proto::EventData as QapiEvent;

/// The QEMU versions an item exists in, one bit per captured schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions(pub u8);

impl Versions {
    /// The schemas, in bit order.
    pub const NAMES: [&'static str; 2] = ["7.2", "10.0"];
    /// QEMU 7.2.
    pub const QEMU_7_2: Versions = Versions(1);
    /// QEMU 10.0.
    pub const QEMU_10_0: Versions = Versions(2);

    /// Whether `self` includes every version in `other`.
    pub fn contains(self, other: Versions) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Clients turn a received event into [`events::Event`] with this
/// (`qmp_io::Event::to_enum`), without depending on this crate.
impl qmp_proto::EventEnum for events::Event {
    fn decode_event(name: &str, data: Option<&str>) -> Self {
        Self::decode(name, data)
    }
}

impl events::Event {
    /// Decodes an event from the protocol core. An event whose data does not
    /// match its type (or is not JSON) becomes [`events::Event::Unknown`];
    /// use [`events::Event::try_decode`] to see the error instead.
    pub fn from_proto(event: &qmp_proto::Event<'_>) -> Self {
        let name = event.name.to_string_lossless();
        Self::decode(&name, event.data.map(|d| d.as_str()))
    }

    /// Decodes an event's name and raw `data`, never failing: data that does
    /// not match the event's type is kept as [`events::Event::Unknown`].
    pub fn decode(name: &str, data: Option<&str>) -> Self {
        Self::try_decode(name, data).unwrap_or_else(|_| Self::Unknown {
            name: name.into(),
            data: data
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(serde_json::Value::Null),
        })
    }
}
