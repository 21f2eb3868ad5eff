//! libvirt's RPC wire format: packets, their header, and the procedures this
//! crate uses.
//!
//! A packet is a 4-byte big-endian length that counts itself, a 24-byte
//! header (program, version, procedure, type, serial, status) and an XDR
//! payload whose type depends on the procedure and on the header's type and
//! status (libvirt's `virnetprotocol.x`). Calls carry the procedure's
//! arguments; replies its result, or a [`RemoteError`] when the status is
//! [`Status::Error`]; messages are one-way (events, keepalive).

pub mod remote;
pub mod xdr;

use alloc::vec::Vec;

pub use remote::{
    AuthType, Domain, EventRegisterArgs, MonitorCommandArgs, MonitorEvent, RemoteError, Uuid,
};
pub use xdr::DecodeError;

/// libvirt's maximum message: header and payload, not counting the length word
/// (`VIR_NET_MESSAGE_MAX`).
pub const MESSAGE_MAX: u32 = 16 * 1024 * 1024;
/// Bytes in the length word.
pub const LEN_SIZE: usize = 4;
/// Bytes in the header, after the length word.
pub const HEADER_SIZE: usize = 24;
/// libvirt's bound on a string (`REMOTE_STRING_MAX`).
pub const STRING_MAX: u32 = 4_194_304;

/// Program numbers.
pub mod program {
    /// The main remote program (`REMOTE_PROGRAM`).
    pub const REMOTE: u32 = 0x2000_8086;
    /// The QEMU-specific program (`QEMU_PROGRAM`).
    pub const QEMU: u32 = 0x2000_8087;
    /// Keepalive (`KEEPALIVE_PROGRAM`, "keep" in ASCII).
    pub const KEEPALIVE: u32 = 0x6b65_6570;
    /// The version every program here speaks.
    pub const VERSION: u32 = 1;
}

/// Procedures of [`program::REMOTE`] (numbers from `remote_protocol.x`).
pub mod remote_proc {
    /// `virConnectOpen`: `{name: optional string, flags}`, no result.
    pub const CONNECT_OPEN: i32 = 1;
    /// `virConnectClose`: no arguments, no result.
    pub const CONNECT_CLOSE: i32 = 2;
    /// `virConnectGetVersion`: the hypervisor's version as an unsigned hyper.
    pub const CONNECT_GET_VERSION: i32 = 4;
    /// `virDomainLookupByID`: `{id}` to a domain.
    pub const DOMAIN_LOOKUP_BY_ID: i32 = 22;
    /// `virDomainLookupByName`: `{name}` to a domain.
    pub const DOMAIN_LOOKUP_BY_NAME: i32 = 23;
    /// `virDomainLookupByUUID`: `{uuid}` to a domain.
    pub const DOMAIN_LOOKUP_BY_UUID: i32 = 24;
    /// `virConnectSupportsFeature`: `{feature}` to `{supported}`.
    pub const CONNECT_SUPPORTS_FEATURE: i32 = 60;
    /// The authentication types the server wants, asked before opening.
    pub const AUTH_LIST: i32 = 66;
}

/// Procedures of [`program::QEMU`] (numbers from `qemu_protocol.x`).
pub mod qemu_proc {
    /// `virDomainQemuMonitorCommand`: `{dom, cmd, flags}` to `{result}`.
    pub const DOMAIN_MONITOR_COMMAND: i32 = 1;
    /// Subscribes to a domain's (or every domain's) QMP events.
    pub const CONNECT_DOMAIN_MONITOR_EVENT_REGISTER: i32 = 4;
    /// Ends a subscription by its callback id.
    pub const CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER: i32 = 5;
    /// An event (a [`MESSAGE`](super::MessageType::Message)).
    pub const DOMAIN_MONITOR_EVENT: i32 = 6;
}

/// Procedures of [`program::KEEPALIVE`]; both are messages without payload.
pub mod keepalive_proc {
    /// Are you there?
    pub const PING: i32 = 1;
    /// Yes.
    pub const PONG: i32 = 2;
}

/// `virConnectSupportsFeature` feature numbers.
pub mod feature {
    /// The keepalive program (`VIR_DRV_FEATURE_PROGRAM_KEEPALIVE`). Asking for
    /// it also makes the server start pinging this connection.
    pub const PROGRAM_KEEPALIVE: i32 = 10;
}

/// `DOMAIN_MONITOR_COMMAND` flags.
pub mod monitor_flags {
    /// The command is HMP text, not QMP JSON.
    pub const HMP: u32 = 1;
}

/// `CONNECT_OPEN` flags.
pub mod open_flags {
    /// A read-only connection (`VIR_CONNECT_RO`).
    pub const READ_ONLY: u32 = 1;
}

/// What a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// Client to server: a procedure's arguments.
    Call,
    /// Server to client: a procedure's result or error, same serial as the call.
    Reply,
    /// Either direction, one-way: events and keepalive.
    Message,
    /// Stream data.
    Stream,
    /// A call with file descriptors.
    CallWithFds,
    /// A reply with file descriptors.
    ReplyWithFds,
}

impl MessageType {
    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Call => 0,
            Self::Reply => 1,
            Self::Message => 2,
            Self::Stream => 3,
            Self::CallWithFds => 4,
            Self::ReplyWithFds => 5,
        }
    }

    /// From the wire value.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Call,
            1 => Self::Reply,
            2 => Self::Message,
            3 => Self::Stream,
            4 => Self::CallWithFds,
            5 => Self::ReplyWithFds,
            _ => return None,
        })
    }
}

/// A packet's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success (always, for calls and messages).
    Ok,
    /// The payload is a [`RemoteError`].
    Error,
    /// More stream data follows.
    Continue,
}

impl Status {
    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::Ok => 0,
            Self::Error => 1,
            Self::Continue => 2,
        }
    }

    /// From the wire value.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::Continue,
            _ => return None,
        })
    }
}

/// The header that follows a packet's length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The program ([`program`]).
    pub program: u32,
    /// The program's version (1).
    pub version: u32,
    /// The procedure within the program.
    pub procedure: i32,
    /// Call, reply, message, ...
    pub kind: MessageType,
    /// Chosen by the caller for a call, echoed in its reply. Messages carry
    /// whatever the sender put there: dispatch them by program and procedure.
    pub serial: u32,
    /// Whether a reply is a result or an error.
    pub status: Status,
}

impl Header {
    /// A call header.
    pub const fn call(program: u32, procedure: i32, serial: u32) -> Self {
        Self {
            program,
            version: program::VERSION,
            procedure,
            kind: MessageType::Call,
            serial,
            status: Status::Ok,
        }
    }

    /// A one-way message header (serial 0).
    pub const fn message(program: u32, procedure: i32) -> Self {
        Self {
            program,
            version: program::VERSION,
            procedure,
            kind: MessageType::Message,
            serial: 0,
            status: Status::Ok,
        }
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        xdr::put_u32(out, self.program);
        xdr::put_u32(out, self.version);
        xdr::put_i32(out, self.procedure);
        xdr::put_u32(out, self.kind.to_u32());
        xdr::put_u32(out, self.serial);
        xdr::put_u32(out, self.status.to_u32());
    }

    /// Decodes a header.
    pub fn decode(i: &[u8]) -> xdr::XResult<'_, Self> {
        let (i, program) = xdr::u32(i)?;
        let (i, version) = xdr::u32(i)?;
        let (i, procedure) = xdr::i32(i)?;
        let (i, kind) = xdr::u32(i)?;
        let kind =
            MessageType::from_u32(kind).ok_or(nom::Err::Error(DecodeError::Discriminant {
                what: "message type",
                value: kind,
            }))?;
        let (i, serial) = xdr::u32(i)?;
        let (i, status) = xdr::u32(i)?;
        let status =
            Status::from_u32(status).ok_or(nom::Err::Error(DecodeError::Discriminant {
                what: "message status",
                value: status,
            }))?;
        Ok((
            i,
            Self {
                program,
                version,
                procedure,
                kind,
                serial,
                status,
            },
        ))
    }
}

/// The length of the packet at the start of `buf`, length word included, once
/// the length word is there. Checks it against `limit` (header and payload,
/// as [`MESSAGE_MAX`]) before any of the packet is stored.
pub fn packet_len(buf: &[u8], limit: u32) -> Result<Option<usize>, DecodeError> {
    let Some(word) = buf.first_chunk::<LEN_SIZE>() else {
        return Ok(None);
    };
    let size = u32::from_be_bytes(*word);
    let with_len = limit.saturating_add(LEN_SIZE as u32);
    if size > with_len {
        return Err(DecodeError::MessageTooLarge {
            size,
            limit: with_len,
        });
    }
    if (size as usize) < LEN_SIZE + HEADER_SIZE {
        return Err(DecodeError::MessageTooShort { size });
    }
    Ok(Some(size as usize))
}

/// Splits one whole packet (as framed by [`packet_len`]) into its header and
/// payload.
pub fn decode_packet(packet: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
    let body = packet.get(LEN_SIZE..).ok_or(DecodeError::Truncated)?;
    match Header::decode(body) {
        Ok((payload, header)) => Ok((header, payload)),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(DecodeError::Truncated),
    }
}

/// Appends a packet: its length word, `header`, and the payload `body`
/// writes. Returns the packet's length, length word included.
pub fn encode_packet(out: &mut Vec<u8>, header: &Header, body: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_SIZE]);
    header.encode(out);
    body(out);
    // out only grew from start, by LEN_SIZE bytes at least.
    let len = out.len().saturating_sub(start);
    let word = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(start..start.saturating_add(LEN_SIZE)) {
        slot.copy_from_slice(&word);
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_list_call_is_28_bytes() {
        let mut out = Vec::new();
        let len = encode_packet(
            &mut out,
            &Header::call(program::REMOTE, remote_proc::AUTH_LIST, 0),
            |_| {},
        );
        assert_eq!(len, 28);
        assert_eq!(
            out,
            [
                0, 0, 0, 28, 0x20, 0, 0x80, 0x86, 0, 0, 0, 1, 0, 0, 0, 66, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0
            ]
        );
        assert_eq!(packet_len(&out, MESSAGE_MAX), Ok(Some(28)));
        let (header, payload) = decode_packet(&out).unwrap();
        assert_eq!(header.procedure, remote_proc::AUTH_LIST);
        assert!(payload.is_empty());
    }

    #[test]
    fn length_limit_names_the_limit() {
        let over = (MESSAGE_MAX + 5).to_be_bytes();
        let err = packet_len(&over, MESSAGE_MAX).unwrap_err();
        assert_eq!(
            err,
            DecodeError::MessageTooLarge {
                size: MESSAGE_MAX + 5,
                limit: MESSAGE_MAX + 4
            }
        );
        assert!(alloc::format!("{err}").contains("16 MiB"));
        assert_eq!(
            packet_len(&(MESSAGE_MAX + 4).to_be_bytes(), MESSAGE_MAX),
            Ok(Some(MESSAGE_MAX as usize + 4))
        );
        assert_eq!(
            packet_len(&27u32.to_be_bytes(), MESSAGE_MAX),
            Err(DecodeError::MessageTooShort { size: 27 })
        );
        assert_eq!(packet_len(&[0, 0, 0], MESSAGE_MAX), Ok(None));
    }

    #[test]
    fn unknown_type_and_status_are_errors() {
        let mut out = Vec::new();
        let mut h = Header::call(program::REMOTE, 1, 1);
        encode_packet(&mut out, &h, |_| {});
        out[19] = 9;
        assert!(matches!(
            decode_packet(&out),
            Err(DecodeError::Discriminant { value: 9, .. })
        ));
        out.clear();
        h.status = Status::Continue;
        encode_packet(&mut out, &h, |_| {});
        out[27] = 7;
        assert!(matches!(
            decode_packet(&out),
            Err(DecodeError::Discriminant { value: 7, .. })
        ));
    }
}
