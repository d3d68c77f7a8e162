//! HPACK's two primitive types (RFC 7541 §5): integers with an N-bit prefix (§5.1) and
//! string literals, raw or Huffman-coded (§5.2).
//!
//! What must hold: decoding never reads past the block (a cut-off representation is an
//! error, since a field block arrives whole), integers are bounded (at most 2^32-1 and
//! five continuation bytes, so a run of 0x80 bytes cannot spin or overflow), and a
//! string is refused before it is copied when it cannot fit the caller's `max_len`.

use super::error::HpackError;
use super::huffman::{self, HuffmanError};

/// The largest integer accepted: lengths and indices beyond it mean nothing here.
const MAX_INT: u64 = u32::MAX as u64;
/// Continuation bytes allowed after the prefix: 5 × 7 bits cover `MAX_INT`.
const MAX_CONTINUATION: usize = 5;

/// Reads an integer whose first byte is `buf[*pos]` with a `prefix`-bit prefix (1..=8),
/// moving `pos` past it.
pub fn decode_int(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<u64, HpackError> {
    debug_assert!((1..=8).contains(&prefix));
    let mask = ((1u16 << prefix) - 1) as u8;
    let first = *buf.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok(value);
    }
    for i in 0..MAX_CONTINUATION {
        let b = *buf.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << (7 * i);
        if value > MAX_INT {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerOverflow)
}

/// Appends `value` with a `prefix`-bit prefix; `first` holds the bits above the prefix.
pub fn encode_int(value: usize, prefix: u8, first: u8, out: &mut Vec<u8>) {
    debug_assert!((1..=8).contains(&prefix));
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(first | value as u8);
        return;
    }
    out.push(first | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Reads a string literal (§5.2) at `buf[*pos]`, moving `pos` past it. Fails with
/// [`HpackError::HeaderListTooLarge`] when the decoded string would pass `max_len`,
/// checked before copying a raw string and while decoding a Huffman one.
pub fn decode_string(buf: &[u8], pos: &mut usize, max_len: usize) -> Result<Vec<u8>, HpackError> {
    let huff = *buf.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = decode_int(buf, pos, 7)?;
    let len = usize::try_from(len).map_err(|_| HpackError::IntegerOverflow)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = buf.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if !huff {
        if raw.len() > max_len {
            return Err(HpackError::HeaderListTooLarge);
        }
        return Ok(raw.to_vec());
    }
    // The shortest code is 5 bits: `raw` decodes to at most len * 8 / 5 bytes.
    let mut out = Vec::with_capacity((raw.len() * 8 / 5).min(max_len));
    huffman::decode(raw, max_len, &mut out).map_err(|e| match e {
        HuffmanError::Invalid => HpackError::Huffman,
        HuffmanError::TooLong => HpackError::HeaderListTooLarge,
    })?;
    Ok(out)
}

/// Appends a string literal, Huffman-coded when `huffman` is on and that is no longer
/// (as Appendix C does: at equal length either would do).
pub fn encode_string(s: &[u8], huffman: bool, out: &mut Vec<u8>) {
    if huffman {
        let hlen = huffman::encoded_len(s);
        if hlen <= s.len() {
            encode_int(hlen, 7, 0x80, out);
            huffman::encode(s, out);
            return;
        }
    }
    encode_int(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}
