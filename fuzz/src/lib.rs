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
//!   (`http::reader::HeadReader` on a growing buffer, eager as the event loop uses it
//!   and lazy as `wsgi::parser` does) reaches the same verdict whatever the read sizes.
//! - [`check_chunked`]: `ChunkedDecoder` never panics; decoding whole, in arbitrary
//!   pieces and byte by byte agree; a finished body never consumes bytes after its end;
//!   and valid encodings built from the input decode to exactly their data.
//! - [`check_proxy_header`]: `http::proxy::parse` never panics and is deterministic; an
//!   accepted header lies within the input (v1: at most 107 bytes, one CRLF-ended line,
//!   TCP4 lines canonical; v2: exactly 16 + its length field, addresses copied from the
//!   bytes), parses the same alone and is `Partial` at every shorter prefix; `Partial` is
//!   only answered below `MAX_LEN`; a verdict never changes as bytes are added; `Auto`
//!   agrees with the single versions; and valid headers built from the input (v1 TCP4,
//!   TCP6 in several spellings, UNKNOWN; v2 PROXY, LOCAL, UNIX, UNSPEC, with TLVs and
//!   CRC32C) parse to exactly what was built, taking exactly their bytes.

use _maitre::http::chunked::ChunkedDecoder;
use _maitre::http::proxy::{
    self, Accept, Local, ProxyError, ProxyHeader, Status, MAX_LEN, V1_MAX_LEN, V2_FIXED_LEN,
    V2_MAX_LEN, V2_SIGNATURE,
};
use _maitre::http::reader::HeadReader;
use _maitre::http::request::{parse_head, BodyKind, Limits, RequestHead, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// The server's head reader (`http::reader::HeadReader`, as `engine::event_loop` and
/// `wsgi::parser` use it), fed `buf` in the given pieces on a growing buffer.
fn engine_head(buf: &[u8], pieces: &[usize], limits: &Limits, mut reader: HeadReader) -> Verdict {
    let mut acc: Vec<u8> = Vec::with_capacity(buf.len());
    let mut pos = 0usize;
    for &len in pieces {
        let end = (pos + len).min(buf.len());
        acc.extend_from_slice(&buf[pos..end]);
        pos = end;
        match reader.read(&acc, limits) {
            Err(refused) => return Verdict::Reject(refused.error.status()),
            Ok(None) => {}
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

    // The engine's path, whole and in pieces, reaches the same verdict, with the eager
    // reader (the event loop's) and the lazy one (the Python-facing parser's).
    let mut rng = Rng::new(data);
    let mut pieces = Vec::new();
    let mut left = buf.len();
    while left > 0 {
        let n = rng.piece(left);
        pieces.push(n);
        left -= n;
    }
    for reader in [HeadReader::eager(), HeadReader::lazy()] {
        check_reader(buf, &pieces, &limits, reader);
    }
}

fn check_reader(buf: &[u8], pieces: &[usize], limits: &Limits, reader: HeadReader) {
    let whole = engine_head(buf, &[buf.len().max(1)], limits, reader);
    let split = engine_head(buf, pieces, limits, reader);
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
            check_accepted(buf, a, *ca, limits);
        }
        // A partial head may be refused sooner or later depending on the reads (the
        // engine runs the full checks only on its first look and once it has seen an
        // empty line): not a difference in what is accepted.
        (Verdict::NeedMore | Verdict::Reject(_), Verdict::NeedMore | Verdict::Reject(_)) => {}
        _ => panic!("whole: {whole:?}, in pieces {pieces:?}: {split:?}"),
    }
    if let Verdict::Accept(_, consumed) = whole {
        // The engine accepted: parse_head on the whole buffer agrees.
        match parse_head(buf, limits) {
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

// ------------------------------------------------------------------ PROXY headers

/// The versions a PROXY input is parsed with, chosen by its first byte.
pub fn proxy_accept(selector: u8) -> Accept {
    match selector % 3 {
        0 => Accept::V1,
        1 => Accept::V2,
        _ => Accept::Auto,
    }
}

/// The same complete verdict as `whole`, or no verdict yet.
fn same_or_partial(prefix: &Result<Status, ProxyError>, whole: &Result<Status, ProxyError>) {
    match (prefix, whole) {
        (Ok(Status::Partial), _) => {}
        (Ok(p @ Status::Complete { .. }), Ok(w)) => {
            assert_eq!(p, w, "a longer buffer changed the header")
        }
        (Err(_), Err(_)) => {}
        _ => panic!("a prefix answered {prefix:?}, the whole buffer {whole:?}"),
    }
}

/// Every property of an accepted header.
fn check_proxy_complete(buf: &[u8], consumed: usize, header: &ProxyHeader, accept: Accept) {
    assert!(consumed <= buf.len(), "consumed {consumed} > {}", buf.len());
    let head = &buf[..consumed];
    if head.starts_with(b"PROXY ") {
        assert!(consumed <= V1_MAX_LEN, "v1 header of {consumed} bytes");
        assert!(accept != Accept::V2);
        assert!(head.ends_with(b"\r\n"));
        let line = &head[..consumed - 2];
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "CR or LF inside the line"
        );
        match header {
            // Strict syntax makes TCP4 lines canonical: the header prints back to the input.
            ProxyHeader::Proxied {
                source: SocketAddr::V4(s),
                destination: SocketAddr::V4(d),
            } => {
                let text = format!(
                    "PROXY TCP4 {} {} {} {}\r\n",
                    s.ip(),
                    d.ip(),
                    s.port(),
                    d.port()
                );
                assert_eq!(text.as_bytes(), head, "TCP4 line is not canonical");
            }
            ProxyHeader::Proxied {
                source: SocketAddr::V6(s),
                destination: SocketAddr::V6(d),
            } => {
                let text = std::str::from_utf8(line).expect("TCP6 line not ASCII");
                let fields: Vec<&str> = text.split(' ').collect();
                assert_eq!(fields.len(), 6, "{text:?}");
                assert_eq!(fields[1], "TCP6");
                assert_eq!(fields[2].parse::<std::net::Ipv6Addr>().ok(), Some(*s.ip()));
                assert_eq!(fields[3].parse::<std::net::Ipv6Addr>().ok(), Some(*d.ip()));
                assert_eq!(fields[4], s.port().to_string());
                assert_eq!(fields[5], d.port().to_string());
                assert_eq!(s.flowinfo() | s.scope_id() | d.flowinfo() | d.scope_id(), 0);
            }
            ProxyHeader::Proxied { .. } => panic!("mixed families: {header:?}"),
            ProxyHeader::Local(why) => {
                assert_eq!(*why, Local::Unknown);
                assert!(line == b"PROXY UNKNOWN" || line.starts_with(b"PROXY UNKNOWN "));
            }
        }
    } else {
        assert!(head.starts_with(&V2_SIGNATURE), "neither signature");
        assert!(accept != Accept::V1);
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        assert_eq!(consumed, V2_FIXED_LEN + len, "v2 length field not honoured");
        assert!(consumed <= V2_MAX_LEN);
        assert_eq!(head[12] >> 4, 2);
        let (command, family, block) = (head[12] & 0x0f, head[13], &head[16..]);
        match header {
            ProxyHeader::Local(Local::Command) => assert_eq!(command, 0),
            ProxyHeader::Local(Local::Unknown) => panic!("UNKNOWN from a v2 header"),
            ProxyHeader::Local(Local::Unix) => {
                assert_eq!(command, 1);
                assert!(family == 0x31 || family == 0x32);
            }
            ProxyHeader::Local(Local::Unspecified) => {
                assert_eq!(command, 1);
                assert!(family >> 4 == 0 || family & 0x0f == 0, "{family:#x}");
            }
            ProxyHeader::Proxied {
                source,
                destination,
            } => {
                assert_eq!(command, 1);
                let (src, dst, ports) = match family {
                    0x11 | 0x12 => (&block[0..4], &block[4..8], &block[8..12]),
                    0x21 | 0x22 => (&block[0..16], &block[16..32], &block[32..36]),
                    _ => panic!("addresses from family {family:#x}"),
                };
                let octets = |a: &SocketAddr| match a.ip() {
                    IpAddr::V4(ip) => ip.octets().to_vec(),
                    IpAddr::V6(ip) => ip.octets().to_vec(),
                };
                assert_eq!(octets(source), src);
                assert_eq!(octets(destination), dst);
                assert_eq!(source.port().to_be_bytes(), ports[0..2]);
                assert_eq!(destination.port().to_be_bytes(), ports[2..4]);
            }
        }
    }
    // The header alone gives the same answer, and none of its prefixes any answer: fed
    // one byte at a time it is Partial until complete.
    let alone = proxy::parse(head, accept);
    assert_eq!(
        alone,
        Ok(Status::Complete {
            consumed,
            header: *header
        })
    );
    for k in 0..consumed {
        assert_eq!(
            proxy::parse(&buf[..k], accept),
            Ok(Status::Partial),
            "prefix {k}"
        );
    }
}

/// Raw bytes through the parser with one `accept`.
fn check_proxy_raw(buf: &[u8], accept: Accept, rng: &mut Rng) {
    let whole = proxy::parse(buf, accept);
    assert_eq!(whole, proxy::parse(buf, accept), "not deterministic");
    match &whole {
        Ok(Status::Partial) => {
            assert!(buf.len() < MAX_LEN, "Partial with {} bytes", buf.len());
            if buf.first() == Some(&b'P') {
                assert!(
                    buf.len() < V1_MAX_LEN,
                    "v1 Partial with {} bytes",
                    buf.len()
                );
            }
        }
        Ok(Status::Complete { consumed, header }) => {
            check_proxy_complete(buf, *consumed, header, accept)
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // Growing the buffer never changes a verdict once given: the first prefix that gets
    // one gets the whole buffer's (checked byte by byte up to it, then at random points).
    let mut decided = buf.len();
    for k in 0..=buf.len().min(MAX_LEN) {
        let prefix = proxy::parse(&buf[..k], accept);
        if prefix != Ok(Status::Partial) {
            same_or_partial(&prefix, &whole);
            decided = k;
            break;
        }
    }
    if decided < buf.len() {
        for _ in 0..4 {
            let k = decided + (rng.next() % (buf.len() - decided + 1) as u64) as usize;
            same_or_partial(&proxy::parse(&buf[..k], accept), &whole);
            assert_ne!(proxy::parse(&buf[..k], accept), Ok(Status::Partial));
        }
    }
}

/// CRC32C, written again here so the parser's is checked against an independent one.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Bytes drawn from the input, zeros once it runs out.
struct Draw<'a>(&'a [u8]);

impl Draw<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.bytes())
    }
}

/// A valid header built from the input, what it must parse to, and the accept modes that
/// take it.
fn build_proxy_header(draw: &mut Draw) -> (Vec<u8>, ProxyHeader) {
    let kind = draw.byte();
    match kind % 6 {
        0 => {
            let (s, d) = (
                Ipv4Addr::from(draw.bytes::<4>()),
                Ipv4Addr::from(draw.bytes::<4>()),
            );
            let (sp, dp) = (draw.u16(), draw.u16());
            let text = format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n");
            let header = ProxyHeader::Proxied {
                source: SocketAddr::from((s, sp)),
                destination: SocketAddr::from((d, dp)),
            };
            (text.into_bytes(), header)
        }
        1 => {
            let (s, d) = (
                Ipv6Addr::from(draw.bytes::<16>()),
                Ipv6Addr::from(draw.bytes::<16>()),
            );
            let (sp, dp) = (draw.u16(), draw.u16());
            // Compressed as Display writes it, or all eight groups, in either case.
            let style = draw.byte();
            let render = |ip: Ipv6Addr| {
                let text = if style & 1 == 0 {
                    ip.to_string()
                } else {
                    let g = ip.segments();
                    format!(
                        "{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}",
                        g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
                    )
                };
                if style & 2 == 0 {
                    text
                } else {
                    text.to_uppercase()
                }
            };
            let text = format!("PROXY TCP6 {} {} {sp} {dp}\r\n", render(s), render(d));
            let header = ProxyHeader::Proxied {
                source: SocketAddr::from((s, sp)),
                destination: SocketAddr::from((d, dp)),
            };
            (text.into_bytes(), header)
        }
        2 => {
            let mut line = b"PROXY UNKNOWN".to_vec();
            let extra = usize::from(draw.byte()) % (V1_MAX_LEN - line.len() - 2);
            if extra > 0 {
                line.push(b' ');
                for _ in 1..extra {
                    let b = draw.byte();
                    line.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
                }
            }
            line.extend_from_slice(b"\r\n");
            (line, ProxyHeader::Local(Local::Unknown))
        }
        _ => {
            let command = u8::from(kind % 6 != 3);
            let ctl = draw.byte();
            let (family, header) = if command == 0 {
                // LOCAL: any family, any block.
                (draw.byte(), ProxyHeader::Local(Local::Command))
            } else {
                match ctl % 6 {
                    0 | 1 => {
                        let family = 0x11 + ctl % 6;
                        let (s, d) = (
                            Ipv4Addr::from(draw.bytes::<4>()),
                            Ipv4Addr::from(draw.bytes::<4>()),
                        );
                        let (sp, dp) = (draw.u16(), draw.u16());
                        let h = ProxyHeader::Proxied {
                            source: SocketAddr::from((s, sp)),
                            destination: SocketAddr::from((d, dp)),
                        };
                        (family, h)
                    }
                    2 | 3 => {
                        let family = 0x21 + ctl % 6 - 2;
                        let (s, d) = (
                            Ipv6Addr::from(draw.bytes::<16>()),
                            Ipv6Addr::from(draw.bytes::<16>()),
                        );
                        let (sp, dp) = (draw.u16(), draw.u16());
                        let h = ProxyHeader::Proxied {
                            source: SocketAddr::from((s, sp)),
                            destination: SocketAddr::from((d, dp)),
                        };
                        (family, h)
                    }
                    4 => (0x31 + (ctl >> 7), ProxyHeader::Local(Local::Unix)),
                    _ => (0x00, ProxyHeader::Local(Local::Unspecified)),
                }
            };
            let mut block = Vec::new();
            match header {
                ProxyHeader::Proxied {
                    source,
                    destination,
                } => {
                    for a in [source, destination] {
                        match a.ip() {
                            IpAddr::V4(ip) => block.extend_from_slice(&ip.octets()),
                            IpAddr::V6(ip) => block.extend_from_slice(&ip.octets()),
                        }
                    }
                    block.extend_from_slice(&source.port().to_be_bytes());
                    block.extend_from_slice(&destination.port().to_be_bytes());
                }
                ProxyHeader::Local(Local::Unix) => {
                    block.extend((0..216).map(|_| draw.byte()));
                }
                _ => {}
            }
            // TLVs of input-chosen types and sizes (never a stray checksum), then maybe a
            // CRC32C over the whole header.
            for _ in 0..draw.byte() % 5 {
                let kind = match draw.byte() {
                    0x03 => 0x04,
                    k => k,
                };
                let len = usize::from(draw.byte()) * usize::from(draw.byte() % 4);
                block.push(kind);
                block.extend_from_slice(&(len as u16).to_be_bytes());
                block.extend((0..len).map(|_| draw.byte()));
            }
            let sealed = ctl & 0x40 != 0 && command == 1;
            if sealed {
                block.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
            }
            let mut h = V2_SIGNATURE.to_vec();
            h.push(0x20 | command);
            h.push(family);
            h.extend_from_slice(&(block.len() as u16).to_be_bytes());
            h.extend_from_slice(&block);
            if sealed {
                let n = h.len();
                let crc = crc32c(&h);
                h[n - 4..].copy_from_slice(&crc.to_be_bytes());
            }
            (h, header)
        }
    }
}

/// A valid header built from the input, followed by arbitrary bytes: parses to exactly
/// what was built, taking exactly its bytes, in every mode that accepts its version.
fn check_proxy_valid(rest: &[u8]) {
    let mut draw = Draw(rest);
    let (header_bytes, want) = build_proxy_header(&mut draw);
    let mut buf = header_bytes.clone();
    buf.extend_from_slice(draw.0);
    let v1 = header_bytes.starts_with(b"PROXY ");
    for accept in [Accept::V1, Accept::V2, Accept::Auto] {
        let verdict = proxy::parse(&buf, accept);
        let takes = match accept {
            Accept::V1 => v1,
            Accept::V2 => !v1,
            Accept::Auto => true,
        };
        if !takes {
            assert!(
                verdict.is_err(),
                "{accept:?} took the other version: {verdict:?}"
            );
            continue;
        }
        let complete = Status::Complete {
            consumed: header_bytes.len(),
            header: want,
        };
        assert_eq!(
            verdict,
            Ok(complete),
            "{:?}",
            String::from_utf8_lossy(&header_bytes)
        );
        check_proxy_complete(&buf, header_bytes.len(), &want, accept);
    }
}

/// The PROXY header property set. `data[0]`: the accept mode, and whether the rest is
/// raw bytes or builds a valid header.
pub fn check_proxy_header(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut rng = Rng::new(data);
    if selector & 0x80 != 0 {
        check_proxy_valid(rest);
        return;
    }
    let accept = proxy_accept(selector);
    check_proxy_raw(rest, accept, &mut rng);
    // Auto takes exactly what one of the single versions takes.
    let auto = proxy::parse(rest, Accept::Auto);
    let v1 = proxy::parse(rest, Accept::V1);
    let v2 = proxy::parse(rest, Accept::V2);
    if let Ok(Status::Complete { .. }) = auto {
        assert!(
            auto == v1 || auto == v2,
            "auto {auto:?}, v1 {v1:?}, v2 {v2:?}"
        );
    }
    for single in [&v1, &v2] {
        if let Ok(Status::Complete { .. }) = single {
            assert_eq!(&auto, single);
        }
        if *single == Ok(Status::Partial) {
            assert!(auto.is_ok(), "auto refused what a single version waits on");
        }
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
//   fails the same way and the connection names a cause; `send_data` takes what
//   `send_window` said; and everything it sends is well-formed frames. Request field
//   lists go through `h2::request::request_head` as the engine would, a refusal
//   resetting the stream.

use _maitre::h2::conn::{
    Config as H2Config, Connection as H2Connection, Event as H2Event, PREFACE,
};
use _maitre::h2::request::request_head as h2_request_head;

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
                assert!(conn.cause().is_some_and(|c| !c.is_empty()));
                assert!(conn.is_going_away());
            }
        }
        if failed.is_none() {
            assert_eq!(conn.cause(), None);
        }
        assert!(conn.open_streams() <= max_streams);
        // Act as the application: take every body byte at once, answer some requests.
        for event in events {
            match event {
                H2Event::Data { stream, bytes, .. } => conn.release(stream, bytes.len() as u32),
                H2Event::RequestHeaders {
                    stream,
                    fields,
                    end_stream,
                } => match h2_request_head(&fields, end_stream, &head_limits(selector)) {
                    Err(code) => conn.reset_stream(stream, code),
                    Ok(_) if stream % 3 == 0 => {
                        conn.send_headers(stream, [(&b":status"[..], &b"200"[..])], false);
                        let window = conn.send_window(stream) as usize;
                        assert_eq!(conn.send_data(stream, b"body", true), window.min(4));
                    }
                    Ok(_) => {}
                },
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

// ------------------------------------------------------------- HTTP/2 request rules
//
// - [`check_h2_request`]: `h2::request::parse_request` over field lists built from the
//   input never panics and agrees with `request_head`; an accepted head keeps every
//   rule of RFC 9113 §8.2–8.3 and the limits; its bytes, with `HTTP/1.x` for
//   `HTTP/2.0`, are accepted by `parse_head` as the same head (method, target, fields,
//   body framing); and `BodyCheck` accepts a body exactly when it matches the head.

use _maitre::h2::request::{parse_request, request_head, BodyCheck, Refusal};

/// Names a field list is mostly built from: the ones the rules single out.
const H2_NAMES: &[&[u8]] = &[
    b":method",
    b":scheme",
    b":path",
    b":authority",
    b":status",
    b":protocol",
    b"host",
    b"cookie",
    b"content-length",
    b"content-type",
    b"te",
    b"connection",
    b"transfer-encoding",
    b"upgrade",
    b"keep-alive",
    b"proxy-connection",
    b"x_forwarded_for",
    b"user-agent",
    b"accept",
    b"X-Upper",
    b"",
    b"expect",
];

/// Values a field list is mostly built from.
const H2_VALUES: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"CONNECT",
    b"OPTIONS",
    b"get",
    b"http",
    b"https",
    b"/",
    b"*",
    b"/a?b=c",
    b"",
    b"example.org",
    b"user@example.org",
    b"0",
    b"5",
    b"10",
    b"5, 5",
    b"trailers",
    b"gzip",
    b" x",
    b"x\t",
    b"a\0b",
    b"a b",
    b"100-continue",
];

/// One name or value: from `dict` (a byte below 0x80), or raw (0x80 | length, then
/// that many bytes).
fn h2_item<'a>(data: &mut &'a [u8], dict: &[&'a [u8]]) -> Vec<u8> {
    let Some((&k, rest)) = data.split_first() else {
        return Vec::new();
    };
    *data = rest;
    if k & 0x80 == 0 {
        return dict[usize::from(k) % dict.len()].to_vec();
    }
    let n = usize::from(k & 0x3f).min(data.len());
    let (raw, rest) = data.split_at(n);
    *data = rest;
    raw.to_vec()
}

/// The request rules property set. `data[0]`: END_STREAM on the HEADERS (bit 0), the
/// limits (the rest, as `head_limits`); then fields, a name and a value each.
pub fn check_h2_request(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let end_stream = selector & 1 == 1;
    let limits = head_limits(selector >> 1);
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let name = h2_item(&mut rest, H2_NAMES);
        let value = h2_item(&mut rest, H2_VALUES);
        fields.push(HeaderField {
            name,
            value,
            sensitive: false,
        });
    }
    let result = parse_request(&fields, end_stream, &limits);
    let code = request_head(&fields, end_stream, &limits).map(|h| h.buf);
    match (&result, &code) {
        (Ok(a), Ok(b)) => assert_eq!(&a.buf, b),
        (Err(r), Err(c)) => assert_eq!(r.code(), *c),
        _ => panic!("parse_request and request_head disagree"),
    }
    let head = match result {
        Ok(head) => head,
        Err(Refusal::Malformed(m) | Refusal::TooLarge(m)) => {
            assert!(!m.is_empty());
            return;
        }
        Err(_) => return,
    };
    // The head's own rules.
    assert_eq!(head.version, Version::Http2);
    assert!(head.keep_alive && !head.expect_continue);
    assert!(head.buf.len() <= limits.max_header_size);
    assert!(head.headers.len() <= limits.max_fields);
    assert!(head.buf.ends_with(b"\r\n\r\n"));
    let line = [head.method(), b" ", head.target(), b" HTTP/2.0\r\n"].concat();
    assert!(head.buf.starts_with(&line));
    assert!(head
        .method()
        .iter()
        .all(|&b| is_tchar(b) && !b.is_ascii_lowercase()));
    assert!(head.method() != b"CONNECT");
    let target = head.target();
    assert!(target.starts_with(b"/") || (target == b"*" && head.method() == b"OPTIONS"));
    let mut count = std::collections::HashMap::new();
    for h in &head.headers {
        let (name, value) = (head.header_name(h), head.header_value(h));
        assert!(!name.is_empty());
        assert!(name
            .iter()
            .all(|&b| is_tchar(b) && b != b'_' && !b.is_ascii_uppercase()));
        assert!(value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
        assert!(!value.starts_with(b" ") && !value.starts_with(b"\t"));
        assert!(!value.ends_with(b" ") && !value.ends_with(b"\t"));
        assert!(!matches!(
            name,
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
        ));
        if name == b"te" {
            assert!(value.eq_ignore_ascii_case(b"trailers"));
        }
        *count.entry(name.to_vec()).or_insert(0usize) += 1;
    }
    for once in [&b"host"[..], b"content-length", b"content-type", b"cookie"] {
        assert!(count.get(once).copied().unwrap_or(0) <= 1, "{once:?} twice");
    }
    let declared = head
        .header(b"content-length")
        .map(|v| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap());
    match head.body {
        BodyKind::Empty => {
            assert!(declared.unwrap_or(0) == 0 && (declared.is_some() || end_stream))
        }
        BodyKind::Length(n) => {
            assert!(declared == Some(n) && n > 0 && n <= limits.max_body_size && !end_stream)
        }
        BodyKind::Chunked => assert!(declared.is_none() && !end_stream),
    }

    // The same bytes as an HTTP/1 head: parse_head reads them the same way. HTTP/1.1
    // needs a Host; without one, HTTP/1.0.
    let mut h1 = head.buf.clone();
    let at = head.target.end + " HTTP/".len();
    let minor = if count.contains_key(&b"host"[..]) {
        b'1'
    } else {
        b'0'
    };
    h1[at..at + 3].copy_from_slice(&[b'1', b'.', minor]);
    match parse_head(&h1, &limits) {
        Ok(Some((again, used))) => {
            assert_eq!(used, h1.len());
            assert_eq!(
                (again.method, again.target),
                (head.method.clone(), head.target.clone())
            );
            assert_eq!(again.headers, head.headers);
            if head.body != BodyKind::Chunked {
                assert_eq!(again.body, head.body);
            }
        }
        other => panic!("parse_head refuses an accepted HTTP/2 head: {other:?}"),
    }

    // DATA sizes from the selector and the input length: BodyCheck accepts exactly a
    // body that matches the head.
    let mut body = BodyCheck::new(&head, &limits);
    let sizes = [data.len() % 7, usize::from(selector) % 5, 0];
    let mut total = 0u64;
    let mut ok = true;
    for (i, &n) in sizes.iter().enumerate() {
        total += n as u64;
        let last = i == sizes.len() - 1;
        let expect = match head.body {
            BodyKind::Empty => total == 0,
            BodyKind::Length(d) => total <= d && (!last || total == d),
            BodyKind::Chunked => total <= limits.max_body_size,
        };
        assert_eq!(
            body.data(n, last).is_ok(),
            expect,
            "{:?} after {total}",
            head.body
        );
        if !expect {
            ok = false;
            break;
        }
    }
    if ok {
        assert_eq!(body.received(), total);
    }
}
