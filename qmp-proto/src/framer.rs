//! The incremental framer: finds one JSON object per message in a byte stream.
//!
//! The framer owns its receive buffer. [`Framer::push`] appends bytes, then
//! [`Framer::next`] hands out one [`Frame`] at a time until it returns `None`.
//! The scan position is kept between calls, so every byte is looked at once
//! however the input is split (O(n) overall, also when fed one byte at a time).
//!
//! While scanning, the framer records where the values of the protocol's
//! top-level keys (`QMP`, `return`, `error`, `event`, `data`, `timestamp`, `id`,
//! `execute`, `exec-oob`, `arguments`) start and end, so a message can be
//! classified without a JSON parser. Messages are checked for the JSON structure
//! the protocol relies on: balanced and matching brackets, well-formed strings
//! (escapes, UTF-8, no raw control bytes), `key: value` pairs at the top level.
//! Scalars nested deeper are left to the serde decoder the caller picks.
//!
//! Limits: a message longer than [`Limits::max_message_size`] (or the buffer,
//! whichever is smaller) is skipped to its end without being stored, but its
//! kind and numeric `id` are still reported ([`Frame::Oversized`]). Nesting deeper
//! than [`Limits::max_depth`] is an error.

use crate::buffer::Buffer;
use crate::json::{RawJson, parse_u64};

/// The deepest nesting a framer can be configured for (QEMU's own input limit).
pub const MAX_DEPTH: u32 = 1024;

/// Default message size cap: QEMU's own 64 MiB input limit with `alloc`; without
/// `alloc` the buffer's size is the cap.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Size and nesting limits for one direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message kept, in bytes. Larger ones are skipped and reported.
    pub max_message_size: usize,
    /// Deepest nesting accepted, counting the message object itself as 1.
    /// Values above [`MAX_DEPTH`] are treated as [`MAX_DEPTH`].
    pub max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_depth: MAX_DEPTH,
        }
    }
}

/// The top-level keys whose value spans the framer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Key {
    /// `QMP`: the greeting.
    Qmp,
    /// `return`: a successful reply.
    Return,
    /// `error`: an error reply.
    Error,
    /// `event`: an asynchronous event's name.
    Event,
    /// `data`: an event's payload.
    Data,
    /// `timestamp`: when an event happened.
    Timestamp,
    /// `id`: the command id echoed in a reply.
    Id,
    /// `execute`: an in-band command (server side).
    Execute,
    /// `exec-oob`: an out-of-band command (server side).
    ExecOob,
    /// `arguments`: a command's arguments (server side).
    Arguments,
}

const KEY_COUNT: usize = 10;
/// Bit in `Scanner::seen` for "some other top-level key".
const OTHER_KEY: u16 = 1 << 15;

impl Key {
    /// Dispatches on the length first, so that each comparison is with a
    /// constant of known size: this runs for every top-level key.
    #[inline]
    fn from_name(name: &[u8]) -> Option<Key> {
        Some(match name.len() {
            2 if name == b"id" => Key::Id,
            3 if name == b"QMP" => Key::Qmp,
            4 if name == b"data" => Key::Data,
            5 if name == b"error" => Key::Error,
            5 if name == b"event" => Key::Event,
            6 if name == b"return" => Key::Return,
            7 if name == b"execute" => Key::Execute,
            8 if name == b"exec-oob" => Key::ExecOob,
            9 if name == b"timestamp" => Key::Timestamp,
            9 if name == b"arguments" => Key::Arguments,
            _ => return None,
        })
    }

    /// The key as it appears on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Key::Qmp => "QMP",
            Key::Return => "return",
            Key::Error => "error",
            Key::Event => "event",
            Key::Data => "data",
            Key::Timestamp => "timestamp",
            Key::Id => "id",
            Key::Execute => "execute",
            Key::ExecOob => "exec-oob",
            Key::Arguments => "arguments",
        }
    }
}

/// What a message is, from its top-level keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Has `QMP`: the server greeting.
    Greeting,
    /// Has `return`.
    Return,
    /// Has `error`.
    Error,
    /// Has `event`.
    Event,
    /// Has `execute` (sent by a client).
    Execute,
    /// Has `exec-oob` (sent by a client).
    ExecOob,
    /// None of the above keys.
    Unknown,
    /// More than one of the above keys: not a valid message.
    Ambiguous,
}

/// The `id` member of a message, as far as the framer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdValue {
    /// No `id` member.
    Absent,
    /// An unsigned integer that fits in `u64` (the form this crate sends).
    Number(u64),
    /// Some other JSON value (string, negative, fraction, object, ...).
    Other,
}

/// Why the framer rejected input. The framer recovers by itself: it skips to the
/// next control byte (such as LF) or 0xFF and starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameError {
    /// A byte that cannot start or continue JSON at this point.
    UnexpectedByte {
        /// The offending byte.
        byte: u8,
    },
    /// Something other than a JSON object at the top level.
    NotAnObject,
    /// A raw control byte inside a string.
    ControlInString,
    /// An invalid escape sequence inside a string.
    BadEscape,
    /// Bytes inside a string that are not UTF-8.
    InvalidUtf8,
    /// A closing bracket that does not match the opening one.
    MismatchedBracket,
    /// Nesting deeper than the configured limit.
    TooDeep {
        /// The limit that was exceeded.
        limit: u32,
    },
    /// A top-level key the protocol gives meaning to appeared twice.
    DuplicateKey {
        /// The repeated key.
        key: Key,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::UnexpectedByte { byte } => {
                write!(f, "unexpected byte 0x{byte:02x} in JSON")
            }
            FrameError::NotAnObject => f.write_str("message is not a JSON object"),
            FrameError::ControlInString => f.write_str("raw control byte inside a JSON string"),
            FrameError::BadEscape => f.write_str("invalid escape sequence in a JSON string"),
            FrameError::InvalidUtf8 => f.write_str("invalid UTF-8 inside a JSON string"),
            FrameError::MismatchedBracket => f.write_str("mismatched closing bracket"),
            FrameError::TooDeep { limit } => write!(f, "JSON nested deeper than {limit} levels"),
            FrameError::DuplicateKey { key } => {
                write!(f, "top-level key \"{}\" appears twice", key.name())
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// Byte range of a value inside its message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// One complete message: its bytes, kind, and the spans of its top-level values.
#[derive(Clone, Copy)]
pub struct RawMessage<'a> {
    bytes: &'a [u8],
    kind: Kind,
    id: IdValue,
    /// Borrowed from the scanner rather than copied: handing out a message is
    /// per-message work, and small messages are a few dozen bytes. Only the
    /// spans of keys in `seen` belong to this message.
    spans: &'a [Span; KEY_COUNT],
    seen: u16,
}

impl core::fmt::Debug for RawMessage<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut spans = [Span::default(); KEY_COUNT];
        for (k, span) in spans.iter_mut().enumerate() {
            if self.seen & (1 << k) != 0 {
                *span = self.spans[k];
            }
        }
        f.debug_struct("RawMessage")
            .field("bytes", &self.bytes)
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("spans", &spans)
            .field("other_keys", &self.has_other_keys())
            .finish()
    }
}

impl<'a> RawMessage<'a> {
    /// True when the message has top-level keys other than the ones in [`Key`]
    /// (or keys written with escapes). Clients ignore them; a server rejects them.
    pub fn has_other_keys(&self) -> bool {
        self.seen & OTHER_KEY != 0
    }

    /// The whole message, from `{` to `}`.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The whole message as text. The framer has checked it is UTF-8.
    pub fn as_str(&self) -> &'a str {
        core::str::from_utf8(self.bytes).unwrap_or("")
    }

    /// What kind of message this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The `id` member.
    pub fn id(&self) -> IdValue {
        self.id
    }

    /// The raw JSON value of a top-level key, if present.
    pub fn get(&self, key: Key) -> Option<RawJson<'a>> {
        if self.seen & (1 << key as u16) == 0 {
            return None;
        }
        let span = self.spans[key as usize];
        self.bytes
            .get(span.start as usize..span.end as usize)
            .map(RawJson::new_unchecked)
    }
}

/// What [`Framer::next`] hands out.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A complete message.
    Message(RawMessage<'a>),
    /// A 0xFF byte between messages: the guest agent's synchronisation sentinel.
    Sentinel,
    /// A message over the size limit, skipped without being stored.
    Oversized {
        /// Its kind, from the keys seen while skipping.
        kind: Kind,
        /// Its `id`, captured while skipping.
        id: IdValue,
        /// Its size in bytes.
        size: usize,
    },
    /// Input that is not a valid message; the framer has started skipping it.
    Error(FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between messages.
    Between,
    /// Inside a message, outside strings.
    Struct,
    /// Inside a string.
    Str,
    /// After a backslash in a string.
    Esc,
    /// Inside `\uXXXX`: this many hex digits still to come.
    Hex(u8),
    /// Inside a multi-byte UTF-8 sequence: `need` continuation bytes to come,
    /// the next one in `lo..=hi`.
    Utf8 { need: u8, lo: u8, hi: u8 },
    /// After an error: skipping to the next control byte or 0xFF.
    Recover,
}

/// Where the top-level object's grammar is (only used at depth 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    KeyOrEnd,
    Key,
    InKey,
    Colon,
    Value,
    InStr,
    InNested,
    InScalar,
    After,
}

/// Tokens at depth 1 longer than this are never a known key or a `u64` id, so
/// skipping an oversized message need not keep their bytes.
const SHORT_TOKEN: usize = 32;

/// The incremental JSON message framer. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Framer<B: Buffer> {
    buf: B,
    sc: Scanner,
    /// The last message handed out: begin, end, kind.
    last: (usize, usize, Kind),
}

impl<B: Buffer> Framer<B> {
    /// A framer with an empty buffer. The buffer's capacity (fixed, or the
    /// message size limit plus room for one read) bounds memory.
    pub fn new(limits: Limits) -> Self {
        let buf = B::with_limit(limits.max_message_size.saturating_add(64 << 10));
        let max_size = limits.max_message_size.min(buf.capacity()).max(2);
        Self {
            buf,
            sc: Scanner::new(max_size, limits.max_depth),
            last: (0, 0, Kind::Unknown),
        }
    }

    /// Appends bytes to the buffer; returns how many were taken. Fewer than
    /// `data.len()` means the buffer is full: drain [`Framer::next`] first.
    #[must_use = "bytes not taken must be pushed again"]
    #[inline]
    pub fn push(&mut self, data: &[u8]) -> usize {
        // Move the unread tail to the front once at least half the buffer is
        // dead, or when room is needed: each byte moves O(1) times amortised.
        let start = self.sc.start;
        if start > 0 && (self.buf.room() < data.len() || start * 2 >= self.buf.len()) {
            self.compact(start);
        }
        let n = data.len().min(self.buf.room());
        self.buf.append(&data[..n]);
        n
    }

    /// True when a message has started but not ended, or bytes other than
    /// whitespace wait to be scanned: end-of-file now would cut a message short.
    pub fn is_mid_message(&self) -> bool {
        self.sc.is_mid_message(self.buf.bytes())
    }

    /// Bytes buffered but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.sc.start
    }

    /// Forgets everything buffered and any partial message.
    pub fn reset(&mut self) {
        self.buf.truncate(0);
        self.sc = Scanner::new(self.sc.max_size, self.sc.max_depth);
        self.last = (0, 0, Kind::Unknown);
    }

    /// Starts skipping input up to the next control byte or 0xFF, dropping any
    /// partial message (what QEMU does after a syntax error).
    pub fn recover(&mut self) {
        self.sc.recover();
    }

    /// Drops the first `n` bytes of the buffer and shifts every position.
    fn compact(&mut self, n: usize) {
        if n == self.buf.len() {
            // Nothing left to move: the usual case between messages.
            self.buf.truncate(0);
        } else {
            self.buf.discard_front(n);
        }
        self.sc.shift(n);
        self.last = (0, 0, Kind::Unknown);
    }

    /// The next frame, or `None` when more bytes are needed.
    #[must_use]
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Frame<'_>> {
        Some(match self.advance()? {
            Info::Message(..) => Frame::Message(self.last_message()?),
            Info::Sentinel => Frame::Sentinel,
            Info::Error(e) => Frame::Error(e),
            Info::Oversized { kind, id, size } => Frame::Oversized { kind, id, size },
        })
    }

    /// Like [`Framer::next`] but borrows nothing: a message is then read with
    /// [`Framer::last_message`]. State machines use this to decide what to do
    /// with a message before they borrow it.
    #[inline]
    pub(crate) fn advance(&mut self) -> Option<Info> {
        // New bytes that only continue a plain run need no state change, and
        // a single one that starts a key or value or is a `:` or `,` of the
        // message object needs no more than that: the common cases when input
        // trickles in, kept out of the big `scan`.
        if self.buf.room() != 0 && self.sc.resume_plain(self.buf.bytes()) {
            return None;
        }
        // Between messages, a message that is already whole in the buffer is
        // scanned in one go: the common case when input comes in large reads.
        if self.sc.lex == Lex::Between
            && let Some(step) = self.sc.scan_whole(self.buf.bytes())
        {
            return self.report(step);
        }
        // Brackets, the ends of keys and values and of the message: the other
        // bytes that trickling input brings one at a time.
        if self.buf.room() != 0
            && let Some(step) = self.sc.resume_top(self.buf.bytes())
        {
            return self.report(step);
        }
        self.advance_scan()
    }

    fn advance_scan(&mut self) -> Option<Info> {
        let full = self.buf.room() == 0;
        let step = self.sc.scan(self.buf.bytes(), full);
        self.report(step)
    }

    /// Turns what the scanner found into what `advance` reports.
    #[inline]
    fn report(&mut self, step: Step) -> Option<Info> {
        match step {
            Step::More => {
                if self.sc.skipping {
                    let cut = self.sc.drop_skipped();
                    self.compact(cut);
                }
                None
            }
            Step::Sentinel => Some(Info::Sentinel),
            Step::Error(e) => Some(Info::Error(e)),
            Step::Oversized(kind, size) => Some(Info::Oversized {
                kind,
                id: self.sc.id,
                size,
            }),
            Step::Message(kind, begin, end) => {
                self.last = (begin, end, kind);
                Some(Info::Message(kind, self.sc.id))
            }
        }
    }

    /// The message [`Framer::advance`] last reported, until the next call to
    /// `advance` or `push`.
    pub(crate) fn last_message(&self) -> Option<RawMessage<'_>> {
        let (begin, end, kind) = self.last;
        let bytes = self.buf.bytes().get(begin..end).filter(|b| !b.is_empty())?;
        Some(self.sc.message(bytes, kind))
    }
}

/// What [`Framer::advance`] found, without borrowing the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Info {
    Message(Kind, IdValue),
    Sentinel,
    Oversized {
        kind: Kind,
        id: IdValue,
        size: usize,
    },
    Error(FrameError),
}

/// The scanner state: everything but the bytes. It works on any slice that only
/// grows between calls (or is shifted with [`Scanner::shift`]).
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    /// First byte not yet handed out or skipped.
    start: usize,
    /// Scan position.
    pos: usize,
    max_size: usize,
    max_depth: u32,
    lex: Lex,
    top: Top,
    depth: u32,
    /// Bit `d` set: the bracket opened at depth `d + 1` is `[`.
    stack: [u64; (MAX_DEPTH as usize).div_ceil(64)],
    /// Start of the current top-level token (key or value), absolute.
    token: usize,
    key: Option<Key>,
    key_escaped: bool,
    /// Part of the current top-level token was dropped while skipping.
    token_cut: bool,
    seen: u16,
    /// Only the entries of keys in `seen` are current: not clearing the rest
    /// saves work per message.
    spans: [Span; KEY_COUNT],
    id: IdValue,
    /// Skipping an oversized message; `skipped` bytes of it are already dropped.
    skipping: bool,
    skipped: usize,
}

impl Scanner {
    pub(crate) fn new(max_size: usize, max_depth: u32) -> Self {
        Self {
            start: 0,
            pos: 0,
            max_size,
            max_depth: max_depth.clamp(1, MAX_DEPTH),
            lex: Lex::Between,
            top: Top::KeyOrEnd,
            depth: 0,
            stack: [0; (MAX_DEPTH as usize).div_ceil(64)],
            token: 0,
            key: None,
            key_escaped: false,
            token_cut: false,
            seen: 0,
            spans: [Span::default(); KEY_COUNT],
            id: IdValue::Absent,
            skipping: false,
            skipped: 0,
        }
    }

    fn message<'a>(&'a self, bytes: &'a [u8], kind: Kind) -> RawMessage<'a> {
        RawMessage {
            bytes,
            kind,
            id: self.id,
            spans: &self.spans,
            seen: self.seen,
        }
    }

    pub(crate) fn is_mid_message(&self, bytes: &[u8]) -> bool {
        self.lex != Lex::Between && self.lex != Lex::Recover
            || bytes[self.pos..].iter().any(|&b| !is_ws(b))
    }

    fn recover(&mut self) {
        self.lex = Lex::Recover;
        self.depth = 0;
        self.skipping = false;
        self.skipped = 0;
        self.start = self.pos;
    }

    #[inline]
    fn shift(&mut self, n: usize) {
        self.start -= n.min(self.start);
        self.pos -= n;
        self.token = self.token.saturating_sub(n);
    }

    /// While skipping an oversized message: how many leading bytes can go.
    /// Keeps a short top-level token in progress (it may be the `id` key or
    /// its value).
    fn drop_skipped(&mut self) -> usize {
        let in_token = self.depth == 1
            && matches!(
                self.top,
                Top::InKey | Top::InScalar | Top::InStr | Top::InNested
            );
        let keep_token = in_token
            && matches!(self.top, Top::InKey | Top::InScalar)
            && self.pos - self.token <= SHORT_TOKEN;
        let cut = if keep_token { self.token } else { self.pos };
        if in_token && !keep_token {
            self.token_cut = true;
        }
        self.skipped += cut - self.start;
        self.start = cut;
        cut
    }

    fn begin_message(&mut self, at: usize) {
        self.start = at;
        self.depth = 1;
        self.stack[0] = 0;
        self.top = Top::KeyOrEnd;
        self.seen = 0;
        self.id = IdValue::Absent;
        self.skipping = false;
        self.skipped = 0;
        self.key = None;
    }

    /// Reports `e` for the byte before `at` and starts recovery after it, or at
    /// it when it is 0xFF: the guest agent's sentinel must not be skipped.
    fn fail(&mut self, bytes: &[u8], at: usize, e: FrameError) -> Step {
        self.pos = if at > 0 && bytes.get(at - 1) == Some(&0xFF) {
            at - 1
        } else {
            at
        };
        self.recover();
        Step::Error(e)
    }

    fn end_message(&mut self, end: usize) -> Step {
        self.lex = Lex::Between;
        self.depth = 0;
        self.pos = end;
        let kind = kind_of(self.seen);
        let begin = self.start;
        self.start = end;
        if self.skipping {
            self.skipping = false;
            Step::Oversized(kind, self.skipped + (end - begin))
        } else {
            Step::Message(kind, begin, end)
        }
    }

    /// Records the end of a top-level value that started at `self.token`.
    /// Returns an error for a duplicated known key.
    #[inline]
    fn end_value(&mut self, bytes: &[u8], end: usize) -> Option<FrameError> {
        self.record(self.key, bytes, self.token, end, self.token_cut)
    }

    /// Records the top-level value `bytes[token..end]` of `key` (`None`: some
    /// other key); `cut` says part of it was dropped while skipping. Returns an
    /// error for a duplicated known key.
    #[inline(always)]
    fn record(
        &mut self,
        key: Option<Key>,
        bytes: &[u8],
        token: usize,
        end: usize,
        cut: bool,
    ) -> Option<FrameError> {
        let Some(key) = key else {
            self.seen |= OTHER_KEY;
            return None;
        };
        let bit = 1u16 << key as u16;
        if self.seen & bit != 0 {
            return Some(FrameError::DuplicateKey { key });
        }
        self.seen |= bit;
        if key == Key::Id {
            let number = if cut {
                None
            } else {
                parse_u64(&bytes[token..end])
            };
            self.id = match number {
                Some(n) => IdValue::Number(n),
                None => IdValue::Other,
            };
        }
        if !self.skipping {
            self.spans[key as usize] = Span {
                start: (token - self.start) as u32,
                end: (end - self.start) as u32,
            };
        }
        None
    }

    #[inline]
    fn end_key(&mut self, bytes: &[u8], end: usize) {
        self.key = if self.key_escaped || self.token_cut || end - self.token > SHORT_TOKEN + 1 {
            None
        } else {
            Key::from_name(&bytes[self.token + 1..end])
        };
    }

    /// The whole-message fast path, tried between messages. When the buffer
    /// holds a complete message within the size limit, with plain keys (no
    /// escapes or non-ASCII bytes) and nested at most 64 deep (counting the
    /// message object, as `max_depth` does), it is checked and recorded
    /// exactly as [`Scanner::scan`] would, but in one pass, with the top-level
    /// grammar in the control flow and the brackets in a register rather than
    /// in a state per byte.
    ///
    /// Anything else returns `None`. With no `{` next, nothing has changed.
    /// Otherwise (an incomplete or oversized message, an error, an escaped
    /// key, ...) the scanner is left as `scan` would be at the last member
    /// boundary it passed (just after the `{`, or just after a value: `pos`
    /// and `top` say which), and `scan` goes on from there: the frames are
    /// those of the byte-wise scan, and at most one member is scanned twice.
    #[inline]
    fn scan_whole(&mut self, bytes: &[u8]) -> Option<Step> {
        let begin = skip_ws(bytes, self.pos);
        if bytes.get(begin) != Some(&b'{') {
            return None;
        }
        // Bytes past the window would make the message oversized.
        let window = &bytes[..bytes.len().min(begin.saturating_add(self.max_size))];
        self.begin_message(begin);
        self.lex = Lex::Struct;
        self.pos = begin + 1;
        // After `{`: the first key or, for an empty object, the end.
        let (mut i, b) = next_token(window, begin + 1)?;
        if b == b'}' {
            return Some(self.end_message(i + 1));
        }
        loop {
            // `window[i]` opens a key.
            if window[i] != b'"' {
                return None;
            }
            let close = string_stop(window, i + 1, window.len());
            if window.get(close) != Some(&b'"') {
                return None;
            }
            let key = Key::from_name(&window[i + 1..close]);
            let (colon, b) = next_token(window, close + 1)?;
            if b != b':' {
                return None;
            }
            let (token, _) = next_token(window, colon + 1)?;
            let end = self.value_end(window, token)?;
            // A duplicate is left to `scan` (nothing is recorded then).
            if self.record(key, window, token, end, false).is_some() {
                return None;
            }
            self.pos = end;
            self.top = Top::After;
            let (after, b) = next_token(window, end)?;
            match b {
                b',' => i = next_token(window, after + 1)?.0,
                b'}' => return Some(self.end_message(after + 1)),
                _ => return None,
            }
        }
    }

    /// For [`Scanner::scan_whole`]: the end of the complete, valid top-level
    /// value starting at `window[i]`, if there is one.
    #[inline(always)]
    fn value_end(&self, window: &[u8], i: usize) -> Option<usize> {
        let b = *window.get(i)?;
        match CLASS[b as usize] {
            C_QUOTE => string_end(window, i + 1),
            C_OPEN_OBJ | C_OPEN_ARR => {
                let mut brackets = Shallow {
                    bits: 0,
                    depth: 1,
                    max_depth: self.max_depth.min(64),
                };
                if !brackets.open(b == b'[') {
                    return None;
                }
                let mut i = i + 1;
                loop {
                    match nested(&mut brackets, window, i) {
                        Nested::Closed(end) => return Some(end),
                        Nested::Str(at) => i = string_end(window, at)?,
                        Nested::More | Nested::Fail(..) => return None,
                    }
                }
            }
            C_SCALAR => {
                // A scalar ends at the first byte that cannot continue it, so
                // one that reaches the end of the window may go on.
                let end = scalar_end(window, i + 1, window.len());
                (end < window.len()).then_some(end)
            }
            _ => None,
        }
    }

    /// Cheap resume for new bytes that only continue plain runs: whitespace
    /// between messages, string bytes, inside nested values plain bytes and
    /// quotes, and in the message object whitespace between tokens and the
    /// rest of a number or literal. Moves `pos` over them; true when that
    /// used up all the bytes, so `scan` has nothing to do. (Input that
    /// trickles in takes this path for most bytes; a single new byte in a
    /// message goes to [`Scanner::resume_one`].)
    #[inline]
    fn resume_plain(&mut self, bytes: &[u8]) -> bool {
        if self.skipping {
            return false;
        }
        let mut i = self.pos;
        if self.lex == Lex::Between {
            // Line ends between messages.
            while i < bytes.len() && is_ws(bytes[i]) {
                i += 1;
            }
            self.start = i;
            self.pos = i;
            return i == bytes.len();
        }
        if i + 1 == bytes.len() && i - self.start < self.max_size {
            return self.resume_one(bytes[i]);
        }
        if !matches!(self.lex, Lex::Str | Lex::Struct) {
            return self.pos == bytes.len();
        }
        let limit = bytes.len().min(self.start.saturating_add(self.max_size));
        loop {
            match self.lex {
                Lex::Str => {
                    i = string_stop(bytes, i, limit);
                    if self.depth > 1 && i < limit && bytes[i] == b'"' {
                        i += 1;
                        self.lex = Lex::Struct;
                        continue;
                    }
                }
                Lex::Struct if self.depth > 1 => {
                    while i < limit && CLASS[bytes[i] as usize] >= C_WS {
                        i += 1;
                    }
                    if i < limit && bytes[i] == b'"' {
                        i += 1;
                        self.lex = Lex::Str;
                        continue;
                    }
                }
                // The message object: a number or literal going on, or
                // whitespace between tokens.
                Lex::Struct => match self.top {
                    Top::InScalar => i = scalar_end(bytes, i, limit),
                    Top::KeyOrEnd | Top::Key | Top::Colon | Top::Value | Top::After => {
                        while i < limit && is_ws(bytes[i]) {
                            i += 1;
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
            break;
        }
        self.pos = i;
        i == bytes.len()
    }

    /// [`Scanner::resume_plain`] for the one new byte `b` at `pos`, within the
    /// size limit: one table lookup for the state rather than the setup of a
    /// run. In the message object it also takes `:` and `,` and the first
    /// byte of a key, a string or a number, which need no more than a change
    /// of state and come as often as the ends of runs. Any other byte would
    /// have stopped the run too, so nothing changes then.
    #[inline(always)]
    fn resume_one(&mut self, b: u8) -> bool {
        let plain = PLAIN[b as usize];
        let ok = match self.lex {
            Lex::Str if plain & P_STRING != 0 => true,
            Lex::Str => {
                let closes = b == b'"' && self.depth > 1;
                if closes {
                    self.lex = Lex::Struct;
                }
                closes
            }
            Lex::Struct if self.depth > 1 => match b {
                b'"' => {
                    self.lex = Lex::Str;
                    true
                }
                _ => plain & P_NESTED != 0,
            },
            Lex::Struct => match self.top {
                Top::InScalar => plain & P_SCALAR != 0,
                Top::KeyOrEnd | Top::Key | Top::Colon | Top::Value | Top::After
                    if plain & P_WS != 0 =>
                {
                    true
                }
                Top::Colon if b == b':' => {
                    self.top = Top::Value;
                    true
                }
                Top::After if b == b',' => {
                    self.top = Top::Key;
                    true
                }
                Top::KeyOrEnd | Top::Key if b == b'"' => {
                    self.token = self.pos;
                    self.token_cut = false;
                    self.key_escaped = false;
                    self.top = Top::InKey;
                    self.lex = Lex::Str;
                    true
                }
                Top::Value if b == b'"' => {
                    self.token = self.pos;
                    self.token_cut = false;
                    self.top = Top::InStr;
                    self.lex = Lex::Str;
                    true
                }
                Top::Value if plain & P_SCALAR != 0 => {
                    self.token = self.pos;
                    self.token_cut = false;
                    self.top = Top::InScalar;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if ok {
            self.pos += 1;
        }
        ok
    }

    /// Cheap resume for the bytes in a message that trickling input brings
    /// one at a time and [`Scanner::resume_plain`] leaves: punctuation and
    /// whitespace, brackets, the starts and ends of keys and values, the end
    /// of the message. Stops for `scan` at anything else (an escape or a
    /// non-ASCII or control byte in a string, an error in the message object,
    /// the size limit), with the state `scan` would have there. Otherwise
    /// returns what `scan` would: `Step::More` once all the bytes are used,
    /// the message, or an error it found on the way (the state is then past
    /// the point of going back). The work is out of line, in
    /// [`Scanner::resume_byte`] for a single new byte and in
    /// [`Scanner::resume_run`] for more: only input that trickles in gets
    /// there often.
    #[inline]
    fn resume_top(&mut self, bytes: &[u8]) -> Option<Step> {
        if self.skipping || !matches!(self.lex, Lex::Struct | Lex::Str) {
            return None;
        }
        let i = self.pos;
        if i + 1 == bytes.len() && i - self.start < self.max_size {
            self.resume_byte(bytes, i)
        } else {
            self.resume_run(bytes)
        }
    }

    /// [`Scanner::resume_top`] for more than one new byte (or at the size
    /// limit).
    #[inline(never)]
    fn resume_run(&mut self, bytes: &[u8]) -> Option<Step> {
        let mut i = self.pos;
        let limit = bytes.len().min(self.start.saturating_add(self.max_size));
        // Checked first: the bytes mostly run out right after a step.
        while i < limit {
            if self.lex == Lex::Str {
                i = string_stop(bytes, i, limit);
                if i == limit || bytes[i] != b'"' {
                    break;
                }
                if let Some(step) = self.close_string(bytes, i) {
                    return Some(step);
                }
                i += 1;
                continue;
            }
            if self.depth > 1 {
                match nested(self, &bytes[..limit], i) {
                    Nested::Closed(end) => {
                        i = end;
                        if let Some(e) = self.end_value(bytes, i) {
                            return Some(self.fail(bytes, i, e));
                        }
                        self.top = Top::After;
                    }
                    Nested::Str(at) => {
                        self.lex = Lex::Str;
                        i = at;
                        continue;
                    }
                    Nested::More => {
                        i = limit;
                        break;
                    }
                    Nested::Fail(at, e) => return Some(self.fail(bytes, at, e)),
                }
            }
            if self.top == Top::InScalar {
                i = scalar_end(bytes, i, limit);
                if i == limit {
                    break;
                }
                if let Some(e) = self.end_value(bytes, i) {
                    return Some(self.fail(bytes, i + 1, e));
                }
                self.top = Top::After;
            }
            while i < limit && is_ws(bytes[i]) {
                i += 1;
            }
            let Some(&b) = bytes[..limit].get(i) else {
                break;
            };
            match (self.top, b) {
                (Top::Colon, b':') => self.top = Top::Value,
                (Top::After, b',') => self.top = Top::Key,
                (Top::KeyOrEnd | Top::After, b'}') => return Some(self.end_message(i + 1)),
                (Top::KeyOrEnd | Top::Key, b'"') => {
                    self.token = i;
                    self.token_cut = false;
                    self.key_escaped = false;
                    self.top = Top::InKey;
                    self.lex = Lex::Str;
                }
                (Top::Value, b'"') => {
                    self.token = i;
                    self.token_cut = false;
                    self.top = Top::InStr;
                    self.lex = Lex::Str;
                }
                (Top::Value, b'{' | b'[') => {
                    if let Some(step) = self.open_value(bytes, i) {
                        return Some(step);
                    }
                }
                (Top::Value, _) if CLASS[b as usize] == C_SCALAR => {
                    self.token = i;
                    self.token_cut = false;
                    self.top = Top::InScalar;
                }
                _ => break,
            }
            i += 1;
        }
        self.pos = i;
        (i == bytes.len()).then_some(Step::More)
    }

    /// The `{` or `[` at `i` that starts a member's value (`Some` when it is
    /// one level too deep).
    #[inline]
    fn open_value(&mut self, bytes: &[u8], i: usize) -> Option<Step> {
        self.token = i;
        self.token_cut = false;
        self.top = Top::InNested;
        if self.open(bytes[i] == b'[') {
            return None;
        }
        let limit = self.max_depth;
        Some(self.fail(bytes, i + 1, FrameError::TooDeep { limit }))
    }

    /// The closing quote at `quote` of a string: back to structure, and at
    /// depth 1 the end of a key or of a string value (`Some` on an error).
    #[inline]
    fn close_string(&mut self, bytes: &[u8], quote: usize) -> Option<Step> {
        self.lex = Lex::Struct;
        if self.depth == 1 {
            match self.top {
                Top::InKey => {
                    self.end_key(bytes, quote);
                    self.top = Top::Colon;
                }
                Top::InStr => {
                    if let Some(e) = self.end_value(bytes, quote + 1) {
                        return Some(self.fail(bytes, quote + 1, e));
                    }
                    self.top = Top::After;
                }
                _ => {}
            }
        }
        None
    }

    /// [`Scanner::resume_top`] for the one new byte `bytes[i]` at `pos`, within
    /// the size limit, that [`Scanner::resume_one`] left: a single step, with
    /// no run to set up. `None` leaves the byte to `scan`, with the state
    /// `scan` would have before it.
    #[inline(never)]
    fn resume_byte(&mut self, bytes: &[u8], i: usize) -> Option<Step> {
        let b = bytes[i];
        let end = i + 1;
        match self.lex {
            Lex::Str => {
                if b != b'"' {
                    return None;
                }
                if let Some(step) = self.close_string(bytes, i) {
                    return Some(step);
                }
            }
            Lex::Struct if self.depth > 1 => match CLASS[b as usize] {
                C_OPEN_OBJ | C_OPEN_ARR => {
                    if !self.open(b == b'[') {
                        let limit = self.max_depth;
                        return Some(self.fail(bytes, end, FrameError::TooDeep { limit }));
                    }
                }
                C_CLOSE_OBJ | C_CLOSE_ARR => match self.close(b == b']') {
                    Some(false) => {}
                    Some(true) => {
                        if let Some(e) = self.end_value(bytes, end) {
                            return Some(self.fail(bytes, end, e));
                        }
                        self.top = Top::After;
                    }
                    None => return Some(self.fail(bytes, end, FrameError::MismatchedBracket)),
                },
                _ => return None,
            },
            Lex::Struct => {
                if self.top == Top::InScalar {
                    if CLASS[b as usize] == C_SCALAR {
                        return None;
                    }
                    if let Some(e) = self.end_value(bytes, i) {
                        return Some(self.fail(bytes, end, e));
                    }
                    self.top = Top::After;
                }
                // Punctuation and the starts of keys and of other values are
                // `resume_one`'s, but for the byte that ends a number or literal.
                match (self.top, b) {
                    (Top::After, b',') => self.top = Top::Key,
                    (Top::KeyOrEnd | Top::After, b'}') => return Some(self.end_message(end)),
                    (Top::Value, b'{' | b'[') => {
                        if let Some(step) = self.open_value(bytes, i) {
                            return Some(step);
                        }
                    }
                    (Top::After, b' ' | b'\t' | b'\r' | b'\n') => {}
                    _ => return None,
                }
            }
            _ => return None,
        }
        self.pos = end;
        Some(Step::More)
    }

    /// The scanner proper. Resumes at `self.pos` in state `self.lex`. `full`
    /// says the bytes cannot grow until some are dropped.
    pub(crate) fn scan(&mut self, bytes: &[u8], full: bool) -> Step {
        let mut i = self.pos;
        loop {
            let bounded = !matches!(self.lex, Lex::Between | Lex::Recover) && !self.skipping;
            // Bytes past `limit` would make the current message oversized.
            let limit = if bounded {
                bytes.len().min(self.start.saturating_add(self.max_size))
            } else {
                bytes.len()
            };
            if i >= limit {
                if bounded && (limit < bytes.len() || full && self.start == 0) {
                    // The message in progress is longer than the limit.
                    self.skipping = true;
                    self.pos = i;
                    continue;
                }
                self.pos = i;
                return Step::More;
            }
            match self.lex {
                Lex::Between => {
                    // Line ends between messages are the common case: skip
                    // them here rather than with a trip round the outer loop
                    // per byte.
                    while i < limit && is_ws(bytes[i]) {
                        i += 1;
                    }
                    self.start = i;
                    if i == limit {
                        continue;
                    }
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'{' => {
                            self.begin_message(i - 1);
                            self.lex = Lex::Struct;
                        }
                        0xFF => {
                            self.start = i;
                            self.pos = i;
                            return Step::Sentinel;
                        }
                        _ => {
                            self.start = i;
                            return self.fail(bytes, i, FrameError::NotAnObject);
                        }
                    }
                }
                Lex::Recover => {
                    // QEMU's lexer restarts at a control byte or 0xFF. The
                    // control byte is consumed; 0xFF is then read as a sentinel.
                    match bytes[i..limit].iter().position(|&b| b < 0x20 || b == 0xFF) {
                        Some(k) => {
                            i += k + usize::from(bytes[i + k] != 0xFF);
                            self.lex = Lex::Between;
                        }
                        None => i = limit,
                    }
                    self.start = i;
                }
                Lex::Str => {
                    let j = string_stop(bytes, i, limit);
                    if j == limit {
                        i = j;
                        continue;
                    }
                    let b = bytes[j];
                    i = j + 1;
                    match b {
                        b'"' => {
                            if let Some(step) = self.close_string(bytes, j) {
                                return step;
                            }
                        }
                        _ => match string_special(b) {
                            Ok(lex) => {
                                if lex == Lex::Esc && self.top == Top::InKey && self.depth == 1 {
                                    self.key_escaped = true;
                                }
                                self.lex = lex;
                            }
                            Err(e) => return self.fail(bytes, i, e),
                        },
                    }
                }
                Lex::Esc | Lex::Hex(_) | Lex::Utf8 { .. } => {
                    let b = bytes[i];
                    i += 1;
                    match string_step(self.lex, b) {
                        Ok(lex) => self.lex = lex,
                        Err(e) => return self.fail(bytes, i, e),
                    }
                }
                Lex::Struct if self.depth > 1 => {
                    // Nested values: the run stops for an escape, a non-ASCII
                    // or control byte in a string, the end of the value, or the
                    // end of the input.
                    match nested(self, &bytes[..limit], i) {
                        Nested::Closed(end) => {
                            i = end;
                            if let Some(e) = self.end_value(bytes, i) {
                                return self.fail(bytes, i, e);
                            }
                            self.top = Top::After;
                        }
                        Nested::Str(at) => {
                            self.lex = Lex::Str;
                            i = at;
                        }
                        Nested::More => i = limit,
                        Nested::Fail(at, e) => return self.fail(bytes, at, e),
                    }
                }
                Lex::Struct => {
                    // The message object itself. Stays in this loop over
                    // whitespace, plain keys and string values, scalars and
                    // punctuation; leaves it to enter a nested value, for an
                    // escape or a non-ASCII or control byte in a string, at
                    // the end of the message, or at the end of the input.
                    // `top` lives in a local so the per-byte dispatch needs
                    // no loads or stores.
                    let mut top = self.top;
                    if top == Top::InScalar {
                        i = scalar_end(bytes, i, limit);
                        if i == limit {
                            continue;
                        }
                        if let Some(e) = self.end_value(bytes, i) {
                            return self.fail(bytes, i + 1, e);
                        }
                        top = Top::After;
                    }
                    while i < limit {
                        let b = bytes[i];
                        i += 1;
                        match top {
                            Top::KeyOrEnd | Top::Key => match b {
                                b'"' => {
                                    self.token = i - 1;
                                    self.token_cut = false;
                                    self.key_escaped = false;
                                    let j = string_stop(bytes, i, limit);
                                    if j < limit && bytes[j] == b'"' {
                                        self.end_key(bytes, j);
                                        top = Top::Colon;
                                        i = j + 1;
                                        continue;
                                    }
                                    top = Top::InKey;
                                    self.lex = Lex::Str;
                                    i = j;
                                    break;
                                }
                                b'}' if top == Top::KeyOrEnd => return self.end_message(i),
                                b' ' | b'\t' | b'\r' | b'\n' => {}
                                _ => {
                                    return self.fail(
                                        bytes,
                                        i,
                                        FrameError::UnexpectedByte { byte: b },
                                    );
                                }
                            },
                            Top::Colon => match b {
                                b':' => top = Top::Value,
                                b' ' | b'\t' | b'\r' | b'\n' => {}
                                _ => {
                                    return self.fail(
                                        bytes,
                                        i,
                                        FrameError::UnexpectedByte { byte: b },
                                    );
                                }
                            },
                            Top::Value => match CLASS[b as usize] {
                                C_QUOTE => {
                                    self.token = i - 1;
                                    self.token_cut = false;
                                    let j = string_stop(bytes, i, limit);
                                    if j < limit && bytes[j] == b'"' {
                                        i = j + 1;
                                        if let Some(e) = self.end_value(bytes, i) {
                                            return self.fail(bytes, i, e);
                                        }
                                        top = Top::After;
                                        continue;
                                    }
                                    top = Top::InStr;
                                    self.lex = Lex::Str;
                                    i = j;
                                    break;
                                }
                                C_OPEN_OBJ | C_OPEN_ARR => {
                                    self.token = i - 1;
                                    self.token_cut = false;
                                    top = Top::InNested;
                                    if !self.open(b == b'[') {
                                        return self.fail(
                                            bytes,
                                            i,
                                            FrameError::TooDeep {
                                                limit: self.max_depth,
                                            },
                                        );
                                    }
                                    break;
                                }
                                C_SCALAR => {
                                    self.token = i - 1;
                                    self.token_cut = false;
                                    i = scalar_end(bytes, i, limit);
                                    if i == limit {
                                        top = Top::InScalar;
                                        break;
                                    }
                                    if let Some(e) = self.end_value(bytes, i) {
                                        return self.fail(bytes, i + 1, e);
                                    }
                                    top = Top::After;
                                }
                                C_WS => {}
                                _ => {
                                    return self.fail(
                                        bytes,
                                        i,
                                        FrameError::UnexpectedByte { byte: b },
                                    );
                                }
                            },
                            Top::After => match b {
                                b',' => top = Top::Key,
                                b'}' => return self.end_message(i),
                                b' ' | b'\t' | b'\r' | b'\n' => {}
                                _ => {
                                    return self.fail(
                                        bytes,
                                        i,
                                        FrameError::UnexpectedByte { byte: b },
                                    );
                                }
                            },
                            // Not reached: these states leave this loop.
                            Top::InKey | Top::InStr | Top::InNested | Top::InScalar => {
                                if !is_ws(b) {
                                    return self.fail(
                                        bytes,
                                        i,
                                        FrameError::UnexpectedByte { byte: b },
                                    );
                                }
                            }
                        }
                    }
                    self.top = top;
                }
            }
        }
    }
}

/// The brackets open inside the message object, for [`nested`]: the scanner
/// keeps any depth up to [`MAX_DEPTH`] across calls, the fast path
/// ([`Shallow`]) up to 64 in a register.
trait Brackets {
    /// Opens a bracket; false when that would nest deeper than allowed.
    fn open(&mut self, array: bool) -> bool;
    /// Closes a bracket: `None` when it does not match the open one, else
    /// whether the message object is the innermost again.
    fn close(&mut self, array: bool) -> Option<bool>;
    /// The configured depth limit, for the error.
    fn max_depth(&self) -> u32;
}

impl Brackets for Scanner {
    #[inline]
    fn open(&mut self, array: bool) -> bool {
        if self.depth >= self.max_depth {
            return false;
        }
        let d = self.depth as usize;
        let (word, bit) = (d / 64, 1u64 << (d % 64));
        if array {
            self.stack[word] |= bit;
        } else {
            self.stack[word] &= !bit;
        }
        self.depth += 1;
        true
    }

    #[inline]
    fn close(&mut self, array: bool) -> Option<bool> {
        let d = (self.depth - 1) as usize;
        if (self.stack[d / 64] >> (d % 64) & 1 == 1) != array {
            return None;
        }
        self.depth -= 1;
        Some(self.depth == 1)
    }

    fn max_depth(&self) -> u32 {
        self.max_depth
    }
}

/// The brackets of a message nested at most 64 deep, one bit each (set: `[`),
/// innermost in bit 0.
struct Shallow {
    bits: u64,
    /// Counting the message object as 1, as `Scanner::depth` does.
    depth: u32,
    /// At most 64.
    max_depth: u32,
}

impl Brackets for Shallow {
    #[inline(always)]
    fn open(&mut self, array: bool) -> bool {
        if self.depth >= self.max_depth {
            return false;
        }
        self.bits = self.bits << 1 | u64::from(array);
        self.depth += 1;
        true
    }

    #[inline(always)]
    fn close(&mut self, array: bool) -> Option<bool> {
        if (self.bits & 1 == 1) != array {
            return None;
        }
        self.bits >>= 1;
        self.depth -= 1;
        Some(self.depth == 1)
    }

    fn max_depth(&self) -> u32 {
        self.max_depth
    }
}

/// Where [`nested`] stopped.
enum Nested {
    /// Back at the message object, just past the closing bracket.
    Closed(usize),
    /// Inside a string, at a byte that needs the byte-wise lexer (escape,
    /// non-ASCII or control byte) or at the end of the input.
    Str(usize),
    /// At the end of the input, outside strings.
    More,
    /// An error for the byte before the position.
    Fail(usize, FrameError),
}

/// Scans nested values from `i` (outside strings) up to the end of `window`:
/// brackets and strings matter, the rest is left to the decoder. Stays in
/// this loop over plain strings, plain bytes and brackets.
#[inline(always)]
fn nested<B: Brackets>(brackets: &mut B, window: &[u8], mut i: usize) -> Nested {
    while let Some(&b) = window.get(i) {
        i += 1;
        let class = CLASS[b as usize];
        if class == C_QUOTE {
            let j = string_stop(window, i, window.len());
            if window.get(j) != Some(&b'"') {
                return Nested::Str(j);
            }
            i = j + 1;
            // A string is mostly followed by `: ` or `, `: plain bytes, so
            // skip the pair in one go.
            if let Some([b':' | b',', b' ']) = window.get(i..i + 2) {
                i += 2;
            }
            continue;
        }
        if class >= C_WS {
            // Plain: whitespace, punctuation or part of a scalar. Mostly
            // short runs between strings, so one test per byte beats an inner loop.
            continue;
        }
        match class {
            C_OPEN_OBJ | C_OPEN_ARR => {
                if !brackets.open(b == b'[') {
                    let limit = brackets.max_depth();
                    return Nested::Fail(i, FrameError::TooDeep { limit });
                }
            }
            C_CLOSE_OBJ | C_CLOSE_ARR => match brackets.close(b == b']') {
                Some(false) => {}
                Some(true) => return Nested::Closed(i),
                None => return Nested::Fail(i, FrameError::MismatchedBracket),
            },
            _ => return Nested::Fail(i, FrameError::UnexpectedByte { byte: b }),
        }
    }
    Nested::More
}

pub(crate) enum Step {
    More,
    Sentinel,
    Error(FrameError),
    Oversized(Kind, usize),
    Message(Kind, usize, usize),
}

/// The keys that say what a message is, and the kind each one gives.
const PRIMARY: [(Key, Kind); 6] = [
    (Key::Qmp, Kind::Greeting),
    (Key::Return, Kind::Return),
    (Key::Error, Kind::Error),
    (Key::Event, Kind::Event),
    (Key::Execute, Kind::Execute),
    (Key::ExecOob, Kind::ExecOob),
];

/// The bits of the keys in [`PRIMARY`].
const PRIMARY_KEYS: u16 = {
    let mut mask = 0;
    let mut k = 0;
    while k < PRIMARY.len() {
        mask |= 1 << PRIMARY[k].0 as u16;
        k += 1;
    }
    mask
};

/// The kind for the lowest bit set in a `seen` mask (index 16: none).
static KIND_OF_BIT: [Kind; 17] = {
    let mut table = [Kind::Unknown; 17];
    let mut k = 0;
    while k < PRIMARY.len() {
        table[PRIMARY[k].0 as usize] = PRIMARY[k].1;
        k += 1;
    }
    table
};

/// A table lookup rather than a loop over [`PRIMARY`]: this is per-message work.
#[inline]
fn kind_of(seen: u16) -> Kind {
    let primary = seen & PRIMARY_KEYS;
    if primary & primary.wrapping_sub(1) != 0 {
        return Kind::Ambiguous;
    }
    KIND_OF_BIT[primary.trailing_zeros() as usize]
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// For a UTF-8 lead byte: continuation bytes needed and the range of the first.
fn utf8_lead(b: u8) -> Option<(u8, u8, u8)> {
    Some(match b {
        0xC2..=0xDF => (1, 0x80, 0xBF),
        0xE0 => (2, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
        0xED => (2, 0x80, 0x9F),
        0xF0 => (3, 0x90, 0xBF),
        0xF1..=0xF3 => (3, 0x80, 0xBF),
        0xF4 => (3, 0x80, 0x8F),
        _ => return None,
    })
}

/// The lexer state after a byte that [`string_stop`] stopped at, other than
/// the closing quote: an escape or a UTF-8 sequence starts, or the byte is
/// wrong.
#[inline]
fn string_special(b: u8) -> Result<Lex, FrameError> {
    match b {
        b'\\' => Ok(Lex::Esc),
        0x80..=0xFF => match utf8_lead(b) {
            Some((need, lo, hi)) => Ok(Lex::Utf8 { need, lo, hi }),
            None => Err(FrameError::InvalidUtf8),
        },
        _ => Err(FrameError::ControlInString),
    }
}

/// The next byte `b` of an escape or UTF-8 sequence in state `lex`: the next
/// state, `Lex::Str` once the sequence is complete.
#[inline]
fn string_step(lex: Lex, b: u8) -> Result<Lex, FrameError> {
    match lex {
        Lex::Esc => match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(Lex::Str),
            b'u' => Ok(Lex::Hex(4)),
            _ => Err(FrameError::BadEscape),
        },
        Lex::Hex(n) if b.is_ascii_hexdigit() => Ok(if n == 1 { Lex::Str } else { Lex::Hex(n - 1) }),
        Lex::Hex(_) => Err(FrameError::BadEscape),
        Lex::Utf8 { need, lo, hi } if (lo..=hi).contains(&b) => Ok(if need == 1 {
            Lex::Str
        } else {
            Lex::Utf8 {
                need: need - 1,
                lo: 0x80,
                hi: 0xBF,
            }
        }),
        Lex::Utf8 { .. } => Err(FrameError::InvalidUtf8),
        // Not reached: only the states above are inside a sequence.
        other => Ok(other),
    }
}

/// For the fast path: the index just past the closing quote of the string
/// whose body continues at `i`, when the string is complete and valid in
/// `window`. Escapes and UTF-8 are checked as the byte-wise lexer does.
#[inline]
fn string_end(window: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = string_stop(window, i, window.len());
        let b = *window.get(i)?;
        i += 1;
        if b == b'"' {
            return Some(i);
        }
        let mut lex = string_special(b).ok()?;
        while lex != Lex::Str {
            lex = string_step(lex, *window.get(i)?).ok()?;
            i += 1;
        }
    }
}

/// Index of the first byte in `bytes[i..]` that is not whitespace, or the end.
#[inline(always)]
fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while let Some(&b) = bytes.get(i)
        && is_ws(b)
    {
        i += 1;
    }
    i
}

/// For the fast path: the first byte in `window[i..]` that is not whitespace,
/// and its index. Tests for the common no-space case first.
#[inline(always)]
fn next_token(window: &[u8], i: usize) -> Option<(usize, u8)> {
    let b = *window.get(i)?;
    if !is_ws(b) {
        return Some((i, b));
    }
    let i = skip_ws(window, i + 1);
    Some((i, *window.get(i)?))
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte in `bytes[i..end]` that ends a plain run inside a
/// string (`"`, `\`, a control byte or a non-ASCII byte), or `end`.
#[inline(always)]
fn string_stop(bytes: &[u8], mut i: usize, end: usize) -> usize {
    let window = &bytes[..end];
    while let Some(chunk) = window.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let v = u64::from_le_bytes(*chunk);
        let quote = v ^ (LO * b'"' as u64);
        let backslash = v ^ (LO * b'\\' as u64);
        // The classic "has zero byte" trick; the lowest flagged byte is exact.
        let hits = (quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (v.wrapping_sub(LO * 0x20) & !v)
            | v;
        let hits = hits & HI;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end {
        let b = bytes[i];
        if b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b) {
            return i;
        }
        i += 1;
    }
    end
}

/// Index of the first byte in `bytes[i..end]` that cannot continue a scalar
/// (number or literal), or `end`.
#[inline(always)]
fn scalar_end(bytes: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && CLASS[bytes[i] as usize] == C_SCALAR {
        i += 1;
    }
    i
}

const C_INVALID: u8 = 0;
const C_QUOTE: u8 = 1;
const C_OPEN_OBJ: u8 = 2;
const C_OPEN_ARR: u8 = 3;
const C_CLOSE_OBJ: u8 = 4;
const C_CLOSE_ARR: u8 = 5;
// Classes from here on are "plain" inside nested values.
const C_WS: u8 = 6;
const C_PUNCT: u8 = 7;
const C_SCALAR: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [C_INVALID; 256];
    t[b'"' as usize] = C_QUOTE;
    t[b'{' as usize] = C_OPEN_OBJ;
    t[b'[' as usize] = C_OPEN_ARR;
    t[b'}' as usize] = C_CLOSE_OBJ;
    t[b']' as usize] = C_CLOSE_ARR;
    t[b' ' as usize] = C_WS;
    t[b'\t' as usize] = C_WS;
    t[b'\r' as usize] = C_WS;
    t[b'\n' as usize] = C_WS;
    t[b':' as usize] = C_PUNCT;
    t[b',' as usize] = C_PUNCT;
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = C_SCALAR;
        c += 1;
    }
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = C_SCALAR;
        c += 1;
    }
    t[b'E' as usize] = C_SCALAR;
    t[b'-' as usize] = C_SCALAR;
    t[b'+' as usize] = C_SCALAR;
    t[b'.' as usize] = C_SCALAR;
    t
};

/// [`PLAIN`] bit: the byte goes on with a string (`string_stop` passes it).
const P_STRING: u8 = 1;
/// [`PLAIN`] bit: the byte is plain in a nested value, outside strings.
const P_NESTED: u8 = 2;
/// [`PLAIN`] bit: the byte goes on with a number or literal.
const P_SCALAR: u8 = 4;
/// [`PLAIN`] bit: whitespace between tokens.
const P_WS: u8 = 8;

/// For [`Scanner::resume_one`]: the runs a byte goes on with, as `P_*` bits.
static PLAIN: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0;
    while b < 256 {
        let class = CLASS[b];
        if b >= 0x20 && b < 0x80 && b != b'"' as usize && b != b'\\' as usize {
            t[b] |= P_STRING;
        }
        if class >= C_WS {
            t[b] |= P_NESTED;
        }
        if class == C_SCALAR {
            t[b] |= P_SCALAR;
        }
        if class == C_WS {
            t[b] |= P_WS;
        }
        b += 1;
    }
    t
};
