//! Commands: the typed [`Command`] trait, command ids, and how a command's
//! bytes are written.

use crate::buffer::Buffer;
use crate::error::UsageError;
use crate::framer::MAX_DEPTH;

/// A typed QMP or guest-agent command. The implementing type is the command's
/// argument object; it is serialized as `arguments` (a type that serializes to
/// `null`, such as `()` or a unit struct, sends no `arguments`).
///
/// ```
/// use qmp_proto::Command;
///
/// #[derive(serde::Serialize)]
/// struct DeviceDel<'a> {
///     id: &'a str,
/// }
///
/// impl Command for DeviceDel<'_> {
///     const NAME: &'static str = "device_del";
///     type Returns = qmp_proto::Empty;
/// }
/// ```
pub trait Command: serde::Serialize {
    /// The command name, as in `{"execute": NAME}`.
    const NAME: &'static str;
    /// The type its `return` value decodes into.
    type Returns;
}

/// A typed event: the implementing type is the event's `data` object, and
/// `NAME` the event it belongs to. Event filters and decoders take it as a
/// type parameter, so one type names the event and says how to read it.
///
/// ```
/// use qmp_proto::EventData;
///
/// #[derive(serde::Deserialize)]
/// struct DeviceDeleted {
///     device: Option<String>,
///     path: String,
/// }
///
/// impl EventData for DeviceDeleted {
///     const NAME: &'static str = "DEVICE_DELETED";
/// }
/// # let _ = |d: DeviceDeleted| (d.device, d.path);
/// ```
pub trait EventData: serde::de::DeserializeOwned {
    /// The event name, as in `{"event": NAME}`.
    const NAME: &'static str;
}

/// A typed view of every event: an enum over many events (such as
/// `qmp_qapi::events::Event`) built from an event's name and raw `data`.
/// It never fails: an event it does not know, or data that does not fit,
/// is kept in a catch-all.
///
/// ```
/// use qmp_proto::EventEnum;
///
/// enum Run {
///     Stop,
///     Other(String),
/// }
///
/// impl EventEnum for Run {
///     fn decode_event(name: &str, _data: Option<&str>) -> Self {
///         match name {
///             "STOP" => Run::Stop,
///             other => Run::Other(other.into()),
///         }
///     }
/// }
/// assert!(matches!(Run::decode_event("STOP", None), Run::Stop));
/// ```
pub trait EventEnum: Sized {
    /// The event called `name` with `data` (`None` when it has none).
    fn decode_event(name: &str, data: Option<&str>) -> Self;
}

/// The `{}` that commands without a result return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Empty {}

/// The id of a command sent by this crate: the numeric `id` member it carries.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub u64);

impl core::fmt::Display for Id {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// QEMU's own input limit: a larger command gets an id-less parse error.
pub(crate) const MAX_COMMAND_SIZE: usize = 64 << 20;

/// A command's arguments on their way to bytes.
pub(crate) enum Args<'a, T: ?Sized> {
    None,
    Raw(&'a str),
    Typed(&'a T),
}

/// `execute` or `exec-oob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Execute,
    ExecOob,
}

/// Checks a command name: QAPI names are ASCII letters, digits, `-`, `_`, and
/// `.` in downstream extensions, so they never need escaping.
pub(crate) fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(UsageError::InvalidCommandName)
    }
}

/// Appends one command to `tx`, all or nothing:
/// `[0xFF]{"execute":"NAME","arguments":ARGS,"id":N}` + CR LF.
pub(crate) fn encode<B: Buffer, T: serde::Serialize + ?Sized>(
    tx: &mut B,
    sentinel: bool,
    verb: Verb,
    name: &str,
    args: Args<'_, T>,
    id: Option<u64>,
) -> Result<(), UsageError> {
    check_name(name)?;
    if let Args::Raw(raw) = args {
        crate::framer::check_object(raw.as_bytes(), MAX_DEPTH - 1)
            .map_err(UsageError::InvalidArguments)?;
    }
    let mark = tx.len();
    let result = write_command(tx, sentinel, verb, name, args, id);
    if result.is_err() {
        tx.truncate(mark);
    } else if tx.len().saturating_sub(mark) > MAX_COMMAND_SIZE {
        tx.truncate(mark);
        return Err(UsageError::CommandTooLarge);
    }
    result
}

fn write_command<B: Buffer, T: serde::Serialize + ?Sized>(
    tx: &mut B,
    sentinel: bool,
    verb: Verb,
    name: &str,
    args: Args<'_, T>,
    id: Option<u64>,
) -> Result<(), UsageError> {
    if sentinel {
        put(tx, b"\xff")?;
    }
    put(
        tx,
        if verb == Verb::Execute {
            b"{\"execute\":\""
        } else {
            b"{\"exec-oob\":\""
        },
    )?;
    put(tx, name.as_bytes())?;
    put(tx, b"\"")?;
    match args {
        Args::None => {}
        Args::Raw(raw) => {
            put(tx, b",\"arguments\":")?;
            put(
                tx,
                raw.trim_matches(|c: char| c.is_ascii_whitespace())
                    .as_bytes(),
            )?;
        }
        Args::Typed(value) => {
            let before = tx.len();
            put(tx, b",\"arguments\":")?;
            let at = tx.len();
            serialize(tx, value)?;
            match tx.bytes().get(at) {
                Some(b'{') => {}
                Some(b'n') => tx.truncate(before),
                _ => return Err(UsageError::ArgumentsNotAnObject),
            }
        }
    }
    if let Some(id) = id {
        put(tx, b",\"id\":")?;
        let mut digits = [0u8; 20];
        put(tx, format_u64(id, &mut digits))?;
    }
    put(tx, b"}\r\n")
}

fn put<B: Buffer>(tx: &mut B, bytes: &[u8]) -> Result<(), UsageError> {
    if tx.room() < bytes.len() {
        return Err(UsageError::TransmitFull);
    }
    tx.append(bytes);
    Ok(())
}

#[cfg(feature = "alloc")]
fn serialize<B: Buffer, T: serde::Serialize + ?Sized>(
    tx: &mut B,
    value: &T,
) -> Result<(), UsageError> {
    let bytes = serde_json::to_vec(value).map_err(|_| UsageError::EncodeFailed)?;
    put(tx, &bytes)
}

#[cfg(not(feature = "alloc"))]
fn serialize<B: Buffer, T: serde::Serialize + ?Sized>(
    tx: &mut B,
    value: &T,
) -> Result<(), UsageError> {
    let room = tx.room();
    let len = tx.len();
    match serde_json_core::to_slice(value, tx.spare(room)) {
        Ok(n) => {
            // `n` is at most `room`: within the capacity.
            tx.set_len(len.saturating_add(n));
            Ok(())
        }
        Err(serde_json_core::ser::Error::BufferFull) => Err(UsageError::TransmitFull),
        Err(_) => Err(UsageError::EncodeFailed),
    }
}

/// Formats `n` in decimal into `buf`, returning the digits.
pub(crate) fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    // u64::MAX has 20 digits: the loop always ends with `n == 0`.
    let mut start = buf.len();
    for (i, slot) in buf.iter_mut().enumerate().rev() {
        // `b'0' | d` is the ASCII digit `d` (0x30 + d for d < 10).
        *slot = b'0' | (n % 10) as u8;
        n /= 10;
        start = i;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}
