//! Errors, by whose fault they are: the peer broke the protocol
//! ([`ProtocolError`], fatal and sticky), the caller misused the connection
//! ([`UsageError`], nothing changed), or libvirt answered a call with an error
//! ([`LibvirtError`], data about that call).

use alloc::boxed::Box;
use core::fmt;

use crate::wire::{AuthType, DecodeError, RemoteError};

/// The peer sent something this crate cannot accept. Fatal: the connection
/// reports it once as it closes and returns it from every later call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A packet, or the payload of a known procedure, did not decode.
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        error: DecodeError,
    },
    /// A reply whose serial belongs to a call of another procedure.
    ReplyMismatch {
        /// The serial.
        serial: u32,
        /// The program and procedure of the call.
        expected: (u32, i32),
        /// The program and procedure of the reply.
        got: (u32, i32),
    },
    /// A reply decoded to another kind of result than its call expects.
    UnexpectedReply,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode { what, error } => write!(f, "libvirt sent a bad {what}: {error}"),
            Self::ReplyMismatch {
                serial,
                expected,
                got,
            } => write!(
                f,
                "libvirt replied to serial {serial} with program {:#x} procedure {}, \
                 but that call was program {:#x} procedure {}",
                got.0, got.1, expected.0, expected.1
            ),
            Self::UnexpectedReply => {
                f.write_str("libvirt answered a call with another kind of reply than it expects")
            }
        }
    }
}

impl core::error::Error for ProtocolError {}

/// The caller misused the connection; nothing was sent or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The connection is closing or closed.
    Closed,
    /// The call would make a message over the size limit.
    MessageTooLarge {
        /// Its size (header and payload).
        size: usize,
        /// The limit (header and payload).
        limit: u32,
    },
    /// A string argument over libvirt's 4 MiB string bound.
    StringTooLong {
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: u32,
    },
    /// As many calls as the limit allows are already waiting for replies.
    TooManyCalls {
        /// The limit.
        limit: usize,
    },
    /// `advance_transmit` was told more bytes were written than were pending.
    AdvancedPastPending {
        /// The bytes reported written.
        written: usize,
        /// The bytes that were pending.
        pending: usize,
    },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the libvirt connection is closing or closed"),
            Self::MessageTooLarge { size, limit } => write!(
                f,
                "a libvirt message of {size} bytes would exceed the message size limit of {limit} bytes"
            ),
            Self::StringTooLong { len, max } => write!(
                f,
                "a string of {len} bytes exceeds libvirt's string limit of {max} bytes"
            ),
            Self::TooManyCalls { limit } => {
                write!(f, "{limit} libvirt calls are already waiting for replies")
            }
            Self::AdvancedPastPending { written, pending } => write!(
                f,
                "advance_transmit({written}) but only {pending} bytes were pending"
            ),
        }
    }
}

impl core::error::Error for UsageError {}

/// What a libvirt error means, from its code (`virErrorNumber`) and, where
/// the code alone is too broad, its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such domain, or it went away (`VIR_ERR_NO_DOMAIN`).
    NoDomain,
    /// The domain exists but is not running (`VIR_ERR_OPERATION_INVALID`
    /// saying "domain is not running").
    DomainNotRunning,
    /// Not valid at this time, for another reason (`VIR_ERR_OPERATION_INVALID`).
    OperationInvalid,
    /// Forbidden on a read-only connection (`VIR_ERR_OPERATION_DENIED`).
    ReadOnly,
    /// Denied by access control (`VIR_ERR_ACCESS_DENIED`).
    AccessDenied,
    /// The connection must authenticate first ("authentication required").
    AuthRequired,
    /// Authentication failed, was cancelled or is unavailable.
    AuthFailed,
    /// The driver does not support it (`VIR_ERR_NO_SUPPORT`,
    /// `VIR_ERR_OPERATION_UNSUPPORTED`, `VIR_ERR_ARGUMENT_UNSUPPORTED`).
    Unsupported,
    /// An invalid argument (`VIR_ERR_INVALID_ARG`).
    InvalidArgument,
    /// The operation timed out (`VIR_ERR_OPERATION_TIMEOUT`), for example
    /// waiting for the domain's monitor.
    Timeout,
    /// The operation failed (`VIR_ERR_OPERATION_FAILED`).
    OperationFailed,
    /// The guest agent is not responding (`VIR_ERR_AGENT_UNRESPONSIVE`).
    AgentUnresponsive,
    /// libvirt's internal error (`VIR_ERR_INTERNAL_ERROR`).
    Internal,
    /// A system call failed in libvirtd (`VIR_ERR_SYSTEM_ERROR`).
    System,
    /// An RPC-level error (`VIR_ERR_RPC`).
    Rpc,
    /// Any other code: see [`LibvirtError::code`].
    Other,
}

/// libvirt's error codes this crate names (`virErrorNumber`).
pub mod code {
    /// `VIR_ERR_INTERNAL_ERROR`
    pub const INTERNAL_ERROR: i32 = 1;
    /// `VIR_ERR_NO_SUPPORT`
    pub const NO_SUPPORT: i32 = 3;
    /// `VIR_ERR_INVALID_ARG`
    pub const INVALID_ARG: i32 = 8;
    /// `VIR_ERR_OPERATION_FAILED`
    pub const OPERATION_FAILED: i32 = 9;
    /// `VIR_ERR_OPERATION_DENIED`
    pub const OPERATION_DENIED: i32 = 29;
    /// `VIR_ERR_SYSTEM_ERROR`
    pub const SYSTEM_ERROR: i32 = 38;
    /// `VIR_ERR_RPC`
    pub const RPC: i32 = 39;
    /// `VIR_ERR_NO_DOMAIN`
    pub const NO_DOMAIN: i32 = 42;
    /// `VIR_ERR_AUTH_FAILED`
    pub const AUTH_FAILED: i32 = 45;
    /// `VIR_ERR_OPERATION_INVALID`
    pub const OPERATION_INVALID: i32 = 55;
    /// `VIR_ERR_OPERATION_TIMEOUT`
    pub const OPERATION_TIMEOUT: i32 = 68;
    /// `VIR_ERR_ARGUMENT_UNSUPPORTED`
    pub const ARGUMENT_UNSUPPORTED: i32 = 74;
    /// `VIR_ERR_AUTH_CANCELLED`
    pub const AUTH_CANCELLED: i32 = 79;
    /// `VIR_ERR_OPERATION_UNSUPPORTED`
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    /// `VIR_ERR_AGENT_UNRESPONSIVE`
    pub const AGENT_UNRESPONSIVE: i32 = 86;
    /// `VIR_ERR_ACCESS_DENIED`
    pub const ACCESS_DENIED: i32 = 88;
    /// `VIR_ERR_AUTH_UNAVAILABLE`
    pub const AUTH_UNAVAILABLE: i32 = 94;
}

/// libvirt answered a call with an error: an answer about that call, not a
/// broken connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LibvirtError {
    /// Everything libvirt sent (boxed: errors stay small).
    pub remote: Box<RemoteError>,
}

impl LibvirtError {
    /// What it means.
    pub fn kind(&self) -> ErrorKind {
        let message = self.message();
        match self.remote.code {
            code::NO_DOMAIN => ErrorKind::NoDomain,
            code::OPERATION_INVALID if message.contains("not running") => {
                ErrorKind::DomainNotRunning
            }
            code::OPERATION_INVALID => ErrorKind::OperationInvalid,
            code::OPERATION_DENIED => ErrorKind::ReadOnly,
            code::ACCESS_DENIED => ErrorKind::AccessDenied,
            // libvirtd reports a call before authentication as an RPC error,
            // for the sake of old clients.
            code::RPC | code::AUTH_FAILED if message.contains("authentication required") => {
                ErrorKind::AuthRequired
            }
            code::AUTH_FAILED | code::AUTH_CANCELLED | code::AUTH_UNAVAILABLE => {
                ErrorKind::AuthFailed
            }
            code::NO_SUPPORT | code::OPERATION_UNSUPPORTED | code::ARGUMENT_UNSUPPORTED => {
                ErrorKind::Unsupported
            }
            code::INVALID_ARG => ErrorKind::InvalidArgument,
            code::OPERATION_TIMEOUT => ErrorKind::Timeout,
            code::OPERATION_FAILED => ErrorKind::OperationFailed,
            code::AGENT_UNRESPONSIVE => ErrorKind::AgentUnresponsive,
            code::INTERNAL_ERROR => ErrorKind::Internal,
            code::SYSTEM_ERROR => ErrorKind::System,
            code::RPC => ErrorKind::Rpc,
            _ => ErrorKind::Other,
        }
    }

    /// libvirt's `virErrorNumber`.
    pub fn code(&self) -> i32 {
        self.remote.code
    }

    /// libvirt's message, or "" when it sent none.
    pub fn message(&self) -> &str {
        self.remote.message.as_deref().unwrap_or("")
    }
}

impl From<RemoteError> for LibvirtError {
    fn from(remote: RemoteError) -> Self {
        Self {
            remote: Box::new(remote),
        }
    }
}

impl fmt::Display for LibvirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.remote.message.as_deref() {
            Some(m) => write!(f, "libvirt: {m} (code {})", self.remote.code),
            None => write!(f, "libvirt error code {}", self.remote.code),
        }
    }
}

impl core::error::Error for LibvirtError {}

/// Any error of a libvirt connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// libvirt answered with an error.
    Libvirt(LibvirtError),
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// The caller misused the connection.
    Usage(UsageError),
    /// libvirtd wants an authentication method this crate does not do.
    AuthNotSupported(AuthType),
    /// libvirtd closed the connection (or the daemon is gone).
    Disconnected,
}

impl Error {
    /// The libvirt error's kind, when this is one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Libvirt(e) => Some(e.kind()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Libvirt(e) => e.fmt(f),
            Self::Protocol(e) => e.fmt(f),
            Self::Usage(e) => e.fmt(f),
            Self::AuthNotSupported(t) => write!(
                f,
                "libvirtd requires {t} authentication, which is not supported (only auth none is)"
            ),
            Self::Disconnected => f.write_str("libvirtd closed the connection"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Libvirt(e) => Some(e),
            Self::Protocol(e) => Some(e),
            Self::Usage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LibvirtError> for Error {
    fn from(e: LibvirtError) -> Self {
        Self::Libvirt(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Self::Usage(e)
    }
}
