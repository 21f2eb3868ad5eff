//! What a script deals in: the request a handler sees, the reply it gives,
//! and the record of a received command.

use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Answers a command: see [`MockQemu::on`](super::MockQemu::on).
pub(super) type Handler = Arc<dyn Fn(&MockRequest) -> MockReply + Send + Sync + 'static>;

/// A command as a handler given to [`MockQemu::on`](super::MockQemu::on) sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct MockRequest {
    /// The command name.
    pub name: String,
    /// Its `arguments` object as raw JSON text, if it had one.
    pub arguments: Option<String>,
    /// Its `id` as raw JSON text, if it had one.
    pub id: Option<String>,
    /// Sent with `exec-oob`.
    pub oob: bool,
    /// File descriptors that came with the command (`SCM_RIGHTS`). They are
    /// closed after the handler returns: `try_clone` the ones to keep.
    pub fds: Vec<OwnedFd>,
}

/// How the mock answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MockReply {
    /// `{"return": VALUE}`, with VALUE as raw JSON text.
    Return(String),
    /// `{"error": {"class": CLASS, "desc": DESC}}`.
    Error {
        /// The error class, such as `GenericError`.
        class: String,
        /// The human-readable description.
        desc: String,
    },
    /// No reply at all, like QGA's `guest-shutdown`.
    NoReply,
    /// Close the connection instead of answering, as if QEMU died.
    Disconnect,
}

impl MockReply {
    /// `{"return": {}}`, the answer of commands without a result.
    pub fn empty() -> Self {
        MockReply::Return("{}".to_owned())
    }

    /// A `{"return": VALUE}` reply; `value` is raw JSON text.
    pub fn ret(value: impl Into<String>) -> Self {
        MockReply::Return(value.into())
    }

    /// An error reply.
    pub fn error(class: impl Into<String>, desc: impl Into<String>) -> Self {
        MockReply::Error {
            class: class.into(),
            desc: desc.into(),
        }
    }

    pub(super) fn generic(desc: impl Into<String>) -> Self {
        Self::error("GenericError", desc)
    }
}

/// A command the mock received, as [`MockQemu::received`](super::MockQemu::received) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedCommand {
    /// The command name.
    pub name: String,
    /// Its `arguments` object as raw JSON text, if it had one.
    pub arguments: Option<String>,
    /// Its `id` as raw JSON text, if it had one.
    pub id: Option<String>,
    /// Sent with `exec-oob`.
    pub oob: bool,
    /// How many file descriptors the command took (see [`MockQemu`](super::MockQemu) on file
    /// descriptors).
    pub fds: usize,
    /// Which connection it came on: 1 for the first one accepted.
    pub connection: usize,
}
