//! The arguments and results of the procedures this crate uses, each with an
//! encoder and a decoder (both directions, so tests can play the server).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::STRING_MAX;
use super::xdr::{self, XResult};

/// libvirt's bound on the authentication type list (`REMOTE_AUTH_TYPE_LIST_MAX`).
pub const AUTH_TYPE_LIST_MAX: u32 = 20;

/// A domain's UUID (16 raw bytes; displayed in the usual hyphenated form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hyphens optional).
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        let mut digits = s.bytes().filter(|&b| b != b'-');
        for byte in &mut out {
            let hi = hex(digits.next()?)?;
            let lo = hex(digits.next()?)?;
            *byte = hi << 4 | lo;
        }
        let hyphens = s.bytes().filter(|&b| b == b'-').count();
        (digits.next().is_none() && (hyphens == 0 || hyphens == 4)).then_some(Uuid(out))
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A domain as the protocol names it (`remote_nonnull_domain`): every call on
/// a domain sends all three fields back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain {
    /// Its name.
    pub name: String,
    /// Its UUID.
    pub uuid: Uuid,
    /// Its id while running, -1 when not running.
    pub id: i32,
}

impl Domain {
    /// Appends it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        xdr::put_str(out, &self.name);
        xdr::put_opaque_fixed(out, &self.uuid.0);
        xdr::put_i32(out, self.id);
    }

    /// Decodes one.
    pub fn decode(i: &[u8]) -> XResult<'_, Self> {
        let (i, name) = xdr::string(STRING_MAX)(i)?;
        let (i, uuid) = xdr::opaque_fixed::<16>(i)?;
        let (i, id) = xdr::i32(i)?;
        Ok((
            i,
            Domain {
                name,
                uuid: Uuid(uuid),
                id,
            },
        ))
    }
}

/// libvirt's error report (`remote_error`, the payload of a reply with status
/// [`Error`](super::Status::Error)). See [`LibvirtError`](crate::LibvirtError)
/// for what it means.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RemoteError {
    /// `virErrorNumber`.
    pub code: i32,
    /// `virErrorDomain`: the part of libvirt that reported it.
    pub domain: i32,
    /// The message, ready for a person.
    pub message: Option<String>,
    /// `virErrorLevel`: 1 warning, 2 error.
    pub level: i32,
    /// The domain concerned (unused by libvirt today).
    pub dom: Option<Domain>,
    /// Extra information; for most errors the format string and its argument.
    pub str1: Option<String>,
    /// Extra information.
    pub str2: Option<String>,
    /// Extra information.
    pub str3: Option<String>,
    /// Extra information.
    pub int1: i32,
    /// Extra information.
    pub int2: i32,
    /// The network concerned (unused): its name and UUID.
    pub net: Option<(String, Uuid)>,
}

impl RemoteError {
    /// Appends it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let put_opt_str = |out: &mut Vec<u8>, s: &Option<String>| {
            xdr::put_optional(out, s.as_deref(), xdr::put_str);
        };
        xdr::put_i32(out, self.code);
        xdr::put_i32(out, self.domain);
        put_opt_str(out, &self.message);
        xdr::put_i32(out, self.level);
        xdr::put_optional(out, self.dom.as_ref(), |o, d| d.encode(o));
        put_opt_str(out, &self.str1);
        put_opt_str(out, &self.str2);
        put_opt_str(out, &self.str3);
        xdr::put_i32(out, self.int1);
        xdr::put_i32(out, self.int2);
        xdr::put_optional(out, self.net.as_ref(), |o, (name, uuid)| {
            xdr::put_str(o, name);
            xdr::put_opaque_fixed(o, &uuid.0);
        });
    }

    /// Decodes one.
    pub fn decode(i: &[u8]) -> XResult<'_, Self> {
        let opt_str = xdr::optional(xdr::string(STRING_MAX));
        let (i, code) = xdr::i32(i)?;
        let (i, domain) = xdr::i32(i)?;
        let (i, message) = opt_str(i)?;
        let (i, level) = xdr::i32(i)?;
        let (i, dom) = xdr::optional(Domain::decode)(i)?;
        let (i, str1) = opt_str(i)?;
        let (i, str2) = opt_str(i)?;
        let (i, str3) = opt_str(i)?;
        let (i, int1) = xdr::i32(i)?;
        let (i, int2) = xdr::i32(i)?;
        let (i, net) = xdr::optional(|i| {
            let (i, name) = xdr::string(STRING_MAX)(i)?;
            let (i, uuid) = xdr::opaque_fixed::<16>(i)?;
            Ok((i, (name, Uuid(uuid))))
        })(i)?;
        Ok((
            i,
            RemoteError {
                code,
                domain,
                message,
                level,
                dom,
                str1,
                str2,
                str3,
                int1,
                int2,
                net,
            },
        ))
    }
}

/// An authentication type from `AUTH_LIST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// None needed.
    None,
    /// SASL.
    Sasl,
    /// polkit.
    Polkit,
    /// A type this crate does not know.
    Other(u32),
}

impl AuthType {
    /// From the wire value.
    pub const fn from_u32(v: u32) -> Self {
        match v {
            0 => Self::None,
            1 => Self::Sasl,
            2 => Self::Polkit,
            v => Self::Other(v),
        }
    }

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Sasl => 1,
            Self::Polkit => 2,
            Self::Other(v) => v,
        }
    }

    /// Encodes an `AUTH_LIST` result.
    pub fn encode_list(out: &mut Vec<u8>, types: &[AuthType]) {
        xdr::put_array(out, types, |o, t| xdr::put_u32(o, t.to_u32()));
    }

    /// Decodes an `AUTH_LIST` result.
    pub fn decode_list(i: &[u8]) -> XResult<'_, Vec<AuthType>> {
        xdr::array(AUTH_TYPE_LIST_MAX, |i| {
            xdr::u32(i).map(|(i, v)| (i, AuthType::from_u32(v)))
        })(i)
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Sasl => f.write_str("SASL"),
            Self::Polkit => f.write_str("polkit"),
            Self::Other(v) => write!(f, "unknown type {v}"),
        }
    }
}

/// `CONNECT_OPEN`'s arguments: the URI to open (libvirt picks the driver by
/// it) and flags ([`open_flags`](super::open_flags)).
pub fn encode_connect_open(out: &mut Vec<u8>, name: Option<&str>, flags: u32) {
    xdr::put_optional(out, name, xdr::put_str);
    xdr::put_u32(out, flags);
}

/// Decodes `CONNECT_OPEN`'s arguments.
pub fn decode_connect_open(i: &[u8]) -> XResult<'_, (Option<&str>, u32)> {
    let (i, name) = xdr::optional(xdr::str(STRING_MAX))(i)?;
    let (i, flags) = xdr::u32(i)?;
    Ok((i, (name, flags)))
}

/// `DOMAIN_MONITOR_COMMAND`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorCommandArgs {
    /// The domain.
    pub dom: Domain,
    /// The QMP command as JSON (or HMP text with the HMP flag).
    pub cmd: String,
    /// [`monitor_flags`](super::monitor_flags).
    pub flags: u32,
}

impl MonitorCommandArgs {
    /// Appends them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_monitor_command(out, &self.dom, &self.cmd, self.flags);
    }

    /// Decodes them.
    pub fn decode(i: &[u8]) -> XResult<'_, Self> {
        let (i, dom) = Domain::decode(i)?;
        let (i, cmd) = xdr::string(STRING_MAX)(i)?;
        let (i, flags) = xdr::u32(i)?;
        Ok((i, MonitorCommandArgs { dom, cmd, flags }))
    }
}

/// Appends `DOMAIN_MONITOR_COMMAND`'s arguments without owning them.
pub fn encode_monitor_command(out: &mut Vec<u8>, dom: &Domain, cmd: &str, flags: u32) {
    dom.encode(out);
    xdr::put_str(out, cmd);
    xdr::put_u32(out, flags);
}

/// `CONNECT_DOMAIN_MONITOR_EVENT_REGISTER`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventRegisterArgs {
    /// One domain, or every domain.
    pub dom: Option<Domain>,
    /// One event name, or every event.
    pub event: Option<String>,
    /// `virConnectDomainQemuMonitorEventRegisterFlags` (regex, case-insensitive).
    pub flags: u32,
}

impl EventRegisterArgs {
    /// Appends them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        xdr::put_optional(out, self.dom.as_ref(), |o, d| d.encode(o));
        xdr::put_optional(out, self.event.as_deref(), xdr::put_str);
        xdr::put_u32(out, self.flags);
    }

    /// Decodes them.
    pub fn decode(i: &[u8]) -> XResult<'_, Self> {
        let (i, dom) = xdr::optional(Domain::decode)(i)?;
        let (i, event) = xdr::optional(xdr::string(STRING_MAX))(i)?;
        let (i, flags) = xdr::u32(i)?;
        Ok((i, EventRegisterArgs { dom, event, flags }))
    }
}

/// A QMP event of a domain (`qemu_domain_monitor_event_msg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorEvent {
    /// The registration it belongs to.
    pub callback_id: i32,
    /// The domain.
    pub domain: Domain,
    /// The event name, such as `STOP`.
    pub event: String,
    /// When it happened: seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub micros: u32,
    /// The event's `data` member as JSON, if it had one.
    pub details: Option<String>,
}

impl MonitorEvent {
    /// Appends it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        xdr::put_i32(out, self.callback_id);
        self.domain.encode(out);
        xdr::put_str(out, &self.event);
        xdr::put_i64(out, self.seconds);
        xdr::put_u32(out, self.micros);
        xdr::put_optional(out, self.details.as_deref(), xdr::put_str);
    }

    /// Decodes one.
    pub fn decode(i: &[u8]) -> XResult<'_, Self> {
        let (i, callback_id) = xdr::i32(i)?;
        let (i, domain) = Domain::decode(i)?;
        let (i, event) = xdr::string(STRING_MAX)(i)?;
        let (i, seconds) = xdr::i64(i)?;
        let (i, micros) = xdr::u32(i)?;
        let (i, details) = xdr::optional(xdr::string(STRING_MAX))(i)?;
        Ok((
            i,
            MonitorEvent {
                callback_id,
                domain,
                event,
                seconds,
                micros,
                details,
            },
        ))
    }
}

/// Decodes a result that is one string (`DOMAIN_MONITOR_COMMAND`).
pub fn decode_string_ret(i: &[u8]) -> XResult<'_, String> {
    xdr::string(STRING_MAX)(i)
}

/// Decodes a result that is one int (`SUPPORTS_FEATURE`, event register).
pub fn decode_int_ret(i: &[u8]) -> XResult<'_, i32> {
    xdr::i32(i)
}
