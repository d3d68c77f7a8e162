//! `maitre._maitre.RequestParser`, `split_uri` and `crack_first_line`: the server's own
//! request parsing, driven from Python a few bytes at a time.
//!
//! Nothing here parses HTTP by itself. [`Incremental`] reads one request with the pieces
//! the event loop reads with: `http::reader::HeadReader` for the head, then the
//! `BodyReceiver` that `BodyReceiver::for_framing` chooses for its body, so a request fed
//! through it byte by byte meets exactly the rules, limits and error messages the server
//! applies on the wire. One difference is deliberate: its head reader is lazy (it looks
//! at a head only once the head's end has arrived, as waitress's parser does), where the
//! server's refuses garbage in the first bytes at once.
//! `maitre.parser.HTTPRequestParser` gives it waitress's shape.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::engine::body::{Body, BodyReceiver};
use crate::http::reader::HeadReader;
use crate::http::request::{BodyKind, Limits, RequestError, RequestHead, Version};
use crate::wsgi::environ::{latin1, percent_decode, split_target};
use crate::wsgi::input::Input;

/// Where the parse of one request stands.
#[derive(Debug)]
enum Stage {
    /// Buffering the head, read by the server's head reader.
    Head { buf: Vec<u8>, reader: HeadReader },
    /// The head is parsed; receiving the body.
    Body(BodyReceiver),
    /// The request is complete; its body is here until taken.
    Done(Option<Body>),
    /// The request was refused: the server would answer this error and close.
    Failed(RequestError),
}

/// One request parsed incrementally, with the engine's rules and limits.
#[derive(Debug)]
pub struct Incremental {
    limits: Limits,
    inbuf_overflow: usize,
    stage: Stage,
    head: Option<RequestHead>,
    /// Bytes of the head used, blank lines before the request line included.
    head_len: usize,
    /// Bytes of the body (as framed on the wire) used so far.
    body_received: u64,
    /// Length of the decoded body, once complete.
    body_len: Option<u64>,
}

impl Incremental {
    pub fn new(limits: Limits, inbuf_overflow: usize) -> Self {
        Incremental {
            limits,
            inbuf_overflow,
            stage: Stage::Head {
                buf: Vec::new(),
                reader: HeadReader::lazy(),
            },
            head: None,
            head_len: 0,
            body_received: 0,
            body_len: None,
        }
    }

    /// Feeds received bytes; returns how many were used. Bytes after the head are not
    /// used by the call that completes the head (feed them again: they start the body),
    /// and bytes after the body belong to the next request. Once the request is complete
    /// or refused, nothing more is used.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        match &mut self.stage {
            Stage::Head { .. } => self.feed_head(data),
            Stage::Body(receiver) => match receiver.feed(data) {
                Err(e) => self.fail(e, data.len()),
                Ok((used, done)) => {
                    self.body_received = self.body_received.saturating_add(used as u64);
                    if done {
                        self.finish_body();
                    }
                    used
                }
            },
            Stage::Done(_) | Stage::Failed(_) => 0,
        }
    }

    fn feed_head(&mut self, data: &[u8]) -> usize {
        let Stage::Head { buf, reader } = &mut self.stage else {
            return 0;
        };
        let before = buf.len();
        buf.extend_from_slice(data);
        match reader.read(buf, &self.limits) {
            Ok(None) => data.len(),
            // As waitress counts: a head refused once complete uses the bytes up to its end.
            Err(refused) => self.fail(refused.error, refused.used.saturating_sub(before)),
            Ok(Some((head, used))) => {
                self.head_len = used;
                self.stage = match BodyReceiver::for_framing(
                    head.body,
                    self.inbuf_overflow,
                    self.limits.max_body_size,
                ) {
                    Some(receiver) => Stage::Body(receiver),
                    None => {
                        self.body_len = Some(0);
                        Stage::Done(Some(Body::empty()))
                    }
                };
                self.head = Some(head);
                used.saturating_sub(before)
            }
        }
    }

    fn finish_body(&mut self) {
        let Stage::Body(receiver) = std::mem::replace(&mut self.stage, Stage::Done(None)) else {
            return;
        };
        self.stage = match receiver.finish() {
            Ok(body) => {
                self.body_len = Some(body.len());
                Stage::Done(Some(body))
            }
            Err(e) => Stage::Failed(e),
        };
    }

    fn fail(&mut self, error: RequestError, used: usize) -> usize {
        self.stage = Stage::Failed(error);
        used
    }

    /// The request is complete, or refused.
    pub fn completed(&self) -> bool {
        matches!(self.stage, Stage::Done(_) | Stage::Failed(_))
    }

    pub fn error(&self) -> Option<&RequestError> {
        match &self.stage {
            Stage::Failed(e) => Some(e),
            _ => None,
        }
    }

    pub fn head(&self) -> Option<&RequestHead> {
        self.head.as_ref()
    }

    /// The complete body (empty if the request is not complete, or it was taken).
    pub fn take_body(&mut self) -> Body {
        match &mut self.stage {
            Stage::Done(body) => body.take().unwrap_or_else(Body::empty),
            _ => Body::empty(),
        }
    }
}

/// A header name as waitress keys its `headers` dict: upper case, `-` as `_`.
fn header_key(name: &[u8]) -> Vec<u8> {
    name.iter()
        .map(|&b| {
            if b == b'-' {
                b'_'
            } else {
                b.to_ascii_uppercase()
            }
        })
        .collect()
}

/// The header fields of `head` keyed like waitress, repeated fields joined with ", ", in
/// the order of their first appearance.
fn joined_headers(head: &RequestHead) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(head.headers.len());
    let mut index: HashMap<Vec<u8>, usize> = HashMap::with_capacity(head.headers.len());
    for h in &head.headers {
        let key = header_key(head.header_name(h));
        let value = head.header_value(h);
        match index.get(&key) {
            Some(&i) => {
                let joined = &mut out[i].1;
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value);
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, value.to_vec()));
            }
        }
    }
    out
}

/// The parts of a request-target, as waitress's `split_uri` names them.
#[derive(Debug, PartialEq, Eq)]
pub struct UriParts<'a> {
    pub scheme: &'a [u8],
    pub netloc: &'a [u8],
    /// Percent-decoded, as in PATH_INFO.
    pub path: Vec<u8>,
    /// As in QUERY_STRING.
    pub query: &'a [u8],
    pub fragment: &'a [u8],
}

/// Splits a request-target; the path and query are what the server puts in the environ.
pub fn split_uri_parts(uri: &[u8]) -> UriParts<'_> {
    let (before_fragment, fragment) = match memchr::memchr(b'#', uri) {
        Some(i) => (&uri[..i], &uri[i + 1..]),
        None => (uri, &b""[..]),
    };
    let (mut scheme, mut netloc) = (&b""[..], &b""[..]);
    if let Some(sep) = memchr::memmem::find(before_fragment, b"://") {
        let named = &before_fragment[..sep];
        if !named.is_empty() && !named.iter().any(|&b| b == b'/' || b == b'?') {
            let rest = &before_fragment[sep + 3..];
            let end = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            scheme = named;
            netloc = &rest[..end];
        }
    }
    let (raw_path, query) = split_target(uri);
    let mut path = Vec::with_capacity(raw_path.len());
    percent_decode(raw_path, &mut path);
    UriParts {
        scheme,
        netloc,
        path,
        query,
        fragment,
    }
}

/// `(method, uri, version)` of a request line.
pub type LineParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a request line as waitress's `crack_first_line` does: `method SP uri`, then
/// optionally `SP HTTP/d.d` (the version is returned without `HTTP/`, empty when
/// absent). `None` when the line does not have that shape; a method in lower case is
/// an error (the server refuses it: methods are case-sensitive). This is syntax only:
/// whether the server serves the version is decided by `parse_head`.
pub fn crack(line: &[u8]) -> Result<Option<LineParts<'_>>, RequestError> {
    let Some(sp) = memchr::memchr(b' ', line) else {
        return Ok(None);
    };
    let (method, rest) = (&line[..sp], &line[sp + 1..]);
    if method.is_empty() || !method.iter().all(|&b| crate::http::is_tchar(b)) {
        return Ok(None);
    }
    let (uri, version) = match memchr::memchr(b' ', rest) {
        None => (rest, &b""[..]),
        Some(i) => match &rest[i + 1..] {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                (&rest[..i], &rest[i + 6..])
            }
            _ => return Ok(None),
        },
    };
    if uri.is_empty() {
        return Ok(None);
    }
    if method.iter().any(u8::is_ascii_lowercase) {
        let latin1: String = method.iter().map(|&b| char::from(b)).collect();
        return Err(RequestError::BadRequest(format!(
            "Malformed HTTP method \"{latin1}\""
        )));
    }
    Ok(Some((method, uri, version)))
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::Http10 => "1.0",
        Version::Http11 => "1.1",
        Version::Http2 => "2.0",
    }
}

/// One request parsed with the server's parser; fed with `received(data)`.
#[pyclass(module = "maitre._maitre", name = "RequestParser")]
pub struct RequestParser {
    inner: Incremental,
}

#[pymethods]
impl RequestParser {
    #[new]
    #[pyo3(signature = (max_header_size, max_body_size, inbuf_overflow))]
    fn new(max_header_size: usize, max_body_size: u64, inbuf_overflow: usize) -> Self {
        // waitress's parser, which this stands in for, has no limit on the field count.
        let limits = Limits {
            max_header_size,
            max_body_size,
            max_fields: usize::MAX,
        };
        RequestParser {
            inner: Incremental::new(limits, inbuf_overflow),
        }
    }

    /// Feeds bytes; returns how many were used (see `Incremental::feed`).
    fn received(&mut self, data: &[u8]) -> usize {
        self.inner.feed(data)
    }

    #[getter]
    fn completed(&self) -> bool {
        self.inner.completed()
    }

    #[getter]
    fn head_complete(&self) -> bool {
        self.inner.head().is_some()
    }

    /// `(status, message)` of the error the server would answer, or None.
    #[getter]
    fn error(&self) -> Option<(u16, String)> {
        self.inner
            .error()
            .map(|e| (e.status(), e.message().to_owned()))
    }

    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.inner.head().map(|h| latin1(py, h.method()))
    }

    /// The request-target exactly as sent.
    #[getter]
    fn target<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.inner.head().map(|h| latin1(py, h.target()))
    }

    #[getter]
    fn version(&self) -> Option<&'static str> {
        self.inner.head().map(|h| version_str(h.version))
    }

    /// The header fields keyed like waitress (`CONTENT_TYPE`, `X_FORWARDED_FOR`), values
    /// as latin-1 strings, repeated fields joined with ", ".
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        if let Some(head) = self.inner.head() {
            for (key, value) in joined_headers(head) {
                dict.set_item(latin1(py, &key), latin1(py, &value))?;
            }
        }
        Ok(dict)
    }

    /// How the body is framed: "empty", "length" or "chunked" (None before the head).
    #[getter]
    fn body_kind(&self) -> Option<&'static str> {
        self.inner.head().map(|h| match h.body {
            BodyKind::Empty => "empty",
            BodyKind::Length(_) => "length",
            BodyKind::Chunked => "chunked",
        })
    }

    /// The declared Content-Length (0 without one, and for a chunked body).
    #[getter]
    fn content_length(&self) -> u64 {
        match self.inner.head().map(|h| h.body) {
            Some(BodyKind::Length(len)) => len,
            _ => 0,
        }
    }

    #[getter]
    fn keep_alive(&self) -> bool {
        self.inner.head().is_some_and(|h| h.keep_alive)
    }

    #[getter]
    fn expect_continue(&self) -> bool {
        self.inner.head().is_some_and(|h| h.expect_continue)
    }

    /// Bytes of the head used (blank lines before the request line included).
    #[getter]
    fn header_bytes(&self) -> usize {
        self.inner.head_len
    }

    /// Bytes of the body used so far, as framed on the wire.
    #[getter]
    fn body_bytes(&self) -> u64 {
        self.inner.body_received
    }

    /// Length of the decoded body once the request is complete.
    #[getter]
    fn body_length(&self) -> Option<u64> {
        self.inner.body_len
    }

    /// The body as a `wsgi.input` stream (empty before the request is complete); the
    /// parser gives it up.
    fn take_body(&mut self, py: Python<'_>) -> PyResult<Py<Input>> {
        Py::new(py, Input::new(self.inner.take_body()))
    }

    /// Drops the body (and its temporary file).
    fn close(&mut self) {
        drop(self.inner.take_body());
    }
}

/// `(scheme, netloc, path, query, fragment)` of a request-target (bytes), as latin-1
/// strings; the path percent-decoded, as in PATH_INFO.
#[pyfunction]
fn split_uri<'py>(py: Python<'py>, uri: &[u8]) -> [Bound<'py, PyString>; 5] {
    let parts = split_uri_parts(uri);
    [
        latin1(py, parts.scheme),
        latin1(py, parts.netloc),
        latin1(py, &parts.path),
        latin1(py, parts.query),
        latin1(py, parts.fragment),
    ]
}

/// `(method, uri, version, error)` of a request line (bytes), split as waitress's
/// `crack_first_line` does (see [`crack`]): empty bytes when the line does not have the
/// shape, and `error` the message of the 400 when its method is in lower case.
#[pyfunction]
fn crack_first_line<'py>(
    py: Python<'py>,
    line: &[u8],
) -> (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Option<String>,
) {
    let (parts, error) = match crack(line) {
        Ok(Some(parts)) => (parts, None),
        Ok(None) => ((&b""[..], &b""[..], &b""[..]), None),
        Err(e) => ((&b""[..], &b""[..], &b""[..]), Some(e.message().to_owned())),
    };
    (
        PyBytes::new(py, parts.0),
        PyBytes::new(py, parts.1),
        PyBytes::new(py, parts.2),
        error,
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RequestParser>()?;
    m.add_function(wrap_pyfunction!(split_uri, m)?)?;
    m.add_function(wrap_pyfunction!(crack_first_line, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Incremental {
        Incremental::new(
            Limits {
                max_header_size: 1024,
                max_body_size: 100,
                max_fields: usize::MAX,
            },
            16,
        )
    }

    fn body_bytes(p: &mut Incremental) -> Vec<u8> {
        use std::io::Read;
        match p.take_body() {
            Body::Memory(v) => v,
            Body::File(mut f) => {
                let mut v = Vec::new();
                f.read_to_end(&mut v).unwrap();
                v
            }
        }
    }

    /// Feeds `input` one byte at a time, as a client trickling it would.
    fn feed_bytewise(p: &mut Incremental, input: &[u8]) -> usize {
        let mut used = 0;
        for i in 0..input.len() {
            while used <= i && !p.completed() {
                let n = p.feed(&input[used..=i]);
                if n == 0 {
                    break;
                }
                used += n;
            }
        }
        used
    }

    #[test]
    fn head_then_body_byte_by_byte() {
        let req = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET";
        let mut p = parser();
        let used = feed_bytewise(&mut p, req);
        assert!(p.completed());
        assert!(p.error().is_none());
        assert_eq!(used, req.len() - 3, "the next request is not used");
        assert_eq!(p.body_len, Some(5));
        assert_eq!(body_bytes(&mut p), b"hello");
    }

    #[test]
    fn head_call_uses_only_the_head() {
        let req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab";
        let mut p = parser();
        let n = p.feed(req);
        assert_eq!(n, req.len() - 2);
        assert!(!p.completed());
        assert_eq!(p.feed(&req[n..]), 2);
        assert!(p.completed());
        assert_eq!(p.feed(b"more"), 0);
    }

    #[test]
    fn chunked_body_is_decoded_and_spills_over_inbuf_overflow() {
        let req = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
            a\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n";
        let mut p = parser();
        feed_bytewise(&mut p, req);
        assert!(p.completed() && p.error().is_none());
        assert_eq!(p.body_len, Some(20));
        assert_eq!(body_bytes(&mut p), b"0123456789abcdefghij");
    }

    #[test]
    fn blank_lines_before_a_request_are_skipped() {
        let mut p = parser();
        assert_eq!(p.feed(b"\r\n\r\n"), 4);
        assert!(!p.completed());
        let rest = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(p.feed(rest), rest.len());
        assert!(p.completed());
        assert_eq!(p.head_len, 4 + rest.len());
        assert_eq!(p.head().unwrap().target(), b"/");
    }

    #[test]
    fn errors_are_the_servers() {
        let cases: [(&[u8], u16); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\nHost: x\n\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
                413,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
            ),
            (b"GET /", 0),
        ];
        for (input, status) in cases {
            let mut p = parser();
            feed_bytewise(&mut p, input);
            match p.error() {
                Some(e) => assert_eq!(e.status(), status, "{input:?}"),
                None => assert_eq!(status, 0, "{input:?}"),
            }
        }
        let mut p = parser();
        assert_eq!(p.feed(&[b'a'; 1025]), 1025);
        assert_eq!(p.error().map(RequestError::status), Some(431));
    }

    #[test]
    fn chunked_body_over_the_limit_is_refused() {
        let mut p = parser();
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(p.feed(head), head.len());
        let mut body = b"65\r\n".to_vec();
        body.extend_from_slice(&[b'x'; 101]);
        p.feed(&body);
        assert_eq!(p.error().map(RequestError::status), Some(413));
    }

    #[test]
    fn headers_are_keyed_and_joined_like_waitress() {
        let mut p = parser();
        p.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nX_B: no\r\n\r\n");
        let joined = joined_headers(p.head().unwrap());
        assert_eq!(
            joined,
            vec![
                (b"HOST".to_vec(), b"x".to_vec()),
                (b"X_A".to_vec(), b"1, 2".to_vec()),
            ]
        );
    }

    #[test]
    fn uris_split_into_five_parts() {
        let parts = |scheme: &'static [u8], netloc, path: &[u8], query, fragment| UriParts {
            scheme,
            netloc,
            path: path.to_vec(),
            query,
            fragment,
        };
        assert_eq!(
            split_uri_parts(b"http://example.com:8080/a%20b?x=1#frag"),
            parts(b"http", b"example.com:8080", b"/a b", b"x=1", b"frag")
        );
        assert_eq!(
            split_uri_parts(b"https://h?q"),
            parts(b"https", b"h", b"", b"q", b"")
        );
        assert_eq!(
            split_uri_parts(b"//no/netloc?q=http://x"),
            parts(b"", b"", b"//no/netloc", b"q=http://x", b"")
        );
        assert_eq!(split_uri_parts(b"*"), parts(b"", b"", b"*", b"", b""));
    }

    #[test]
    fn request_lines_are_cracked_as_waitress_does() {
        fn ok(line: &[u8]) -> LineParts<'_> {
            crack(line).unwrap().unwrap()
        }
        assert_eq!(
            ok(b"GET /a?b HTTP/1.1"),
            (&b"GET"[..], &b"/a?b"[..], &b"1.1"[..])
        );
        assert_eq!(ok(b"GET /"), (&b"GET"[..], &b"/"[..], &b""[..]));
        assert_eq!(ok(b"GET / HTTP/2.0"), (&b"GET"[..], &b"/"[..], &b"2.0"[..]));
        assert!(crack(b"get / HTTP/1.1")
            .unwrap_err()
            .message()
            .starts_with("Malformed HTTP method"));
        for line in [
            &b""[..],
            b"GET",
            b"GET ",
            b"GET  / HTTP/1.1",
            b"GET / bleh",
            b"GET / HTTP/.1.",
            b"GE\x00 / HTTP/1.1",
            b"GET / HTTP/1.1 ",
        ] {
            assert_eq!(crack(line).unwrap(), None, "{line:?}");
        }
    }
}
