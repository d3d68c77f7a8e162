//! The properties the fuzz targets check, shared by the libFuzzer binaries
//! (`fuzz_targets/`) and by the replay test (`tests/regressions.rs`), which runs every
//! saved input under `regressions/` and `seeds/` on the stable toolchain.
//!
//! Each check panics when a property is broken; libFuzzer reports the panic as a crash
//! and saves the input.
//!
//! - [`check_head`]: `parse_head` never panics; whatever it accepts is a well-formed,
//!   unambiguous request head (the security properties: no bare CR/LF, no control bytes,
//!   at most one framing header, Host rules); and the engine's incremental path
//!   (`scan::find_head_end` then `parse_head` on a growing buffer, as
//!   `engine::event_loop` does it) reaches the same verdict whatever the read sizes.
//! - [`check_chunked`]: `ChunkedDecoder` never panics; decoding whole, in arbitrary
//!   pieces and byte by byte agree; a finished body never consumes bytes after its end;
//!   and valid encodings built from the input decode to exactly their data.

use _maitre::http::chunked::ChunkedDecoder;
use _maitre::http::request::{parse_head, BodyKind, Limits, RequestHead, Version};
use _maitre::http::scan::find_head_end;

/// A tiny deterministic PRNG (xorshift64*), seeded from the input, for split points.
pub struct Rng(u64);

impl Rng {
    pub fn new(data: &[u8]) -> Rng {
        // FNV-1a of the input: the same input always splits the same way.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A piece length in 1..=max, biased towards small pieces.
    pub fn piece(&mut self, max: usize) -> usize {
        let max = max.max(1);
        let r = self.next();
        let len = match r % 4 {
            0 => 1,
            1 => (r >> 8) as usize % 8 + 1,
            2 => (r >> 8) as usize % 64 + 1,
            _ => (r >> 8) as usize % 4096 + 1,
        };
        len.min(max)
    }
}

// ----------------------------------------------------------------- request heads

/// The limits a head input is parsed with, chosen by its first byte (small ones make
/// the 431 paths reachable).
pub fn head_limits(selector: u8) -> Limits {
    let max_header_size = match selector & 3 {
        0 => 64,
        1 => 256,
        2 => 8192,
        _ => 262_144,
    };
    let max_body_size = match (selector >> 2) & 3 {
        0 => 0,
        1 => 10,
        2 => 1_000_000,
        _ => u64::MAX,
    };
    // Few fields allowed when the head may be large too: the 431 for the count is reached.
    let max_fields = if selector & 0x10 == 0 { 100 } else { 4 };
    Limits {
        max_header_size,
        max_body_size,
        max_fields,
    }
}

/// What the engine makes of a buffer.
#[derive(Debug)]
enum Verdict {
    Accept(Box<RequestHead>, usize),
    NeedMore,
    Reject(u16),
}

/// The engine's head state machine (`State::Head` in `engine::event_loop::consume`),
/// fed `buf` in the given pieces.
fn engine_head(buf: &[u8], pieces: &[usize], limits: &Limits) -> Verdict {
    let mut acc: Vec<u8> = Vec::with_capacity(buf.len());
    let mut scanned = 0usize;
    let mut pos = 0usize;
    for &len in pieces {
        let end = (pos + len).min(buf.len());
        acc.extend_from_slice(&buf[pos..end]);
        pos = end;
        match find_head_end(&acc, scanned) {
            Err(e) => return Verdict::Reject(e.status()),
            Ok(None) => {
                if acc.len() > limits.max_header_size {
                    return Verdict::Reject(431);
                }
                scanned = acc.len();
                continue;
            }
            Ok(Some(_)) => {}
        }
        match parse_head(&acc, limits) {
            Err(e) => return Verdict::Reject(e.status()),
            Ok(None) => scanned = acc.len(),
            Ok(Some((head, used))) => return Verdict::Accept(Box::new(head), used),
        }
    }
    Verdict::NeedMore
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn same_head(a: &RequestHead, b: &RequestHead) -> bool {
    a.buf == b.buf
        && a.method == b.method
        && a.target == b.target
        && a.version == b.version
        && a.headers == b.headers
        && a.body == b.body
        && a.keep_alive == b.keep_alive
        && a.expect_continue == b.expect_continue
}

/// Every property of an accepted head that a proxy in front relies on.
fn check_accepted(buf: &[u8], head: &RequestHead, consumed: usize, limits: &Limits) {
    assert!(consumed <= buf.len(), "consumed {consumed} > {}", buf.len());
    let start = consumed
        .checked_sub(head.buf.len())
        .expect("head longer than consumed");
    assert_eq!(
        &buf[start..consumed],
        &head.buf[..],
        "head.buf is not the input"
    );
    // Only empty lines may precede the request line.
    assert!(
        buf[..start].chunks(2).all(|c| c == b"\r\n"),
        "skipped bytes are not empty lines"
    );
    assert!(head.buf.ends_with(b"\r\n\r\n"));
    assert!(
        head.buf.len() <= limits.max_header_size,
        "accepted a head of {} bytes over max_header_size {}",
        head.buf.len(),
        limits.max_header_size
    );
    let field_lines = head.buf.iter().filter(|&&b| b == b'\n').count() - 2;
    assert!(
        field_lines <= limits.max_fields,
        "accepted {field_lines} field lines over max_fields {}",
        limits.max_fields
    );
    // RFC 9112 section 2.2: every CR starts a CRLF, every LF ends one; no other controls.
    for (i, &b) in head.buf.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(head.buf.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && head.buf[i - 1] == b'\r', "bare LF at {i}"),
            b'\t' => {}
            0x00..=0x1f | 0x7f => panic!("control byte {b:#x} at {i} accepted"),
            _ => {}
        }
    }
    // No obs-fold: no line starts with whitespace.
    for w in head.buf.windows(3) {
        assert!(
            !(w[0] == b'\r' && w[1] == b'\n' && (w[2] == b' ' || w[2] == b'\t')),
            "line starting with whitespace accepted"
        );
    }
    let method = head.method();
    assert!(!method.is_empty() && method.iter().all(|&b| is_tchar(b)));
    assert!(!method.iter().any(u8::is_ascii_lowercase));
    let target = head.target();
    assert!(!target.is_empty());
    assert!(target.iter().all(|&b| b > b' ' && b != 0x7f));

    let (mut hosts, mut cls, mut tes) = (0, Vec::new(), Vec::new());
    for h in &head.headers {
        let name = head.header_name(h);
        let value = head.header_value(h);
        assert!(!name.is_empty() && name.iter().all(|&b| is_tchar(b) && b != b'_'));
        assert!(!value.starts_with(b" ") && !value.starts_with(b"\t"));
        assert!(!value.ends_with(b" ") && !value.ends_with(b"\t"));
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            cls.push(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            tes.push(value);
        }
    }
    assert!(hosts <= 1, "several Host headers accepted");
    if head.version == Version::Http11 {
        assert_eq!(hosts, 1, "HTTP/1.1 without Host accepted");
    }
    // Request smuggling: exactly one way to find the end of the body.
    assert!(cls.len() <= 1, "several Content-Length headers accepted");
    assert!(tes.len() <= 1, "several Transfer-Encoding headers accepted");
    assert!(
        cls.is_empty() || tes.is_empty(),
        "Content-Length with Transfer-Encoding accepted"
    );
    match head.body {
        BodyKind::Chunked => {
            assert_eq!(head.version, Version::Http11, "TE on HTTP/1.0 accepted");
            assert!(tes[0].eq_ignore_ascii_case(b"chunked"), "TE {:?}", tes[0]);
        }
        BodyKind::Length(n) => {
            assert!(n > 0 && n <= limits.max_body_size);
            let cl = cls.first().expect("a length without Content-Length");
            assert!(cl.iter().all(u8::is_ascii_digit), "Content-Length {cl:?}");
            let parsed: u64 = std::str::from_utf8(cl).unwrap().parse().unwrap();
            assert_eq!(parsed, n);
        }
        BodyKind::Empty => {
            assert!(tes.is_empty());
            if let Some(cl) = cls.first() {
                assert!(!cl.is_empty() && cl.iter().all(|&b| b == b'0'), "{cl:?}");
            }
        }
    }

    // The verdict depends only on the head itself: the same bytes alone give the same
    // head, and no proper prefix is a complete head.
    match parse_head(&buf[..consumed], limits) {
        Ok(Some((again, used))) => {
            assert_eq!(used, consumed);
            assert!(same_head(head, &again), "{head:?} != {again:?}");
        }
        other => panic!("the head alone parses differently: {other:?}"),
    }
    if let Ok(Some(_)) = parse_head(&buf[..consumed - 1], limits) {
        panic!("a proper prefix of the head is a complete head");
    }
}

/// The request head property set; `data[0]` selects the limits, the rest is the input.
pub fn check_head(data: &[u8]) {
    let Some((&selector, buf)) = data.split_first() else {
        return;
    };
    let limits = head_limits(selector);
    if let Ok(Some((head, consumed))) = parse_head(buf, &limits) {
        check_accepted(buf, &head, consumed, &limits);
    }

    // The engine's path, whole and in pieces, reaches the same verdict.
    let whole = engine_head(buf, &[buf.len().max(1)], &limits);
    let mut rng = Rng::new(data);
    let mut pieces = Vec::new();
    let mut left = buf.len();
    while left > 0 {
        let n = rng.piece(left);
        pieces.push(n);
        left -= n;
    }
    let split = engine_head(buf, &pieces, &limits);
    for verdict in [&whole, &split] {
        if let Verdict::Reject(status) = verdict {
            assert!(
                [400, 413, 431, 501].contains(status),
                "refused with {status}"
            );
        }
    }
    match (&whole, &split) {
        (Verdict::Accept(a, ca), Verdict::Accept(b, cb)) => {
            assert_eq!(ca, cb, "consumed differs with pieces {pieces:?}");
            assert!(same_head(a, b), "head differs with pieces {pieces:?}");
            check_accepted(buf, a, *ca, &limits);
        }
        // A partial head may be refused sooner or later depending on the reads (the
        // engine runs the full checks only once it has seen an empty line): not a
        // difference in what is accepted.
        (Verdict::NeedMore | Verdict::Reject(_), Verdict::NeedMore | Verdict::Reject(_)) => {}
        _ => panic!("whole: {whole:?}, in pieces {pieces:?}: {split:?}"),
    }
    if let Verdict::Accept(_, consumed) = whole {
        // The engine accepted: parse_head on the whole buffer agrees.
        match parse_head(buf, &limits) {
            Ok(Some((_, used))) => assert_eq!(used, consumed),
            other => panic!("engine accepted, parse_head says {other:?}"),
        }
    }
}

// ------------------------------------------------------------------ chunked bodies

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    out: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<&'static str>,
}

/// Feeds `input` in `pieces` as the engine's `BodyReceiver` does: each read is offered
/// whole; the decoder uses all of it until the body is done.
fn decode_pieces(input: &[u8], pieces: &[usize]) -> Decoded {
    let mut decoder = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut consumed = 0usize;
    // The most the decoder ever promised the body would reach (decoded + pending data):
    // never more than it does reach, or the engine's early 413 for a chunk that cannot
    // fit would refuse a body that fits.
    let mut promised = 0u64;
    for &len in pieces {
        let end = (pos + len).min(input.len());
        let piece = &input[pos..end];
        pos = end;
        match decoder.decode(piece, &mut out) {
            Err(e) => {
                // How much an erroring call used is not reported: count none of it.
                return Decoded {
                    out,
                    consumed: 0,
                    done: false,
                    error: Some(e.0),
                };
            }
            Ok(p) => {
                assert!(p.consumed <= piece.len());
                consumed += p.consumed;
                promised = promised.max((out.len() as u64).saturating_add(decoder.pending_data()));
                if p.done {
                    assert!(
                        promised <= out.len() as u64,
                        "promised {promised} bytes, decoded {}",
                        out.len()
                    );
                    return Decoded {
                        out,
                        consumed,
                        done: true,
                        error: None,
                    };
                }
                assert_eq!(
                    p.consumed,
                    piece.len(),
                    "an unfinished body left bytes unused"
                );
            }
        }
    }
    Decoded {
        out,
        consumed,
        done: false,
        error: None,
    }
}

/// Splits `len` bytes into pieces drawn from `rng`.
fn random_pieces(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut pieces = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = rng.piece(left);
        pieces.push(n);
        left -= n;
    }
    pieces
}

/// Raw bytes through the decoder, whole, in pieces and byte by byte.
fn check_chunked_raw(input: &[u8], rng: &mut Rng) {
    let whole = decode_pieces(input, &[input.len().max(1)]);
    let pieces = random_pieces(rng, input.len());
    let split = decode_pieces(input, &pieces);
    assert_eq!(whole, split, "pieces {pieces:?}");
    if input.len() <= 2048 {
        let ones = vec![1; input.len()];
        assert_eq!(whole, decode_pieces(input, &ones), "byte by byte");
    }
    if whole.done {
        let body = &input[..whole.consumed];
        assert!(
            body.ends_with(b"\r\n"),
            "a finished body not ending in CRLF"
        );
        // The body alone decodes the same, and none of its prefixes is a finished body.
        let alone = decode_pieces(body, &[body.len()]);
        assert_eq!(alone, whole);
        let cut = decode_pieces(&body[..body.len() - 1], &[body.len() - 1]);
        assert!(!cut.done && cut.error.is_none(), "{cut:?}");
        assert!(whole.out.len() < whole.consumed);
    }
}

/// Extensions a conforming client may send (RFC 9112 section 7.1.1).
const VALID_EXTENSIONS: [&[u8]; 8] = [
    b"",
    b";a",
    b";name=value",
    b";n=\"quoted ; \\\" string\"",
    b" ; a = b",
    b";a;b=c;d=\"\"",
    b"\t;x=!#$%&'*+-.^_`|~",
    b";q=\"caf\xe9\"",
];

/// Trailer sections (after the last chunk's size line) a conforming client may send.
const VALID_TRAILERS: [&[u8]; 4] = [
    b"\r\n",
    b"X-Trailer: value\r\n\r\n",
    b"A: 1\r\nB:\r\nC: \t x y \t\r\n\r\n",
    b"Checksum: caf\xe9\r\n\r\n",
];

/// A valid chunked encoding built from `data`: must decode to exactly its chunks.
fn check_chunked_valid(data: &[u8], rng: &mut Rng) {
    let mut encoded = Vec::new();
    let mut expected = Vec::new();
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = usize::from(ctl % 64).min(tail.len());
        if len == 0 {
            rest = tail;
            continue;
        }
        let (chunk, after) = tail.split_at(len);
        rest = after;
        let size = if ctl & 0x40 != 0 {
            format!("{len:X}")
        } else {
            format!("{len:0width$x}", width = 1 + usize::from(ctl >> 7) * 3)
        };
        encoded.extend_from_slice(size.as_bytes());
        encoded.extend_from_slice(VALID_EXTENSIONS[(rng.next() % 8) as usize]);
        encoded.extend_from_slice(b"\r\n");
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
        expected.extend_from_slice(chunk);
    }
    encoded.extend_from_slice(b"0");
    encoded.extend_from_slice(VALID_EXTENSIONS[(rng.next() % 8) as usize]);
    encoded.extend_from_slice(b"\r\n");
    encoded.extend_from_slice(VALID_TRAILERS[(rng.next() % 4) as usize]);
    let body_len = encoded.len();
    // What follows belongs to the next request and must never be consumed.
    encoded.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let pieces = random_pieces(rng, encoded.len());
    let decoded = decode_pieces(&encoded, &pieces);
    let want = Decoded {
        out: expected,
        consumed: body_len,
        done: true,
        error: None,
    };
    assert_eq!(
        decoded,
        want,
        "{:?} in pieces {pieces:?}",
        String::from_utf8_lossy(&encoded)
    );
}

/// The chunked decoder property set. `data[0]` picks the mode: raw bytes, or a valid
/// encoding built from the rest.
pub fn check_chunked(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut rng = Rng::new(data);
    if mode & 1 == 0 {
        check_chunked_raw(rest, &mut rng);
    } else {
        check_chunked_valid(rest, &mut rng);
    }
}

// ------------------------------------------------------------- HTTP/2 frames, HPACK
//
// - [`check_h2_frame`]: `h2::frame::decode` never panics over a stream of frames; a frame
//   uses at most the input and at most 9 + SETTINGS_MAX_FRAME_SIZE bytes; a stream error
//   says how much to skip; a shorter prefix of a frame is never taken for a frame; and a
//   decoded frame, encoded again, decodes to the same frame.
// - [`check_hpack_decode`]: `h2::hpack::Decoder` never panics over a run of field blocks
//   with a small header-list limit; the fields it returns never add up to more than the
//   limit (even on error); its dynamic table never passes the advertised size; and what
//   it decodes, encoded by `h2::hpack::Encoder`, decodes again to the same fields.

use _maitre::h2::frame::{self as h2frame, Frame, FRAME_HEADER_LEN};
use _maitre::h2::hpack::{Decoder as HpackDecoder, Encoder as HpackEncoder, HeaderField, Indexing};
use _maitre::h2::H2Error;

/// A decoded frame with what a re-encoding does not keep (padding) normalised away.
fn normalised(frame: Frame<'_>) -> Frame<'_> {
    match frame {
        Frame::Data {
            stream_id,
            data,
            end_stream,
            ..
        } => Frame::Data {
            stream_id,
            data,
            end_stream,
            flow_len: data.len() as u32,
        },
        other => other,
    }
}

/// The frame decoder property set. `data[0]` picks SETTINGS_MAX_FRAME_SIZE; the rest is
/// decoded as a run of frames, as a connection would read them.
pub fn check_h2_frame(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let max = match selector & 3 {
        0 | 1 => h2frame::DEFAULT_MAX_FRAME_SIZE,
        2 => h2frame::DEFAULT_MAX_FRAME_SIZE * 4,
        _ => h2frame::MAX_MAX_FRAME_SIZE,
    };
    let mut rng = Rng::new(data);
    loop {
        match h2frame::decode(rest, max) {
            Ok(h2frame::Decoded::Partial) => {
                // Partial only when the frame is really incomplete.
                if let Some(head) = h2frame::FrameHeader::parse(rest) {
                    assert!(head.length <= max, "oversize frame reported as partial");
                    assert!(FRAME_HEADER_LEN + head.length as usize > rest.len());
                }
                return;
            }
            Ok(h2frame::Decoded::Complete(frame, used)) => {
                assert!(used <= rest.len(), "used {used} > {}", rest.len());
                assert!((FRAME_HEADER_LEN..=FRAME_HEADER_LEN + max as usize).contains(&used));
                // Any shorter prefix is partial.
                let cut = (rng.next() as usize) % used;
                assert_eq!(
                    h2frame::decode(&rest[..cut], max),
                    Ok(h2frame::Decoded::Partial)
                );
                if let Frame::Settings { params, .. } = frame {
                    assert_eq!(frame.settings().count() * 6, params.len());
                }
                // Round trip through the encoder.
                let mut encoded = Vec::new();
                frame.encode(&mut encoded);
                match h2frame::decode(&encoded, max) {
                    Ok(h2frame::Decoded::Complete(again, n)) => {
                        assert_eq!(n, encoded.len());
                        let want = match frame {
                            Frame::Unknown { .. } => frame,
                            _ => normalised(frame),
                        };
                        assert_eq!(again, want, "re-encoded frame differs");
                    }
                    other => panic!("re-encoded {frame:?} decodes to {other:?}"),
                }
                rest = &rest[used..];
            }
            Err(e) => match e.error {
                H2Error::Connection(_) => return,
                H2Error::Stream { stream_id, .. } => {
                    assert_ne!(stream_id, 0, "a stream error on stream 0");
                    assert!(e.consumed >= FRAME_HEADER_LEN && e.consumed <= rest.len());
                    rest = &rest[e.consumed..];
                }
            },
        }
    }
}

fn list_size(fields: &[HeaderField]) -> usize {
    fields.iter().map(HeaderField::size).sum()
}

/// Cuts the next field block off `rest`: a length byte (0xff: a 16-bit big-endian
/// length follows), then that many bytes (fewer at the end of the input).
fn next_block<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let (len, tail) = match *rest {
        [0xff, hi, lo, tail @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), tail),
        [len, tail @ ..] => (usize::from(*len), tail),
        [] => (0, &[][..]),
    };
    let (block, tail) = tail.split_at(len.min(tail.len()));
    *rest = tail;
    block
}

/// The HPACK decoder property set. `data[0]` picks the header-list limit (small, so the
/// limit is reached often), the advertised table size and whether the round trip uses
/// Huffman coding; the rest is a run of length-prefixed field blocks (`next_block`),
/// decoded one after another on one decoder.
pub fn check_hpack_decode(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let limit = [0, 64, 200, 1024, 4096, 16_384, 65_536, 1 << 20][usize::from(selector & 7)];
    let table_size = [0, 64, 256, 4096][usize::from((selector >> 3) & 3)];
    let mut decoder = HpackDecoder::new(table_size);
    // The round trip runs on its own pair of contexts, block after block.
    let mut encoder = HpackEncoder::new(table_size);
    encoder.set_huffman(selector & 0x20 == 0);
    let mut checker = HpackDecoder::new(table_size);
    let mut rest = rest;
    while !rest.is_empty() {
        let block = next_block(&mut rest);
        let mut fields = Vec::new();
        let result = decoder.decode(block, limit, &mut fields);
        assert!(
            list_size(&fields) <= limit,
            "decoded {} > limit {limit}",
            list_size(&fields)
        );
        let table = decoder.table();
        assert!(table.size() <= table.max_size() && table.max_size() <= table_size);
        let Ok(size) = result else {
            return;
        };
        assert_eq!(size, list_size(&fields));

        let mut encoded = Vec::new();
        for f in &fields {
            let indexing = if f.sensitive {
                Indexing::Never
            } else {
                Indexing::Incremental
            };
            encoder.encode_field(&f.name, &f.value, indexing, &mut encoded);
        }
        assert!(encoder.table().size() <= table_size);
        let mut again = Vec::new();
        checker
            .decode(&encoded, usize::MAX, &mut again)
            .expect("the encoder's block does not decode");
        assert_eq!(again, fields, "round trip through the encoder");
    }
}

// -------------------------------------------------------------- HTTP/2 connection
//
// - [`check_h2_conn`]: `h2::conn::Connection` fed the preface, a SETTINGS frame, then
//   arbitrary bytes in random read sizes, as the engine would (keeping what was not
//   used): it never panics; what it leaves unread is less than one frame; live streams
//   never pass SETTINGS_MAX_CONCURRENT_STREAMS; after a connection error every call
//   fails the same way; and everything it sends is well-formed frames.

use _maitre::h2::conn::{
    Config as H2Config, Connection as H2Connection, Event as H2Event, PREFACE,
};

pub fn check_h2_conn(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let config = H2Config {
        max_concurrent_streams: [1, 2, 100, 0][usize::from(selector & 3)],
        initial_window_size: [65_535, 100, 1 << 20, 0][usize::from((selector >> 2) & 3)],
        connection_window: [65_535, 1 << 20][usize::from((selector >> 4) & 1)],
        max_request_header_size: [64, 16_384][usize::from((selector >> 5) & 1)],
        max_header_list_size: [100, 65_536][usize::from((selector >> 6) & 1)],
        ..H2Config::default()
    };
    let max_streams = config.max_concurrent_streams as usize;
    let max_frame = config.max_frame_size as usize;
    let mut conn = H2Connection::new(config);
    let mut rng = Rng::new(data);
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(&[0, 0, 0, h2frame::kind::SETTINGS, 0, 0, 0, 0, 0]);
    input.extend_from_slice(rest);
    let mut buffered: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut failed = None;
    let mut out = conn.take_output();
    while pos < input.len() {
        let len = rng.piece(input.len() - pos);
        buffered.extend_from_slice(&input[pos..pos + len]);
        pos += len;
        let mut events = Vec::new();
        match conn.receive(&buffered, &mut events) {
            Ok(used) => {
                assert!(
                    failed.is_none(),
                    "receive succeeded after a connection error"
                );
                assert!(used <= buffered.len());
                buffered.drain(..used);
                assert!(
                    buffered.len() < FRAME_HEADER_LEN + max_frame,
                    "{} bytes left unread",
                    buffered.len()
                );
            }
            Err(e) => {
                assert!(matches!(e, H2Error::Connection(_)), "{e:?}");
                if let Some(first) = failed {
                    assert_eq!(e, first, "a different error after the first");
                }
                failed = Some(e);
            }
        }
        assert!(conn.open_streams() <= max_streams);
        // Act as the application: take every body byte at once, answer some requests.
        for event in events {
            match event {
                H2Event::Data { stream, bytes, .. } => conn.release(stream, bytes.len() as u32),
                H2Event::RequestHeaders { stream, .. } if stream % 3 == 0 => {
                    conn.send_headers(stream, [(&b":status"[..], &b"200"[..])], false);
                    conn.send_data(stream, b"body", true);
                }
                _ => {}
            }
        }
        out.extend(conn.take_output());
    }
    // Everything sent is a run of whole, valid frames (with the client's frame size).
    let mut sent = &out[..];
    while !sent.is_empty() {
        match h2frame::decode(sent, h2frame::MAX_MAX_FRAME_SIZE) {
            Ok(h2frame::Decoded::Complete(_, used)) => sent = &sent[used..],
            other => panic!("the connection sent {other:?}"),
        }
    }
}
