//! The reference scanner: the lexer and top-level grammar state, and the
//! byte-wise scan that every input can go through, to which the fast paths
//! hand over whatever they do not take.

// No panic here either, but the framer's hot loops keep plain indexing and
// arithmetic, so the lints are allowed function by function below, each marked
// "hot path". Their positions only move past bytes the loop condition checked
// are there (so they stay at most the buffer's length: no overflow, no index
// out of bounds), and the 256-entry tables are indexed by a byte. Checked
// forms on every byte cost throughput (see benches/benches/framing.rs); the
// fuzz targets build with overflow checks and debug assertions, so a broken
// bound shows there as a crash.

use super::tables::{
    C_CLOSE_ARR, C_CLOSE_OBJ, C_OPEN_ARR, C_OPEN_OBJ, C_QUOTE, C_SCALAR, C_WS, CLASS, is_ws,
    scalar_end, string_stop,
};
use super::{
    FrameError, IdValue, KEY_COUNT, Key, Kind, MAX_DEPTH, OTHER_KEY, RawMessage, Span, kind_of,
};
use crate::json::parse_u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lex {
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
pub(super) enum Top {
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

/// The scanner state: everything but the bytes. It works on any slice that only
/// grows between calls (or is shifted with [`Scanner::shift`]).
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    /// First byte not yet handed out or skipped.
    pub(super) start: usize,
    /// Scan position.
    pub(super) pos: usize,
    pub(super) max_size: usize,
    pub(super) max_depth: u32,
    pub(super) lex: Lex,
    pub(super) top: Top,
    pub(super) depth: u32,
    /// Bit `d` set: the bracket opened at depth `d + 1` is `[`.
    pub(super) stack: [u64; (MAX_DEPTH as usize).div_ceil(64)],
    /// Start of the current top-level token (key or value), absolute.
    pub(super) token: usize,
    pub(super) key: Option<Key>,
    pub(super) key_escaped: bool,
    /// Part of the current top-level token was dropped while skipping.
    pub(super) token_cut: bool,
    pub(super) seen: u16,
    /// Only the entries of keys in `seen` are current: not clearing the rest
    /// saves work per message.
    pub(super) spans: [Span; KEY_COUNT],
    pub(super) id: IdValue,
    /// Skipping an oversized message; `skipped` bytes of it are already dropped.
    pub(super) skipping: bool,
    pub(super) skipped: usize,
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

    pub(super) fn message<'a>(&'a self, bytes: &'a [u8], kind: Kind) -> RawMessage<'a> {
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
            || bytes
                .get(self.pos..)
                .unwrap_or_default()
                .iter()
                .any(|&b| !is_ws(b))
    }

    pub(super) fn recover(&mut self) {
        self.lex = Lex::Recover;
        self.depth = 0;
        self.skipping = false;
        self.skipped = 0;
        self.start = self.pos;
    }

    #[inline]
    pub(super) fn shift(&mut self, n: usize) {
        // `n` is at most `start`, which is at most `pos`.
        self.start = self.start.saturating_sub(n);
        self.pos = self.pos.saturating_sub(n);
        self.token = self.token.saturating_sub(n);
    }

    /// While skipping an oversized message: how many leading bytes can go.
    /// Keeps a short top-level token in progress (it may be the `id` key or
    /// its value).
    pub(super) fn drop_skipped(&mut self) -> usize {
        let in_token = self.depth == 1
            && matches!(
                self.top,
                Top::InKey | Top::InScalar | Top::InStr | Top::InNested
            );
        let keep_token = in_token
            && matches!(self.top, Top::InKey | Top::InScalar)
            && self.pos.saturating_sub(self.token) <= SHORT_TOKEN;
        let cut = if keep_token { self.token } else { self.pos };
        if in_token && !keep_token {
            self.token_cut = true;
        }
        self.skipped = self.skipped.saturating_add(cut.saturating_sub(self.start));
        self.start = cut;
        cut
    }

    pub(super) fn begin_message(&mut self, at: usize) {
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
    pub(super) fn fail(&mut self, bytes: &[u8], at: usize, e: FrameError) -> Step {
        self.pos = at
            .checked_sub(1)
            .filter(|&before| bytes.get(before) == Some(&0xFF))
            .unwrap_or(at);
        self.recover();
        Step::Error(e)
    }

    pub(super) fn end_message(&mut self, end: usize) -> Step {
        self.lex = Lex::Between;
        self.depth = 0;
        self.pos = end;
        let kind = kind_of(self.seen);
        let begin = self.start;
        self.start = end;
        if self.skipping {
            self.skipping = false;
            Step::Oversized(kind, self.skipped.saturating_add(end.saturating_sub(begin)))
        } else {
            Step::Message(kind, begin, end)
        }
    }

    /// Records the end of a top-level value that started at `self.token`.
    /// Returns an error for a duplicated known key.
    #[inline]
    pub(super) fn end_value(&mut self, bytes: &[u8], end: usize) -> Option<FrameError> {
        self.record(self.key, bytes, self.token, end, self.token_cut)
    }

    /// Records the top-level value `bytes[token..end]` of `key` (`None`: some
    /// other key); `cut` says part of it was dropped while skipping. Returns an
    /// error for a duplicated known key.
    #[inline(always)]
    pub(super) fn record(
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
                bytes.get(token..end).and_then(parse_u64)
            };
            self.id = match number {
                Some(n) => IdValue::Number(n),
                None => IdValue::Other,
            };
        }
        if !self.skipping
            && let Some(span) = self.spans.get_mut(key as usize)
        {
            // Offsets in the message, which is within the size limit (u32).
            *span = Span {
                start: token.saturating_sub(self.start) as u32,
                end: end.saturating_sub(self.start) as u32,
            };
        }
        None
    }

    #[inline]
    pub(super) fn end_key(&mut self, bytes: &[u8], end: usize) {
        self.key = if self.key_escaped
            || self.token_cut
            || end.saturating_sub(self.token) > SHORT_TOKEN + 1
        {
            None
        } else {
            // After the opening quote at `token`.
            bytes
                .get(self.token.saturating_add(1)..end)
                .and_then(Key::from_name)
        };
    }

    /// The `{` or `[` at `i` that starts a member's value (`Some` when it is
    /// one level too deep).
    #[inline]
    pub(super) fn open_value(&mut self, bytes: &[u8], i: usize) -> Option<Step> {
        self.token = i;
        self.token_cut = false;
        self.top = Top::InNested;
        if self.open(bytes.get(i) == Some(&b'[')) {
            return None;
        }
        let limit = self.max_depth;
        Some(self.fail(bytes, i.saturating_add(1), FrameError::TooDeep { limit }))
    }

    /// The closing quote at `quote` of a string: back to structure, and at
    /// depth 1 the end of a key or of a string value (`Some` on an error).
    #[inline]
    pub(super) fn close_string(&mut self, bytes: &[u8], quote: usize) -> Option<Step> {
        self.lex = Lex::Struct;
        if self.depth == 1 {
            match self.top {
                Top::InKey => {
                    self.end_key(bytes, quote);
                    self.top = Top::Colon;
                }
                Top::InStr => {
                    // Past the closing quote, which is in `bytes`.
                    let end = quote.saturating_add(1);
                    if let Some(e) = self.end_value(bytes, end) {
                        return Some(self.fail(bytes, end, e));
                    }
                    self.top = Top::After;
                }
                _ => {}
            }
        }
        None
    }

    /// The scanner proper. Resumes at `self.pos` in state `self.lex`. `full`
    /// says the bytes cannot grow until some are dropped.
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
/// ([`Shallow`](super::fast)) up to 64 in a register.
pub(super) trait Brackets {
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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

/// Where [`nested`] stopped.
pub(super) enum Nested {
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
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(super) fn nested<B: Brackets>(brackets: &mut B, window: &[u8], mut i: usize) -> Nested {
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
pub(super) fn string_special(b: u8) -> Result<Lex, FrameError> {
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
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(super) fn string_step(lex: Lex, b: u8) -> Result<Lex, FrameError> {
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

/// Checks that `bytes` is one JSON object and nothing else (whitespace around
/// it allowed), within `max_depth`. Used to vet raw command arguments before
/// they are sent, so a typo never reaches QEMU as an id-less parse error.
pub(crate) fn check_object(bytes: &[u8], max_depth: u32) -> Result<(), FrameError> {
    let mut scanner = Scanner::new(usize::MAX, max_depth);
    match scanner.scan(bytes, false) {
        Step::Message(..) => {}
        Step::Error(e) => return Err(e),
        _ => return Err(FrameError::NotAnObject),
    }
    match scanner.scan(bytes, false) {
        Step::More if !scanner.is_mid_message(bytes) => Ok(()),
        Step::Error(e) => Err(e),
        _ => Err(FrameError::NotAnObject),
    }
}
