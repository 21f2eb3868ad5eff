//! The fast paths that [`Framer::advance`](super::Framer::advance) tries
//! before the byte-wise [`Scanner::scan`]: a whole message in one pass, and
//! cheap resumes for input that trickles in. Each either leaves the scanner
//! exactly as `scan` would or hands over to it.

// No panic here either, but the framer's hot loops keep plain indexing and
// arithmetic, so the lints are allowed function by function below, each marked
// "hot path". Their positions only move past bytes the loop condition checked
// are there (so they stay at most the buffer's length: no overflow, no index
// out of bounds), and the 256-entry tables are indexed by a byte. Checked
// forms on every byte cost throughput (see benches/benches/framing.rs); the
// fuzz targets build with overflow checks and debug assertions, so a broken
// bound shows there as a crash.

use super::scan::{Brackets, Lex, Nested, Scanner, Step, Top, nested, string_special, string_step};
use super::tables::{
    C_CLOSE_ARR, C_CLOSE_OBJ, C_OPEN_ARR, C_OPEN_OBJ, C_QUOTE, C_SCALAR, C_WS, CLASS, P_NESTED,
    P_SCALAR, P_STRING, P_WS, PLAIN, is_ws, scalar_end, string_stop,
};
use super::{FrameError, Key};

impl Scanner {
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    pub(super) fn scan_whole(&mut self, bytes: &[u8]) -> Option<Step> {
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    pub(super) fn resume_plain(&mut self, bytes: &[u8]) -> bool {
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    pub(super) fn resume_top(&mut self, bytes: &[u8]) -> Option<Step> {
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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

    /// [`Scanner::resume_top`] for the one new byte `bytes[i]` at `pos`, within
    /// the size limit, that [`Scanner::resume_one`] left: a single step, with
    /// no run to set up. `None` leaves the byte to `scan`, with the state
    /// `scan` would have before it.
    #[inline(never)]
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    fn open(&mut self, array: bool) -> bool {
        if self.depth >= self.max_depth {
            return false;
        }
        self.bits = self.bits << 1 | u64::from(array);
        self.depth += 1;
        true
    }

    #[inline(always)]
    // Hot path: see the note at the top of this file.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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

/// For the fast path: the index just past the closing quote of the string
/// whose body continues at `i`, when the string is complete and valid in
/// `window`. Escapes and UTF-8 are checked as the byte-wise lexer does.
#[inline]
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
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
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
fn next_token(window: &[u8], i: usize) -> Option<(usize, u8)> {
    let b = *window.get(i)?;
    if !is_ws(b) {
        return Some((i, b));
    }
    let i = skip_ws(window, i + 1);
    Some((i, *window.get(i)?))
}
