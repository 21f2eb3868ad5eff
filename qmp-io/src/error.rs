//! What can go wrong with a call, and why a connection ended.

use core::fmt;
use core::time::Duration;
use std::io;
use std::sync::Arc;

use qmp_proto::{ProtocolError, QmpError, UsageError};

use crate::child::ChildExit;

/// The class of a QMP error reply: the core's
/// [`ErrorClass`](qmp_proto::ErrorClass), owned. Classes this crate does not
/// know are kept by name as `ErrorClass::Other`.
pub type ErrorClass = qmp_proto::ErrorClass<String>;

/// A QMP error reply, owned: the command ran (or was refused) and failed.
///
/// This is an answer from QEMU, not a transport failure: match on
/// [`class`](Self::class) and show [`desc`](Self::desc) to people; never
/// parse the description.
///
/// ```
/// use qmp_io::{CommandError, ErrorClass};
///
/// fn is_missing(e: &CommandError) -> bool {
///     matches!(e.class, ErrorClass::CommandNotFound | ErrorClass::DeviceNotFound)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandError {
    /// The machine-readable class.
    pub class: ErrorClass,
    /// The human-readable description.
    pub desc: String,
}

impl CommandError {
    pub(crate) fn from_reply(e: &QmpError<'_>) -> Self {
        Self {
            class: e.class.into_owned(),
            desc: e.desc.to_string_lossless(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.desc)
    }
}

impl core::error::Error for CommandError {}

/// Why a connection is over.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Disconnect {
    /// The peer closed the connection (QEMU exited or was killed).
    Eof {
        /// The stream ended in the middle of a message.
        mid_message: bool,
    },
    /// Reading or writing the socket failed.
    Io(Arc<io::Error>),
    /// The peer broke the protocol (the core's sticky error).
    Protocol(ProtocolError),
    /// The handshake did not finish within the connect timeout.
    HandshakeTimeout {
        /// The step that was still missing.
        step: HandshakeStep,
        /// The connect timeout, as configured.
        timeout: Duration,
    },
    /// The child process the connection ran over exited (or closed its
    /// output): its status and the end of its stderr.
    ChildExited(Arc<ChildExit>),
    /// This side closed it: [`close`](crate::blocking::Client::close) was called
    /// or every handle was dropped.
    Local,
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Eof { mid_message: false } => f.write_str("the peer closed the connection"),
            Disconnect::Eof { mid_message: true } => {
                f.write_str("the peer closed the connection in the middle of a message")
            }
            Disconnect::Io(e) => write!(f, "socket error: {e}"),
            Disconnect::Protocol(e) => write!(f, "protocol error: {e}"),
            Disconnect::HandshakeTimeout { step, timeout } => {
                write!(f, "{step} within the connect timeout ({timeout:?})")
            }
            Disconnect::ChildExited(exit) => fmt::Display::fmt(exit, f),
            Disconnect::Local => f.write_str("the connection was closed by this client"),
        }
    }
}

impl Disconnect {
    /// The reason for a failed read or write: the child's exit when the
    /// stream is a child process's stdio, else the error itself.
    pub(crate) fn from_io(e: io::Error) -> Self {
        match crate::child::exit_of(&e) {
            Some(exit) => Disconnect::ChildExited(Arc::new(exit.clone())),
            None => Disconnect::Io(Arc::new(e)),
        }
    }
}

/// The handshake step a connection was waiting for when its connect timeout
/// struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeStep {
    /// QEMU's greeting (`{"QMP": ...}`) never came: another client may hold
    /// the monitor (it serves one at a time), or this is not a QMP socket.
    Greeting,
    /// The greeting came, the reply to `qmp_capabilities` did not.
    Capabilities,
    /// The guest agent never answered `guest-sync-delimited`: no agent runs
    /// in the guest, or it is busy.
    GuestSync,
}

impl fmt::Display for HandshakeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeStep::Greeting => {
                "no QMP greeting (is another client connected to this monitor?)"
            }
            HandshakeStep::Capabilities => "no reply to qmp_capabilities",
            HandshakeStep::GuestSync => "no reply to guest-sync-delimited from the guest agent",
        })
    }
}

/// The error of a call or a connect.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// QEMU answered with an error reply: see [`CommandError`].
    Command(CommandError),
    /// No reply within the call's timeout. The command was abandoned: its late
    /// reply is dropped and the connection stays usable. (It may still run.)
    Timeout(Duration),
    /// The connection is over, before or while this call waited.
    Disconnected(Disconnect),
    /// A reconnecting client lost its connection and has not reconnected
    /// yet: it fails calls at once, or after waiting for the reconnect
    /// until the call's timeout (see
    /// [`WhileReconnecting`](crate::WhileReconnecting)). Nothing was sent.
    Reconnecting {
        /// Connection attempts made since the connection dropped.
        attempts: u32,
    },
    /// A guest-agent resynchronisation (after another call's timeout)
    /// discarded this call; it may or may not have run.
    Discarded,
    /// The reply was larger than the connection's size limit and was skipped.
    ReplyTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit it broke, in bytes: the connection's
        /// `limits.receive.max_message_size` (see [`Config::limits`](crate::Config::limits)).
        limit: usize,
    },
    /// The reply did not decode into the expected type.
    Decode(Arc<serde_json::Error>),
    /// An event is not the typed event asked for, or its data does not
    /// decode into it ([`Event::typed`](crate::Event::typed)).
    Event(Box<crate::events::EventDecodeError>),
    /// The call's arguments could not be serialized; nothing was sent.
    Encode(Arc<serde_json::Error>),
    /// The client's [`ArgumentCheck`](crate::ArgumentCheck) refused the
    /// call's arguments; nothing was sent.
    InvalidArguments {
        /// The command.
        command: String,
        /// Why, from the check (for a schema check, downcast to
        /// `qmp_qapi::schema::ValidationError` for the path and the fault).
        reason: Arc<dyn core::error::Error + Send + Sync>,
    },
    /// Local misuse: a bad command name or arguments, `exec-oob` without oob,
    /// too many commands in flight, fds on a transport that cannot pass them.
    Usage(UsageError),
    /// Connecting failed.
    Connect(Arc<io::Error>),
    /// File descriptors can only be passed on a unix socket.
    FdPassingUnsupported,
    /// More file descriptors on one command than one message carries
    /// ([`MAX_FDS_PER_MESSAGE`](crate::fd::MAX_FDS_PER_MESSAGE)); nothing was sent.
    TooManyFds {
        /// How many the call had.
        count: usize,
    },
    /// The transport cannot do what the call asks (oob or fd passing over
    /// libvirt); nothing was sent.
    Unsupported {
        /// What was asked, such as "exec-oob".
        feature: &'static str,
        /// The transport, such as "libvirt".
        transport: &'static str,
    },
    /// The transport's own peer refused the call (libvirt: no such domain,
    /// domain not running; virsh's error text). Downcast the source for
    /// details.
    Transport(Arc<dyn core::error::Error + Send + Sync>),
}

impl Error {
    /// The QMP error reply, when this is one.
    pub fn command_error(&self) -> Option<&CommandError> {
        match self {
            Error::Command(e) => Some(e),
            _ => None,
        }
    }

    /// True when the connection is over (every later call fails too).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Command(e) => write!(f, "command failed: {e}"),
            Error::Timeout(d) => write!(f, "no reply within {d:?}"),
            Error::Disconnected(d) => write!(f, "disconnected: {d}"),
            Error::Reconnecting { attempts } => write!(
                f,
                "not sent: the connection dropped and the client is reconnecting \
                 ({attempts} attempts so far)"
            ),
            Error::Discarded => f.write_str(
                "the guest agent was resynchronised while this command waited; it may or may not have run",
            ),
            Error::ReplyTooLarge { size, limit } => write!(
                f,
                "the reply ({size} bytes) is larger than the size limit ({limit} bytes); it was skipped"
            ),
            Error::Decode(e) => write!(f, "cannot decode the reply: {e}"),
            Error::Event(e) => write!(f, "{e}"),
            Error::Encode(e) => write!(f, "cannot serialize the arguments: {e}"),
            Error::InvalidArguments { reason, .. } => write!(f, "not sent: {reason}"),
            Error::Usage(e) => write!(f, "{e}"),
            Error::Connect(e) => write!(f, "cannot connect: {e}"),
            Error::FdPassingUnsupported => {
                f.write_str("file descriptors can only be passed on a unix socket")
            }
            Error::TooManyFds { count } => write!(
                f,
                "{count} file descriptors on one command; at most {} go with one message",
                crate::fd::MAX_FDS_PER_MESSAGE
            ),
            Error::Unsupported { feature, transport } => {
                write!(f, "{feature} is not supported over {transport}")
            }
            Error::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Command(e) => Some(e),
            Error::Decode(e) | Error::Encode(e) => Some(&**e),
            Error::Connect(e) => Some(&**e),
            Error::InvalidArguments { reason, .. } => Some(&**reason),
            Error::Event(e) => Some(&**e),
            Error::Transport(e) => Some(&**e),
            Error::Disconnected(Disconnect::Io(e)) => Some(&**e),
            _ => None,
        }
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e)
    }
}

impl From<crate::events::EventDecodeError> for Error {
    fn from(e: crate::events::EventDecodeError) -> Self {
        Error::Event(Box::new(e))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Connect(Arc::new(e))
    }
}

/// The result of a call.
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// Every call returns `Result<_, Error>`: it stays small (large
    /// variants are boxed or behind an `Arc`), so the happy path of every
    /// call does not move a large error-sized value around.
    #[test]
    fn the_error_stays_small() {
        let size = core::mem::size_of::<super::Error>();
        assert!(size <= 48, "Error is {size} bytes");
    }
}
