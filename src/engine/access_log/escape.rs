//! Writing values into a line: nginx's escaping, JSON's (for `access_log_format=json`),
//! and the appends of fixed size that the frequent pieces of a line (short text, the
//! address, the time) use instead of memcpy.
//!
//! What must hold: [`escape`] writes `"`, `\`, control bytes and bytes above 0x7e as
//! `\xHH` and every other byte as it is; [`json_escape`] writes the same bytes as `\"`,
//! `\\` or `\u00HH` (a byte above 0x7f is taken as the Latin-1 character of that
//! number, as HTTP header values are), so that any value makes a valid JSON string of
//! ASCII alone; the word-at-a-time search for the first byte to escape agrees with the
//! byte table ([`PLAIN`]) at every offset.

/// Appends `bytes[..len]` by copying all `N` bytes, then cutting the length back: a
/// copy of constant size is a few stores, where one of variable size is a call to
/// memcpy, which for a line of short pieces would outweigh their formatting. The line's
/// room was reserved at its start.
pub(super) fn put<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N], len: usize) {
    let at = out.len();
    out.extend_from_slice(bytes);
    out.truncate(at + len);
}

/// The bytes [`escape`] writes as they are: a table rather than three comparisons per
/// byte.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// nginx's escaping: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
pub fn escape(v: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = v;
    // Runs of plain bytes are copied whole: most values have nothing to escape.
    while let Some(i) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// The inside of a JSON string (RFC 8259) for `v`: `"` and `\` escaped with a
/// backslash, control bytes, DEL and bytes above 0x7f as `\u00HH` (Latin-1, as
/// header values are decoded), every other byte as it is. The result is ASCII.
pub fn json_escape(v: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = v;
    while let Some(i) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        match rest[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// An IPv4 address in dotted decimal, built on the stack and appended in one copy.
pub(super) fn ipv4(octets: [u8; 4], out: &mut Vec<u8>) {
    let mut buf = [0u8; 16];
    let mut len = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if o >= 100 {
            buf[len] = b'0' + o / 100;
            len += 1;
        }
        if o >= 10 {
            buf[len] = b'0' + o / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + o % 10;
        len += 1;
    }
    put(out, &buf, len);
}

/// Where the first byte [`escape`] rewrites is: eight bytes at a time (a user agent
/// is a hundred bytes or more), then byte by byte.
fn first_to_escape(v: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A high bit in each byte that is zero (exact for the first such byte: a borrow
    // only marks bytes after it).
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut chunks = v.chunks_exact(8);
    for (n, chunk) in chunks.by_ref().enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above = (w.wrapping_add(ONES) | w) & HIGH; // 0x7f and up
        let quote = zero(w ^ (ONES * u64::from(b'"')));
        let backslash = zero(w ^ (ONES * u64::from(b'\\')));
        let marked = below | above | quote | backslash;
        if marked != 0 {
            return Some(n * 8 + (marked.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| !PLAIN[b as usize])
        .map(|i| v.len() - tail.len() + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_matches_the_byte_by_byte_rule() {
        let all: Vec<u8> = (0..=255u8).chain(b"plain text".iter().copied()).collect();
        let mut got = Vec::new();
        escape(&all, &mut got);
        let mut want = Vec::new();
        for &b in &all {
            if (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\' {
                want.push(b);
            } else {
                want.extend_from_slice(format!("\\x{b:02X}").as_bytes());
            }
        }
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }

    /// A JSON string literal read back (RFC 8259's grammar for one, by hand: the
    /// crate has no JSON parser), refusing what a parser would refuse.
    fn read_json_string(text: &str) -> String {
        let inner = text.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next().unwrap() {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        let n = u32::from_str_radix(&hex, 16).unwrap();
                        out.push(char::from_u32(n).unwrap());
                    }
                    other => panic!("escape \\{other} not written by json_escape"),
                },
                '"' => panic!("a bare quote ends the string early"),
                c if (c as u32) < 0x20 => panic!("a bare control character"),
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn json_escape_of_every_byte_is_ascii_and_reads_back_as_latin1() {
        let all: Vec<u8> = (0..=255u8).chain(b"plain text".iter().copied()).collect();
        let mut got = b"\"".to_vec();
        json_escape(&all, &mut got);
        got.push(b'"');
        assert!(got.is_ascii());
        let text = String::from_utf8(got).unwrap();
        let back = read_json_string(&text);
        let want: String = all.iter().map(|&b| char::from(b)).collect();
        assert_eq!(back, want);
        // The usual spellings, by hand.
        let mut out = Vec::new();
        json_escape(b"a\"b\\c\n\x7f\xe9", &mut out);
        assert_eq!(out, b"a\\\"b\\\\c\\u000a\\u007f\\u00e9");
    }

    #[test]
    fn ipv4_addresses() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.9.100.99", "192.168.1.20"] {
            let mut out = Vec::new();
            ipv4(ip.parse::<std::net::Ipv4Addr>().unwrap().octets(), &mut out);
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn the_first_byte_to_escape_at_every_place_of_a_word() {
        // Each byte value at each offset of two words, with plain bytes before it and
        // bytes that would mislead a careless word test after it.
        for b in 0..=255u8 {
            for at in 0..16 {
                for after in [b'a', 0x00, 0xff, 0x7f, b'"'] {
                    let mut v = vec![b'a'; 19];
                    v[at] = b;
                    v[at + 1..].iter_mut().step_by(3).for_each(|x| *x = after);
                    let want = v.iter().position(|&x| !PLAIN[x as usize]);
                    assert_eq!(first_to_escape(&v), want, "{b:#x} at {at}, then {after:#x}");
                }
            }
        }
    }
}
