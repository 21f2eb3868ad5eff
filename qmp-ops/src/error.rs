//! How an operation fails: what it was doing, why, and the state it left.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use qmp_io::Event;

/// Why an operation step failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Cause {
    /// A command failed: QEMU's error reply, a call timeout, a lost connection.
    Command(qmp_io::Error),
    /// The operation's deadline passed after waiting this long.
    Deadline(Duration),
    /// QEMU reported the failure with this event (such as
    /// `DEVICE_UNPLUG_GUEST_ERROR`).
    Event(Arc<Event>),
    /// QEMU or the guest agent reported the failure in a reply (a job's
    /// error, a migration's error description, a short write).
    Reported(String),
    /// The connection ended while waiting for an event.
    Closed,
    /// The event subscription fell behind and lost this many events; the
    /// one waited for may have been among them.
    Lagged(u64),
    /// A reply or event did not have the expected shape.
    Decode(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Command(e) => write!(f, "{e}"),
            Cause::Deadline(d) => write!(f, "the deadline passed after {d:?}"),
            Cause::Event(e) => match e.data() {
                Some(data) => write!(f, "QEMU sent {} {data}", e.name()),
                None => write!(f, "QEMU sent {}", e.name()),
            },
            Cause::Reported(s) => f.write_str(s),
            Cause::Closed => f.write_str("the connection ended"),
            Cause::Lagged(n) => write!(f, "{n} events were lost before they could be read"),
            Cause::Decode(s) => write!(f, "unexpected reply: {s}"),
        }
    }
}

/// An operation that did not finish: which operation, which step, why, and
/// the state it left behind (after any rollback it did).
///
/// ```text
/// device_del usb1: waiting for DEVICE_DELETED: the deadline passed after 2s;
/// left: unplug requested, the device is still present
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpError {
    /// The operation and its subject, such as `device_del usb1`.
    pub operation: String,
    /// The step that failed, such as `waiting for DEVICE_DELETED`.
    pub step: String,
    /// Why it failed.
    pub cause: Cause,
    /// The state it left: what was changed and not undone.
    pub left: String,
}

impl OpError {
    /// An error of `operation` at `step`.
    pub fn new(
        operation: impl Into<String>,
        step: impl Into<String>,
        cause: Cause,
        left: impl Into<String>,
    ) -> Self {
        Self {
            operation: operation.into(),
            step: step.into(),
            cause,
            left: left.into(),
        }
    }

    /// The QMP error reply that caused this, if one did.
    pub fn command_error(&self) -> Option<&qmp_io::CommandError> {
        match &self.cause {
            Cause::Command(e) => e.command_error(),
            _ => None,
        }
    }

    /// True when the operation ran out of time.
    pub fn is_deadline(&self) -> bool {
        matches!(
            self.cause,
            Cause::Deadline(_) | Cause::Command(qmp_io::Error::Timeout(_))
        )
    }

    /// Replaces the state left (after a rollback changed it).
    pub fn left(mut self, left: impl Into<String>) -> Self {
        self.left = left.into();
        self
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}; left: {}",
            self.operation, self.step, self.cause, self.left
        )
    }
}

impl core::error::Error for OpError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match &self.cause {
            Cause::Command(e) => Some(e),
            _ => None,
        }
    }
}
