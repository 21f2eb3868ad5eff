//! Byte classes: the tables the scanner and the fast paths look bytes up in,
//! and the run-skipping helpers built on them.

// No panic here either, but the framer's hot loops keep plain indexing and
// arithmetic, so the lints are allowed function by function below, each marked
// "hot path". Their positions only move past bytes the loop condition checked
// are there (so they stay at most the buffer's length: no overflow, no index
// out of bounds), and the 256-entry tables are indexed by a byte. Checked
// forms on every byte cost throughput (see benches/benches/framing.rs); the
// fuzz targets build with overflow checks and debug assertions, so a broken
// bound shows there as a crash.

#[inline]
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte in `bytes[i..end]` that ends a plain run inside a
/// string (`"`, `\`, a control byte or a non-ASCII byte), or `end`.
#[inline(always)]
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(super) fn string_stop(bytes: &[u8], mut i: usize, end: usize) -> usize {
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
// Hot path: see the note at the top of this file.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(super) fn scalar_end(bytes: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && CLASS[bytes[i] as usize] == C_SCALAR {
        i += 1;
    }
    i
}

const C_INVALID: u8 = 0;
pub(super) const C_QUOTE: u8 = 1;
pub(super) const C_OPEN_OBJ: u8 = 2;
pub(super) const C_OPEN_ARR: u8 = 3;
pub(super) const C_CLOSE_OBJ: u8 = 4;
pub(super) const C_CLOSE_ARR: u8 = 5;
// Classes from here on are "plain" inside nested values.
pub(super) const C_WS: u8 = 6;
const C_PUNCT: u8 = 7;
pub(super) const C_SCALAR: u8 = 8;

// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
pub(super) static CLASS: [u8; 256] = {
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
pub(super) const P_STRING: u8 = 1;
/// [`PLAIN`] bit: the byte is plain in a nested value, outside strings.
pub(super) const P_NESTED: u8 = 2;
/// [`PLAIN`] bit: the byte goes on with a number or literal.
pub(super) const P_SCALAR: u8 = 4;
/// [`PLAIN`] bit: whitespace between tokens.
pub(super) const P_WS: u8 = 8;

/// For [`Scanner::resume_one`](super::Scanner): the runs a byte goes on with, as `P_*` bits.
// Evaluated at compile time: an index out of bounds fails the build.
#[allow(clippy::indexing_slicing)]
pub(super) static PLAIN: [u8; 256] = {
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
