//! Response heads: validation of what an application hands us, the framing decision
//! (Content-Length, chunked or close-delimited; keep-alive or close) and serialisation.

use crate::http::date::with_http_date;
use crate::http::is_tchar;
use crate::http::request::Version;

/// Headers an application may not set (RFC 9110 section 7.6.1, PEP 3333): the server
/// owns the connection.
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
];

pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Checks a WSGI status such as `200 OK` and returns its code.
pub fn parse_status(status: &[u8]) -> Result<u16, &'static str> {
    if status.len() < 3 || !status[..3].iter().all(u8::is_ascii_digit) {
        return Err("status must start with a three-digit code");
    }
    if status.len() > 3 && status[3] != b' ' {
        return Err("status code must be followed by a space and a reason phrase");
    }
    if status.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err("carriage return/line feed character present in status");
    }
    if status
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err("control character present in status");
    }
    let code = (status[0] - b'0') as u16 * 100
        + (status[1] - b'0') as u16 * 10
        + (status[2] - b'0') as u16;
    if code < 100 {
        return Err("status code out of range");
    }
    Ok(code)
}

pub fn check_header_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err("carriage return/line feed character present in header name");
    }
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err("header name is not a valid token");
    }
    Ok(())
}

pub fn check_header_value(value: &[u8]) -> Result<(), &'static str> {
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err("carriage return/line feed character present in header value");
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("control character present in header value");
    }
    Ok(())
}

/// 1xx, 204 and 304 responses never have a body (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
pub fn status_allows_body(code: u16) -> bool {
    !(code < 200 || code == 204 || code == 304)
}

/// How a response body is delimited and whether the connection survives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Send `Transfer-Encoding: chunked` and frame the body in chunks.
    pub chunked: bool,
    /// Close the connection after this response (and say so with `Connection: close`).
    pub close: bool,
    /// Say `Connection: Keep-Alive` (HTTP/1.0 clients need it to keep the connection).
    pub keep_alive_header: bool,
}

/// The framing rules of RFC 9112 sections 6 and 9 for one response.
pub fn framing(
    version: Version,
    keep_alive: bool,
    content_length: Option<u64>,
    code: u16,
) -> Framing {
    let body_allowed = status_allows_body(code);
    match version {
        Version::Http10 => {
            // An HTTP/1.0 client can only find the end of a body by its length.
            let keep = keep_alive && (content_length.is_some() || !body_allowed);
            Framing {
                chunked: false,
                close: !keep,
                keep_alive_header: keep,
            }
        }
        Version::Http11 => Framing {
            chunked: content_length.is_none() && body_allowed,
            close: !keep_alive,
            keep_alive_header: false,
        },
        // Frames delimit the body; the stream, not the connection, ends with it.
        Version::Http2 => Framing {
            chunked: false,
            close: false,
            keep_alive_header: false,
        },
    }
}

/// Serialises a response head.
pub struct HeadWriter {
    buf: Vec<u8>,
}

impl HeadWriter {
    pub fn new(version: Version, status: &[u8], capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(128));
        buf.extend_from_slice(match version {
            Version::Http10 => b"HTTP/1.0 ",
            Version::Http11 => b"HTTP/1.1 ",
            Version::Http2 => b"HTTP/2.0 ",
        });
        buf.extend_from_slice(status);
        buf.extend_from_slice(b"\r\n");
        HeadWriter { buf }
    }

    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Appends header lines already serialised (`Name: value\r\n` each).
    pub fn raw(&mut self, lines: &[u8]) {
        self.buf.extend_from_slice(lines);
    }

    pub fn content_length(&mut self, len: u64) {
        let mut b = itoa::Buffer::new();
        self.header(b"Content-Length", b.format(len).as_bytes());
    }

    pub fn date(&mut self) {
        with_http_date(|d| self.header(b"Date", d));
    }

    /// Adds the headers the server owns, then the empty line.
    pub fn finish(
        mut self,
        framing: Framing,
        content_length: Option<u64>,
        ident: &[u8],
        app_set: AppSet,
    ) -> Vec<u8> {
        if let Some(len) = content_length {
            if !app_set.content_length {
                self.content_length(len);
            }
        }
        if framing.chunked {
            self.header(b"Transfer-Encoding", b"chunked");
        }
        if framing.close {
            self.header(b"Connection", b"close");
        } else if framing.keep_alive_header {
            self.header(b"Connection", b"Keep-Alive");
        }
        if !app_set.date {
            self.date();
        }
        if !ident.is_empty() {
            // An application acting as a proxy may pass on its origin's Server header;
            // then we identify ourselves in Via, as waitress does.
            let name: &[u8] = if app_set.server { b"Via" } else { b"Server" };
            self.header(name, ident);
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }
}

/// Which server-owned headers the application already supplied.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppSet {
    pub content_length: bool,
    pub date: bool,
    pub server: bool,
}

/// A complete error response in waitress's format: a short text body naming the problem,
/// and the connection closed after it.
pub fn error_response(
    version: Version,
    code: u16,
    reason: &str,
    message: &str,
    ident: &str,
) -> Vec<u8> {
    error_response_with(version, (code, reason), message, ident, &[])
}

/// How long `Retry-After` of [`unavailable_response`] asks a client to wait, in
/// seconds: the least the header can say. An overload is usually a burst, and a
/// balancer or client that retries sooner than a second only adds to it.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// The 503 of a request turned away because the server is overloaded (its queue is
/// full, or the request waited too long for a thread): an [`error_response`] that says
/// when to try again, and closes the connection as every error response does.
pub fn unavailable_response(version: Version, message: &str, ident: &str) -> Vec<u8> {
    error_response_with(
        version,
        (503, "Service Unavailable"),
        message,
        ident,
        &[(b"Retry-After", RETRY_AFTER_SECONDS.as_bytes())],
    )
}

fn error_response_with(
    version: Version,
    (code, reason): (u16, &str),
    message: &str,
    ident: &str,
    extra: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let tag = if ident.is_empty() { "server" } else { ident };
    let body = format!("{reason}\r\n\r\n{message}\r\n\r\n(generated by {tag})");
    let status = format!("{code} {reason}");
    let mut w = HeadWriter::new(version, status.as_bytes(), 256 + body.len());
    w.header(b"Content-Type", b"text/plain; charset=utf-8");
    for (name, value) in extra {
        w.header(name, value);
    }
    let framing = Framing {
        chunked: false,
        close: true,
        keep_alive_header: false,
    };
    let mut out = w.finish(
        framing,
        Some(body.len() as u64),
        ident.as_bytes(),
        AppSet::default(),
    );
    out.extend_from_slice(body.as_bytes());
    out
}

/// The line that opens a chunk of `len` bytes: the size in hex and CRLF.
pub fn chunk_header(len: usize, out: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut tmp = [0u8; 16];
    let mut n = len;
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let digits = tmp.len() - i;
    out[..digits].copy_from_slice(&tmp[i..]);
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    &out[..digits + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_validation() {
        assert_eq!(parse_status(b"200 OK"), Ok(200));
        assert_eq!(parse_status(b"404"), Ok(404));
        assert_eq!(parse_status(b"599 Whatever You Like"), Ok(599));
        assert!(parse_status(b"OK").is_err());
        assert!(parse_status(b"20 OK").is_err());
        assert!(parse_status(b"200OK").is_err());
        assert!(parse_status(b"200 OK\r\nX: y").is_err());
        assert!(parse_status(b"099 Low").is_err());
    }

    #[test]
    fn header_validation() {
        assert!(check_header_name(b"Content-Type").is_ok());
        assert!(check_header_name(b"Bad Name").is_err());
        assert!(check_header_name(b"").is_err());
        assert!(check_header_name(b"X\r\nY").is_err());
        assert!(check_header_value(b"text/html; charset=utf-8").is_ok());
        assert!(check_header_value(b"a\tb \xe9").is_ok());
        assert!(check_header_value(b"a\r\nSet-Cookie: x").is_err());
        assert!(check_header_value(b"a\x00b").is_err());
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(is_hop_by_hop(b"CONNECTION"));
        assert!(!is_hop_by_hop(b"Content-Length"));
    }

    #[test]
    fn framing_rules() {
        let f = framing(Version::Http11, true, None, 200);
        assert!(f.chunked && !f.close);
        let f = framing(Version::Http11, true, Some(5), 200);
        assert!(!f.chunked && !f.close);
        let f = framing(Version::Http11, false, Some(5), 200);
        assert!(f.close);
        let f = framing(Version::Http11, true, None, 304);
        assert!(!f.chunked && !f.close);
        let f = framing(Version::Http10, true, Some(5), 200);
        assert!(!f.close && f.keep_alive_header);
        let f = framing(Version::Http10, true, None, 200);
        assert!(f.close && !f.chunked);
        let f = framing(Version::Http10, false, Some(5), 200);
        assert!(f.close);
    }

    #[test]
    fn chunk_headers() {
        let mut b = [0u8; 18];
        assert_eq!(chunk_header(0, &mut b), b"0\r\n");
        assert_eq!(chunk_header(255, &mut b), b"FF\r\n");
        assert_eq!(chunk_header(4096, &mut b), b"1000\r\n");
        assert_eq!(chunk_header(usize::MAX, &mut b), b"FFFFFFFFFFFFFFFF\r\n");
    }

    #[test]
    fn error_response_format() {
        let r = error_response(
            Version::Http11,
            400,
            "Bad Request",
            "Invalid header",
            "maitre",
        );
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains("\r\nContent-Type: text/plain; charset=utf-8"));
        assert!(head.contains("\r\nServer: maitre"));
        assert!(head.contains("\r\nDate: "));
        assert_eq!(
            body,
            "Bad Request\r\n\r\nInvalid header\r\n\r\n(generated by maitre)"
        );
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn unavailable_response_says_when_to_retry_and_closes() {
        let r = unavailable_response(Version::Http10, "The server is overloaded.", "maitre");
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nRetry-After: 1\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(body.starts_with("Service Unavailable\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
