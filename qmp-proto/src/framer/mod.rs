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

// The byte-wise scanner is in `scan`; `fast` has the paths that `advance`
// tries before it, each of which must leave the same frames and state as the
// scanner would; `tables` has the byte classes both use.
#[cfg(all(test, feature = "alloc"))]
mod equivalence;
mod fast;
mod scan;
mod tables;

use crate::buffer::Buffer;
use crate::json::RawJson;
use scan::Lex;
pub(crate) use scan::{Scanner, Step, check_object};

/// The deepest nesting a framer can be configured for (QEMU's own input limit).
pub const MAX_DEPTH: u32 = 1024;

/// Default message size cap: QEMU's own 64 MiB input limit with `alloc`; without
/// `alloc` the buffer's size is the cap.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// The largest message size a framer can be configured for, 4 GiB - 1: the
/// framer records where values are inside a message as `u32` offsets.
pub const MAX_MESSAGE_SIZE: usize = u32::MAX as usize;

/// Size and nesting limits for one direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message kept, in bytes. Larger ones are skipped and reported.
    /// Values above [`MAX_MESSAGE_SIZE`] are treated as [`MAX_MESSAGE_SIZE`].
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
        for (k, (span, recorded)) in spans.iter_mut().zip(self.spans).enumerate() {
            if self.seen & (1 << k) != 0 {
                *span = *recorded;
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
        let span = *self.spans.get(key as usize)?;
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

/// The incremental JSON message framer. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Framer<B: Buffer> {
    buf: B,
    sc: Scanner,
    /// The last message handed out: begin, end, kind.
    last: (usize, usize, Kind),
    /// The fast paths `advance` may take (`FAST_*` bits): the equivalence
    /// tests turn them off to get the byte-wise scan alone.
    #[cfg(test)]
    fast: u8,
}

/// Fast path of [`Framer::advance`], [`Scanner::resume_plain`]: runs that
/// need no change of state.
const FAST_PLAIN: u8 = 1;
/// [`Scanner::scan_whole`]: a whole message in one pass.
const FAST_WHOLE: u8 = 2;
/// [`Scanner::resume_top`]: single steps of the message object's grammar.
const FAST_TOP: u8 = 4;

impl<B: Buffer> Framer<B> {
    /// A framer with an empty buffer. The buffer's capacity (fixed, or the
    /// message size limit plus room for one read) bounds memory.
    pub fn new(limits: Limits) -> Self {
        // Clamped so that the `u32` offsets of values in a message cannot wrap.
        let max_message_size = limits.max_message_size.min(MAX_MESSAGE_SIZE);
        let buf = B::with_limit(max_message_size.saturating_add(64 << 10));
        let max_size = max_message_size.min(buf.capacity()).max(2);
        Self {
            buf,
            sc: Scanner::new(max_size, limits.max_depth),
            last: (0, 0, Kind::Unknown),
            #[cfg(test)]
            fast: FAST_PLAIN | FAST_WHOLE | FAST_TOP,
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
        if start > 0 && (self.buf.room() < data.len() || start.saturating_mul(2) >= self.buf.len())
        {
            self.compact(start);
        }
        let n = data.len().min(self.buf.room());
        self.buf.append(data.get(..n).unwrap_or_default());
        n
    }

    /// True when a message has started but not ended, or bytes other than
    /// whitespace wait to be scanned: end-of-file now would cut a message short.
    pub fn is_mid_message(&self) -> bool {
        self.sc.is_mid_message(self.buf.bytes())
    }

    /// Bytes buffered but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.sc.start)
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
        if self.fast(FAST_PLAIN) && self.buf.room() != 0 && self.sc.resume_plain(self.buf.bytes()) {
            return None;
        }
        // Between messages, a message that is already whole in the buffer is
        // scanned in one go: the common case when input comes in large reads.
        if self.fast(FAST_WHOLE)
            && self.sc.lex == Lex::Between
            && let Some(step) = self.sc.scan_whole(self.buf.bytes())
        {
            return self.report(step);
        }
        // Brackets, the ends of keys and values and of the message: the other
        // bytes that trickling input brings one at a time.
        if self.fast(FAST_TOP)
            && self.buf.room() != 0
            && let Some(step) = self.sc.resume_top(self.buf.bytes())
        {
            return self.report(step);
        }
        self.advance_scan()
    }

    /// Whether `advance` may take the fast path `path`: always, but in the
    /// tests that compare the fast paths with the byte-wise scan.
    #[inline(always)]
    fn fast(&self, path: u8) -> bool {
        #[cfg(test)]
        return self.fast & path != 0;
        #[cfg(not(test))]
        {
            let _ = path;
            true
        }
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
// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
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
// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
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
    // `trailing_zeros` of a u16 is at most 16: always in the table.
    KIND_OF_BIT
        .get(primary.trailing_zeros() as usize)
        .copied()
        .unwrap_or(Kind::Unknown)
}

#[cfg(test)]
mod tests {
    use super::{Frame, Framer, Key, Kind, Limits, MAX_MESSAGE_SIZE};
    use crate::buffer::{Buffer, FixedBuf};

    /// A framer for `limits` that reads one message: it must frame as usual
    /// whatever the size limit says.
    fn frames_a_message<B: Buffer>(limits: Limits) -> Framer<B> {
        let mut framer = Framer::<B>::new(limits);
        let input = b"{\"id\": 7, \"return\": {\"a\": [1]}}\r\n";
        assert_eq!(framer.push(input), input.len());
        match framer.next() {
            Some(Frame::Message(m)) => {
                assert_eq!(m.kind(), Kind::Return);
                assert_eq!(m.get(Key::Return).unwrap().bytes(), b"{\"a\": [1]}");
                assert_eq!(m.get(Key::Id).unwrap().bytes(), b"7");
            }
            other => panic!("{other:?}"),
        }
        assert!(framer.next().is_none());
        framer
    }

    #[test]
    fn a_size_limit_over_4_gib_is_clamped() {
        for max_message_size in [
            MAX_MESSAGE_SIZE,
            MAX_MESSAGE_SIZE.saturating_add(1),
            usize::MAX,
        ] {
            let limits = Limits {
                max_message_size,
                ..Limits::default()
            };
            #[cfg(feature = "alloc")]
            {
                let framer = frames_a_message::<crate::buffer::VecBuf>(limits);
                assert_eq!(framer.sc.max_size, MAX_MESSAGE_SIZE);
                assert_eq!(
                    framer.buf.capacity(),
                    MAX_MESSAGE_SIZE.saturating_add(64 << 10)
                );
            }
            // A fixed buffer's size is the smaller limit.
            let framer = frames_a_message::<FixedBuf<256>>(limits);
            assert_eq!(framer.sc.max_size, 256);
        }
    }
}
