//! The chunked transfer coding of request bodies (RFC 9112 section 7.1), decoded
//! incrementally and strictly: a resumable state machine over byte slices.

// Everything here runs on untrusted bytes: no indexing that can panic, no unchecked
// arithmetic.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::http::is_tchar;

/// How far one call to [`ChunkedDecoder::decode`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used. Bytes after the end of the chunked body are never used.
    pub consumed: usize,
    /// The last chunk and the trailer section have been read: the body is complete.
    pub done: bool,
}

/// A malformed chunked body; the message goes into the 400 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// Longest chunk-size line (size, extensions and CRLF) accepted. Extensions are ignored,
/// so this only stops a peer from making us read an endless line.
const MAX_SIZE_LINE: usize = 4096;

/// Largest trailer section (field lines and the final CRLF) accepted; trailers are dropped.
const MAX_TRAILER_SECTION: usize = 16 * 1024;

/// 16 hex digits fill a u64.
const MAX_SIZE_DIGITS: u8 = 16;

const INVALID_SIZE: ChunkError = ChunkError("Invalid chunk size");
const SIZE_TOO_LARGE: ChunkError = ChunkError("Chunk size too large");
// The texts are waitress's where it has the same error (a size line not ended by CRLF
// is, to waitress, a size with garbage in it).
const SIZE_CRLF: ChunkError = ChunkError("Invalid chunk size");
const INVALID_EXT: ChunkError = ChunkError("Invalid chunk extension");
const EXT_TOO_LONG: ChunkError = ChunkError("Chunk extension too long");
const DATA_CRLF: ChunkError = ChunkError("Chunk not properly terminated");
const INVALID_TRAILER: ChunkError = ChunkError("Invalid trailer");
const TRAILER_TOO_LONG: ChunkError = ChunkError("Trailer section too long");

/// Where the decoder is in `chunked-body`; each state names what the next byte may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// First digit of a chunk-size.
    SizeStart,
    /// Further digits of a chunk-size.
    Size,
    /// Whitespace after the size: only BWS before a `;` may follow.
    SizeWs,
    /// After `;` (BWS allowed): the first character of an ext-name.
    ExtNameStart,
    ExtName,
    /// Whitespace after an ext-name: `=` or the next `;` must follow.
    ExtNameWs,
    /// After `=` (BWS allowed): a token or a quoted-string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// After a backslash inside a quoted-string.
    ExtQuotedPair,
    /// After the closing quote.
    ExtQuotedEnd,
    /// Whitespace after an ext-value: only the next `;` may follow.
    ExtValueWs,
    /// After the CR ending the size line.
    SizeLf,
    /// Inside chunk data; `ChunkedDecoder::remaining` bytes are left.
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer field line, or of the final CRLF.
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// After the CR of the empty line that ends the body.
    EndLf,
    Done,
    /// A previous call failed; the body cannot be resynchronised.
    Failed(&'static str),
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk-size being read, then the data bytes of the chunk still to come.
    remaining: u64,
    size_digits: u8,
    size_line_len: usize,
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            size_digits: 0,
            size_line_len: 0,
            trailer_len: 0,
        }
    }

    /// Data bytes the chunk being read has declared and not yet delivered: its size as
    /// read so far while on the size line (more digits only make it larger), what is
    /// left of it inside its data, 0 elsewhere. A body that must grow by this much past
    /// a limit can be refused before its bytes arrive.
    pub fn pending_data(&self) -> u64 {
        use State::*;
        match self.state {
            Size | SizeWs | ExtNameStart | ExtName | ExtNameWs | ExtValueStart | ExtToken
            | ExtQuoted | ExtQuotedPair | ExtQuotedEnd | ExtValueWs | SizeLf | Data => {
                self.remaining
            }
            _ => 0,
        }
    }

    /// Decodes as much of `input` as possible, appending decoded body bytes to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, ChunkError> {
        let mut pos = 0usize;
        loop {
            match self.state {
                State::Done => {
                    return Ok(Progress {
                        consumed: pos,
                        done: true,
                    })
                }
                State::Failed(message) => return Err(ChunkError(message)),
                State::Data => {
                    let available = input.get(pos..).unwrap_or_default();
                    if available.is_empty() {
                        break;
                    }
                    let take = usize::try_from(self.remaining)
                        .map_or(available.len(), |r| r.min(available.len()));
                    out.extend_from_slice(available.get(..take).unwrap_or_default());
                    // take <= remaining, and take <= available.len() so pos + take <= input.len().
                    self.remaining = self.remaining.saturating_sub(take as u64);
                    pos = pos.saturating_add(take);
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let Some(&byte) = input.get(pos) else {
                        break;
                    };
                    pos = pos.saturating_add(1);
                    if let Err(err) = self.step(byte) {
                        self.state = State::Failed(err.0);
                        return Err(err);
                    }
                }
            }
        }
        Ok(Progress {
            consumed: pos,
            done: false,
        })
    }

    /// Consumes one byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        match self.state {
            SizeStart | Size | SizeWs | ExtNameStart | ExtName | ExtNameWs | ExtValueStart
            | ExtToken | ExtQuoted | ExtQuotedPair | ExtQuotedEnd | ExtValueWs | SizeLf => {
                self.size_line_len = self.size_line_len.saturating_add(1);
                if self.size_line_len > MAX_SIZE_LINE {
                    return Err(EXT_TOO_LONG);
                }
            }
            TrailerLineStart | TrailerName | TrailerValue | TrailerLf | EndLf => {
                self.trailer_len = self.trailer_len.saturating_add(1);
                if self.trailer_len > MAX_TRAILER_SECTION {
                    return Err(TRAILER_TOO_LONG);
                }
            }
            Data | DataCr | DataLf | Done | Failed(_) => {}
        }
        self.state = match (self.state, b) {
            (SizeStart, _) => {
                let digit = hex_value(b).ok_or(INVALID_SIZE)?;
                self.remaining = u64::from(digit);
                self.size_digits = 1;
                Size
            }
            (Size, b';') => ExtNameStart,
            (Size, b' ' | b'\t') => SizeWs,
            (Size, b'\r') => SizeLf,
            (Size, b'\n') => return Err(SIZE_CRLF),
            (Size, _) => {
                let digit = hex_value(b).ok_or(INVALID_SIZE)?;
                if self.size_digits >= MAX_SIZE_DIGITS {
                    return Err(SIZE_TOO_LARGE);
                }
                self.size_digits = self.size_digits.saturating_add(1);
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|v| v.checked_add(u64::from(digit)))
                    .ok_or(SIZE_TOO_LARGE)?;
                Size
            }
            (SizeWs, b' ' | b'\t') => SizeWs,
            (SizeWs, b';') => ExtNameStart,
            (SizeWs, _) => return Err(INVALID_SIZE),

            (ExtNameStart, b' ' | b'\t') => ExtNameStart,
            (ExtNameStart, _) if is_tchar(b) => ExtName,
            (ExtName, b'=') => ExtValueStart,
            (ExtName, b';') => ExtNameStart,
            (ExtName, b'\r') => SizeLf,
            (ExtName, b' ' | b'\t') => ExtNameWs,
            (ExtName, _) if is_tchar(b) => ExtName,
            (ExtNameWs, b' ' | b'\t') => ExtNameWs,
            (ExtNameWs, b'=') => ExtValueStart,
            (ExtNameWs, b';') => ExtNameStart,
            (ExtValueStart, b' ' | b'\t') => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart, _) if is_tchar(b) => ExtToken,
            (ExtToken, b';') => ExtNameStart,
            (ExtToken, b'\r') => SizeLf,
            (ExtToken, b' ' | b'\t') => ExtValueWs,
            (ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtQuoted, b'"') => ExtQuotedEnd,
            (ExtQuoted, b'\\') => ExtQuotedPair,
            (ExtQuoted, _) if is_qdtext(b) => ExtQuoted,
            (ExtQuotedPair, _) if is_quoted_pair_char(b) => ExtQuoted,
            (ExtQuotedEnd, b';') => ExtNameStart,
            (ExtQuotedEnd, b'\r') => SizeLf,
            (ExtQuotedEnd, b' ' | b'\t') => ExtValueWs,
            (ExtValueWs, b' ' | b'\t') => ExtValueWs,
            (ExtValueWs, b';') => ExtNameStart,
            (
                ExtNameStart | ExtName | ExtNameWs | ExtValueStart | ExtToken | ExtQuoted
                | ExtQuotedPair | ExtQuotedEnd | ExtValueWs,
                _,
            ) => return Err(INVALID_EXT),

            (SizeLf, b'\n') => {
                self.size_line_len = 0;
                if self.remaining == 0 {
                    self.trailer_len = 0;
                    TrailerLineStart
                } else {
                    Data
                }
            }
            (SizeLf, _) => return Err(SIZE_CRLF),

            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.size_digits = 0;
                SizeStart
            }
            (DataCr | DataLf, _) => return Err(DATA_CRLF),

            (TrailerLineStart, b'\r') => EndLf,
            (TrailerLineStart, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_field_value_char(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerLineStart,
            (EndLf, b'\n') => Done,
            (TrailerLineStart | TrailerName | TrailerValue | TrailerLf | EndLf, _) => {
                return Err(INVALID_TRAILER)
            }

            // decode() handles these without calling step().
            (Data | Done | Failed(_), _) => return Err(INVALID_SIZE),
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(b.wrapping_sub(b'a').wrapping_add(10)),
        b'A'..=b'F' => Some(b.wrapping_sub(b'A').wrapping_add(10)),
        _ => None,
    }
}

/// RFC 9110 qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// What may follow a backslash in a quoted-string: HTAB / SP / VCHAR / obs-text.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=0x7e | 0x80..=0xff)
}

/// Field value bytes: no control characters except HTAB.
fn is_field_value_char(b: u8) -> bool {
    is_quoted_pair_char(b)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    type Outcome = Result<(Vec<u8>, usize, bool), ChunkError>;

    fn whole(input: &[u8]) -> Outcome {
        let mut out = Vec::new();
        let progress = ChunkedDecoder::new().decode(input, &mut out)?;
        Ok((out, progress.consumed, progress.done))
    }

    /// Feeds `input[..at]`, then what the first call left unconsumed, as a connection would.
    fn split(input: &[u8], at: usize) -> Outcome {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let first = decoder.decode(&input[..at], &mut out)?;
        let second = decoder.decode(&input[first.consumed..], &mut out)?;
        Ok((out, first.consumed + second.consumed, second.done))
    }

    fn byte_by_byte(input: &[u8]) -> Outcome {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for i in 0..input.len() {
            let progress = decoder.decode(&input[i..=i], &mut out)?;
            consumed += progress.consumed;
            if progress.done {
                return Ok((out, consumed, true));
            }
            assert_eq!(progress.consumed, 1);
        }
        Ok((out, consumed, false))
    }

    /// Decodes `input` whole, split at every point and byte by byte, and checks that all
    /// agree before returning the result.
    fn decode_all_ways(input: &[u8]) -> Outcome {
        let expected = whole(input);
        for at in 0..=input.len() {
            assert_eq!(split(input, at), expected, "split at {at}");
        }
        assert_eq!(byte_by_byte(input), expected, "byte by byte");
        expected
    }

    fn body(input: &[u8], decoded: &[u8]) {
        let mut with_next = input.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        for bytes in [input, &with_next[..]] {
            assert_eq!(
                decode_all_ways(bytes),
                Ok((decoded.to_vec(), input.len(), true)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    fn invalid(input: &[u8], message: &'static str) {
        assert_eq!(
            decode_all_ways(input),
            Err(ChunkError(message)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn single_chunk() {
        body(b"5\r\nhello\r\n0\r\n\r\n", b"hello");
    }

    #[test]
    fn empty_body() {
        body(b"0\r\n\r\n", b"");
        body(b"000\r\n\r\n", b"");
    }

    #[test]
    fn many_chunks() {
        body(
            b"1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0005\r\nghijk\r\n0\r\n\r\n",
            b"abcdefghijk",
        );
    }

    #[test]
    fn hex_sizes() {
        let data: Vec<u8> = (0..=255u8).cycle().take(0x1f + 0xa + 0xab).collect();
        let mut input = b"1F\r\n".to_vec();
        input.extend_from_slice(&data[..0x1f]);
        input.extend_from_slice(b"\r\na\r\n");
        input.extend_from_slice(&data[0x1f..0x1f + 0xa]);
        input.extend_from_slice(b"\r\naB\r\n");
        input.extend_from_slice(&data[0x1f + 0xa..]);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        body(&input, &data);
    }

    #[test]
    fn large_chunk() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = format!("{:x}\r\n", data.len()).into_bytes();
        input.extend_from_slice(&data);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut out = Vec::new();
        let mut decoder = ChunkedDecoder::new();
        let mut pos = 0;
        // Arbitrary read sizes, as from a socket.
        for size in [1, 7, 4096, 65536, 3, 100_000].iter().cycle() {
            let end = (pos + size).min(input.len());
            let progress = decoder.decode(&input[pos..end], &mut out).unwrap();
            pos += progress.consumed;
            if progress.done {
                break;
            }
        }
        assert_eq!(pos, input.len());
        assert_eq!(out, data);
        assert_eq!(whole(&input), Ok((data, input.len(), true)));
    }

    #[test]
    fn extensions() {
        body(b"5;name\r\nhello\r\n0\r\n\r\n", b"hello");
        body(b"5 ; name = value\t;x\r\nhello\r\n0\r\n\r\n", b"hello");
        body(
            b"5;a=b;c=\"quoted \\\" str;\\\\\"\r\nhello\r\n0\r\n\r\n",
            b"hello",
        );
        body(
            b"5;a=\"\";b=\"\xe9\t\" ;c\r\nhello\r\n0;last=1\r\n\r\n",
            b"hello",
        );
        body(b"5;a=!#$%&'*+-.^_`|~09AZaz\r\nhello\r\n0\r\n\r\n", b"hello");
    }

    #[test]
    fn trailers() {
        body(
            b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n",
            b"hello",
        );
        body(b"0\r\nX:\tcaf\xe9 \x80 \t\r\n\r\n", b"");
    }

    #[test]
    fn done_consumes_nothing_more() {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let progress = decoder
            .decode(b"3\r\nabc\r\n0\r\n\r\nnext", &mut out)
            .unwrap();
        assert_eq!(
            progress,
            Progress {
                consumed: 13,
                done: true
            }
        );
        let progress = decoder.decode(b"more", &mut out).unwrap();
        assert_eq!(
            progress,
            Progress {
                consumed: 0,
                done: true
            }
        );
        assert_eq!(out, b"abc");
    }

    #[test]
    fn partial_is_not_done() {
        assert_eq!(whole(b"5\r\nhel"), Ok((b"hel".to_vec(), 6, false)));
        assert_eq!(
            whole(b"5\r\nhello\r\n0\r\n"),
            Ok((b"hello".to_vec(), 13, false))
        );
        assert_eq!(whole(b""), Ok((Vec::new(), 0, false)));
    }

    #[test]
    fn errors_stick() {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(decoder.decode(b"x", &mut out), Err(INVALID_SIZE));
        assert_eq!(decoder.decode(b"0\r\n\r\n", &mut out), Err(INVALID_SIZE));
    }

    #[test]
    fn invalid_sizes() {
        invalid(b"x\r\n", INVALID_SIZE.0);
        invalid(b"\r\n", INVALID_SIZE.0);
        invalid(b"+5\r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b"-5\r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b"0x5\r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b" 5\r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b"5 \r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b"5\t\r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b"5 5\r\nhello\r\n0\r\n\r\n", INVALID_SIZE.0);
        invalid(b"5g\r\n", INVALID_SIZE.0);
        invalid(b"00000000000000005\r\nhello\r\n0\r\n\r\n", SIZE_TOO_LARGE.0);
        invalid(b"1FFFFFFFFFFFFFFFF\r\n", SIZE_TOO_LARGE.0);
        invalid(b"5\nhello\r\n0\r\n\r\n", SIZE_CRLF.0);
        invalid(b"5\rhello\r\n0\r\n\r\n", SIZE_CRLF.0);
        invalid(b"0\n\r\n", SIZE_CRLF.0);
    }

    #[test]
    fn largest_size_is_accepted() {
        let mut out = Vec::new();
        let mut decoder = ChunkedDecoder::new();
        let progress = decoder
            .decode(b"FFFFFFFFFFFFFFFF\r\nabc", &mut out)
            .unwrap();
        assert_eq!(
            progress,
            Progress {
                consumed: 21,
                done: false
            }
        );
        assert_eq!(out, b"abc");
    }

    #[test]
    fn invalid_data_end() {
        invalid(b"5\r\nhelloX\r\n0\r\n\r\n", DATA_CRLF.0);
        invalid(b"5\r\nhello\n0\r\n\r\n", DATA_CRLF.0);
        invalid(b"5\r\nhello\r0\r\n\r\n", DATA_CRLF.0);
        invalid(b"5\r\nhello\r\r\n0\r\n\r\n", DATA_CRLF.0);
        invalid(b"5\r\nhello world\r\n0\r\n\r\n", DATA_CRLF.0);
    }

    #[test]
    fn invalid_extensions() {
        for ext in [
            &b";"[..],
            b"; ",
            b";=x",
            b";a=",
            b";a= ",
            b";a=\"unterminated",
            b";a=\"x\"y",
            b";a=\"\x01\"",
            b";a=\"\\\x7f\"",
            b";a b",
            b";a=b c",
            b";a ",
            b";a=b ",
            b";a=\"b\" ",
            b";a=b=c",
            b";a(b)",
            b";a=@",
            b";;a",
            b";a\x00",
        ] {
            let mut input = b"5".to_vec();
            input.extend_from_slice(ext);
            input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            invalid(&input, INVALID_EXT.0);
        }
        invalid(b"5;a\nhello\r\n0\r\n\r\n", INVALID_EXT.0);
    }

    #[test]
    fn extension_too_long() {
        let mut input = b"5;a=".to_vec();
        input.extend(std::iter::repeat(b'b').take(MAX_SIZE_LINE));
        input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(whole(&input), Err(EXT_TOO_LONG));
        assert_eq!(byte_by_byte(&input), Err(EXT_TOO_LONG));
        // Just within the bound (the line counts its CRLF).
        let mut input = b"5;a=".to_vec();
        input.extend(std::iter::repeat(b'b').take(MAX_SIZE_LINE - 6));
        input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(whole(&input), Ok((b"hello".to_vec(), input.len(), true)));
    }

    #[test]
    fn invalid_trailers() {
        for trailer in [
            &b"X Y: z\r\n"[..],
            b"X : z\r\n",
            b": z\r\n",
            b"X\r\n",
            b"X: a\x00b\r\n",
            b"X: a\x7fb\r\n",
            b"X: a\rb\r\n",
            b"X: a\nY: b\r\n",
            b"X: a\r\n b\r\n",
            b" X: a\r\n",
            b"X(y): a\r\n",
            b"\n",
            b"\rX",
        ] {
            let mut input = b"5\r\nhello\r\n0\r\n".to_vec();
            input.extend_from_slice(trailer);
            input.extend_from_slice(b"\r\n");
            invalid(&input, INVALID_TRAILER.0);
        }
    }

    #[test]
    fn trailers_too_long() {
        let mut input = b"0\r\n".to_vec();
        for _ in 0..20 {
            input.extend_from_slice(b"X: ");
            input.extend(std::iter::repeat(b'a').take(1000));
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(whole(&input), Err(TRAILER_TOO_LONG));
        assert_eq!(byte_by_byte(&input), Err(TRAILER_TOO_LONG));
    }

    /// Pseudo-random bodies built from the bytes that matter: nothing may panic, whole and
    /// byte-by-byte decoding agree, and done means the input was not overrun.
    #[test]
    fn no_panics() {
        let alphabet = b"\r\n \t;=\"\\:0123456789aAfFgx-\x00\x7f\xff";
        let mut next = crate::http::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut input = Vec::new();
            if next() % 2 == 0 {
                input.extend_from_slice(b"3\r\nabc\r\n");
            }
            for _ in 0..len {
                input.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let expected = whole(&input);
            if let Ok((_, consumed, _)) = &expected {
                assert!(*consumed <= input.len());
            }
            assert_eq!(byte_by_byte(&input), expected);
        }
    }
}
