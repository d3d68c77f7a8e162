//! The request rules of RFC 9113 §8.1–8.3: a decoded HTTP/2 field list checked and
//! rebuilt into the server's request type, [`crate::http::request::RequestHead`], so that
//! everything after the head (environ, access log, body readers) handles an HTTP/2
//! request exactly as an HTTP/1.1 one.
//!
//! - [`request_head`]: the field list of a new stream → a head, or the RST_STREAM code.
//!   [`parse_request`] is the same with a [`Refusal`] that also says which HTTP status
//!   would answer it (§8.1.1 lets a server answer a malformed request before resetting).
//! - [`BodyCheck`]: a declared content-length against the DATA that arrives (§8.1.1),
//!   and `max_body_size` for a body of unknown length.
//! - [`check_trailers`]: the rules a trailer section must keep (§8.1).
//!
//! The rebuilt head: `buf` is `"{method} {path} HTTP/2.0\r\n"`, one `name: value\r\n` line
//! per regular field, then `\r\n`. `:authority` becomes the first line, `host` (a `host`
//! field sent beside it is dropped, §8.3.1); `cookie` crumbs are joined with "; " into
//! one line where the first was (§8.2.3); a repeated identical content-length is kept
//! once; names containing `_` are dropped, as `parse_head` drops them.
//!
//! What must hold: no field list makes this panic; an accepted head never holds NUL, CR,
//! LF or another control byte but HTAB, a name that is not a lowercase token, a
//! connection-specific field, more than one Host or Content-Type, nor a body framing that
//! disagrees with its content-length; and it stays within the same `Limits` as an
//! HTTP/1 head (`max_fields`, `max_header_size`, `max_body_size`).

// Everything here runs on untrusted bytes: no indexing that can panic, no unchecked
// arithmetic.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::ops::Range;

use super::error::ErrorCode;
use super::hpack::HeaderField;
use crate::http::is_tchar;
use crate::http::request::{
    is_host_char, is_other_control, parse_content_length, BodyKind, Header, Limits, RequestError,
    RequestHead, Version,
};

/// Why a request's field list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (§8.1.1), or refused as `parse_head` refuses the HTTP/1 equivalent:
    /// a stream error PROTOCOL_ERROR, or a 400 response.
    Malformed(&'static str),
    /// More than `max_fields` fields, or a head over `max_header_size`: a 431 response,
    /// or RST_STREAM ENHANCE_YOUR_CALM.
    TooLarge(&'static str),
    /// A content-length over `max_body_size`, or more body than it: a 413 response, or
    /// RST_STREAM ENHANCE_YOUR_CALM.
    BodyTooLarge,
    /// A well-formed CONNECT (§8.5): no tunnels here. A 501 response, or RST_STREAM
    /// CONNECT_ERROR.
    Connect,
}

impl Refusal {
    /// The RST_STREAM code.
    ///
    /// Malformed: PROTOCOL_ERROR, as §8.1.1 requires. Over a limit: ENHANCE_YOUR_CALM,
    /// not PROTOCOL_ERROR (the request is well-formed; the client is not buggy, it asks
    /// for more than this server gives) and not REFUSED_STREAM (which promises the
    /// request may be retried as it is, and it would fail again). CONNECT: CONNECT_ERROR
    /// (§8.5, the code a proxy resets a tunnel it cannot give with), so the client
    /// reports a failed tunnel rather than a protocol bug of its own.
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::Malformed(_) => ErrorCode::PROTOCOL_ERROR,
            Refusal::TooLarge(_) | Refusal::BodyTooLarge => ErrorCode::ENHANCE_YOUR_CALM,
            Refusal::Connect => ErrorCode::CONNECT_ERROR,
        }
    }

    /// The HTTP status that answers the request, when the engine answers rather than
    /// resets (400, 431, 413, 501: what `parse_head` answers in the same case).
    pub fn status(self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::TooLarge(_) => 431,
            Refusal::BodyTooLarge => 413,
            Refusal::Connect => 501,
        }
    }

    /// What was wrong, for a log line or a response body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Malformed(m) | Refusal::TooLarge(m) => m,
            Refusal::BodyTooLarge => "body larger than max_body",
            Refusal::Connect => "CONNECT is not supported",
        }
    }

    /// The HTTP/1 error with the same status, for the engine's existing error responses.
    pub fn request_error(self, limits: &Limits) -> RequestError {
        match self {
            Refusal::Malformed(m) => RequestError::BadRequest(m.to_owned()),
            Refusal::TooLarge(m) => RequestError::HeaderTooLarge(m.to_owned()),
            Refusal::BodyTooLarge => {
                RequestError::BodyTooLarge(format!("exceeds max_body of {}", limits.max_body_size))
            }
            Refusal::Connect => RequestError::NotImplemented(self.message().to_owned()),
        }
    }
}

/// The head of the request a new stream's field list carries (`end_stream`: its HEADERS
/// frame ended the stream, so no body follows).
///
/// Err is the RST_STREAM code to send: PROTOCOL_ERROR for a malformed request,
/// ENHANCE_YOUR_CALM past `limits` (more than `max_fields` fields: the engine resets
/// the stream, or answers 431 with [`parse_request`]), CONNECT_ERROR for CONNECT. Every
/// one is a stream error: the connection goes on.
pub fn request_head(
    fields: &[HeaderField],
    end_stream: bool,
    limits: &Limits,
) -> Result<RequestHead, ErrorCode> {
    parse_request(fields, end_stream, limits).map_err(Refusal::code)
}

/// [`request_head`] with the reason kept: [`Refusal::status`] lets the engine answer
/// with an HTTP error response, [`Refusal::message`] lets it log why.
pub fn parse_request(
    fields: &[HeaderField],
    end_stream: bool,
    limits: &Limits,
) -> Result<RequestHead, Refusal> {
    let seen = Seen::gather(fields)?;
    let method = seen.method.ok_or(Refusal::Malformed("missing :method"))?;
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Refusal::Malformed(":method is not a token"));
    }
    // Like parse_head (and waitress): refuse `get` rather than let an application take
    // it for GET.
    if method.iter().any(u8::is_ascii_lowercase) {
        return Err(Refusal::Malformed("lowercase :method"));
    }
    if method == b"CONNECT" {
        // §8.5: only :authority; with :scheme or :path it is malformed, and an extended
        // CONNECT (:protocol, RFC 8441) was already refused as an unknown pseudo-header
        // since SETTINGS_ENABLE_CONNECT_PROTOCOL is never sent.
        if seen.scheme.is_some() || seen.path.is_some() {
            return Err(Refusal::Malformed("CONNECT with :scheme or :path"));
        }
        if seen.authority.is_none() {
            return Err(Refusal::Malformed("CONNECT without :authority"));
        }
        return Err(Refusal::Connect);
    }
    let scheme = seen.scheme.ok_or(Refusal::Malformed("missing :scheme"))?;
    if !is_scheme(scheme) {
        return Err(Refusal::Malformed(":scheme is invalid"));
    }
    let path = seen.path.ok_or(Refusal::Malformed("missing :path"))?;
    check_path(method, path)?;
    match (seen.authority, seen.hosts) {
        (Some(host), _) | (None, Hosts::One(host)) => {
            // §8.3.1: no userinfo in :authority; the Host rules of parse_head.
            if !host.iter().all(|&b| is_host_char(b)) {
                return Err(Refusal::Malformed("Host header is invalid"));
            }
        }
        (None, Hosts::Many) => return Err(Refusal::Malformed("Multiple Host headers")),
        (None, Hosts::None) => {}
    }
    let lines = seen
        .lines
        .saturating_add(usize::from(seen.authority.is_some()))
        .saturating_sub(if seen.authority.is_some() {
            seen.host_lines
        } else {
            0
        });
    if lines > limits.max_fields {
        return Err(Refusal::TooLarge(
            "more header fields than max_request_headers",
        ));
    }
    let body = match seen.content_length {
        // §8.1.1: a content-length that the DATA frames (none here) do not add up to.
        Some(n) if end_stream && n > 0 => {
            return Err(Refusal::Malformed("content-length with no body"));
        }
        Some(n) if n > limits.max_body_size => return Err(Refusal::BodyTooLarge),
        Some(0) => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
        None if end_stream => BodyKind::Empty,
        // The length is known at END_STREAM only, as for a chunked HTTP/1 body.
        None => BodyKind::Chunked,
    };
    let head = build(fields, method, path, seen.authority, body)?;
    if head.buf.len() > limits.max_header_size {
        return Err(Refusal::TooLarge("header larger than max_header"));
    }
    Ok(head)
}

/// How many `host` fields a list has (the first one kept).
#[derive(Clone, Copy)]
enum Hosts<'f> {
    None,
    One(&'f [u8]),
    Many,
}

/// What one pass over a field list finds: the pseudo-headers and the regular fields
/// that matter to the rules.
struct Seen<'f> {
    method: Option<&'f [u8]>,
    scheme: Option<&'f [u8]>,
    path: Option<&'f [u8]>,
    authority: Option<&'f [u8]>,
    hosts: Hosts<'f>,
    host_lines: usize,
    content_length: Option<u64>,
    /// The header lines the rebuilt head will have without :authority: what
    /// `max_fields` bounds (cookie crumbs count once, as they are joined).
    lines: usize,
}

impl<'f> Seen<'f> {
    fn gather(fields: &'f [HeaderField]) -> Result<Seen<'f>, Refusal> {
        let mut seen = Seen {
            method: None,
            scheme: None,
            path: None,
            authority: None,
            hosts: Hosts::None,
            host_lines: 0,
            content_length: None,
            lines: 0,
        };
        let mut regular = false;
        let mut cookie = false;
        let mut content_type = false;
        for field in fields {
            let (name, value) = (&field.name[..], &field.value[..]);
            check_value(value)?;
            if let Some(pseudo) = name.strip_prefix(b":") {
                // §8.3: pseudo-headers come first, each once, and only the request's.
                if regular {
                    return Err(Refusal::Malformed("pseudo-header field after a field"));
                }
                let slot = match pseudo {
                    b"method" => &mut seen.method,
                    b"scheme" => &mut seen.scheme,
                    b"path" => &mut seen.path,
                    b"authority" => &mut seen.authority,
                    b"status" => return Err(Refusal::Malformed(":status in a request")),
                    _ => return Err(Refusal::Malformed("unknown pseudo-header field")),
                };
                if slot.replace(value).is_some() {
                    return Err(Refusal::Malformed("duplicated pseudo-header field"));
                }
                continue;
            }
            regular = true;
            check_name(name)?;
            let mut line = true;
            match name {
                // §8.2.2: HTTP/2 has no connection-specific fields.
                b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
                | b"upgrade" => return Err(Refusal::Malformed("connection-specific field")),
                b"te" if !value.eq_ignore_ascii_case(b"trailers") => {
                    return Err(Refusal::Malformed("te other than trailers"));
                }
                b"host" => {
                    seen.host_lines = seen.host_lines.saturating_add(1);
                    seen.hosts = match seen.hosts {
                        Hosts::None => Hosts::One(value),
                        _ => Hosts::Many,
                    };
                }
                b"cookie" => {
                    line = !cookie;
                    cookie = true;
                }
                b"content-type" => {
                    // As parse_head: one representation, one type (RFC 9110 §8.3).
                    if content_type {
                        return Err(Refusal::Malformed("Multiple Content-Type headers"));
                    }
                    content_type = true;
                }
                b"content-length" => {
                    let n = parse_content_length(value)
                        .ok_or(Refusal::Malformed("content-length is invalid"))?;
                    // The framing is the DATA frames', so equal repeats are harmless
                    // (RFC 9110 §8.6); they are kept as one line.
                    match seen.content_length.replace(n) {
                        Some(m) if m != n => {
                            return Err(Refusal::Malformed("content-length values differ"));
                        }
                        Some(_) => line = false,
                        None => {}
                    }
                }
                _ => {}
            }
            if line {
                seen.lines = seen.lines.saturating_add(1);
            }
        }
        Ok(seen)
    }
}

/// §8.2.1 and RFC 9110 §5.1: a field name is a token, and lowercase in HTTP/2.
fn check_name(name: &[u8]) -> Result<(), Refusal> {
    if name.is_empty() {
        return Err(Refusal::Malformed("empty field name"));
    }
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err(Refusal::Malformed("uppercase field name"));
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Err(Refusal::Malformed("field name is not a token"));
    }
    Ok(())
}

/// §8.2.1: no NUL, CR or LF, no SP or HTAB at either end; and, as parse_head refuses
/// them, no other control byte but HTAB.
fn check_value(value: &[u8]) -> Result<(), Refusal> {
    if matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t')) {
        return Err(Refusal::Malformed("whitespace around a field value"));
    }
    if value
        .iter()
        .any(|&b| is_other_control(b) | (b == b'\r') | (b == b'\n'))
    {
        return Err(Refusal::Malformed("control character in a field value"));
    }
    Ok(())
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(scheme: &[u8]) -> bool {
    match scheme.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphabetic()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// §8.3.1: `:path` is an origin-form target (from `/`), or `*` for OPTIONS; of visible
/// ASCII, as a request-target parse_head accepts.
fn check_path(method: &[u8], path: &[u8]) -> Result<(), Refusal> {
    if path.is_empty() {
        return Err(Refusal::Malformed("empty :path"));
    }
    if !path.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        return Err(Refusal::Malformed(":path is invalid"));
    }
    match path {
        [b'/', ..] => Ok(()),
        b"*" if method == b"OPTIONS" => Ok(()),
        _ => Err(Refusal::Malformed(":path is invalid")),
    }
}

/// The head's bytes and ranges, from a field list [`Seen::gather`] accepted.
fn build(
    fields: &[HeaderField],
    method: &[u8],
    path: &[u8],
    authority: Option<&[u8]>,
    body: BodyKind,
) -> Result<RequestHead, Refusal> {
    let size = fields.iter().fold(method.len().saturating_add(32), |n, f| {
        n.saturating_add(f.name.len())
            .saturating_add(f.value.len())
            .saturating_add(4)
    });
    let mut buf = Vec::with_capacity(size);
    let mut headers = Vec::new();
    buf.extend_from_slice(method);
    let method = 0..buf.len();
    buf.push(b' ');
    let target = append(&mut buf, path);
    buf.extend_from_slice(b" HTTP/2.0\r\n");
    if let Some(host) = authority {
        headers.push(line(&mut buf, b"host", &[host]));
    }
    let mut cookie_done = false;
    let mut content_length_done = false;
    for field in fields.iter().filter(|f| !f.name.starts_with(b":")) {
        let name = &field.name[..];
        if name.contains(&b'_') {
            continue;
        }
        match name {
            b"host" if authority.is_some() => {}
            b"cookie" if !cookie_done => {
                cookie_done = true;
                let crumbs: Vec<&[u8]> = fields
                    .iter()
                    .filter(|f| f.name == b"cookie")
                    .map(|f| &f.value[..])
                    .collect();
                headers.push(line(&mut buf, name, &crumbs));
            }
            b"cookie" => {}
            b"content-length" if content_length_done => {}
            _ => {
                content_length_done |= name == b"content-length";
                headers.push(line(&mut buf, name, &[&field.value]));
            }
        }
    }
    buf.extend_from_slice(b"\r\n");
    Ok(RequestHead {
        buf,
        method,
        target,
        version: Version::Http2,
        headers,
        body,
        keep_alive: true,
        expect_continue: false,
    })
}

/// Appends `bytes`, returning where they went.
fn append(buf: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
    let start = buf.len();
    buf.extend_from_slice(bytes);
    start..buf.len()
}

/// Appends `name: v1; v2; ...\r\n` (one value but for cookie crumbs, §8.2.3).
fn line(buf: &mut Vec<u8>, name: &[u8], values: &[&[u8]]) -> Header {
    let name = append(buf, name);
    buf.extend_from_slice(b": ");
    let start = buf.len();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            buf.extend_from_slice(b"; ");
        }
        buf.extend_from_slice(value);
    }
    let value = start..buf.len();
    buf.extend_from_slice(b"\r\n");
    Header { name, value }
}

/// A trailer section (§8.1): no pseudo-header, and the field rules of a request's.
pub fn check_trailers(fields: &[HeaderField]) -> Result<(), Refusal> {
    for field in fields {
        if field.name.starts_with(b":") {
            return Err(Refusal::Malformed("pseudo-header field in trailers"));
        }
        check_name(&field.name)?;
        check_value(&field.value)?;
    }
    Ok(())
}

/// The body a request's DATA frames carry, against its head (§8.1.1: a content-length
/// that the DATA payloads do not add up to makes the request malformed) and against
/// `max_body_size` when no length was declared (a declared one was checked already).
///
/// The engine makes one from the head [`request_head`] returned and calls
/// [`BodyCheck::data`] for each `Event::Data` of the stream; an Err is a stream error
/// (reset the stream with its [`Refusal::code`], or answer its [`Refusal::status`] if
/// no response has started).
#[derive(Clone, Copy, Debug)]
pub struct BodyCheck {
    /// The declared length (0 for [`BodyKind::Empty`]), or None for a length known at
    /// END_STREAM only.
    declared: Option<u64>,
    max_body_size: u64,
    received: u64,
}

impl BodyCheck {
    pub fn new(head: &RequestHead, limits: &Limits) -> BodyCheck {
        BodyCheck {
            declared: match head.body {
                BodyKind::Empty => Some(0),
                BodyKind::Length(n) => Some(n),
                BodyKind::Chunked => None,
            },
            max_body_size: limits.max_body_size,
            received: 0,
        }
    }

    /// `n` more body bytes arrived, the last ones when `end_stream`.
    pub fn data(&mut self, n: usize, end_stream: bool) -> Result<(), Refusal> {
        self.received = self
            .received
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        match self.declared {
            Some(declared) if self.received > declared => Err(Refusal::Malformed(
                "more DATA than the content-length declared",
            )),
            Some(declared) if end_stream && self.received < declared => Err(Refusal::Malformed(
                "less DATA than the content-length declared",
            )),
            None if self.received > self.max_body_size => Err(Refusal::BodyTooLarge),
            _ => Ok(()),
        }
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_size: 8192,
        max_body_size: 1_000_000,
        max_fields: 100,
    };

    fn fields(list: &[(&str, &str)]) -> Vec<HeaderField> {
        list.iter()
            .map(|(n, v)| HeaderField {
                name: n.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
                sensitive: false,
            })
            .collect()
    }

    fn parse(list: &[(&str, &str)], end_stream: bool) -> Result<RequestHead, Refusal> {
        parse_request(&fields(list), end_stream, &LIMITS)
    }

    fn accepted(list: &[(&str, &str)], end_stream: bool) -> RequestHead {
        match parse(list, end_stream) {
            Ok(head) => head,
            Err(e) => panic!("{list:?}: {e:?}"),
        }
    }

    fn malformed(list: &[(&str, &str)]) -> &'static str {
        match parse(list, true) {
            Err(Refusal::Malformed(m)) => {
                assert_eq!(
                    request_head(&fields(list), true, &LIMITS).unwrap_err(),
                    ErrorCode::PROTOCOL_ERROR
                );
                m
            }
            other => panic!("{list:?}: {other:?}"),
        }
    }

    fn lines(head: &RequestHead) -> Vec<(String, String)> {
        head.headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(head.header_name(h)).into_owned(),
                    String::from_utf8_lossy(head.header_value(h)).into_owned(),
                )
            })
            .collect()
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        (":authority", "example.org"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut list = BASE.to_vec();
        list.extend_from_slice(extra);
        list
    }

    #[test]
    fn curl_request() {
        // What `curl --http2-prior-knowledge http://localhost:8080/index.html?q=1` sends.
        let head = accepted(
            &[
                (":method", "GET"),
                (":path", "/index.html?q=1"),
                (":scheme", "http"),
                (":authority", "localhost:8080"),
                ("user-agent", "curl/8.5.0"),
                ("accept", "*/*"),
            ],
            true,
        );
        assert_eq!(
            head.buf,
            b"GET /index.html?q=1 HTTP/2.0\r\n\
              host: localhost:8080\r\n\
              user-agent: curl/8.5.0\r\n\
              accept: */*\r\n\r\n"
        );
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target(), b"/index.html?q=1");
        assert_eq!(head.version, Version::Http2);
        assert_eq!(head.body, BodyKind::Empty);
        assert!(head.keep_alive && !head.expect_continue);
        assert_eq!(head.header(b"Host"), Some(&b"localhost:8080"[..]));
    }

    #[test]
    fn browser_request() {
        // A browser's POST: cookie crumbs (§8.2.3), a body of known length, te: trailers.
        let head = accepted(
            &[
                (":method", "POST"),
                (":authority", "example.org"),
                (":scheme", "https"),
                (":path", "/form"),
                ("content-length", "11"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", "a=1"),
                ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
                ("cookie", "b=2"),
                ("accept-language", "fr-FR,fr;q=0.9"),
                ("cookie", "c=3"),
                ("te", "trailers"),
                ("sec-ch-ua", "\"Chromium\";v=\"120\""),
            ],
            false,
        );
        assert_eq!(head.body, BodyKind::Length(11));
        assert_eq!(
            lines(&head),
            [
                ("host", "example.org"),
                ("content-length", "11"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", "a=1; b=2; c=3"),
                ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
                ("accept-language", "fr-FR,fr;q=0.9"),
                ("te", "trailers"),
                ("sec-ch-ua", "\"Chromium\";v=\"120\""),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert!(head
            .buf
            .starts_with(b"POST /form HTTP/2.0\r\nhost: example.org\r\n"));
        assert!(head.buf.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn the_head_reads_like_an_http1_head() {
        // The rebuilt bytes, with HTTP/1.1 for HTTP/2.0, parse to the same head.
        let head = accepted(
            &with(&[
                ("x-a", "1"),
                ("cookie", "k=v"),
                ("cookie", "l=w"),
                ("x-b", ""),
            ]),
            true,
        );
        let mut copy = head.buf.clone();
        let at = head.target.end + 6;
        assert_eq!(&copy[at..at + 3], b"2.0");
        copy[at..at + 3].copy_from_slice(b"1.1");
        let (h1, used) = crate::http::request::parse_head(&copy, &LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(used, copy.len());
        assert_eq!(
            (h1.method, h1.target),
            (head.method.clone(), head.target.clone())
        );
        assert_eq!(h1.headers, head.headers);
        assert_eq!(h1.body, head.body);
    }

    #[test]
    fn authority_becomes_host() {
        let head = accepted(&with(&[("x-a", "1"), ("host", "other.example")]), true);
        assert_eq!(
            lines(&head)[..2],
            [
                ("host".to_owned(), "example.org".to_owned()),
                ("x-a".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(head.headers.len(), 2, "the host field is dropped");
        // Without :authority, a host field is the Host.
        let head = accepted(
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("host", "h.example:81"),
            ],
            true,
        );
        assert_eq!(head.header(b"host"), Some(&b"h.example:81"[..]));
        // Neither: no Host line, as HTTP/2 allows.
        let head = accepted(
            &[(":method", "GET"), (":scheme", "http"), (":path", "/")],
            true,
        );
        assert!(head.headers.is_empty());
        assert_eq!(head.buf, b"GET / HTTP/2.0\r\n\r\n");
    }

    #[test]
    fn host_rules() {
        let no_authority = |extra: &[(&'static str, &'static str)]| {
            let mut list = vec![(":method", "GET"), (":scheme", "http"), (":path", "/")];
            list.extend_from_slice(extra);
            list
        };
        assert_eq!(
            malformed(&no_authority(&[("host", "a"), ("host", "b")])),
            "Multiple Host headers"
        );
        assert_eq!(
            malformed(&no_authority(&[("host", "a b")])),
            "Host header is invalid"
        );
        let mut list = BASE.to_vec();
        list[3].1 = "user@example.org";
        assert_eq!(malformed(&list), "Host header is invalid", "userinfo");
        // :authority wins over any number of host fields.
        accepted(&with(&[("host", "a"), ("host", "b")]), true);
    }

    #[test]
    fn names_with_underscores_are_dropped() {
        let head = accepted(
            &with(&[("x_forwarded_for", "6.6.6.6"), ("x-ok", "1")]),
            true,
        );
        assert_eq!(head.header(b"x_forwarded_for"), None);
        assert_eq!(head.header(b"x-ok"), Some(&b"1"[..]));
        assert!(!head.buf.windows(3).any(|w| w == b"6.6"));
    }

    #[test]
    fn pseudo_header_rules() {
        let m = |list: &[(&str, &str)]| malformed(list);
        let mut list = with(&[("x-a", "1")]);
        list.push((":path", "/again"));
        assert_eq!(m(&list), "pseudo-header field after a field");
        let mut list = BASE.to_vec();
        list.insert(1, ("x-a", "1"));
        assert_eq!(m(&list), "pseudo-header field after a field");
        let mut list = BASE.to_vec();
        list.push((":path", "/"));
        assert_eq!(m(&list), "duplicated pseudo-header field");
        let mut list = BASE.to_vec();
        list.push((":method", "GET"));
        assert_eq!(m(&list), "duplicated pseudo-header field");
        let mut list = BASE.to_vec();
        list.push((":status", "200"));
        assert_eq!(m(&list), ":status in a request");
        for unknown in [":protocol", ":foo", ":", "::path"] {
            let mut list = BASE.to_vec();
            list.push((unknown, "websocket"));
            assert_eq!(m(&list), "unknown pseudo-header field", "{unknown}");
        }
        for (i, missing) in [
            (0, "missing :method"),
            (1, "missing :scheme"),
            (2, "missing :path"),
        ] {
            let mut list = BASE.to_vec();
            list.remove(i);
            assert_eq!(m(&list), missing);
        }
        let mut list = BASE.to_vec();
        list[2].1 = "";
        assert_eq!(m(&list), "empty :path");
    }

    #[test]
    fn method_scheme_and_path_values() {
        let set = |i: usize, v: &'static str| {
            let mut list = BASE.to_vec();
            list[i].1 = v;
            list
        };
        assert_eq!(malformed(&set(0, "")), ":method is not a token");
        assert_eq!(malformed(&set(0, "GE T")), ":method is not a token");
        assert_eq!(malformed(&set(0, "G(T")), ":method is not a token");
        assert_eq!(malformed(&set(0, "get")), "lowercase :method");
        assert_eq!(accepted(&set(0, "PROPFIND"), true).method(), b"PROPFIND");
        assert_eq!(malformed(&set(1, "")), ":scheme is invalid");
        assert_eq!(malformed(&set(1, "1http")), ":scheme is invalid");
        accepted(&set(1, "coap+tcp"), true);
        for bad in [
            "index.html",
            "http://example.org/",
            "*",
            "/a b",
            "/\u{e9}",
            "/a\u{7f}",
        ] {
            let list = set(2, bad);
            assert!(
                matches!(parse(&list, true), Err(Refusal::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut list = set(2, "*");
        list[0].1 = "OPTIONS";
        assert_eq!(accepted(&list, true).target(), b"*");
        assert_eq!(
            accepted(&set(2, "/a?b=c&d=%20#x"), true).target(),
            b"/a?b=c&d=%20#x"
        );
    }

    #[test]
    fn connect_is_refused() {
        let connect = [(":method", "CONNECT"), (":authority", "example.org:443")];
        assert_eq!(parse(&connect, false).unwrap_err(), Refusal::Connect);
        assert_eq!(
            request_head(&fields(&connect), false, &LIMITS).unwrap_err(),
            ErrorCode::CONNECT_ERROR
        );
        assert_eq!(Refusal::Connect.status(), 501);
        let mut with_path = connect.to_vec();
        with_path.push((":path", "/"));
        assert_eq!(malformed(&with_path), "CONNECT with :scheme or :path");
        assert_eq!(
            malformed(&[(":method", "CONNECT")]),
            "CONNECT without :authority"
        );
        // Extended CONNECT (RFC 8441) was never enabled.
        let mut ws = BASE.to_vec();
        ws[0].1 = "CONNECT";
        ws.push((":protocol", "websocket"));
        assert_eq!(malformed(&ws), "unknown pseudo-header field");
    }

    #[test]
    fn connection_specific_fields() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(
                malformed(&with(&[(name, "x")])),
                "connection-specific field",
                "{name}"
            );
        }
        assert_eq!(
            malformed(&with(&[("te", "gzip")])),
            "te other than trailers"
        );
        assert_eq!(
            malformed(&with(&[("te", "trailers, gzip")])),
            "te other than trailers"
        );
        assert_eq!(
            accepted(&with(&[("te", "Trailers")]), true).header(b"te"),
            Some(&b"Trailers"[..])
        );
    }

    #[test]
    fn field_names() {
        assert_eq!(
            malformed(&with(&[("X-Upper", "1")])),
            "uppercase field name"
        );
        assert_eq!(malformed(&with(&[("", "1")])), "empty field name");
        for bad in [
            "a b",
            "a:b",
            "a\0",
            "a\r",
            "a\n",
            "a\"",
            "caf\u{e9}",
            "(x)",
            "a\u{7f}",
        ] {
            assert_eq!(
                malformed(&with(&[(bad, "1")])),
                "field name is not a token",
                "{bad:?}"
            );
        }
        accepted(&with(&[("x-!#$%&'*+.^`|~09az", "1")]), true);
    }

    #[test]
    fn field_values() {
        for bad in ["a\0b", "a\rb", "a\nb", "\r\n", "a\x01", "a\x7fb", "a\x1b"] {
            assert_eq!(
                malformed(&with(&[("x-v", bad)])),
                "control character in a field value",
                "{bad:?}"
            );
        }
        for bad in [" a", "a ", "\ta", "a\t", " ", "\t"] {
            assert_eq!(
                malformed(&with(&[("x-v", bad)])),
                "whitespace around a field value",
                "{bad:?}"
            );
        }
        // Pseudo-header values follow the same rules.
        let mut list = BASE.to_vec();
        list[2].1 = "/a\nb";
        assert_eq!(malformed(&list), "control character in a field value");
        // Inner SP and HTAB, empty values and obs-text are fine.
        let head = accepted(
            &with(&[("x-v", "a \tb"), ("x-e", ""), ("x-l", "caf\u{e9}")]),
            true,
        );
        assert_eq!(head.header(b"x-v"), Some(&b"a \tb"[..]));
        assert_eq!(head.header(b"x-e"), Some(&b""[..]));
        assert_eq!(head.header(b"x-l"), Some("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn content_length() {
        let post = |extra: &[(&'static str, &'static str)], end_stream: bool| {
            let mut list = BASE.to_vec();
            list[0].1 = "POST";
            list.extend_from_slice(extra);
            parse(&list, end_stream)
        };
        assert_eq!(
            post(&[("content-length", "5")], false).unwrap().body,
            BodyKind::Length(5)
        );
        assert_eq!(
            post(&[("content-length", "0")], false).unwrap().body,
            BodyKind::Empty
        );
        assert_eq!(
            post(&[("content-length", "0")], true).unwrap().body,
            BodyKind::Empty
        );
        assert_eq!(post(&[], false).unwrap().body, BodyKind::Chunked);
        assert_eq!(post(&[], true).unwrap().body, BodyKind::Empty);
        // Equal repeats: one line.
        let head = post(&[("content-length", "5"), ("content-length", "5")], false).unwrap();
        assert_eq!(head.body, BodyKind::Length(5));
        assert_eq!(head.headers.len(), 2);
        for bad in [
            &[("content-length", "5"), ("content-length", "6")][..],
            &[("content-length", "-1")],
            &[("content-length", "5, 5")],
            &[("content-length", "+5")],
            &[("content-length", "")],
            &[("content-length", "0x10")],
            &[("content-length", "99999999999999999999")],
        ] {
            assert!(
                matches!(post(bad, false), Err(Refusal::Malformed(_))),
                "{bad:?}"
            );
        }
        // §8.1.1: END_STREAM on HEADERS is a body of 0 bytes.
        assert_eq!(
            post(&[("content-length", "5")], true).unwrap_err(),
            Refusal::Malformed("content-length with no body")
        );
        assert_eq!(
            post(&[("content-length", "1000001")], false).unwrap_err(),
            Refusal::BodyTooLarge
        );
        assert_eq!(Refusal::BodyTooLarge.code(), ErrorCode::ENHANCE_YOUR_CALM);
        assert_eq!(Refusal::BodyTooLarge.request_error(&LIMITS).status(), 413);
        assert_eq!(
            post(&[("content-type", "a/b"), ("content-type", "c/d")], false).unwrap_err(),
            Refusal::Malformed("Multiple Content-Type headers")
        );
    }

    #[test]
    fn field_count_limit() {
        let limits = Limits {
            max_fields: 3,
            ..LIMITS
        };
        let run = |extra: &[(&'static str, &'static str)]| {
            parse_request(&fields(&with(extra)), true, &limits)
        };
        // host (from :authority) + 2.
        assert!(run(&[("a", "1"), ("b", "2")]).is_ok());
        let err = run(&[("a", "1"), ("b", "2"), ("c", "3")]).unwrap_err();
        assert!(matches!(err, Refusal::TooLarge(_)));
        assert_eq!(err.status(), 431);
        assert_eq!(
            request_head(
                &fields(&with(&[("a", "1"), ("b", "2"), ("c", "3")])),
                true,
                &limits
            )
            .unwrap_err(),
            ErrorCode::ENHANCE_YOUR_CALM
        );
        // Cookie crumbs count as the one line they become; host fields beside
        // :authority are not lines; fields dropped for `_` still count, as in parse_head.
        assert!(run(&[
            ("cookie", "a"),
            ("cookie", "b"),
            ("cookie", "c"),
            ("x", "1")
        ])
        .is_ok());
        assert!(run(&[("host", "h"), ("host", "h"), ("a", "1"), ("b", "2")]).is_ok());
        assert!(run(&[("a_b", "1"), ("b", "2"), ("c", "3")]).is_err());
    }

    #[test]
    fn header_size_limit() {
        let limits = Limits {
            max_header_size: 100,
            ..LIMITS
        };
        let long: &'static str = "v".repeat(100).leak();
        let list = fields(&with(&[("x-long", long)]));
        assert!(matches!(
            parse_request(&list, true, &limits),
            Err(Refusal::TooLarge(_))
        ));
        assert!(parse_request(&fields(&BASE), true, &limits).is_ok());
    }

    #[test]
    fn body_check() {
        let head = |extra: &[(&'static str, &'static str)], end_stream| {
            let mut list = BASE.to_vec();
            list[0].1 = "POST";
            list.extend_from_slice(extra);
            parse(&list, end_stream).unwrap()
        };
        let limits = Limits {
            max_body_size: 10,
            ..LIMITS
        };
        let mut b = BodyCheck::new(&head(&[("content-length", "5")], false), &limits);
        assert_eq!(b.data(2, false), Ok(()));
        assert_eq!(b.data(3, false), Ok(()));
        assert_eq!(b.data(0, true), Ok(()));
        assert_eq!(b.received(), 5);
        let mut b = BodyCheck::new(&head(&[("content-length", "5")], false), &limits);
        assert!(matches!(b.data(6, false), Err(Refusal::Malformed(_))));
        let mut b = BodyCheck::new(&head(&[("content-length", "5")], false), &limits);
        assert!(matches!(b.data(4, true), Err(Refusal::Malformed(_))));
        let mut b = BodyCheck::new(&head(&[("content-length", "0")], false), &limits);
        assert!(matches!(b.data(1, true), Err(Refusal::Malformed(_))));
        let mut b = BodyCheck::new(&head(&[("content-length", "0")], false), &limits);
        assert_eq!(b.data(0, true), Ok(()));
        // No declared length: bounded by max_body_size.
        let mut b = BodyCheck::new(&head(&[], false), &limits);
        assert_eq!(b.data(10, false), Ok(()));
        assert_eq!(b.data(1, false), Err(Refusal::BodyTooLarge));
    }

    #[test]
    fn trailers() {
        assert_eq!(check_trailers(&fields(&[("x-checksum", "abc")])), Ok(()));
        assert!(check_trailers(&fields(&[(":path", "/")])).is_err());
        assert!(check_trailers(&fields(&[("X-Up", "1")])).is_err());
        assert!(check_trailers(&fields(&[("x", "a\nb")])).is_err());
    }

    #[test]
    fn refusals_map_to_http1_errors() {
        for (r, status) in [
            (Refusal::Malformed("m"), 400),
            (Refusal::TooLarge("t"), 431),
            (Refusal::BodyTooLarge, 413),
            (Refusal::Connect, 501),
        ] {
            assert_eq!(r.status(), status);
            assert_eq!(r.request_error(&LIMITS).status(), status);
            assert!(!r.message().is_empty());
        }
    }

    #[test]
    fn no_panics_on_random_lists() {
        // Random lists from a small alphabet of names and values: never a panic, and an
        // accepted head always keeps the invariants.
        let names: [&[u8]; 14] = [
            b":method",
            b":path",
            b":scheme",
            b":authority",
            b":status",
            b"host",
            b"cookie",
            b"content-length",
            b"te",
            b"x_y",
            b"X",
            b"",
            b"connection",
            b"x",
        ];
        let values: [&[u8]; 10] = [
            b"GET",
            b"/",
            b"http",
            b"a",
            b"5",
            b"trailers",
            b"",
            b" x",
            b"a\0",
            b"CONNECT",
        ];
        let mut rng = crate::http::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let n = (rng() % 8) as usize;
            let list: Vec<HeaderField> = (0..n)
                .map(|_| HeaderField {
                    name: names[(rng() % names.len() as u64) as usize].to_vec(),
                    value: values[(rng() % values.len() as u64) as usize].to_vec(),
                    sensitive: false,
                })
                .collect();
            let end_stream = rng() % 2 == 0;
            if let Ok(head) = parse_request(&list, end_stream, &LIMITS) {
                assert!(head.buf.ends_with(b"\r\n\r\n"));
                assert_eq!(head.version, Version::Http2);
                for h in &head.headers {
                    let name = head.header_name(h);
                    assert!(!name.contains(&b'_') && !name.starts_with(b":"));
                }
                assert!(
                    head.headers
                        .iter()
                        .filter(|h| head.header_name(h) == b"host")
                        .count()
                        <= 1
                );
            }
        }
    }
}
