//! The QMP server state machine (the QEMU side), for mock servers and tests.

use crate::buffer::{Buffer, Storage};
use crate::client::{Timestamp, Version};
use crate::command::format_u64;
use crate::error::{Error, UsageError};
use crate::framer::{Framer, Info, Key, Kind, RawMessage};
use crate::json::{JsonStr, RawJson};
use crate::link::{ConnectionLimits, Tx};

/// How a [`Server`] presents itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig<'a> {
    /// The version in the greeting.
    pub version: Version,
    /// The package string in the greeting.
    pub package: &'a str,
    /// Offer the `oob` capability.
    pub oob: bool,
    /// Buffer limits.
    pub limits: ConnectionLimits,
}

impl Default for ServerConfig<'_> {
    fn default() -> Self {
        Self {
            version: Version {
                major: 7,
                minor: 2,
                micro: 0,
            },
            package: "",
            oob: true,
            limits: ConnectionLimits::default(),
        }
    }
}

/// Longest `id` a server echoes back (bytes of JSON). A command with a longer
/// id is answered with an id-less error.
pub const MAX_REQUEST_ID: usize = 64;

/// Where a reply goes: the command's `id`, copied so it outlives the request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTo {
    id: [u8; MAX_REQUEST_ID],
    len: u8,
    has_id: bool,
}

impl ReplyTo {
    /// For a command that had no `id`.
    pub const NONE: ReplyTo = ReplyTo {
        id: [0; MAX_REQUEST_ID],
        len: 0,
        has_id: false,
    };

    fn new(id: Option<RawJson<'_>>) -> Option<Self> {
        let Some(id) = id else {
            return Some(Self::NONE);
        };
        let bytes = id.bytes();
        if bytes.len() > MAX_REQUEST_ID {
            return None;
        }
        let mut out = Self {
            id: [0; MAX_REQUEST_ID],
            len: bytes.len() as u8,
            has_id: true,
        };
        out.id.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(out)
    }

    /// The raw JSON of the id, if the command had one.
    pub fn id(&self) -> Option<&str> {
        self.has_id.then(|| {
            self.id
                .get(..usize::from(self.len))
                .and_then(|id| core::str::from_utf8(id).ok())
                .unwrap_or("null")
        })
    }
}

impl core::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ReplyTo({:?})", self.id())
    }
}

/// A command the server received (after negotiation).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The command name.
    pub name: JsonStr<'a>,
    /// Its arguments object, if any.
    pub arguments: Option<RawJson<'a>>,
    /// Sent with `exec-oob`.
    pub oob: bool,
    /// Pass this to the `reply_*` methods.
    pub reply_to: ReplyTo,
    /// The whole message.
    pub message: RawMessage<'a>,
}

/// What [`Server::poll_output`] hands out.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
// Outputs are short-lived values handed out one at a time; boxing the large
// variant would need `alloc`.
#[allow(clippy::large_enum_variant)]
pub enum ServerOutput<'a> {
    /// The client negotiated capabilities (already answered).
    Negotiated {
        /// The client enabled out-of-band execution.
        oob: bool,
    },
    /// A command to answer with one of the `reply_*` methods.
    Command(Request<'a>),
    /// The client closed the connection.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeted,
    Negotiated { oob: bool },
    Closed,
}

/// A QMP server: greets, negotiates capabilities, parses commands, and encodes
/// replies and events, like QEMU does. Malformed input gets QEMU's answers (an
/// id-less `GenericError` for JSON it cannot parse, then it resynchronises at
/// the next line), so clients can be tested against hostile servers and
/// servers against hostile clients.
pub struct Server<S: Storage> {
    framer: Framer<S::Rx>,
    tx: Tx<S::Tx>,
    state: State,
    offer_oob: bool,
    eof: bool,
}

impl<S: Storage> core::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .finish()
    }
}

/// What to do with a frame, decided before borrowing it.
enum Emit {
    Nothing,
    Negotiated(bool),
    Command,
}

impl<S: Storage> Server<S> {
    /// A server with its greeting queued for transmission.
    pub fn new(config: ServerConfig<'_>) -> Self {
        let mut server = Self {
            framer: Framer::new(config.limits.receive),
            tx: Tx::new(config.limits.max_transmit),
            state: State::Greeted,
            offer_oob: config.oob,
            eof: false,
        };
        let v = config.version;
        let mut n = [0u8; 20];
        let mut w = Writer::new(&mut server.tx.buf);
        w.put(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": ");
        w.put(format_u64(v.micro, &mut n));
        w.put(b", \"minor\": ");
        w.put(format_u64(v.minor, &mut n));
        w.put(b", \"major\": ");
        w.put(format_u64(v.major, &mut n));
        w.put(b"}, \"package\": ");
        w.string(config.package);
        w.put(if config.oob {
            b"}, \"capabilities\": [\"oob\"]}}\r\n"
        } else {
            b"}, \"capabilities\": []}}\r\n"
        });
        if w.finish().is_err() {
            server.state = State::Closed;
        }
        server
    }

    /// Feeds bytes from the client; returns how many were taken.
    #[must_use = "bytes not taken must be fed again once poll_output is drained"]
    pub fn receive(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        if self.eof || self.state == State::Closed {
            return Err(Error::Closed);
        }
        Ok(self.framer.push(bytes))
    }

    /// Tells the server the client closed the connection.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// The next command or event of the session, or `None` for more input.
    #[must_use = "drain poll_output until it returns None; an output not handled is lost"]
    pub fn poll_output(&mut self) -> Option<ServerOutput<'_>> {
        loop {
            if self.state == State::Closed {
                return None;
            }
            let Some(info) = self.framer.advance() else {
                if self.eof {
                    self.state = State::Closed;
                    return Some(ServerOutput::Closed);
                }
                return None;
            };
            match self.decide(info) {
                Emit::Nothing => continue,
                Emit::Negotiated(oob) => return Some(ServerOutput::Negotiated { oob }),
                Emit::Command => {}
            }
            let message = self.framer.last_message()?;
            let oob = message.kind() == Kind::ExecOob;
            let name = message
                .get(if oob { Key::ExecOob } else { Key::Execute })?
                .as_json_str()?;
            return Some(ServerOutput::Command(Request {
                name,
                arguments: message.get(Key::Arguments),
                oob,
                reply_to: ReplyTo::new(message.get(Key::Id))?,
                message,
            }));
        }
    }

    /// Checks a frame like QEMU's monitor does, answering what it answers
    /// itself (negotiation, malformed input); commands go to the caller.
    fn decide(&mut self, info: Info) -> Emit {
        let (kind, _) = match info {
            Info::Sentinel => return Emit::Nothing,
            Info::Error(e) => {
                self.idless_error(format_args!("JSON parse error, {e}"));
                return Emit::Nothing;
            }
            Info::Oversized { .. } => {
                self.idless_error(format_args!("JSON parse error, message exceeds size limit"));
                return Emit::Nothing;
            }
            Info::Message(kind, id) => (kind, id),
        };
        let Some(m) = self.framer.last_message() else {
            return Emit::Nothing;
        };
        let id = m.get(Key::Id);
        let Some(to) = ReplyTo::new(id) else {
            self.idless_error(format_args!(
                "QMP input member 'id' is longer than this server accepts"
            ));
            return Emit::Nothing;
        };
        let problem = match kind {
            Kind::Execute | Kind::ExecOob if m.has_other_keys() => {
                Some("QMP input member is unexpected")
            }
            Kind::Execute | Kind::ExecOob => {
                let key = if kind == Kind::ExecOob {
                    Key::ExecOob
                } else {
                    Key::Execute
                };
                if m.get(key).and_then(|v| v.as_json_str()).is_none() {
                    Some("QMP input member 'execute' must be a string")
                } else if m
                    .get(Key::Arguments)
                    .is_some_and(|a| a.bytes().first() != Some(&b'{'))
                {
                    Some("QMP input member 'arguments' must be an object")
                } else {
                    None
                }
            }
            _ => Some("QMP input lacks member 'execute'"),
        };
        if let Some(desc) = problem {
            self.error_reply(&to, "GenericError", desc);
            return Emit::Nothing;
        }
        let oob = kind == Kind::ExecOob;
        let key = if oob { Key::ExecOob } else { Key::Execute };
        let is_caps = m
            .get(key)
            .and_then(|v| v.as_json_str())
            .is_some_and(|n| n.eq_str("qmp_capabilities"));
        let enable_oob = m
            .get(Key::Arguments)
            .and_then(|a| a.get("enable"))
            .and_then(|e| e.elements())
            .is_some_and(|mut e| e.any(|c| c.as_json_str().is_some_and(|c| c.eq_str("oob"))));
        match self.state {
            State::Greeted if is_caps && enable_oob && !self.offer_oob => {
                self.error_reply(&to, "GenericError", "Capability 'oob' not available");
                Emit::Nothing
            }
            State::Greeted if is_caps => {
                self.return_reply(&to, b"{}");
                self.state = State::Negotiated { oob: enable_oob };
                Emit::Negotiated(enable_oob)
            }
            State::Greeted => {
                self.error_reply(
                    &to,
                    "CommandNotFound",
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                );
                Emit::Nothing
            }
            State::Negotiated { .. } if is_caps => {
                self.error_reply(
                    &to,
                    "CommandNotFound",
                    "Capabilities negotiation is already complete, command ignored",
                );
                Emit::Nothing
            }
            State::Negotiated { oob: false } if oob => {
                self.error_reply(
                    &to,
                    "GenericError",
                    "QMP input member 'exec-oob' is unexpected",
                );
                Emit::Nothing
            }
            State::Negotiated { .. } => Emit::Command,
            State::Closed => Emit::Nothing,
        }
    }

    fn idless_error(&mut self, desc: core::fmt::Arguments<'_>) {
        let mut w = Writer::new(&mut self.tx.buf);
        w.put(b"{\"error\": {\"class\": \"GenericError\", \"desc\": ");
        w.string_fmt(desc);
        w.put(b"}}\r\n");
        // A full transmit buffer drops QEMU's complaint, not the session.
        let _ = w.finish();
    }

    fn error_reply(&mut self, to: &ReplyTo, class: &str, desc: &str) {
        let _ = self.reply_error(to, class, desc);
    }

    fn return_reply(&mut self, to: &ReplyTo, value: &[u8]) {
        let mut w = Writer::new(&mut self.tx.buf);
        w.put(b"{\"return\": ");
        w.put(value);
        w.id(to);
        let _ = w.finish();
    }

    /// Answers a command with `{"return": VALUE}`; `value` is raw JSON,
    /// checked before it is queued.
    pub fn reply_return(&mut self, to: &ReplyTo, value: &str) -> Result<(), UsageError> {
        let mut w = Writer::new(&mut self.tx.buf);
        w.put(b"{\"return\": ");
        w.put(value.trim().as_bytes());
        w.id(to);
        w.finish_checked()
    }

    /// Answers a command with `{"error": {"class": CLASS, "desc": DESC}}`.
    pub fn reply_error(&mut self, to: &ReplyTo, class: &str, desc: &str) -> Result<(), UsageError> {
        let mut w = Writer::new(&mut self.tx.buf);
        w.put(b"{\"error\": {\"class\": ");
        w.string(class);
        w.put(b", \"desc\": ");
        w.string(desc);
        w.put(b"}");
        w.id(to);
        w.finish()
    }

    /// Sends an event; `data` is a raw JSON object, if any.
    pub fn send_event(
        &mut self,
        name: &str,
        data: Option<&str>,
        timestamp: Timestamp,
    ) -> Result<(), UsageError> {
        if let Some(d) = data {
            if !d.trim_start().starts_with('{') {
                return Err(UsageError::ArgumentsNotAnObject);
            }
            // The only caller-supplied JSON: checked alone, one level below
            // the message's own object.
            crate::framer::check_object(d.as_bytes(), crate::framer::MAX_DEPTH - 1)
                .map_err(UsageError::InvalidArguments)?;
        }
        let mut w = Writer::new(&mut self.tx.buf);
        w.put(b"{\"timestamp\": {\"seconds\": ");
        w.number(timestamp.seconds);
        w.put(b", \"microseconds\": ");
        w.number(timestamp.microseconds);
        w.put(b"}, \"event\": ");
        w.string(name);
        if let Some(data) = data {
            w.put(b", \"data\": ");
            w.put(data.trim().as_bytes());
        }
        w.put(b"}\r\n");
        w.finish()
    }

    /// Bytes to write to the client.
    pub fn pending_transmit(&self) -> &[u8] {
        self.tx.pending()
    }

    /// Reports that `n` bytes of `pending_transmit` were written.
    pub fn advance_transmit(&mut self, n: usize) -> Result<(), UsageError> {
        self.tx.advance(n)?;
        // Keep the room usable while a slow client reads a long backlog.
        if self.tx.pending().len() < self.tx.buf.len() / 2 {
            self.tx.compact();
        }
        Ok(())
    }

    /// True once the client negotiated capabilities.
    pub fn is_negotiated(&self) -> bool {
        matches!(self.state, State::Negotiated { .. })
    }
}

/// Appends to a buffer, all or nothing: [`Writer::finish`] rolls back if any
/// part did not fit.
struct Writer<'b, B: Buffer> {
    buf: &'b mut B,
    mark: usize,
    full: bool,
}

impl<'b, B: Buffer> Writer<'b, B> {
    fn new(buf: &'b mut B) -> Self {
        let mark = buf.len();
        Self {
            buf,
            mark,
            full: false,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.full || self.buf.room() < bytes.len() {
            self.full = true;
        } else {
            self.buf.append(bytes);
        }
    }

    /// Writes `s` as a JSON string, ASCII only (as QEMU does).
    fn string(&mut self, s: &str) {
        self.put(b"\"");
        self.escaped(s);
        self.put(b"\"");
    }

    /// Writes formatted text as a JSON string.
    fn string_fmt(&mut self, args: core::fmt::Arguments<'_>) {
        struct Escaper<'w, 'b, B: Buffer>(&'w mut Writer<'b, B>);
        impl<B: Buffer> core::fmt::Write for Escaper<'_, '_, B> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0.escaped(s);
                Ok(())
            }
        }
        self.put(b"\"");
        let _ = core::fmt::write(&mut Escaper(self), args);
        self.put(b"\"");
    }

    fn escaped(&mut self, s: &str) {
        let plain = |b: &u8| (b' '..0x7f).contains(b) && *b != b'"' && *b != b'\\';
        let mut rest = s;
        // Plain ASCII runs are copied as they are; only the other characters
        // are decoded (all of them are escaped, so the output is ASCII). The
        // run before the first other byte is ASCII, so it ends on a character
        // boundary.
        while let Some((run, tail)) = rest
            .bytes()
            .position(|b| !plain(&b))
            .and_then(|i| rest.split_at_checked(i))
        {
            self.put(run.as_bytes());
            let mut chars = tail.chars();
            let c = chars.next().unwrap_or('\u{FFFD}');
            rest = chars.as_str();
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let hex = |n: u16| {
                    b"0123456789abcdef"
                        .get(usize::from(n & 0xF))
                        .copied()
                        .unwrap_or(b'0')
                };
                self.put(&[
                    b'\\',
                    b'u',
                    hex(*unit >> 12),
                    hex(*unit >> 8),
                    hex(*unit >> 4),
                    hex(*unit),
                ]);
            }
        }
        self.put(rest.as_bytes());
    }

    fn number(&mut self, n: i64) {
        if n < 0 {
            self.put(b"-");
        }
        let mut digits = [0u8; 20];
        self.put(format_u64(n.unsigned_abs(), &mut digits));
    }

    fn id(&mut self, to: &ReplyTo) {
        if let Some(id) = to.id() {
            self.put(b", \"id\": ");
            self.put(id.as_bytes());
        }
        self.put(b"}\r\n");
    }

    /// Like [`Writer::finish`], and also rolls back unless what was written is
    /// exactly one JSON object (caller-supplied JSON went into it).
    fn finish_checked(self) -> Result<(), UsageError> {
        let written = self.buf.bytes().get(self.mark..).unwrap_or_default();
        if !self.full
            && let Err(e) = crate::framer::check_object(written, crate::framer::MAX_DEPTH)
        {
            self.buf.truncate(self.mark);
            return Err(UsageError::InvalidArguments(e));
        }
        self.finish()
    }

    fn finish(self) -> Result<(), UsageError> {
        if self.full {
            self.buf.truncate(self.mark);
            Err(UsageError::TransmitFull)
        } else {
            Ok(())
        }
    }
}
