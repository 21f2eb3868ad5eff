//! XDR (RFC 4506) as libvirt uses it: big-endian, every item padded to four
//! bytes, variable-length data prefixed with its length and bounded.
//!
//! Decoders are `nom` parsers over complete input (a whole packet is framed
//! before anything in it is decoded), with [`DecodeError`] as their error.
//! Encoders append to a `Vec<u8>` and cannot fail; the connection checks the
//! size of what it sends.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use nom::bytes::complete::take;
use nom::number::complete::{be_i32, be_i64, be_u32, be_u64};
use nom::{Err, IResult};

/// Why XDR input could not be decoded. The peer sent it: see
/// [`ProtocolError`](crate::ProtocolError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside an item.
    Truncated,
    /// A variable-length item is longer than its bound.
    TooLong {
        /// Its length (bytes, or elements for arrays).
        len: u32,
        /// The bound.
        max: u32,
    },
    /// Padding bytes that are not zero.
    Padding,
    /// A string that is not UTF-8.
    Utf8,
    /// A value outside an enumeration (or an optional's flag other than 0/1).
    Discriminant {
        /// What was being decoded.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// Bytes left over after the item.
    Trailing {
        /// How many.
        len: usize,
    },
    /// A packet longer than the message size limit.
    MessageTooLarge {
        /// Its length, counting the length word.
        size: u32,
        /// The limit in force, counting the length word.
        limit: u32,
    },
    /// A packet length too short for the header.
    MessageTooShort {
        /// Its length, counting the length word.
        size: u32,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => f.write_str("XDR data ends inside an item"),
            Self::TooLong { len, max } => {
                write!(f, "XDR item of length {len} exceeds its bound of {max}")
            }
            Self::Padding => f.write_str("XDR padding bytes are not zero"),
            Self::Utf8 => f.write_str("XDR string is not UTF-8"),
            Self::Discriminant { what, value } => write!(f, "unknown {what} {value}"),
            Self::Trailing { len } => write!(f, "{len} bytes left over after the XDR data"),
            Self::MessageTooLarge { size, limit } => write!(
                f,
                "libvirt message of {size} bytes exceeds the message size limit of {limit} bytes \
                 (libvirt's own maximum is 16 MiB plus the 4-byte length)"
            ),
            Self::MessageTooShort { size } => write!(
                f,
                "libvirt message length {size} is shorter than the 28-byte length and header"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

impl<'a> nom::error::ParseError<&'a [u8]> for DecodeError {
    fn from_error_kind(_input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        // The only nom parsers used are fixed-size reads and `take` over
        // complete input: they fail only when the input ends.
        DecodeError::Truncated
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// The result of an XDR parser.
pub type XResult<'a, T> = IResult<&'a [u8], T, DecodeError>;

fn fail<T>(e: DecodeError) -> Result<T, Err<DecodeError>> {
    Err(Err::Error(e))
}

/// Runs `parser` over all of `input`: leftover bytes are an error.
pub fn decode_all<'a, T>(
    input: &'a [u8],
    parser: impl FnOnce(&'a [u8]) -> XResult<'a, T>,
) -> Result<T, DecodeError> {
    match parser(input) {
        Ok(([], value)) => Ok(value),
        Ok((rest, _)) => Err(DecodeError::Trailing { len: rest.len() }),
        Err(Err::Error(e) | Err::Failure(e)) => Err(e),
        Err(Err::Incomplete(_)) => Err(DecodeError::Truncated),
    }
}

/// Padding after `len` bytes of data.
pub const fn padding_len(len: usize) -> usize {
    // (4 - len % 4) % 4, the same modulo 4.
    len.wrapping_neg() % 4
}

/// An unsigned int.
pub fn u32(i: &[u8]) -> XResult<'_, u32> {
    be_u32(i)
}

/// An int.
pub fn i32(i: &[u8]) -> XResult<'_, i32> {
    be_i32(i)
}

/// An unsigned hyper.
pub fn u64(i: &[u8]) -> XResult<'_, u64> {
    be_u64(i)
}

/// A hyper.
pub fn i64(i: &[u8]) -> XResult<'_, i64> {
    be_i64(i)
}

/// A bool: 0 or 1.
pub fn bool(i: &[u8]) -> XResult<'_, bool> {
    let (i, v) = be_u32(i)?;
    match v {
        0 => Ok((i, false)),
        1 => Ok((i, true)),
        value => fail(DecodeError::Discriminant {
            what: "bool",
            value,
        }),
    }
}

fn pad(i: &[u8], len: usize) -> XResult<'_, ()> {
    let (i, p) = take(padding_len(len))(i)?;
    if p.iter().any(|&b| b != 0) {
        return fail(DecodeError::Padding);
    }
    Ok((i, ()))
}

/// Fixed-length opaque data of `N` bytes (`opaque x[N]`).
pub fn opaque_fixed<const N: usize>(i: &[u8]) -> XResult<'_, [u8; N]> {
    let (i, data) = take(N)(i)?;
    let (i, ()) = pad(i, N)?;
    let mut out = [0; N];
    out.copy_from_slice(data);
    Ok((i, out))
}

/// Variable-length opaque data of at most `max` bytes (`opaque x<max>`).
pub fn opaque(max: u32) -> impl Fn(&[u8]) -> XResult<'_, &[u8]> {
    move |i| {
        let (i, len) = be_u32(i)?;
        if len > max {
            return fail(DecodeError::TooLong { len, max });
        }
        let (i, data) = take(len)(i)?;
        let (i, ()) = pad(i, data.len())?;
        Ok((i, data))
    }
}

/// A string of at most `max` bytes (`string x<max>`), borrowed.
pub fn str(max: u32) -> impl Fn(&[u8]) -> XResult<'_, &str> {
    move |i| {
        let (i, data) = opaque(max)(i)?;
        match core::str::from_utf8(data) {
            Ok(s) => Ok((i, s)),
            Err(_) => fail(DecodeError::Utf8),
        }
    }
}

/// A string of at most `max` bytes, owned.
pub fn string(max: u32) -> impl Fn(&[u8]) -> XResult<'_, String> {
    move |i| str(max)(i).map(|(i, s)| (i, String::from(s)))
}

/// An optional item (`T *x`): a 0/1 flag, then the item when 1.
pub fn optional<'a, T>(
    item: impl Fn(&'a [u8]) -> XResult<'a, T>,
) -> impl Fn(&'a [u8]) -> XResult<'a, Option<T>> {
    move |i| {
        let (i, flag) = be_u32(i)?;
        match flag {
            0 => Ok((i, None)),
            1 => item(i).map(|(i, v)| (i, Some(v))),
            value => fail(DecodeError::Discriminant {
                what: "optional-data flag",
                value,
            }),
        }
    }
}

/// A variable-length array of at most `max` items (`T x<max>`).
pub fn array<'a, T>(
    max: u32,
    item: impl Fn(&'a [u8]) -> XResult<'a, T>,
) -> impl Fn(&'a [u8]) -> XResult<'a, Vec<T>> {
    move |mut i| {
        let (rest, count) = be_u32(i)?;
        if count > max {
            return fail(DecodeError::TooLong { len: count, max });
        }
        i = rest;
        // Every item takes at least four bytes: a hostile count cannot make
        // this reserve more than the input could hold.
        let mut items = Vec::with_capacity((count as usize).min(i.len() / 4));
        for _ in 0..count {
            let (rest, v) = item(i)?;
            items.push(v);
            i = rest;
        }
        Ok((i, items))
    }
}

/// Appends an unsigned int.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends an int.
pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends an unsigned hyper.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a hyper.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a bool.
pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    put_u32(out, u32::from(v));
}

fn put_pad(out: &mut Vec<u8>, len: usize) {
    // padding_len is at most 3.
    out.extend_from_slice([0; 3].get(..padding_len(len)).unwrap_or_default());
}

/// Appends fixed-length opaque data.
pub fn put_opaque_fixed(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    put_pad(out, data.len());
}

/// Appends variable-length opaque data. The caller keeps it within its bound
/// (and so within `u32`).
pub fn put_opaque(out: &mut Vec<u8>, data: &[u8]) {
    put_u32(out, u32::try_from(data.len()).unwrap_or(u32::MAX));
    put_opaque_fixed(out, data);
}

/// Appends a string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_opaque(out, s.as_bytes());
}

/// Appends an optional item.
pub fn put_optional<T: ?Sized>(
    out: &mut Vec<u8>,
    v: Option<&T>,
    item: impl FnOnce(&mut Vec<u8>, &T),
) {
    match v {
        None => put_u32(out, 0),
        Some(v) => {
            put_u32(out, 1);
            item(out, v);
        }
    }
}

/// Appends an array.
pub fn put_array<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    put_u32(out, u32::try_from(items.len()).unwrap_or(u32::MAX));
    for v in items {
        item(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn string_is_padded_to_four_bytes() {
        let mut out = Vec::new();
        put_str(&mut out, "qemu:///system");
        assert_eq!(out.len(), 4 + 16);
        assert_eq!(&out[..4], &[0, 0, 0, 14]);
        assert_eq!(&out[18..], &[0, 0]);
        assert_eq!(decode_all(&out, str(64)), Ok("qemu:///system"));
    }

    #[test]
    fn padding_rounds_up_to_four_at_any_length() {
        for len in (0..64).chain(usize::MAX - 8..=usize::MAX) {
            let pad = padding_len(len);
            assert!(pad < 4, "{len}");
            assert_eq!(len.wrapping_add(pad) % 4, 0, "{len}");
        }
        for len in 0..9 {
            let mut out = Vec::new();
            put_opaque(&mut out, &vec![7; len]);
            assert_eq!(out.len() % 4, 0, "{len}");
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let mut out = Vec::new();
        put_str(&mut out, "12345");
        assert_eq!(
            decode_all(&out, str(4)),
            Err(DecodeError::TooLong { len: 5, max: 4 })
        );
        let mut out = Vec::new();
        put_array(&mut out, &[1u32, 2, 3], |o, &v| put_u32(o, v));
        assert_eq!(
            decode_all(&out, array(2, u32)),
            Err(DecodeError::TooLong { len: 3, max: 2 })
        );
        assert_eq!(decode_all(&out, array(3, u32)), Ok(vec![1, 2, 3]));
    }

    #[test]
    fn hostile_array_count_does_not_allocate_it() {
        let input = [0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1];
        assert_eq!(
            decode_all(&input, array(u32::MAX, u32)),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn padding_must_be_zero_and_present() {
        assert_eq!(
            decode_all(&[0, 0, 0, 1, b'a', 0, 1, 0], str(8)),
            Err(DecodeError::Padding)
        );
        assert_eq!(
            decode_all(&[0, 0, 0, 1, b'a', 0], str(8)),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn optional_flag_is_zero_or_one() {
        assert_eq!(decode_all(&[0, 0, 0, 0], optional(u32)), Ok(None));
        assert_eq!(
            decode_all(&[0, 0, 0, 1, 0, 0, 0, 7], optional(u32)),
            Ok(Some(7))
        );
        assert_eq!(
            decode_all(&[0, 0, 0, 2, 0, 0, 0, 7], optional(u32)),
            Err(DecodeError::Discriminant {
                what: "optional-data flag",
                value: 2
            })
        );
    }

    #[test]
    fn non_utf8_string_and_trailing_bytes() {
        assert_eq!(
            decode_all(&[0, 0, 0, 1, 0xff, 0, 0, 0], str(8)),
            Err(DecodeError::Utf8)
        );
        assert_eq!(
            decode_all(&[0, 0, 0, 1, 0, 0, 0, 2], u32),
            Err(DecodeError::Trailing { len: 4 })
        );
    }

    #[test]
    fn hyper_is_big_endian() {
        let mut out = Vec::new();
        put_i64(&mut out, -2);
        put_u64(&mut out, 0x0102_0304_0506_0708);
        assert_eq!(out[8..], [1, 2, 3, 4, 5, 6, 7, 8]);
        let (rest, a) = i64(&out).unwrap();
        assert_eq!(a, -2);
        assert_eq!(decode_all(rest, u64), Ok(0x0102_0304_0506_0708));
    }
}
