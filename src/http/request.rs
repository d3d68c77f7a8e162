//! Request heads: the request line and header fields, and the body framing they imply.
//!
//! httparse tokenises; this module adds the strict rules of RFC 9112 that httparse leaves
//! to its caller (bare CR/LF, obs-fold, duplicated or conflicting framing headers, ...), so
//! that nothing which could desynchronise a proxy in front of us is ever accepted.

// Everything here runs on untrusted bytes: no indexing that can panic, no unchecked
// arithmetic.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::http::is_tchar;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::OnceLock;

use memchr::memmem;

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request line + header block accepted (bytes); beyond it: 431.
    pub max_header_size: usize,
    /// Largest declared Content-Length accepted; beyond it: 413.
    pub max_body_size: u64,
    /// Most header field lines accepted (`max_request_headers`); beyond it: 431. Every
    /// field costs the application an environ entry: bounded, one head cannot make a
    /// request cost much more than a typical one.
    pub max_fields: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// A request that came on an HTTP/2 stream (`crate::h2`): no head on the wire, its
    /// fields rebuilt into a [`RequestHead`] so the rest of the server reads it as any.
    Http2,
}

/// How the body of a request is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no Content-Length and no Transfer-Encoding, or Content-Length: 0).
    Empty,
    /// Exactly this many bytes follow the head (> 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One header field line: byte ranges into [`RequestHead::buf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as sent (case preserved).
    pub name: Range<usize>,
    /// The value with leading and trailing SP/HTAB removed.
    pub value: Range<usize>,
}

/// A parsed and validated request head. Owns its bytes so it can cross to a worker thread
/// without borrowing the connection's read buffer.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The head as received: request line, header lines and the final empty line
    /// (empty lines received before the request line are not included).
    pub buf: Vec<u8>,
    pub method: Range<usize>,
    /// The request-target exactly as sent.
    pub target: Range<usize>,
    pub version: Version,
    /// Header lines in the order received, except those whose name contains `_`
    /// (dropped, as waitress does, so `X_Forwarded_For` cannot pose as `X-Forwarded-For`).
    pub headers: Vec<Header>,
    pub body: BodyKind,
    /// Whether the connection may stay open after this request: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

// The ranges come from parse_head and always lie within buf.
#[allow(clippy::indexing_slicing)]
impl RequestHead {
    pub fn method(&self) -> &[u8] {
        &self.buf[self.method.clone()]
    }
    pub fn target(&self) -> &[u8] {
        &self.buf[self.target.clone()]
    }
    pub fn header_name(&self, h: &Header) -> &[u8] {
        &self.buf[h.name.clone()]
    }
    pub fn header_value(&self, h: &Header) -> &[u8] {
        &self.buf[h.value.clone()]
    }
    /// The value of the first header with this (case-insensitive) name.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| self.header_name(h).eq_ignore_ascii_case(name))
            .map(|h| self.header_value(h))
    }
}

/// Why a request was refused; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// 400, with the message shown in the response body.
    BadRequest(String),
    /// 431: the head exceeds `max_header_size`.
    HeaderTooLarge(String),
    /// 413: the declared or decoded body exceeds `max_body_size`.
    BodyTooLarge(String),
    /// 501: a transfer coding other than chunked.
    NotImplemented(String),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeaderTooLarge(_) => 431,
            RequestError::BodyTooLarge(_) => 413,
            RequestError::NotImplemented(_) => 501,
        }
    }
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::BadRequest(_) => "Bad Request",
            RequestError::HeaderTooLarge(_) => "Request Header Fields Too Large",
            RequestError::BodyTooLarge(_) => "Request Entity Too Large",
            RequestError::NotImplemented(_) => "Not Implemented",
        }
    }
    pub fn message(&self) -> &str {
        match self {
            RequestError::BadRequest(m)
            | RequestError::HeaderTooLarge(m)
            | RequestError::BodyTooLarge(m)
            | RequestError::NotImplemented(m) => m,
        }
    }
}

/// Parses one request head from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a head (and is still within
/// `max_header_size`), or `Ok(Some((head, consumed)))` where `consumed` counts the bytes
/// of `buf` used, including empty lines before the request line (RFC 9112 section 2.2).
pub fn parse_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let Some(start) = skip_empty_lines(buf, limits)? else {
        return Ok(None);
    };
    let rest = buf.get(start..).unwrap_or_default();
    let Some(len) = scan_head(rest, limits)? else {
        return Ok(None);
    };
    let head = rest.get(..len).ok_or_else(malformed)?;
    let parsed = match build_any(head, limits) {
        Ok(parsed) => parsed,
        // RFC 9110 section 2.5: a higher minor version of HTTP/1 is handled as the
        // highest one we know. httparse knows 1.0 and 1.1 only, so only a refused head
        // is looked at again (the common path pays nothing).
        Err(e) => match as_http11(head) {
            Some(copy) => {
                let mut parsed = build_any(&copy, limits)?;
                // The head as received (its ranges are the same): only `version` says 1.1.
                parsed.buf = head.to_vec();
                parsed
            }
            None => return Err(e),
        },
    };
    let consumed = start.checked_add(len).ok_or_else(malformed)?;
    Ok(Some((parsed, consumed)))
}

/// [`build`] with slots on the stack, or on the heap for a head with many field lines.
fn build_any(head: &[u8], limits: &Limits) -> Result<RequestHead, RequestError> {
    let mut slots = [MaybeUninit::uninit(); STACK_HEADERS];
    match build(head, &mut slots, limits)? {
        Some(parsed) => Ok(parsed),
        None => {
            // Every line but the request line and the final empty one is a field line.
            let field_lines = memchr::memchr_iter(b'\n', head).count().saturating_sub(2);
            if field_lines > limits.max_fields {
                return Err(too_many_fields(limits));
            }
            let mut slots = vec![MaybeUninit::uninit(); field_lines];
            build(head, &mut slots, limits)?.ok_or_else(malformed)
        }
    }
}

/// `method SP target SP version` of a head's request line (after any empty lines), if
/// the line is complete and has that shape with a token for a method.
fn request_line(buf: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut rest = buf;
    while let [b'\r', b'\n', after @ ..] = rest {
        rest = after;
    }
    let line = rest.get(..memmem::find(rest, b"\r\n")?)?;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let method_ok = !method.is_empty() && method.iter().all(|&b| is_tchar(b));
    (method_ok && !target.is_empty()).then_some((method, target, version))
}

/// The version of `HTTP/1.x`: 1.0, and 1.1 for 1.1 to 1.9 (RFC 9110 section 2.5).
fn http1_version(version: &[u8]) -> Option<Version> {
    match version {
        b"HTTP/1.0" => Some(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1'..=b'9'] => Some(Version::Http11),
        _ => None,
    }
}

/// A copy of `head` whose request line says HTTP/1.1 instead of HTTP/1.2 to 1.9.
fn as_http11(head: &[u8]) -> Option<Vec<u8>> {
    let (_, _, version) = request_line(head)?;
    if version == b"HTTP/1.1" || http1_version(version) != Some(Version::Http11) {
        return None;
    }
    let at = (version.as_ptr() as usize)
        .checked_sub(head.as_ptr() as usize)?
        .checked_add(7)?;
    let mut copy = head.to_vec();
    *copy.get_mut(at)? = b'1';
    Some(copy)
}

/// The version a refused head is answered in: the request's own when its request line
/// was understood, else HTTP/1.0. A head too large too is answered in its request's
/// version when its request line arrived whole (waitress says HTTP/1.0 there): an
/// HTTP/1.1 client is owed an HTTP/1.1 answer.
pub fn answer_version(buf: &[u8], _err: &RequestError) -> Version {
    request_line(buf)
        .and_then(|(_, _, version)| http1_version(version))
        .unwrap_or(Version::Http10)
}

/// Header slots kept on the stack; heads with more field lines get a Vec.
const STACK_HEADERS: usize = 64;

/// 19 decimal digits always fit in a u64; 20 may not.
const MAX_CONTENT_LENGTH_DIGITS: usize = 19;

const BARE_CR_LF: &str = "Bare CR or LF found in HTTP message";
/// waitress's text for a request-target it cannot read.
const BAD_URI: &str = "Bad URI";

fn bad(message: &str) -> RequestError {
    RequestError::BadRequest(message.to_owned())
}

/// An internal inconsistency between the scan and httparse; reported rather than panicking.
fn malformed() -> RequestError {
    bad("Malformed request head")
}

/// The 431 for a head over `max_header_size` (also used by `reader` while a head's end
/// is awaited): the one place its message is built.
pub fn header_too_large(limits: &Limits) -> RequestError {
    RequestError::HeaderTooLarge(format!("exceeds max_header of {}", limits.max_header_size))
}

fn too_many_fields(limits: &Limits) -> RequestError {
    RequestError::HeaderTooLarge(format!(
        "more than {} header fields (max_request_headers)",
        limits.max_fields
    ))
}

/// Returns where the request line starts, or `None` if `buf` holds only empty lines so far.
/// Their total is bounded like a head, or a peer could make us buffer CRLFs forever.
fn skip_empty_lines(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RequestError> {
    let mut pos = 0usize;
    loop {
        match buf.get(pos..).unwrap_or_default() {
            [] | [b'\r'] => return Ok(None),
            [b'\r', b'\n', ..] => pos = pos.checked_add(2).ok_or_else(malformed)?,
            [b'\r', ..] | [b'\n', ..] => return Err(bad(BARE_CR_LF)),
            _ => return Ok(Some(pos)),
        }
        if pos > limits.max_header_size {
            return Err(header_too_large(limits));
        }
    }
}

/// Finds the end of the head and checks its line structure. A partial head is checked as
/// far as it goes, so garbage (a TLS handshake, bare LFs) fails at once instead of waiting
/// for the size limit.
///
/// Returns the length of the head through its final empty line, or `None` if it is not
/// complete yet.
fn scan_head(rest: &[u8], limits: &Limits) -> Result<Option<usize>, RequestError> {
    static HEAD_END: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    let finder = HEAD_END.get_or_init(|| memmem::Finder::new(b"\r\n\r\n"));
    // A head ending beyond max_header_size is refused anyway, so never look further.
    let window = rest.get(..limits.max_header_size).unwrap_or(rest);
    let (checked, len) = match finder.find(window) {
        Some(pos) => {
            let len = pos.checked_add(4).ok_or_else(malformed)?;
            (window.get(..len).ok_or_else(malformed)?, Some(len))
        }
        None if rest.len() > limits.max_header_size => return Err(header_too_large(limits)),
        // The CR of a line ending may have arrived without its LF yet.
        None => (window.strip_suffix(b"\r").unwrap_or(window), None),
    };
    if !check_lines(checked) {
        return Err(explain(checked));
    }
    Ok(len)
}

/// Control characters other than HTAB, CR and LF (whose placement is checked separately).
pub(crate) fn is_other_control(b: u8) -> bool {
    ((b < 0x20) & (b != b'\t') & (b != b'\r') & (b != b'\n')) | (b == 0x7f)
}

/// Whether the pair `x y` breaks a rule of RFC 9112 section 2.2 / 5.2: a control byte, a CR
/// not followed by LF, an LF not preceded by CR, or a line starting with whitespace after a
/// line ending (obs-fold, or whitespace before the first field line).
fn is_bad_pair(x: u8, y: u8) -> bool {
    let bare = ((x == b'\r') & (y != b'\n')) | ((y == b'\n') & (x != b'\r'));
    let fold = (x == b'\n') & ((y == b' ') | (y == b'\t'));
    is_other_control(x) | bare | fold
}

/// Checks every adjacent pair of bytes in one branch-free pass, in fixed-size blocks so that
/// it vectorises (this runs over every head). Returns whether all rules hold; [`explain`]
/// says which one does not.
// Indices run below BLOCK, the length of all three arrays.
#[allow(clippy::indexing_slicing)]
fn check_lines(bytes: &[u8]) -> bool {
    const BLOCK: usize = 32;
    let mut bad = bytes.first() == Some(&b'\n')
        || bytes
            .last()
            .is_some_and(|&b| b == b'\r' || is_other_control(b));
    let next = bytes.get(1..).unwrap_or_default();
    let mut ys = next.chunks_exact(BLOCK);
    let mut found = [0u8; BLOCK];
    for (x, y) in bytes.chunks_exact(BLOCK).zip(&mut ys) {
        let (Ok(x), Ok(y)) = (<&[u8; BLOCK]>::try_from(x), <&[u8; BLOCK]>::try_from(y)) else {
            return false;
        };
        for i in 0..BLOCK {
            found[i] |= u8::from(is_bad_pair(x[i], y[i]));
        }
    }
    bad |= found.iter().any(|&f| f != 0);
    // The zip ends with `ys`, one byte shorter: the pairs left start where its blocks end.
    let tail = bytes
        .get(next.len().saturating_sub(ys.remainder().len())..)
        .unwrap_or_default();
    for (&x, &y) in tail.iter().zip(tail.get(1..).unwrap_or_default()) {
        bad |= is_bad_pair(x, y);
    }
    !bad
}

/// The first rule [`check_lines`] found broken, as a message. Only runs on failure.
/// The texts are waitress's where it refuses the same thing: a bare CR or LF in a
/// header line, and a first header line starting with whitespace, name the line.
fn explain(bytes: &[u8]) -> RequestError {
    let mut prev = None;
    let mut lfs = 0usize;
    // Where the current line starts (lines as waitress splits them: on CRLF).
    let mut line_start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        let next = i.checked_add(1).and_then(|n| bytes.get(n)).copied();
        if is_other_control(b) {
            return bad("Invalid control character in HTTP message");
        }
        if (b == b'\r' && next != Some(b'\n')) || (b == b'\n' && prev != Some(b'\r')) {
            if lfs == 0 {
                return bad(BARE_CR_LF);
            }
            return quoting_line("Bare CR or LF found in header line", bytes, line_start);
        }
        if b == b'\n' {
            lfs = lfs.saturating_add(1);
            line_start = i.saturating_add(1);
            if matches!(next, Some(b' ' | b'\t')) {
                if lfs == 1 {
                    return quoting_line("Malformed header line", bytes, line_start);
                }
                return bad("Obsolete line folding is not allowed");
            }
        }
        prev = Some(b);
    }
    malformed()
}

/// `message "line"`, the line starting at `start` and ending at the next CRLF.
fn quoting_line(message: &str, bytes: &[u8], start: usize) -> RequestError {
    let rest = bytes.get(start..).unwrap_or_default();
    let line = rest
        .get(..memmem::find(rest, b"\r\n").unwrap_or(rest.len()))
        .unwrap_or_default();
    let latin1: String = line.iter().map(|&b| char::from(b)).collect();
    RequestError::BadRequest(format!("{message} \"{latin1}\""))
}

/// Tokenises a complete, already scanned head with httparse and applies the rules it leaves
/// to its caller. `None`: more field lines than `slots`.
fn build<'b>(
    head: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
) -> Result<Option<RequestHead>, RequestError> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, slots) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(malformed()),
        Err(httparse::Error::TooManyHeaders) => return Ok(None),
        // httparse does not say where it failed; the request line is checked again to tell
        // the client which part was wrong.
        Err(_) => return Err(diagnose(head)),
    }
    if req.headers.len() > limits.max_fields {
        return Err(too_many_fields(limits));
    }
    let method = req.method.map(str::as_bytes).unwrap_or_default();
    let target = req.path.map(str::as_bytes).unwrap_or_default();
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(malformed()),
    };
    // Methods are case-sensitive and all registered ones are uppercase; like waitress,
    // refuse `get` rather than let an application mistake it for GET.
    if method.iter().any(u8::is_ascii_lowercase) {
        return Err(malformed_method(method));
    }
    // RFC 9112 section 3.2: a request-target is ASCII (httparse lets UTF-8 through).
    if !target.is_ascii() {
        return Err(bad(BAD_URI));
    }
    check_target(method, target)?;

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut fields = Fields::default();
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        // A fold rather than contains(): names are short, memchr's setup is not worth it.
        if name.iter().fold(false, |found, &b| found | (b == b'_')) {
            continue;
        }
        let value = trim(field.value);
        headers.push(Header {
            name: range_of(head, name)?,
            value: range_of(head, value)?,
        });
        fields.observe(name, value)?;
    }
    let (body, keep_alive) = fields.framing(version, limits)?;
    Ok(Some(RequestHead {
        buf: head.to_vec(),
        method: range_of(head, method)?,
        target: range_of(head, target)?,
        version,
        headers,
        body,
        keep_alive,
        expect_continue: version == Version::Http11 && fields.expect_continue,
    }))
}

/// Where `part`, a subslice of `base`, lies in it.
fn range_of(base: &[u8], part: &[u8]) -> Result<Range<usize>, RequestError> {
    let start = (part.as_ptr() as usize)
        .checked_sub(base.as_ptr() as usize)
        .ok_or_else(malformed)?;
    let end = start
        .checked_add(part.len())
        .filter(|&end| end <= base.len())
        .ok_or_else(malformed)?;
    Ok(start..end)
}

/// httparse already drops SP/HTAB around values; trimming again keeps the guarantee of
/// [`Header::value`] independent of its version.
fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// The header fields that matter to the server itself, gathered in one pass.
#[derive(Default)]
struct Fields<'b> {
    host_seen: bool,
    content_type_seen: bool,
    transfer_encoding: Option<&'b [u8]>,
    transfer_encoding_lines: usize,
    content_length: Option<&'b [u8]>,
    content_length_lines: usize,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl<'b> Fields<'b> {
    fn observe(&mut self, name: &[u8], value: &'b [u8]) -> Result<(), RequestError> {
        // Dispatch on length first: most fields are none of these.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                if self.host_seen {
                    return Err(bad("Multiple Host headers"));
                }
                self.host_seen = true;
                // RFC 9112 section 3.2: an invalid Host value gets a 400, like a missing one.
                if !value.iter().all(|&b| is_host_char(b)) {
                    return Err(bad("Host header is invalid"));
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|&b| b == b',').map(trim) {
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            // One representation, one type (RFC 9110 section 8.3): two Content-Type
            // fields leave the application guessing which one a proxy honoured.
            12 if name.eq_ignore_ascii_case(b"content-type") => {
                if self.content_type_seen {
                    return Err(bad("Multiple Content-Type headers"));
                }
                self.content_type_seen = true;
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                self.content_length = Some(value);
                self.content_length_lines = self.content_length_lines.saturating_add(1);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.transfer_encoding = Some(value);
                self.transfer_encoding_lines = self.transfer_encoding_lines.saturating_add(1);
            }
            _ => {}
        }
        Ok(())
    }

    /// The body framing (RFC 9112 section 6) and whether the connection may persist.
    fn framing(&self, version: Version, limits: &Limits) -> Result<(BodyKind, bool), RequestError> {
        if version == Version::Http11 && !self.host_seen {
            return Err(bad("Missing Host header"));
        }
        let body = if let Some(te) = self.transfer_encoding {
            // An HTTP/1.0 recipient may not know chunked; a message whose intermediaries
            // could disagree on its length is refused outright (RFC 9112 section 6.1).
            if version == Version::Http10 {
                return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0"));
            }
            if self.transfer_encoding_lines > 1 {
                return Err(bad("Multiple Transfer-Encoding headers"));
            }
            if self.content_length.is_some() {
                return Err(bad("Content-Length with Transfer-Encoding"));
            }
            let mut chunked = false;
            for coding in te.split(|&b| b == b',').map(trim) {
                if coding.is_empty() {
                    return Err(bad("Transfer-Encoding is invalid"));
                }
                if !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(RequestError::NotImplemented(
                        "Transfer-Encoding requested is not supported.".to_owned(),
                    ));
                }
                if chunked {
                    return Err(bad("Transfer-Encoding applies chunked more than once"));
                }
                chunked = true;
            }
            BodyKind::Chunked
        } else if let Some(cl) = self.content_length {
            // Even identical duplicates are refused: a proxy might have used either line.
            if self.content_length_lines > 1 {
                return Err(bad("Content-Length is invalid"));
            }
            let length =
                parse_content_length(cl).ok_or_else(|| bad("Content-Length is invalid"))?;
            if length > limits.max_body_size {
                return Err(RequestError::BodyTooLarge(format!(
                    "exceeds max_body of {}",
                    limits.max_body_size
                )));
            }
            if length == 0 {
                BodyKind::Empty
            } else {
                BodyKind::Length(length)
            }
        } else {
            BodyKind::Empty
        };
        let keep_alive = match version {
            Version::Http11 | Version::Http2 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        };
        Ok((body, keep_alive))
    }
}

/// `1*DIGIT`, nothing else: no sign, no whitespace, no list.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > MAX_CONTENT_LENGTH_DIGITS {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?
                .checked_add(u64::from(b.wrapping_sub(b'0')))
        } else {
            None
        }
    })
}

/// The request-target forms of RFC 9112 section 3.2, each only with the methods that use it.
fn check_target(method: &[u8], target: &[u8]) -> Result<(), RequestError> {
    let valid = if method == b"CONNECT" {
        is_authority_form(target)
    } else {
        match target {
            [b'/', ..] => true,
            b"*" => method == b"OPTIONS",
            _ => is_absolute_form(target),
        }
    };
    if valid {
        Ok(())
    } else {
        Err(bad("Invalid request target"))
    }
}

/// `http://` or `https://` with a non-empty authority. Userinfo (`@`) is refused: RFC 9110
/// section 4.2.4 asks recipients to treat it as an error.
fn is_absolute_form(target: &[u8]) -> bool {
    let Some(rest) = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
    else {
        return false;
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    !authority.is_empty() && authority.iter().all(|&b| is_host_char(b))
}

/// `host:port`, as CONNECT requires.
fn is_authority_form(target: &[u8]) -> bool {
    let Some(colon) = target.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let host = target.get(..colon).unwrap_or_default();
    let port = target
        .get(colon..)
        .and_then(|p| p.strip_prefix(b":"))
        .unwrap_or_default();
    !host.is_empty()
        && host.iter().all(|&b| is_host_char(b))
        && (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Characters of `uri-host [":" port]`: reg-name (unreserved, pct-encoded, sub-delims),
/// IP-literal brackets and the port colon. A table: every Host value goes through it.
pub(crate) fn is_host_char(b: u8) -> bool {
    static HOST_CHARS: [bool; 256] = {
        let mut map = [false; 256];
        let chars = b"-._~%!$&'()*+,;=:[]0123456789\
            ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut i = 0;
        while i < chars.len() {
            // Constant evaluation: an out-of-bounds index would fail the build, not panic.
            #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
            {
                map[chars[i] as usize] = true;
                i += 1;
            }
        }
        map
    };
    HOST_CHARS.get(usize::from(b)).copied().unwrap_or(false)
}

fn malformed_method(method: &[u8]) -> RequestError {
    let latin1: String = method.iter().map(|&b| char::from(b)).collect();
    RequestError::BadRequest(format!("Malformed HTTP method \"{latin1}\""))
}

/// Names the part of a head that httparse refused: the request line if it is not
/// `method SP target SP HTTP/1.x`, else the header fields. Only runs on failure.
fn diagnose(head: &[u8]) -> RequestError {
    // The scan guarantees that every CR in the head starts a CRLF.
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.is_empty() {
        return bad("Start line is invalid");
    }
    if !method.iter().all(|&b| is_tchar(b)) || method.iter().any(u8::is_ascii_lowercase) {
        return malformed_method(method);
    }
    let Some(target) = parts.next() else {
        return bad("Start line is invalid");
    };
    let Some(version) = parts.next() else {
        return bad("Missing HTTP version");
    };
    if target.is_empty() || version.contains(&b' ') {
        return bad("Start line is invalid");
    }
    if !target.is_ascii() {
        return bad(BAD_URI);
    }
    if !target.iter().all(|&b| b > b' ' && b != 0x7f) {
        return bad("Invalid request target");
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        let latin1: String = version.iter().map(|&b| char::from(b)).collect();
        return RequestError::BadRequest(format!("Unsupported HTTP version \"{latin1}\""));
    }
    bad("Invalid header")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_size: 8192,
        max_body_size: 1_000_000,
        max_fields: usize::MAX,
    };

    fn parse(input: &[u8]) -> Result<Option<(RequestHead, usize)>, RequestError> {
        parse_head(input, &LIMITS)
    }

    fn complete(input: &[u8]) -> (RequestHead, usize) {
        match parse(input) {
            Ok(Some(parsed)) => parsed,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn fields(head: &RequestHead) -> Vec<(&[u8], &[u8])> {
        head.headers
            .iter()
            .map(|h| (head.header_name(h), head.header_value(h)))
            .collect()
    }

    fn assert_same(a: &RequestHead, b: &RequestHead) {
        assert_eq!(a.buf, b.buf);
        assert_eq!(a.method, b.method);
        assert_eq!(a.target, b.target);
        assert_eq!(a.version, b.version);
        assert_eq!(a.headers, b.headers);
        assert_eq!(a.body, b.body);
        assert_eq!(a.keep_alive, b.keep_alive);
        assert_eq!(a.expect_continue, b.expect_continue);
    }

    #[test]
    fn get_http11() {
        let input: &[u8] = b"GET /path?q=1 HTTP/1.1\r\n\
            Host: example.com\r\n\
            X_Forwarded_For: 6.6.6.6\r\n\
            Accept: \t text/html \t\r\n\
            X-Empty:\r\n\
            X-Blank: \t \r\n\
            X-Obs-Text: caf\xe9 \x80\xff\r\n\
            X-Inner: a  \t b\r\n\
            \r\n";
        let (head, consumed) = complete(input);
        assert_eq!(consumed, input.len());
        assert_eq!(head.buf, input);
        assert_eq!(head.method, 0..3);
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target, 4..13);
        assert_eq!(head.target(), b"/path?q=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(
            fields(&head),
            vec![
                (&b"Host"[..], &b"example.com"[..]),
                (b"Accept", b"text/html"),
                (b"X-Empty", b""),
                (b"X-Blank", b""),
                (b"X-Obs-Text", b"caf\xe9 \x80\xff"),
                (b"X-Inner", b"a  \t b"),
            ]
        );
        assert_eq!(
            head.headers[0],
            Header {
                name: 24..28,
                value: 30..41
            }
        );
        assert_eq!(head.header(b"HOST"), Some(&b"example.com"[..]));
        assert_eq!(head.header(b"X_Forwarded_For"), None);
        assert_eq!(head.body, BodyKind::Empty);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
    }

    #[test]
    fn post_http11() {
        let input = b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\
            Expect:  100-Continue \r\nConnection: close\r\n\r\n";
        let (head, consumed) = complete(input);
        assert_eq!(consumed, input.len());
        assert_eq!(head.method(), b"POST");
        assert_eq!(head.target(), b"/submit");
        assert_eq!(head.body, BodyKind::Length(42));
        assert!(!head.keep_alive);
        assert!(head.expect_continue);
        assert_eq!(head.header(b"expect"), Some(&b"100-Continue"[..]));
    }

    #[test]
    fn head_http10() {
        let (head, _) = complete(b"HEAD / HTTP/1.0\r\n\r\n");
        assert_eq!(head.method(), b"HEAD");
        assert_eq!(head.version, Version::Http10);
        assert!(head.headers.is_empty());
        assert_eq!(head.body, BodyKind::Empty);
        assert!(!head.keep_alive);

        let (head, _) = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) =
            complete(b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n");
        assert!(!head.keep_alive);
        // Expect only means something in HTTP/1.1.
        let (head, _) =
            complete(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!head.expect_continue);
        assert_eq!(head.body, BodyKind::Length(1));
    }

    #[test]
    fn connection_tokens_http11() {
        let keep = |input: &[u8]| complete(input).0.keep_alive;
        assert!(keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed, upgrade\r\n\r\n"
        ));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nconnection: x ,\tCLOSE\r\n\r\n"
        ));
        // A name with `_` is not the Connection header.
        assert!(keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection_: close\r\n\r\n"
        ));
    }

    #[test]
    fn body_kinds() {
        let body = |input: &[u8]| complete(input).0.body;
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
            BodyKind::Empty
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n"),
            BodyKind::Empty
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n\r\n"),
            BodyKind::Length(12)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \t Chunked \t\r\n\r\n"),
            BodyKind::Chunked
        );
        // `_` fields do not take part in framing.
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\n"),
            BodyKind::Length(5)
        );
        let max = Limits {
            max_header_size: 8192,
            max_body_size: u64::MAX,
            max_fields: usize::MAX,
        };
        let (head, _) = parse_head(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n",
            &max,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.body, BodyKind::Length(9_999_999_999_999_999_999));
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"),
            BodyKind::Length(1_000_000)
        );
    }

    #[test]
    fn target_forms() {
        let target = |input: &[u8]| complete(input).0.target().to_vec();
        assert_eq!(target(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), b"*");
        assert_eq!(
            target(b"GET http://example.com/x?y HTTP/1.1\r\nHost: a\r\n\r\n"),
            b"http://example.com/x?y"
        );
        assert_eq!(
            target(b"GET HTTPS://Example.com:8443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            b"HTTPS://Example.com:8443"
        );
        assert_eq!(
            target(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            b"example.com:443"
        );
        assert_eq!(
            target(b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
            b"[::1]:8080"
        );
        assert_eq!(
            target(b"M-SEARCH /%7Euser/a;b,c HTTP/1.1\r\nHost: a\r\n\r\n"),
            b"/%7Euser/a;b,c"
        );
    }

    #[test]
    fn leading_empty_lines() {
        let input = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (head, consumed) = complete(input);
        assert_eq!(consumed, input.len());
        assert_eq!(head.buf, &input[4..]);
        assert_eq!(head.method, 0..3);
        assert_eq!(parse(b"").unwrap().map(|p| p.1), None);
        assert_eq!(parse(b"\r").unwrap().map(|p| p.1), None);
        assert_eq!(parse(b"\r\n\r").unwrap().map(|p| p.1), None);
        assert_eq!(parse(b"\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"\r\n\n").unwrap_err().status(), 400);
        assert_eq!(parse(b"\r\rGET").unwrap_err().status(), 400);
        // An endless stream of empty lines is bounded like a head.
        assert_eq!(parse(&b"\r\n".repeat(5000)).unwrap_err().status(), 431);
    }

    #[test]
    fn every_split_point() {
        let inputs: [&[u8]; 4] = [
            b"\r\nPOST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\
              X_Y: z\r\nX-Value:  v a l \r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\nX:\r\n\r\n",
        ];
        for input in inputs {
            let (full, consumed) = complete(input);
            assert_eq!(consumed, input.len());
            for i in 0..input.len() {
                match parse(&input[..i]) {
                    Ok(None) => {}
                    other => panic!(
                        "prefix {i} of {:?}: {other:?}",
                        String::from_utf8_lossy(input)
                    ),
                }
            }
            // Followed by a body or the next request: those bytes are not consumed.
            let mut longer = input.to_vec();
            longer.extend_from_slice(b"hello\r\nGET / HTTP/1.1\r\n\r\n");
            let (again, consumed_again) = complete(&longer);
            assert_eq!(consumed_again, consumed);
            assert_same(&full, &again);
        }
    }

    #[test]
    fn pipelined() {
        let input = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: b\r\n\r\nGET /c";
        let (first, consumed) = complete(input);
        assert_eq!(first.target(), b"/a");
        assert_eq!(&input[consumed..consumed + 5], b"hello");
        let rest = &input[consumed + 5..];
        let (second, consumed2) = complete(rest);
        assert_eq!(second.target(), b"/b");
        assert_eq!(&rest[consumed2..], b"GET /c");
        assert!(parse(&rest[consumed2..]).unwrap().is_none());
    }

    #[test]
    fn many_headers() {
        let mut input = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..200 {
            input.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let (head, consumed) = complete(&input);
        assert_eq!(consumed, input.len());
        assert_eq!(head.headers.len(), 201);
        let got = fields(&head);
        assert_eq!(got[200], (&b"X-199"[..], &b"199"[..]));
        // Exactly the stack capacity.
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..STACK_HEADERS {
            input.extend_from_slice(format!("Host{i}: x\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        let input = String::from_utf8(input)
            .unwrap()
            .replacen("Host0", "Host", 1);
        assert_eq!(complete(input.as_bytes()).0.headers.len(), STACK_HEADERS);
    }

    #[test]
    fn header_size_limit() {
        let limits = Limits {
            max_header_size: 64,
            max_body_size: 10,
            max_fields: usize::MAX,
        };
        let exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: 01234567890123456789012345678901\r\n\r\n";
        assert_eq!(exact.len(), 64);
        assert!(parse_head(exact, &limits).unwrap().is_some());
        let over = b"GET / HTTP/1.1\r\nHost: a\r\nX: 012345678901234567890123456789012\r\n\r\n";
        let err = parse_head(over, &limits).unwrap_err();
        assert_eq!(
            err,
            RequestError::HeaderTooLarge("exceeds max_header of 64".into())
        );
        // Without a terminator: waiting until the limit, refused beyond it.
        assert!(parse_head(&over[..64], &limits).unwrap().is_none());
        assert_eq!(parse_head(&over[..65], &limits).unwrap_err().status(), 431);
        assert_eq!(
            parse_head(&[b'A'; 1000], &limits).unwrap_err().status(),
            431
        );
        // Leading empty lines do not count towards the head.
        let mut padded = b"\r\n\r\n".to_vec();
        padded.extend_from_slice(exact);
        assert!(parse_head(&padded, &limits).unwrap().is_some());
    }

    #[test]
    fn higher_minor_versions_are_read_as_http11() {
        for minor in b'2'..=b'9' {
            let mut input = b"GET /a HTTP/1.x\r\nHost: a\r\n\r\n".to_vec();
            input[14] = minor;
            let (head, used) = complete(&input);
            assert_eq!(used, input.len());
            assert_eq!(head.buf, input, "the head as received");
            assert_eq!(head.version, Version::Http11);
            assert_eq!(head.target(), b"/a");
            assert!(head.keep_alive);
        }
        // as HTTP/1.1: Host is required
        let err = parse(b"GET / HTTP/1.5\r\n\r\n").unwrap_err();
        assert_eq!(err.message(), "Missing Host header");
        // other versions keep their answer
        for input in [
            &b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.a\r\nHost: a\r\n\r\n",
        ] {
            assert!(parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn refusals_answer_in_the_request_version() {
        let version = |input: &[u8]| answer_version(input, &parse(input).unwrap_err());
        assert_eq!(version(b"GET / HTTP/1.1\r\n\r\n"), Version::Http11);
        assert_eq!(
            version(b"\r\nGET / HTTP/1.3\r\nX : y\r\n\r\n"),
            Version::Http11
        );
        assert_eq!(
            version(b"GET / HTTP/1.0\r\nContent-Length: x\r\n\r\n"),
            Version::Http10
        );
        assert_eq!(
            version(b"get / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Version::Http11
        );
        // not understood: HTTP/1.0
        assert_eq!(version(b"GET / HTTP/2.0\r\n\r\n"), Version::Http10);
        assert_eq!(version(b"GET /\r\n\r\n"), Version::Http10);
        assert_eq!(version(b"\x16\x03\x01\x02\x00\x01"), Version::Http10);
        let too_large = RequestError::HeaderTooLarge("x".into());
        assert_eq!(
            answer_version(b"GET / HTTP/1.1\r\n", &too_large),
            Version::Http11
        );
        assert_eq!(
            answer_version(b"GET /aaaaaaaa", &too_large),
            Version::Http10
        );
    }

    #[test]
    fn messages() {
        let msg = |input: &[u8]| parse(input).unwrap_err().message().to_owned();
        assert_eq!(
            msg(b"get / HTTP/1.1\r\nHost: a\r\n\r\n"),
            "Malformed HTTP method \"get\""
        );
        assert_eq!(
            msg(b"G\xe9T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            "Malformed HTTP method \"G\u{e9}T\""
        );
        // waitress's texts where it refuses the same thing
        assert_eq!(
            msg(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
            "Bare CR or LF found in header line \"Host: a\rb\""
        );
        assert_eq!(
            msg(b"GET / HTTP/1.0\r\n Host: 0\r\n\r\n"),
            "Malformed header line \" Host: 0\""
        );
        assert_eq!(msg(b"GET /\xc3\xa4 HTTP/1.1\r\nHost: a\r\n\r\n"), "Bad URI");
        assert_eq!(msg(b"GET /\xe4 HTTP/1.1\r\nHost: a\r\n\r\n"), "Bad URI");
        assert_eq!(msg(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), BARE_CR_LF);
        assert_eq!(
            msg(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            "Multiple Host headers"
        );
        assert_eq!(msg(b"GET / HTTP/1.1\r\n\r\n"), "Missing Host header");
        assert_eq!(
            msg(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\ncontent-type: c/d\r\n\r\n"),
            "Multiple Content-Type headers"
        );
        assert_eq!(
            msg(b"GET / HTTP/2.0\r\n\r\n"),
            "Unsupported HTTP version \"HTTP/2.0\""
        );
        assert_eq!(msg(b"GET /\r\n\r\n"), "Missing HTTP version");
        assert_eq!(
            msg(b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n"),
            "Invalid request target"
        );
        assert_eq!(msg(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), "Invalid header");
        assert_eq!(
            msg(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Content-Length with Transfer-Encoding"
        );
        assert_eq!(
            msg(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000001\r\n\r\n"),
            "exceeds max_body of 1000000"
        );
        assert_eq!(
            msg(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            "Transfer-Encoding requested is not supported."
        );
        let err = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n").unwrap_err();
        assert_eq!(
            err,
            RequestError::BadRequest("Content-Length is invalid".into())
        );
        assert_eq!(err.reason(), "Bad Request");
    }

    #[test]
    fn invalid() {
        let cases: &[(&str, &[u8], u16)] = &[
            ("CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("TE+CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
            ("dup CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
            ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400),
            ("CL +", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +10\r\n\r\n", 400),
            ("CL -", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            ("CL inner space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  1 0\r\n\r\n", 400),
            ("CL hex", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
            ("CL empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
            ("CL 20 digits", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000001\r\n\r\n", 400),
            ("CL u64 overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", 400),
            ("CL over limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000001\r\n\r\n", 413),
            ("CL 19 nines", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n", 413),
            ("TE on 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("TE chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
            ("TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501),
            ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            ("TE two lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("TE VT", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
            ("TE empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400),
            ("TE empty element", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400),
            ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400),
            ("obs-fold tab", b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400),
            ("space before first field", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
            ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
            ("empty name", b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
            ("no colon", b"GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400),
            ("bad name char", b"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 400),
            ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
            ("CR CR LF", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", 400),
            ("bare CR in request line", b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("bare LF in header", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
            ("bare LF in request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
            ("bare LF terminator", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
            ("only LFs", b"GET / HTTP/1.1\n\n", 400),
            ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
            ("NUL in target", b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("DEL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
            ("DEL in name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x7f: b\r\n\r\n", 400),
            ("control in method", b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("ESC in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", 400),
            ("lowercase method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("mixed case method", b"Get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("method with (", b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("method with @", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("leading space", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("double space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
            ("HTTP/1.x", b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400),
            ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
            ("http/1.1", b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
            ("HTTP/0.9 style", b"GET /\r\n\r\n", 400),
            ("trailing space after version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
            ("junk after version", b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400),
            ("missing Host", b"GET / HTTP/1.1\r\nX: a\r\n\r\n", 400),
            ("Host with _ only", b"GET / HTTP/1.1\r\nHost_: a\r\n\r\n", 400),
            ("two Host", b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
            ("two Host on 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("Host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            ("Host with path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
            ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
            ("bad target", b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("asterisk with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("authority with GET", b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("CONNECT origin-form", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("CONNECT no port", b"CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("empty authority", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("userinfo in target", b"GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("other scheme", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("non-UTF-8 target", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("TLS handshake", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        ];
        for &(name, input, status) in cases {
            match parse(input) {
                Err(err) => assert_eq!(err.status(), status, "{name}: {err:?}"),
                Ok(parsed) => panic!("{name}: accepted: {parsed:?}"),
            }
            // No prefix is accepted either, and none panics.
            for i in 0..input.len() {
                assert!(
                    !matches!(parse(&input[..i]), Ok(Some(_))),
                    "{name}: prefix {i}"
                );
            }
        }
    }

    /// Every byte position goes through the block scan: a control byte, bare CR or bare LF
    /// anywhere in a field value is found, whatever its offset from the start of a block.
    #[test]
    fn bad_byte_at_every_offset() {
        let mut base = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        let value_start = base.len();
        base.extend_from_slice(&[b'v'; 150]);
        base.extend_from_slice(b"\r\n\r\n");
        assert!(complete(&base).0.header(b"x").is_some());
        for bad_byte in [0x00, 0x01, 0x1f, 0x7f, b'\r', b'\n'] {
            for i in value_start..value_start + 150 {
                let mut input = base.clone();
                input[i] = bad_byte;
                assert_eq!(
                    parse(&input).unwrap_err().status(),
                    400,
                    "{bad_byte:#x} at {i}"
                );
                // And in a partial head.
                assert_eq!(
                    parse(&input[..i + 1 + usize::from(bad_byte == b'\r')])
                        .unwrap_err()
                        .status(),
                    400
                );
            }
        }
    }

    #[test]
    fn partial_heads_fail_early() {
        let msg = |input: &[u8]| parse(input).unwrap_err().message().to_owned();
        assert_eq!(msg(b"GET / HTTP/1.1\n"), BARE_CR_LF);
        assert_eq!(
            msg(b"GET / HTTP/1.1\r\nHost: a\rX"),
            "Bare CR or LF found in header line \"Host: a\rX\""
        );
        assert_eq!(
            msg(b"GET / HTTP/1.1\r\n Host"),
            "Malformed header line \" Host\""
        );
        assert_eq!(
            msg(b"GET / HTTP/1.1\r\nHost: a\r\n\tmore"),
            "Obsolete line folding is not allowed"
        );
        assert_eq!(
            msg(b"GET / HTTP/1.1\r\nX: \x00"),
            "Invalid control character in HTTP message"
        );
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r").unwrap().is_none());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    }

    #[test]
    fn header_too_large_status() {
        let limits = Limits {
            max_header_size: 100,
            max_body_size: 10,
            max_fields: usize::MAX,
        };
        let mut with_end = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        with_end.extend_from_slice(&[b'a'; 200]);
        let without_end = with_end.clone();
        with_end.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&with_end, &limits).unwrap_err().status(), 431);
        assert_eq!(parse_head(&without_end, &limits).unwrap_err().status(), 431);
        assert_eq!(
            parse_head(&without_end, &limits).unwrap_err().reason(),
            "Request Header Fields Too Large"
        );
    }

    #[test]
    fn adversarial_large_heads() {
        let limits = Limits {
            max_header_size: 1 << 20,
            max_body_size: 10,
            max_fields: usize::MAX,
        };
        let wrap = |value: &[u8]| {
            let mut input = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            input.extend_from_slice(value);
            input.extend_from_slice(b"\r\n\r\n");
            input
        };
        let n = 200_000;

        let mut spaces = vec![b' '; n];
        spaces.push(b'x');
        spaces.extend(std::iter::repeat(b'\t').take(n));
        let (head, _) = parse_head(&wrap(&spaces), &limits).unwrap().unwrap();
        assert_eq!(head.header(b"x"), Some(&b"x"[..]));

        let (head, _) = parse_head(&wrap(&vec![b' '; n]), &limits).unwrap().unwrap();
        assert_eq!(head.header(b"x"), Some(&b""[..]));

        let letters = vec![b'a'; n];
        let (head, _) = parse_head(&wrap(&letters), &limits).unwrap().unwrap();
        assert_eq!(head.header(b"x").map(<[u8]>::len), Some(n));

        let obs: Vec<u8> = (0..n).map(|i| 0x80 | (i as u8)).collect();
        assert!(parse_head(&wrap(&obs), &limits).unwrap().is_some());

        // The first empty line ends the head; the rest is left for the caller.
        let empty_lines = wrap(&b"\r\n".repeat(n / 2));
        let (_, consumed) = parse_head(&empty_lines, &limits).unwrap().unwrap();
        assert_eq!(&empty_lines[consumed - 7..consumed], b"X: \r\n\r\n");
        let crs = vec![b'\r'; n];
        assert_eq!(parse_head(&wrap(&crs), &limits).unwrap_err().status(), 400);

        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        many.extend_from_slice(&b"a:\r\n".repeat(n / 4));
        many.extend_from_slice(b"\r\n");
        let (head, _) = parse_head(&many, &limits).unwrap().unwrap();
        assert_eq!(head.headers.len(), n / 4 + 1);

        // Trickling in: every call sees a longer partial head.
        let full = wrap(&letters);
        for end in (0..full.len()).step_by(4096) {
            assert!(parse_head(&full[..end], &limits).unwrap().is_none());
        }
    }

    #[test]
    fn field_count_is_bounded_on_both_paths() {
        // Few fields (the stack slots) and many (the heap slots): one past the limit is
        // a 431, exactly the limit is served. Host counts as a field.
        for max in [3usize, 100] {
            let limits = Limits {
                max_fields: max,
                ..LIMITS
            };
            let head = |n: usize| {
                let mut h = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
                for i in 1..n {
                    h.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
                }
                h.extend_from_slice(b"\r\n");
                h
            };
            let (ok, _) = parse_head(&head(max), &limits).unwrap().unwrap();
            assert_eq!(ok.headers.len(), max);
            match parse_head(&head(max + 1), &limits) {
                Err(e) => {
                    assert_eq!(e.status(), 431);
                    assert!(e.message().contains("max_request_headers"), "{e:?}");
                }
                other => panic!("{max}: {other:?}"),
            }
        }
    }

    /// Pseudo-random heads built from the bytes that matter: nothing may panic, and whatever
    /// is accepted must have consistent ranges.
    #[test]
    fn no_panics() {
        let alphabet =
            b"\r\n \t:_,;=\"\\/*?#@[]0123456789aAcCeEhHkKlLnNoOsStT-.\x00\x0b\x7f\x80\xff";
        let prefix = b"POST / HTTP/1.1\r\nHost: a\r\n";
        let mut next = crate::http::xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut input = if next() % 2 == 0 {
                prefix.to_vec()
            } else {
                Vec::new()
            };
            for _ in 0..len {
                input.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            if next() % 2 == 0 {
                input.extend_from_slice(b"\r\n\r\n");
            }
            if let Ok(Some((head, consumed))) = parse(&input) {
                assert!(consumed <= input.len());
                for h in &head.headers {
                    let _ = (head.header_name(h), head.header_value(h));
                }
                let _ = (head.method(), head.target());
            }
        }
    }
}
