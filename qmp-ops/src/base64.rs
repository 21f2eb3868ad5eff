//! Standard base64 with padding, the encoding of the guest agent's data
//! members (`buf-b64`, `input-data`, `out-data`).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encoded length of `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Largest byte count whose encoding fits in `len` characters.
pub(crate) const fn decoded_capacity(len: usize) -> usize {
    len / 4 * 3
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(encoded_len(bytes.len()));
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                ALPHABET[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
    // Only ASCII from the alphabet was written.
    String::from_utf8(out).unwrap_or_default()
}

const INVALID: u8 = 0xFF;

const fn decode_table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
}

static TABLE: [u8; 256] = decode_table();

/// Why base64 text did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// Offset of the first bad character (or the length, when it is cut short).
    pub(crate) at: usize,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid base64 at offset {}", self.at)
    }
}

/// Appends the bytes `text` encodes to `out`.
pub(crate) fn decode_into(text: &str, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(DecodeError { at: bytes.len() });
    }
    out.reserve(decoded_capacity(bytes.len()));
    let last = bytes.len().saturating_sub(4);
    for (i, q) in bytes.chunks_exact(4).enumerate() {
        let at = i * 4;
        let pad = if at == last {
            q.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return Err(DecodeError { at: at + 1 });
        }
        let mut n = 0u32;
        for (j, &c) in q[..4 - pad].iter().enumerate() {
            let v = TABLE[usize::from(c)];
            if v == INVALID {
                return Err(DecodeError { at: at + j });
            }
            n |= u32::from(v) << (18 - 6 * j);
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - pad]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for len in 0..70 {
            let text = encode(&data[..len]);
            assert_eq!(text.len(), encoded_len(len));
            let mut back = Vec::new();
            decode_into(&text, &mut back).unwrap();
            assert_eq!(back, &data[..len]);
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"f"), "Zg==");
    }

    #[test]
    fn rejects_bad_text_with_its_offset() {
        let mut out = Vec::new();
        assert_eq!(decode_into("Zm9", &mut out), Err(DecodeError { at: 3 }));
        assert_eq!(
            decode_into("Zm9v!mFy", &mut out),
            Err(DecodeError { at: 4 })
        );
        assert_eq!(
            decode_into("Zg==Zg==", &mut out),
            Err(DecodeError { at: 2 })
        );
        assert_eq!(decode_into("Z===", &mut out), Err(DecodeError { at: 1 }));
    }
}
