//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B): encoding, and decoding with the
//! padding and EOS rules.
//!
//! The code of Appendix B is canonical (codes of one length are consecutive numbers,
//! assigned in symbol order, each length starting where the shorter ones left off), so
//! the table below holds only the 257 code lengths and the codes are rebuilt from them at
//! compile time. A test checks the result against codes from the appendix, and every
//! Huffman vector of Appendix C goes through it.
//!
//! What must hold when decoding (§5.2): the padding after the last symbol is at most 7
//! bits and all ones (a prefix of EOS); a longer padding, a padding with a zero bit, or
//! the EOS symbol itself in the string is a decoding error. The output never grows past
//! the caller's `max_len`, which is how the header-list limit reaches inside a string.

/// Code length in bits of each symbol: the 256 octets, then EOS.
#[rustfmt::skip]
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,];

const EOS: usize = 256;
const MAX_LEN: usize = 30;

/// The canonical code of each symbol, right-aligned in its length.
const CODES: [u32; 257] = build_codes();

/// Canonical-decoding tables: for each length, the first code of that length, how many
/// codes have it, and where its symbols start in [`SORTED`].
struct Canon {
    first_code: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    first_index: [u16; MAX_LEN + 1],
    sorted: [u16; 257],
}

const CANON: Canon = build_canon();

const fn build_canon() -> Canon {
    let mut count = [0u32; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first_code = [0u32; MAX_LEN + 1];
    let mut first_index = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut index = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        code <<= 1;
        first_code[len] = code;
        first_index[len] = index;
        code += count[len];
        index += count[len] as u16;
        len += 1;
    }
    // Symbols in (length, symbol) order: the order canonical codes are handed out in.
    let mut sorted = [0u16; 257];
    let mut next = first_index;
    let mut s = 0;
    while s < 257 {
        let l = LENGTHS[s] as usize;
        sorted[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Canon {
        first_code,
        count,
        first_index,
        sorted,
    }
}

const fn build_codes() -> [u32; 257] {
    let canon = build_canon();
    let mut codes = [0u32; 257];
    let mut i = 0;
    while i < 257 {
        let s = canon.sorted[i] as usize;
        let l = LENGTHS[s] as usize;
        codes[s] = canon.first_code[l] + (i as u32 - canon.first_index[l] as u32);
        i += 1;
    }
    codes
}

/// A Huffman string that §5.2 forbids, or one decoding to more than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HuffmanError {
    /// Padding longer than 7 bits or not all ones, or EOS in the string.
    Invalid,
    /// The decoded string would pass `max_len`.
    TooLong,
}

/// The length in bytes of `src` Huffman-encoded.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&b| usize::from(LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}

/// Appends `src` Huffman-encoded, padded with the most significant bits of EOS (ones).
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(src));
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &b in src {
        let len = u32::from(LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODES[usize::from(b)]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
}

/// Appends the decoding of `src` to `out`, failing once the decoded string would pass
/// `max_len` bytes (nothing past that is written).
pub fn decode(src: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let start = out.len();
    // The code read so far and its length; a symbol is found when the code falls in the
    // range of codes of that length.
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for &byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let offset = code.wrapping_sub(CANON.first_code[len]);
            if offset < CANON.count[len] {
                let sym = usize::from(
                    CANON.sorted[usize::from(CANON.first_index[len]) + offset as usize],
                );
                if sym == EOS {
                    return Err(HuffmanError::Invalid);
                }
                if out.len() - start >= max_len {
                    return Err(HuffmanError::TooLong);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            } else if len >= MAX_LEN {
                // Unreachable for a complete code (EOS is the longest), kept as a guard.
                return Err(HuffmanError::Invalid);
            }
        }
    }
    // Padding: at most 7 bits, all ones.
    if len > 7 || code != (1 << len) - 1 {
        return Err(HuffmanError::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_appendix_b() {
        // (symbol, code, length) rows of Appendix B, spread over the lengths.
        for (sym, code, len) in [
            (0usize, 0x1ff8u32, 13u8),
            (b'\n' as usize, 0x3fff_fffc, 30),
            (b'\r' as usize, 0x3fff_fffd, 30),
            (b' ' as usize, 0x14, 6),
            (b'0' as usize, 0x0, 5),
            (b'A' as usize, 0x21, 6),
            (b'a' as usize, 0x3, 5),
            (b'{' as usize, 0x7ffe, 15),
            (255, 0x3ff_ffee, 26),
            (EOS, 0x3fff_ffff, 30),
        ] {
            assert_eq!((CODES[sym], LENGTHS[sym]), (code, len), "symbol {sym}");
        }
        // A complete prefix code: the Kraft sum is exactly 1.
        let kraft: u64 = LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN - usize::from(l)))
            .sum();
        assert_eq!(kraft, 1 << MAX_LEN);
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        assert_eq!(enc.len(), encoded_len(&all));
        let mut dec = Vec::new();
        decode(&enc, usize::MAX, &mut dec).unwrap();
        assert_eq!(dec, all);
    }

    #[test]
    fn padding_and_eos_rules() {
        let d = |bytes: &[u8]| {
            let mut out = Vec::new();
            decode(bytes, usize::MAX, &mut out).map(|()| out)
        };
        assert_eq!(d(&[]), Ok(vec![]));
        // "0" is 00000, then three bits of padding.
        assert_eq!(d(&[0b0000_0111]), Ok(b"0".to_vec()));
        assert_eq!(
            d(&[0b0000_0000]),
            Err(HuffmanError::Invalid),
            "padding with zeros"
        );
        assert_eq!(
            d(&[0b0000_0110]),
            Err(HuffmanError::Invalid),
            "padding not all ones"
        );
        assert_eq!(
            d(&[0b0000_0111, 0xff]),
            Err(HuffmanError::Invalid),
            "11 bits of padding"
        );
        assert_eq!(d(&[0xff]), Err(HuffmanError::Invalid), "8 bits of padding");
        assert_eq!(
            d(&[0xff, 0xff, 0xff, 0xff]),
            Err(HuffmanError::Invalid),
            "EOS"
        );
        // A 13-bit code cut after 8 bits ("\0" is 0x1ff8 = 1111111111000).
        assert_eq!(d(&[0xff]), Err(HuffmanError::Invalid));
    }

    #[test]
    fn output_is_bounded() {
        let mut enc = Vec::new();
        encode(b"www.example.com", &mut enc);
        let mut out = Vec::new();
        assert_eq!(decode(&enc, 3, &mut out), Err(HuffmanError::TooLong));
        assert_eq!(out, b"www");
        out.clear();
        assert_eq!(decode(&enc, 15, &mut out), Ok(()));
    }
}
