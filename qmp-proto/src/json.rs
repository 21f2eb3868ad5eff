//! Raw JSON values borrowed from the receive buffer, and the small amount of
//! JSON reading the protocol itself needs (no serde on the hot path).

use core::fmt;

/// A JSON value exactly as it arrived: a slice of the message, not decoded.
///
/// Decode it into your own type with [`RawJson::decode`] (serde_json with the
/// `alloc` feature, serde-json-core without it), or read it as text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawJson<'a> {
    bytes: &'a [u8],
}

impl<'a> RawJson<'a> {
    /// Wraps bytes the framer has already checked.
    pub(crate) fn new_unchecked(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The value as text (the framer checked it is UTF-8).
    pub fn as_str(&self) -> &'a str {
        core::str::from_utf8(self.bytes).unwrap_or("")
    }

    /// Decodes the value with serde.
    ///
    /// With the `alloc` feature this is `serde_json::from_slice`; without it,
    /// `serde_json_core::from_slice` (which cannot do `deserialize_any`:
    /// no untagged enums, no flatten, no `Value`).
    pub fn decode<T: serde::Deserialize<'a>>(&self) -> Result<T, DecodeError> {
        #[cfg(feature = "alloc")]
        {
            serde_json::from_slice(self.bytes).map_err(|e| DecodeError {
                line: e.line(),
                column: e.column(),
            })
        }
        #[cfg(not(feature = "alloc"))]
        {
            match serde_json_core::from_slice(self.bytes) {
                Ok((value, _)) => Ok(value),
                Err(_) => Err(DecodeError { line: 0, column: 0 }),
            }
        }
    }

    /// The member `key` of this value, if it is an object that has it.
    pub fn get(&self, key: &str) -> Option<RawJson<'a>> {
        let mut found = None;
        // The first match wins and ends the walk: no need to skip the rest.
        for_each_member(self.bytes, |k, v| {
            if k.eq_str(key) {
                found = Some(v);
                return true;
            }
            false
        });
        found
    }

    /// The value as a string, if it is one.
    pub fn as_json_str(&self) -> Option<JsonStr<'a>> {
        let raw = self.bytes.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        Some(JsonStr { raw })
    }

    /// The value as an unsigned integer, if it is one that fits.
    pub fn as_u64(&self) -> Option<u64> {
        parse_u64(self.bytes)
    }

    /// The value as a signed integer, if it is one that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self.bytes.split_first() {
            Some((b'-', digits)) => {
                let n = parse_u64(digits)?;
                if n <= i64::MIN.unsigned_abs() {
                    Some((n as i64).wrapping_neg())
                } else {
                    None
                }
            }
            _ => parse_u64(self.bytes).and_then(|n| i64::try_from(n).ok()),
        }
    }

    /// The elements, if the value is an array.
    pub fn elements(&self) -> Option<Elements<'a>> {
        let rest = self.bytes.strip_prefix(b"[")?;
        Some(Elements { rest })
    }
}

impl fmt::Debug for RawJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.as_str())
    }
}

impl fmt::Display for RawJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value could not be decoded into the requested type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Line of the error (1-based), or 0 when the decoder does not say.
    pub line: usize,
    /// Column of the error (1-based), or 0 when the decoder does not say.
    pub column: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str("JSON value does not match the expected type")
        } else {
            write!(
                f,
                "JSON value does not match the expected type (line {}, column {})",
                self.line, self.column
            )
        }
    }
}

impl core::error::Error for DecodeError {}

/// A JSON string as it arrived, escapes intact. Compare and print it without
/// allocating; the framer has checked its escapes and UTF-8.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct JsonStr<'a> {
    raw: &'a [u8],
}

impl<'a> JsonStr<'a> {
    /// The contents between the quotes, escapes not decoded.
    pub fn raw(&self) -> &'a str {
        core::str::from_utf8(self.raw).unwrap_or("")
    }

    /// The contents as `&str` when there is nothing to unescape.
    pub fn as_plain(&self) -> Option<&'a str> {
        (!self.raw.contains(&b'\\')).then(|| self.raw())
    }

    /// The decoded characters.
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        Unescape { rest: self.raw() }
    }

    /// True when the decoded string equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        // Escapes only shorten: a raw text shorter than `s` cannot decode to it.
        if self.raw.len() < s.len() {
            return false;
        }
        if !self.raw.contains(&b'\\') {
            return self.raw == s.as_bytes();
        }
        self.chars().eq(s.chars())
    }

    /// The decoded string, allocated.
    #[cfg(feature = "alloc")]
    pub fn to_string_lossless(&self) -> alloc::string::String {
        self.chars().collect()
    }
}

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_plain() {
            Some(plain) => f.write_str(plain),
            None => self.chars().try_for_each(|c| fmt::Write::write_char(f, c)),
        }
    }
}

impl fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.raw())
    }
}

/// Decodes JSON string escapes. Invalid escapes (which the framer rejects
/// anyway) and lone surrogates come out as U+FFFD.
struct Unescape<'a> {
    rest: &'a str,
}

impl Iterator for Unescape<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let mut chars = self.rest.chars();
        let c = chars.next()?;
        if c != '\\' {
            self.rest = chars.as_str();
            return Some(c);
        }
        let e = chars.next().unwrap_or('\u{FFFD}');
        self.rest = chars.as_str();
        Some(match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'u' => {
                let hi = self.hex4().unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&hi) && self.rest.starts_with("\\u") {
                    let saved = self.rest;
                    self.rest = self.rest.get(2..).unwrap_or_default();
                    match self.hex4() {
                        // The 10 low bits of each half: hi - 0xD800 and lo - 0xDC00.
                        Some(lo @ 0xDC00..0xE000) => (((hi & 0x3FF) << 10) | (lo & 0x3FF))
                            .checked_add(0x10000)
                            .and_then(char::from_u32)
                            .unwrap_or('\u{FFFD}'),
                        _ => {
                            self.rest = saved;
                            '\u{FFFD}'
                        }
                    }
                } else {
                    char::from_u32(hi).unwrap_or('\u{FFFD}')
                }
            }
            other => other,
        })
    }
}

impl Unescape<'_> {
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.rest.get(..4)?;
        let n = u32::from_str_radix(digits, 16).ok()?;
        self.rest = self.rest.get(4..).unwrap_or_default();
        Some(n)
    }
}

/// Iterator over the elements of a JSON array.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = RawJson<'a>;

    fn next(&mut self) -> Option<RawJson<'a>> {
        let start = skip_ws(self.rest, 0);
        let end = value_end(self.rest, start)?;
        let value = RawJson::new_unchecked(self.rest.get(start..end)?);
        let after = skip_ws(self.rest, end);
        self.rest = match self.rest.get(after..) {
            Some([b',', rest @ ..]) => rest,
            _ => &[],
        };
        Some(value)
    }
}

/// Calls `f(key, value)` on each member of the object in `bytes` until it returns true.
pub(crate) fn for_each_member<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(JsonStr<'a>, RawJson<'a>) -> bool,
) {
    if bytes.first() != Some(&b'{') {
        return;
    }
    // Each step moves past one byte the step before checked is there, so
    // `i + 1` stays within the length and cannot overflow.
    let mut i = 1;
    loop {
        i = skip_ws(bytes, i);
        let Some(key_end) = value_end(bytes, i).filter(|_| bytes.get(i) == Some(&b'"')) else {
            return;
        };
        let Some(raw) = bytes
            .get(i..key_end)
            .and_then(|k| k.strip_prefix(b"\""))
            .and_then(|k| k.strip_suffix(b"\""))
        else {
            return;
        };
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return;
        }
        let start = skip_ws(bytes, i.saturating_add(1));
        let Some(value) = value_end(bytes, start).and_then(|end| bytes.get(start..end)) else {
            return;
        };
        if f(JsonStr { raw }, RawJson::new_unchecked(value)) {
            return;
        }
        i = skip_ws(bytes, start.saturating_add(value.len()));
        if bytes.get(i) != Some(&b',') {
            return;
        }
        i = i.saturating_add(1);
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = bytes.get(i) {
        i = i.saturating_add(1);
    }
    i
}

/// End (exclusive) of the JSON value starting at `start`. Works on any bytes
/// without panicking; meaningful on bytes the framer accepted.
pub(crate) fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    match first {
        // Positions only move past bytes that are there, so adding 1 or 2 to
        // one stays within the slice's length plus one: saturating adds
        // never saturate.
        b'"' => {
            let mut i = start.saturating_add(1);
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'\\' => i = i.saturating_add(2),
                    b'"' => return Some(i.saturating_add(1)),
                    _ => i = i.saturating_add(1),
                }
            }
            None
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = value_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth = depth.saturating_add(1),
                    b'}' | b']' => {
                        // The first byte opened: depth is at least 1 here.
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(i.saturating_add(1));
                        }
                    }
                    _ => {}
                }
                i = i.saturating_add(1);
            }
            None
        }
        b',' | b'}' | b']' | b':' => None,
        _ => {
            let rest = bytes.get(start..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            Some(start.saturating_add(len))
        }
    }
}

/// Parses a JSON unsigned integer in canonical form (no sign, no leading zero,
/// no fraction or exponent) that fits in `u64`.
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || bytes.len() > 1 && bytes.first() == Some(&b'0') {
        return None;
    }
    let mut n: u64 = 0;
    if bytes.len() < 20 {
        // At most 19 digits stay below 10^19 < 2^64: no overflow to check.
        for &b in bytes {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            n = n.wrapping_mul(10).wrapping_add(u64::from(digit));
        }
        return Some(n);
    }
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n
            .checked_mul(10)?
            .checked_add(u64::from(b.wrapping_sub(b'0')))?;
    }
    Some(n)
}
