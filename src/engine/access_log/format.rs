//! The format language: gunicorn's `access_log_format` (`%(h)s`, `%({x-request-id}i)s`,
//! ...) parsed once into pieces, and an [`Entry`] turned into the bytes of its line.
//! Pure: no I/O; the only clock is the [`Clock`] passed in.
//!
//! `json` instead of a format gives one JSON object per line ([`JSON_FIELDS`]: the atoms'
//! fields under long names), for log shippers that parse JSON.
//!
//! What must hold: an unknown atom is refused when the format is parsed, never met while
//! writing; every value taken from the request, the response or the environ goes through
//! [`escape`] (or [`json_escape`] in a JSON line), so a line ends only at its own newline
//! and a JSON line is one valid object of ASCII whatever the request carried.

use std::io::Write;

use super::clock::Clock;
use super::entry::{as_received, protocol, Entry, Seen};
use super::escape::{escape, ipv4, json_escape, put};

/// Bytes reserved before each line.
const LINE_ROOM: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    /// Text of up to eight bytes (the separators of the usual formats), for [`put`].
    Short([u8; 8], usize),
    /// One of gunicorn's one-letter atoms.
    Atom(u8),
    /// `{name}i`: a request header (lower-case name).
    RequestHeader(Vec<u8>),
    /// `{name}o`: a response header; the index into [`Entry::response_headers`].
    ResponseHeader(usize),
    /// `{key}e`: an environ value; the index into [`Entry::environ`].
    Environ(usize),
    /// An atom's value as a JSON value: a string, a number, or `null` when unknown.
    Json(u8),
}

const ATOMS: &[u8] = b"hlutrmUqHsBbfaTMDLp";

/// `access_log_format=json`: the key of each atom in the object, in its order. Left out
/// are `l` (always `-`), `b` (`B` with `-` for 0), and `T` and `M` (`D` in other units).
pub const JSON_FIELDS: &[(&str, u8)] = &[
    ("remote_addr", b'h'),
    ("remote_user", b'u'),
    ("time", b't'),
    ("request", b'r'),
    ("method", b'm'),
    ("path", b'U'),
    ("query", b'q'),
    ("protocol", b'H'),
    ("status", b's'),
    ("body_bytes", b'B'),
    ("referer", b'f'),
    ("user_agent", b'a'),
    ("duration", b'L'),
    ("duration_us", b'D'),
    ("pid", b'p'),
];

fn text_piece(text: Vec<u8>) -> Piece {
    if text.len() > 8 {
        return Piece::Text(text);
    }
    let mut short = [0; 8];
    short[..text.len()].copy_from_slice(&text);
    Piece::Short(short, text.len())
}

/// A parsed `access_log_format`.
#[derive(Debug, Clone)]
pub struct Format {
    pieces: Vec<Piece>,
    /// Response header names the format uses (lower case), in `ResponseHeader` order.
    pub response_headers: Vec<Vec<u8>>,
    /// Environ keys the format uses, in `Environ` order: only these are captured.
    pub environ_keys: Vec<String>,
}

impl Format {
    /// Parses gunicorn's syntax: `%(h)s`, `%({x-request-id}i)s`, `%%` for a percent sign;
    /// or `json`, for a JSON object per line.
    pub fn parse(spec: &str) -> Result<Format, String> {
        let mut f = Format {
            pieces: Vec::new(),
            response_headers: Vec::new(),
            environ_keys: Vec::new(),
        };
        if spec.trim() == "json" {
            for (i, (key, atom)) in JSON_FIELDS.iter().enumerate() {
                let open = if i == 0 { "{" } else { "," };
                f.pieces
                    .push(Piece::Text(format!("{open}\"{key}\":").into_bytes()));
                f.pieces.push(Piece::Json(*atom));
            }
            f.pieces.push(text_piece(b"}".to_vec()));
            return Ok(f);
        }
        let bytes = spec.as_bytes();
        let mut text = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                text.push(b);
                i += 1;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'%') {
                text.push(b'%');
                i += 2;
                continue;
            }
            if bytes.get(i + 1) != Some(&b'(') {
                return Err(format!("'%' at offset {i} starts no %(name)s atom"));
            }
            let close = bytes[i..]
                .windows(2)
                .position(|w| w == b")s")
                .ok_or_else(|| format!("atom at offset {i} does not end with ')s'"))?;
            let name = &spec[i + 2..i + close];
            i += close + 2;
            if name == "l" {
                // Always `-`: one piece of text with its neighbours.
                text.push(b'-');
                continue;
            }
            if !text.is_empty() {
                f.pieces.push(text_piece(std::mem::take(&mut text)));
            }
            let piece = f.atom(name)?;
            f.pieces.push(piece);
        }
        if !text.is_empty() {
            f.pieces.push(text_piece(text));
        }
        Ok(f)
    }

    fn atom(&mut self, name: &str) -> Result<Piece, String> {
        if let Some(rest) = name.strip_prefix('{') {
            let (key, kind) = rest
                .rsplit_once('}')
                .ok_or_else(|| format!("unknown atom %({name})s"))?;
            if key.is_empty() {
                return Err(format!("empty name in atom %({name})s"));
            }
            return match kind {
                "i" => Ok(Piece::RequestHeader(key.to_ascii_lowercase().into_bytes())),
                "o" => {
                    self.response_headers
                        .push(key.to_ascii_lowercase().into_bytes());
                    Ok(Piece::ResponseHeader(self.response_headers.len() - 1))
                }
                "e" => {
                    self.environ_keys.push(key.to_string());
                    Ok(Piece::Environ(self.environ_keys.len() - 1))
                }
                _ => Err(format!(
                    "unknown atom %({name})s (use {{header}}i, {{header}}o or {{key}}e)"
                )),
            };
        }
        match name.as_bytes() {
            [a] if ATOMS.contains(a) => Ok(Piece::Atom(*a)),
            _ => Err(format!(
                "unknown atom %({name})s (known: h l u t r m U q H s B b f a T M D L p, \
                 {{header}}i, {{header}}o, {{key}}e)"
            )),
        }
    }

    /// Appends the line for `e` to `out`, with its newline.
    pub fn write_line(&self, e: &Entry, clock: &mut Clock, out: &mut Vec<u8>) {
        // Room for a usual line at once, rather than growing on the way.
        out.reserve(LINE_ROOM);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Short(t, len) => put(out, t, *len),
                Piece::Atom(a) => atom(*a, e, clock, out),
                Piece::RequestHeader(name) => value(e.request.header(name), out),
                Piece::ResponseHeader(i) => {
                    value(e.response_headers.get(*i).and_then(|v| v.as_deref()), out)
                }
                Piece::Environ(i) => value(
                    e.environ
                        .get(*i)
                        .and_then(|v| v.as_deref())
                        .map(str::as_bytes),
                    out,
                ),
                Piece::Json(a) => json_atom(*a, e, clock, out),
            }
        }
        out.push(b'\n');
    }

    /// The line for `e` without its newline (for Python's logging).
    pub fn text(&self, e: &Entry) -> String {
        let mut line = Vec::with_capacity(256);
        self.write_line(e, &mut Clock::default(), &mut line);
        line.pop();
        String::from_utf8_lossy(&line).into_owned()
    }
}

/// Writes `v` escaped, or `-` when absent.
fn value(v: Option<&[u8]>, out: &mut Vec<u8>) {
    match v {
        Some(v) => escape(v, out),
        None => out.push(b'-'),
    }
}

fn num(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The value of the atoms taken from the request as it is (`m U q H f a`), if known.
fn field(a: u8, e: &Entry) -> Option<&[u8]> {
    let split = |target: &[u8]| match memchr::memchr(b'?', target) {
        Some(q) => q,
        None => target.len(),
    };
    let parts = || e.request.parts();
    match a {
        b'm' => parts().map(|(m, _, _)| m),
        b'U' => parts().map(|(_, t, _)| &t[..split(t)]),
        b'q' => parts().map(|(_, t, _)| t.get(split(t) + 1..).unwrap_or(b"")),
        b'H' => parts().map(|(_, _, p)| p),
        b'f' => e.request.header(b"referer"),
        b'a' => e.request.header(b"user-agent"),
        _ => None,
    }
}

/// Writes the request line (`r`) with `esc`; false, with nothing written, if unknown.
fn request_line(e: &Entry, esc: fn(&[u8], &mut Vec<u8>), out: &mut Vec<u8>) -> bool {
    match &e.request {
        Seen::Head(h) => match as_received(h) {
            Some(line) => esc(line, out),
            None => {
                esc(h.method(), out);
                out.push(b' ');
                esc(h.target(), out);
                out.push(b' ');
                out.extend_from_slice(protocol(h.version));
            }
        },
        Seen::Line(line) if !line.is_empty() => esc(line, out),
        Seen::Line(_) => return false,
    }
    true
}

/// Writes the numeric atoms (`s B T M D L`, and `p` without gunicorn's `<>`); false,
/// with nothing written, for the others.
fn number(a: u8, e: &Entry, out: &mut Vec<u8>) -> bool {
    match a {
        b's' => num(e.status as u64, out),
        b'B' => num(e.body_bytes, out),
        b'T' => num(e.took.as_secs(), out),
        b'M' => num(e.took.as_millis() as u64, out),
        b'D' => num(e.took.as_micros() as u64, out),
        b'L' => {
            let _ = write!(out, "{:.6}", e.took.as_secs_f64());
        }
        b'p' => num(std::process::id() as u64, out),
        _ => return false,
    }
    true
}

fn atom(a: u8, e: &Entry, clock: &mut Clock, out: &mut Vec<u8>) {
    match a {
        b'h' => match e.peer.map(|a| a.ip()) {
            Some(std::net::IpAddr::V4(ip)) => ipv4(ip.octets(), out),
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.push(b'-'),
        },
        b'l' => out.push(b'-'),
        b'u' => match basic_user(e.request.header(b"authorization")) {
            Some(user) => escape(&user, out),
            None => out.push(b'-'),
        },
        b't' => clock.write(e.received, out),
        b'r' => {
            if !request_line(e, escape, out) {
                out.push(b'-');
            }
        }
        b'm' | b'U' | b'q' | b'H' | b'f' | b'a' => value(field(a, e), out),
        b'b' => {
            if e.body_bytes == 0 {
                out.push(b'-')
            } else {
                num(e.body_bytes, out)
            }
        }
        b'p' => {
            out.push(b'<');
            num(std::process::id() as u64, out);
            out.push(b'>');
        }
        _ => {
            if !number(a, e, out) {
                out.push(b'-');
            }
        }
    }
}

/// An atom as a JSON value: numbers bare, text as a string of ASCII, `null` when the
/// value is unknown (a request refused before its line was read, no peer address).
fn json_atom(a: u8, e: &Entry, clock: &mut Clock, out: &mut Vec<u8>) {
    if number(a, e, out) {
        return;
    }
    let at = out.len();
    out.push(b'"');
    let known = match a {
        b'h' => match e.peer {
            Some(peer) => {
                let _ = write!(out, "{}", peer.ip());
                true
            }
            None => false,
        },
        b'u' => match basic_user(e.request.header(b"authorization")) {
            Some(user) => {
                json_escape(&user, out);
                true
            }
            None => false,
        },
        b't' => {
            // The Common Log Format's time without its brackets.
            clock.write(e.received, out);
            out.remove(at + 1);
            out.pop();
            true
        }
        b'r' => request_line(e, json_escape, out),
        _ => match field(a, e) {
            Some(v) => {
                json_escape(v, out);
                true
            }
            None => false,
        },
    };
    if known {
        out.push(b'"');
    } else {
        out.truncate(at);
        out.extend_from_slice(b"null");
    }
}

/// The user name of `Authorization: Basic ...`, as gunicorn's `u`.
fn basic_user(auth: Option<&[u8]>) -> Option<Vec<u8>> {
    let auth = auth?;
    let (scheme, rest) = auth.split_at(auth.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim_ascii())?;
    let user = match memchr::memchr(b':', &decoded) {
        Some(i) => decoded[..i].to_vec(),
        None => decoded,
    };
    Some(user)
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::access_log::entry::MAX_LOGGED_LINE;
    use crate::http::request::{parse_head, Limits};
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn entry(raw: &[u8]) -> Entry {
        let limits = Limits {
            max_header_size: 65536,
            max_body_size: 1 << 20,
            max_fields: 100,
        };
        let (head, _) = parse_head(raw, &limits)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap();
        Entry {
            request: Seen::Head(head),
            peer: Some("127.0.0.1:5555".parse().unwrap()),
            status: 200,
            body_bytes: 12,
            received: Instant::now(),
            took: Duration::from_micros(1_234_567),
            response_headers: vec![Some(b"abc".to_vec())],
            environ: vec![Some("x\"y".into()), None],
        }
    }

    fn line(spec: &str, e: &Entry) -> String {
        let f = Format::parse(spec).unwrap();
        let mut out = Vec::new();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        f.write_line(e, &mut Clock::at(e.received, wall), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_atom() {
        let e = entry(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\nUser-Agent: UA/1\r\nAuthorization: Basic dXNlcjpwdw==\r\nX-Id: 7\r\n\r\n");
        assert_eq!(
            line("%(h)s|%(l)s|%(u)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|%(T)s|%(M)s|%(D)s|%(L)s|%({x-id}i)s|%({X-Res}o)s|%({k}e)s|%({n}e)s|%%", &e),
            "127.0.0.1|-|user|GET /a/b?x=1 HTTP/1.1|GET|/a/b|x=1|HTTP/1.1|200|12|12|http://r/|UA/1|1|1234|1234567|1.234567|7|abc|x\\x22y|-|%\n"
        );
        let t = line("%(t)s", &e);
        assert!(t.starts_with('[') && t.contains("/Sep/2001:"), "{t}");
        assert_eq!(line("%(p)s", &e), format!("<{}>\n", std::process::id()));
    }

    #[test]
    fn values_cannot_forge_lines() {
        let e = entry(b"GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: a\" 200 1 \"\xff\\\tz\r\n\r\n");
        assert_eq!(
            line("\"%(a)s\"", &e),
            "\"a\\x22 200 1 \\x22\\xFF\\x5C\\x09z\"\n"
        );
    }

    #[test]
    fn a_refused_request_logs_what_is_known() {
        let e = |received: &[u8]| Entry {
            request: Seen::line_of(received),
            peer: None,
            status: 400,
            body_bytes: 0,
            received: Instant::now(),
            took: Duration::ZERO,
            response_headers: Vec::new(),
            environ: Vec::new(),
        };
        let all = "%(h)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(a)s|%({x}i)s|%(b)s";
        assert_eq!(
            line(all, &e(b"\r\nGET /a?b HTTP/1.1\r\nUser-Agent: u\r\n")),
            "-|GET /a?b HTTP/1.1|GET|/a|b|HTTP/1.1|-|-|-\n"
        );
        // Not a request line: logged escaped, and nothing is read into it.
        assert_eq!(
            line(
                "%(r)s|%(m)s|%(U)s|%(H)s",
                &e(b"\x16\x03 \"x\rz\nGET / HTTP/1.1\r\n")
            ),
            "\\x16\\x03 \\x22x\\x0Dz|-|-|-\n"
        );
        assert_eq!(line("%(r)s|%(m)s", &e(b"GET /no-end-yet")), "-|-\n");
        let long = [
            b"GET /".as_slice(),
            &[b'a'; MAX_LOGGED_LINE],
            b" HTTP/1.1\r\n",
        ]
        .concat();
        assert_eq!(line("%(r)s", &e(&long)), "-\n");
    }

    #[test]
    fn the_request_line_as_served() {
        // As received, or rebuilt when it was not sent as it is served.
        for (raw, want) in [
            (
                b"GET /a?b HTTP/1.0\r\n\r\n".as_slice(),
                "GET /a?b HTTP/1.0\n",
            ),
            (b"GET /a HTTP/1.2\r\nHost: h\r\n\r\n", "GET /a HTTP/1.1\n"),
        ] {
            assert_eq!(line("%(r)s", &entry(raw)), want);
        }
    }

    #[test]
    fn text_of_any_length_between_atoms() {
        let e = entry(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            line("12345678%(s)s123456789%(l)s%%é%(b)s", &e),
            "12345678200123456789-%é12\n"
        );
    }

    #[test]
    fn zero_bytes_is_a_dash_for_b() {
        let mut e = entry(b"HEAD / HTTP/1.0\r\n\r\n");
        e.body_bytes = 0;
        assert_eq!(line("%(b)s %(B)s %(H)s %(f)s", &e), "- 0 HTTP/1.0 -\n");
    }

    #[test]
    fn json_lines() {
        let e = entry(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\nUser-Agent: U\"A\\1\xe9\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n");
        let got = line("json", &e);
        let time = &got[got.find("\"time\":\"").unwrap() + 8..];
        let time = &time[..time.find('"').unwrap()];
        assert!(time.contains("/Sep/2001:") && !time.contains('['), "{time}");
        assert_eq!(
            got,
            format!(
                "{{\"remote_addr\":\"127.0.0.1\",\"remote_user\":\"user\",\"time\":\"{time}\",\
                 \"request\":\"GET /a/b?x=1 HTTP/1.1\",\"method\":\"GET\",\"path\":\"/a/b\",\
                 \"query\":\"x=1\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"body_bytes\":12,\
                 \"referer\":\"http://r/\",\"user_agent\":\"U\\\"A\\\\1\\u00e9\",\
                 \"duration\":1.234567,\"duration_us\":1234567,\"pid\":{}}}\n",
                std::process::id()
            )
        );
        // IPv6 peers, absent values as null.
        let mut e = entry(b"GET / HTTP/1.0\r\n\r\n");
        e.peer = Some("[::1]:5".parse().unwrap());
        let got = line("json", &e);
        assert!(got.starts_with("{\"remote_addr\":\"::1\",\"remote_user\":null,"));
        assert!(
            got.contains("\"referer\":null,\"user_agent\":null,"),
            "{got}"
        );
    }

    #[test]
    fn json_lines_of_any_bytes_are_ascii_objects() {
        // A refused request whose line holds every byte value, and no peer.
        let all: Vec<u8> = (0..=255u8).collect();
        let e = Entry {
            request: Seen::Line(all.clone()),
            peer: None,
            status: 400,
            body_bytes: 0,
            received: Instant::now(),
            took: Duration::ZERO,
            response_headers: Vec::new(),
            environ: Vec::new(),
        };
        let got = line(" json\n", &e);
        assert!(got.is_ascii() && got.ends_with("}\n"));
        assert_eq!(got.matches('\n').count(), 1);
        let mut request = Vec::new();
        json_escape(&all, &mut request);
        let request = String::from_utf8(request).unwrap();
        assert!(
            got.starts_with("{\"remote_addr\":null,\"remote_user\":null,\"time\":\""),
            "{got}"
        );
        assert!(
            got.contains(&format!(
                "\"request\":\"{request}\",\"method\":null,\"path\":null,\
                 \"query\":null,\"protocol\":null,\"status\":400,\"body_bytes\":0,"
            )),
            "{got}"
        );
    }

    #[test]
    fn bad_formats_are_refused() {
        for bad in ["%(z)s", "%(h", "%d", "%({x}q)s", "%({}i)s", "50%"] {
            assert!(Format::parse(bad).is_err(), "{bad}");
        }
        // The settings table's default (Apache combined, gunicorn's default).
        assert!(
            Format::parse(r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#).is_ok()
        );
    }
}
