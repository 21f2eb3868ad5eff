//! Errors, by whose fault they are: the peer's ([`ProtocolError`]), the caller's
//! ([`UsageError`]), or nobody's (the connection is [closed](Error::Closed)).
//! A QMP error reply is not among them: it is an answer, see [`QmpError`].

use core::fmt;

use crate::framer::FrameError;
use crate::json::{JsonStr, RawJson};

/// The peer broke the protocol. Fatal and sticky: every later call on the
/// state machine returns it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes are not valid JSON messages.
    Frame(FrameError),
    /// The greeting lacks `version` or `capabilities` of the right shape.
    MalformedGreeting,
    /// A second greeting arrived.
    UnexpectedGreeting,
    /// An error reply whose `error` is not `{"class": string, "desc": string}`.
    MalformedError,
    /// An event without a string `event` name.
    MalformedEvent,
    /// A message that is neither greeting, reply nor event (or is several).
    UnknownMessage,
    /// `qmp_capabilities` was refused, or its reply was too large.
    NegotiationFailed,
    /// The stream ended inside a message.
    TruncatedMessage,
    /// A QMP peer sent the guest agent's 0xFF sentinel.
    UnexpectedSentinel,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(e) => write!(f, "peer sent invalid JSON: {e}"),
            ProtocolError::MalformedGreeting => f.write_str("peer sent a malformed QMP greeting"),
            ProtocolError::UnexpectedGreeting => f.write_str("peer sent a second QMP greeting"),
            ProtocolError::MalformedError => {
                f.write_str("peer sent an error reply without string class and desc")
            }
            ProtocolError::MalformedEvent => {
                f.write_str("peer sent an event without a string name")
            }
            ProtocolError::UnknownMessage => {
                f.write_str("peer sent a message that is not a greeting, reply or event")
            }
            ProtocolError::NegotiationFailed => f.write_str("qmp_capabilities negotiation failed"),
            ProtocolError::TruncatedMessage => {
                f.write_str("connection closed in the middle of a message")
            }
            ProtocolError::UnexpectedSentinel => f.write_str("QMP peer sent a 0xFF byte"),
        }
    }
}

impl core::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ProtocolError::Frame(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FrameError> for ProtocolError {
    fn from(e: FrameError) -> Self {
        ProtocolError::Frame(e)
    }
}

/// The caller misused the state machine. Nothing changed; fix the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsageError {
    /// Commands can be sent once the greeting has arrived.
    GreetingPending,
    /// `exec-oob` needs the `oob` capability, offered and negotiated.
    OobNotNegotiated,
    /// A command name must be non-empty ASCII letters, digits, `-`, `_`, `.`.
    InvalidCommandName,
    /// Raw arguments must be exactly one JSON object.
    InvalidArguments(FrameError),
    /// Typed arguments did not serialize to a JSON object (or `null`/`()`).
    ArgumentsNotAnObject,
    /// Typed arguments could not be serialized.
    EncodeFailed,
    /// The encoded command is larger than the peer accepts (64 MiB for QEMU).
    CommandTooLarge,
    /// The transmit buffer has no room: flush [`pending_transmit`] first.
    ///
    /// [`pending_transmit`]: crate::Client::pending_transmit
    TransmitFull,
    /// The table of commands in flight is full: wait for replies first.
    TooManyPending,
    /// `advance_transmit` was given more bytes than are pending.
    AdvancePastEnd,
    /// No command with this id is waiting for a reply.
    UnknownId,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::GreetingPending => {
                f.write_str("cannot send commands before the QMP greeting arrived")
            }
            UsageError::OobNotNegotiated => {
                f.write_str("exec-oob needs the oob capability to be negotiated")
            }
            UsageError::InvalidCommandName => {
                f.write_str("command name must be ASCII letters, digits, '-', '_' or '.'")
            }
            UsageError::InvalidArguments(e) => {
                write!(f, "raw arguments are not one JSON object: {e}")
            }
            UsageError::ArgumentsNotAnObject => {
                f.write_str("command arguments must serialize to a JSON object")
            }
            UsageError::EncodeFailed => f.write_str("command arguments could not be serialized"),
            UsageError::CommandTooLarge => f.write_str("command is larger than the peer accepts"),
            UsageError::TransmitFull => {
                f.write_str("transmit buffer is full; flush pending_transmit first")
            }
            UsageError::TooManyPending => f.write_str("too many commands in flight"),
            UsageError::AdvancePastEnd => {
                f.write_str("advance_transmit past the end of pending_transmit")
            }
            UsageError::UnknownId => f.write_str("no command with this id is in flight"),
        }
    }
}

impl core::error::Error for UsageError {}

/// Any error a state machine call can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol (sticky).
    Protocol(ProtocolError),
    /// The call was a mistake; nothing changed.
    Usage(UsageError),
    /// The connection is closed (end of stream was received).
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => fmt::Display::fmt(e, f),
            Error::Usage(e) => fmt::Display::fmt(e, f),
            Error::Closed => f.write_str("connection closed"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Protocol(e) => Some(e),
            Error::Usage(e) => Some(e),
            Error::Closed => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e)
    }
}

/// The error classes QEMU uses. New ones may appear: they are kept, by name,
/// as `Other`.
///
/// Generic over how that name is held: a parsed reply's class is an
/// `ErrorClass<JsonStr<'a>>` borrowed from the receive buffer (see
/// [`QmpError`]); with `alloc`, [`into_owned`](ErrorClass::into_owned) makes
/// an `ErrorClass<String>` that outlives it. Match on the variants; an unknown
/// class is compared by [`as_str`](ErrorClass::as_str).
///
/// ```
/// use qmp_proto::ErrorClass;
///
/// assert_eq!(ErrorClass::from_name("DeviceNotFound"), ErrorClass::DeviceNotFound);
/// let newer = ErrorClass::from_name("SomethingNew");
/// assert_eq!(newer, ErrorClass::Other("SomethingNew"));
/// assert_eq!(newer.as_str(), "SomethingNew");
/// assert_eq!(ErrorClass::<&str>::KvmMissingCap.to_string(), "KVMMissingCap");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass<S> {
    /// Most errors.
    GenericError,
    /// The command does not exist (or negotiation is not done).
    CommandNotFound,
    /// A device exists but is not active.
    DeviceNotActive,
    /// No such device.
    DeviceNotFound,
    /// KVM lacks a capability (QEMU spells it `KVMMissingCap`).
    KvmMissingCap,
    /// A class this crate does not know, by name.
    Other(S),
}

/// The classes this crate knows.
const KNOWN: [ErrorClass<()>; 5] = [
    ErrorClass::GenericError,
    ErrorClass::CommandNotFound,
    ErrorClass::DeviceNotActive,
    ErrorClass::DeviceNotFound,
    ErrorClass::KvmMissingCap,
];

impl<S> ErrorClass<S> {
    /// The known class named `name` (compared by `is_name`), else `Other(name)`.
    fn classify(name: S, is_name: impl Fn(&S, &str) -> bool) -> Self {
        let known = KNOWN
            .into_iter()
            .find(|c| c.known_name().is_some_and(|k| is_name(&name, k)));
        match known {
            // A known class holds no name: `map` never calls the closure.
            Some(known) => known.map(|()| name),
            None => ErrorClass::Other(name),
        }
    }

    /// QEMU's spelling of a known class; `None` for `Other`.
    fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
            ErrorClass::Other(_) => return None,
        })
    }

    /// The same class, with the name of an unknown one turned by `f`.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> ErrorClass<T> {
        match self {
            ErrorClass::GenericError => ErrorClass::GenericError,
            ErrorClass::CommandNotFound => ErrorClass::CommandNotFound,
            ErrorClass::DeviceNotActive => ErrorClass::DeviceNotActive,
            ErrorClass::DeviceNotFound => ErrorClass::DeviceNotFound,
            ErrorClass::KvmMissingCap => ErrorClass::KvmMissingCap,
            ErrorClass::Other(name) => ErrorClass::Other(f(name)),
        }
    }
}

impl<S: AsRef<str>> ErrorClass<S> {
    /// The class QEMU names `name` (`Other(name)` for one this crate does
    /// not know).
    pub fn from_name(name: S) -> Self {
        Self::classify(name, |name, known| name.as_ref() == known)
    }

    /// The class name as QEMU spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorClass::Other(name) => name.as_ref(),
            known => known.known_name().unwrap_or_default(),
        }
    }
}

impl<'a> ErrorClass<JsonStr<'a>> {
    /// Reads a class name as sent, escapes and all.
    pub(crate) fn parse(name: JsonStr<'a>) -> Self {
        Self::classify(name, |name, known| name.eq_str(known))
    }

    /// The class name as QEMU spells it (an unknown one's escapes, if any,
    /// left as sent; [`Display`](fmt::Display) decodes them).
    pub fn as_str(&self) -> &'a str {
        match self {
            ErrorClass::Other(name) => name.raw(),
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The same class, owning the name of an unknown one (decoded).
    #[cfg(feature = "alloc")]
    pub fn into_owned(self) -> ErrorClass<alloc::string::String> {
        self.map(|name| name.to_string_lossless())
    }
}

impl<S: fmt::Display> fmt::Display for ErrorClass<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::Other(name) => name.fmt(f),
            known => f.write_str(known.known_name().unwrap_or_default()),
        }
    }
}

/// A QMP error reply: `{"class": ..., "desc": ...}`. Data, not a Rust error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QmpError<'a> {
    /// The machine-readable class.
    pub class: ErrorClass<JsonStr<'a>>,
    /// The human-readable description (never parse it).
    pub desc: JsonStr<'a>,
}

impl<'a> QmpError<'a> {
    /// Reads the value of an `error` member.
    pub(crate) fn parse(value: RawJson<'a>) -> Option<Self> {
        let class = value.get("class")?.as_json_str()?;
        let desc = value.get("desc")?.as_json_str()?;
        Some(QmpError {
            class: ErrorClass::parse(class),
            desc,
        })
    }
}

impl fmt::Display for QmpError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.desc)
    }
}
