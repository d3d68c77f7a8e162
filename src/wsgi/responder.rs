//! One response: `start_response` (PEP 3333, with `exc_info` semantics and header
//! validation), the `write` callable, and the body sent as the application produces it.
//!
//! The head goes out with the first body bytes (one writev); a body of known length is
//! sent as is, otherwise chunked on HTTP/1.1 or close-delimited on HTTP/1.0.

use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::engine::channel::{sub_parts, Channel, DirectBudget, Sent, WhenFull};
use crate::engine::errors::is_disconnect;
use crate::engine::http2::H2Stream;
use crate::h2::response::head_fields;
use crate::http::request::Version;
use crate::http::response::{
    check_header_name, check_header_value, chunk_header, framing, is_hop_by_hop, parse_status,
    status_allows_body, AppSet, Framing, HeadWriter,
};
use crate::wsgi::context::WsgiContext;
use crate::wsgi::exceptions::{ClientDisconnected, RequestTimeout};
use crate::wsgi::logging::log;

/// Writes of this size or more are made without the GIL: they may take a while.
const DETACH_THRESHOLD: usize = 64 * 1024;

#[pyclass(module = "maitre._maitre", name = "StartResponse")]
pub struct Responder {
    ctx: Arc<WsgiContext>,
    /// Taken away when the request is done: a `write` kept by the application past
    /// that point must not reach the connection (it may carry the next response).
    channel: Option<Arc<Channel>>,
    /// The HTTP/2 stream the response goes to (then `channel` only says whether the
    /// connection is still there).
    h2: Option<H2Stream>,
    /// END_STREAM has been sent (or queued) on `h2`.
    h2_ended: bool,
    /// More than the high watermark is queued on `h2`: wait before the next piece.
    h2_full: bool,
    version: Version,
    keep_alive: bool,
    is_head: bool,
    started: bool,
    status: Vec<u8>,
    code: u16,
    /// The application's header lines, serialised.
    lines: Vec<u8>,
    /// Where the application's Content-Length line sits in `lines`, if it gave one.
    cl_line: Option<Range<usize>>,
    app_set: AppSet,
    content_length: Option<u64>,
    pub headers_sent: bool,
    framing: Framing,
    written: u64,
    /// The connection must close after this response.
    pub close: bool,
    warned_excess: bool,
    warned_no_body: bool,
    budget: DirectBudget,
    /// Body bytes the channel took (for the access log's `B`).
    body_sent: u64,
    /// Every byte the channel took: head, framing and body.
    bytes_out: u64,
    /// The worker thread's index (its slot of `request_timeout`'s watch).
    thread: usize,
}

/// The latin-1 bytes of a `str` (PEP 3333 "native strings").
fn latin1_bytes<'a>(s: &'a Bound<'_, PyString>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    let text = s.to_cow()?;
    if text.is_ascii() {
        return Ok(match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
            Cow::Owned(t) => Cow::Owned(t.into_bytes()),
        });
    }
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                PyValueError::new_err(format!(
                    "{what} contains characters that are not latin-1: {text:?}"
                ))
            })
        })
        .collect::<PyResult<Vec<u8>>>()
        .map(Cow::Owned)
}

impl Responder {
    pub fn new(
        ctx: Arc<WsgiContext>,
        channel: Arc<Channel>,
        h2: Option<H2Stream>,
        version: Version,
        keep_alive: bool,
        is_head: bool,
        thread: usize,
    ) -> Self {
        Responder {
            ctx,
            channel: Some(channel),
            h2,
            h2_ended: false,
            h2_full: false,
            version,
            keep_alive,
            is_head,
            started: false,
            status: Vec::new(),
            code: 0,
            lines: Vec::new(),
            cl_line: None,
            app_set: AppSet::default(),
            content_length: None,
            headers_sent: false,
            framing: Framing {
                chunked: false,
                close: false,
                keep_alive_header: false,
            },
            written: 0,
            close: false,
            warned_excess: false,
            warned_no_body: false,
            budget: DirectBudget::default(),
            body_sent: 0,
            bytes_out: 0,
            thread,
        }
    }

    /// Takes the right to send the head, which `request_timeout` may have taken first
    /// (then the client has its 504 and this response is discarded).
    fn claim_head(&self) -> PyResult<()> {
        match &self.ctx.watch {
            Some(watch) if !watch.start_response(self.thread) => Err(RequestTimeout::new_err(
                "request_timeout passed: the response is discarded",
            )),
            _ => Ok(()),
        }
    }

    fn start(
        &mut self,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        match exc_info {
            None if self.started => {
                return Err(PyAssertionError::new_err(
                    "start_response called a second time without providing exc_info.",
                ));
            }
            Some(info) if self.headers_sent => {
                // Too late to change the response: let the original error propagate.
                return Err(PyErr::from_value(info.get_item(1)?));
            }
            _ => {}
        }
        let Ok(status) = status.cast::<PyString>() else {
            return Err(PyAssertionError::new_err(format!(
                "status {} is not a string",
                status.repr()?
            )));
        };
        let status_bytes = latin1_bytes(status, "status")?;
        let code = parse_status(&status_bytes).map_err(PyValueError::new_err)?;

        let mut lines = Vec::with_capacity(128);
        let mut cl_line = None;
        let mut app_set = AppSet::default();
        let mut content_length = None;
        for item in headers.try_iter()? {
            let item = item?;
            let pair = item.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
            let Some(pair) = pair else {
                return Err(PyAssertionError::new_err(format!(
                    "header {} is not a (name, value) tuple",
                    item.repr()?
                )));
            };
            let (k, v) = (pair.get_item(0)?, pair.get_item(1)?);
            let Ok(name) = k.cast::<PyString>() else {
                return Err(PyAssertionError::new_err(format!(
                    "Header name {} is not a string in {}",
                    k.repr()?,
                    pair.repr()?
                )));
            };
            let Ok(value) = v.cast::<PyString>() else {
                return Err(PyAssertionError::new_err(format!(
                    "Header value {} is not a string in {}",
                    v.repr()?,
                    pair.repr()?
                )));
            };
            let name = latin1_bytes(name, "header name")?;
            let value = latin1_bytes(value, "header value")?;
            check_header_value(&value).map_err(PyValueError::new_err)?;
            check_header_name(&name).map_err(PyValueError::new_err)?;
            if is_hop_by_hop(&name) {
                return Err(PyAssertionError::new_err(format!(
                    "{} is a \"hop-by-hop\" header; it cannot be used by a WSGI application (see PEP 3333)",
                    String::from_utf8_lossy(&name)
                )));
            }
            let start = lines.len();
            lines.extend_from_slice(&name);
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(&value);
            lines.extend_from_slice(b"\r\n");
            if name.eq_ignore_ascii_case(b"content-length") {
                let text = std::str::from_utf8(&value).unwrap_or("").trim();
                let len = text
                    .parse::<u64>()
                    .ok()
                    .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "invalid Content-Length header value {:?}",
                            String::from_utf8_lossy(&value)
                        ))
                    })?;
                if app_set.content_length && content_length != Some(len) {
                    return Err(PyValueError::new_err("conflicting Content-Length headers"));
                }
                content_length = Some(len);
                app_set.content_length = true;
                cl_line = Some(start..lines.len());
            } else if name.eq_ignore_ascii_case(b"date") {
                app_set.date = true;
            } else if name.eq_ignore_ascii_case(b"server") {
                app_set.server = true;
            }
        }
        self.started = true;
        self.status = status_bytes.into_owned();
        self.code = code;
        self.lines = lines;
        self.cl_line = cl_line;
        self.app_set = app_set;
        self.content_length = content_length;
        Ok(())
    }

    fn body_allowed(&self) -> bool {
        !self.is_head && status_allows_body(self.code)
    }

    /// The response has exactly `len` bytes (a one-item iterable): say so in the head.
    pub fn length_hint(&mut self, len: usize) {
        if !self.headers_sent && self.content_length.is_none() {
            self.content_length = Some(len as u64);
        }
    }

    fn build_head(&mut self) -> Vec<u8> {
        let has_body_status = status_allows_body(self.code);
        let content_length = if has_body_status {
            self.content_length
        } else {
            None
        };
        // A graceful stop closes the connection after this response: say so.
        let keep_alive = self.keep_alive && !self.channel.as_ref().is_some_and(|c| c.is_last());
        self.framing = framing(self.version, keep_alive, content_length, self.code);
        self.close |= self.framing.close;
        let mut w = HeadWriter::new(self.version, &self.status, self.lines.len() + 160);
        match (&self.cl_line, has_body_status) {
            // 1xx/204/304 must not carry Content-Length (RFC 9110 section 8.6); waitress
            // drops the application's too.
            (Some(r), false) => {
                w.raw(&self.lines[..r.start]);
                w.raw(&self.lines[r.end..]);
            }
            _ => w.raw(&self.lines),
        }
        let mut app_set = self.app_set;
        if !has_body_status {
            app_set.content_length = true;
        }
        w.finish(self.framing, content_length, &self.ctx.ident, app_set)
    }

    fn warn(&self, py: Python<'_>, message: String) {
        log(py, &self.ctx, "warning", &message);
    }

    /// Sends body bytes, preceded by the head if it has not gone out yet.
    pub fn send_body(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        if !self.started {
            return Err(PyRuntimeError::new_err(
                "start_response was not called before body written",
            ));
        }
        let head = if self.headers_sent {
            None
        } else {
            self.claim_head()?;
            self.headers_sent = true;
            Some(self.build_head())
        };
        let mut data = data;
        if !self.body_allowed() {
            if !data.is_empty() && !self.is_head && !self.warned_no_body {
                self.warned_no_body = true;
                self.warn(
                    py,
                    format!(
                        "application-written content was ignored due to HTTP response that may not contain a message-body: ({})",
                        String::from_utf8_lossy(&self.status)
                    ),
                );
            }
            self.written += data.len() as u64;
            data = b"";
        } else if let Some(cl) = self.content_length {
            let room = cl.saturating_sub(self.written);
            if data.len() as u64 > room {
                data = &data[..room as usize];
                if !self.warned_excess {
                    self.warned_excess = true;
                    self.warn(py, format!("application-written content exceeded the number of bytes specified by Content-Length header ({cl})"));
                }
            }
            self.written += data.len() as u64;
        } else {
            self.written += data.len() as u64;
        }

        if self.h2.is_some() {
            // The last byte of a known length ends the stream in the same frame.
            let end = self.body_allowed() && self.content_length == Some(self.written);
            self.h2_ended |= end;
            return self.send_h2(py, head, data, end);
        }
        let mut size_line = [0u8; 18];
        let mut parts: [&[u8]; 4] = [b""; 4];
        let mut n = 0;
        if let Some(h) = &head {
            parts[n] = h;
            n += 1;
        }
        if !data.is_empty() {
            if self.framing.chunked {
                parts[n] = chunk_header(data.len(), &mut size_line);
                parts[n + 1] = data;
                parts[n + 2] = b"\r\n";
                n += 3;
            } else {
                parts[n] = data;
                n += 1;
            }
        }
        if n == 0 {
            return Ok(());
        }
        self.wait_below_watermark(py)?;
        self.transmit(py, &parts[..n])?;
        self.body_sent += data.len() as u64;
        Ok(())
    }

    /// The response as sent so far, with the values of the response headers `names`
    /// (lower case) for the access log.
    pub fn outcome(&self, names: &[Vec<u8>]) -> crate::wsgi::observe::Outcome {
        let response_headers = names
            .iter()
            .map(|name| {
                self.lines.split(|&b| b == b'\n').find_map(|line| {
                    let line = line.strip_suffix(b"\r")?;
                    let colon = line.iter().position(|&b| b == b':')?;
                    line[..colon]
                        .eq_ignore_ascii_case(name)
                        .then(|| line[colon + 1..].trim_ascii().to_vec())
                })
            })
            .collect();
        crate::wsgi::observe::Outcome {
            status: self.code,
            body_bytes: self.body_sent,
            bytes_out: self.bytes_out,
            response_headers,
        }
    }

    /// An application that keeps producing faster than its client reads waits here,
    /// before its next piece goes out, while more than `outbuf_high_watermark` is queued
    /// (waitress's rule). What it has produced is queued whole: a response of one big
    /// item never holds its worker, however slowly its client reads.
    fn wait_below_watermark(&self, py: Python<'_>) -> PyResult<()> {
        let channel = self.channel()?;
        if channel.over_watermark() && !crate::wsgi::gil::detach(py, || channel.wait_writable()) {
            return Err(ClientDisconnected::new_err("client disconnected"));
        }
        Ok(())
    }

    /// The request is over: later writes raise.
    pub fn detach(&mut self) {
        self.channel = None;
        self.h2 = None;
    }

    /// Sends on the HTTP/2 stream: the head (as fields) if given, then `data`, then
    /// END_STREAM if `end`. Waits first, as on HTTP/1, while more than the high
    /// watermark is queued on the connection or on this stream.
    fn send_h2(
        &mut self,
        py: Python<'_>,
        head: Option<Vec<u8>>,
        data: &[u8],
        end: bool,
    ) -> PyResult<()> {
        self.wait_below_watermark(py)?;
        let Some(h2) = self.h2.clone() else {
            return Err(ClientDisconnected::new_err("client disconnected"));
        };
        // The last piece left more queued than the watermark: wait for the client first
        // (the GIL released only then, as on HTTP/1).
        if self.h2_full && !crate::wsgi::gil::detach(py, || h2.conn.wait_room(h2.id)) {
            return Err(ClientDisconnected::new_err("client disconnected"));
        }
        let fields = head.as_deref().map(head_fields);
        let out = head.as_ref().map_or(0, Vec::len) + data.len();
        let sent = h2.conn.send(h2.id, fields.as_deref(), data, end);
        match sent {
            Ok(full) => {
                self.h2_full = full;
                self.bytes_out += out as u64;
                self.body_sent += data.len() as u64;
                Ok(())
            }
            Err(e) => Err(ClientDisconnected::new_err(format!("{e}"))),
        }
    }

    fn channel(&self) -> PyResult<&Arc<Channel>> {
        live(&self.channel)
    }

    fn transmit(&mut self, py: Python<'_>, parts: &[&[u8]]) -> PyResult<()> {
        // Borrowed field by field: the budget is lent out while the channel is in use.
        let channel = live(&self.channel)?;
        let budget = &mut self.budget;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let sent = if total >= DETACH_THRESHOLD {
            crate::wsgi::gil::detach(py, || channel.send(parts, WhenFull::Wait(budget)))
        } else if budget.remaining().is_zero() {
            channel.send(parts, WhenFull::Queue)
        } else {
            // Small writes keep the GIL unless the socket is full.
            match channel.send(parts, WhenFull::Return(&mut *budget)) {
                Ok(Sent::Full(done)) => {
                    let mut rest = Vec::with_capacity(parts.len());
                    sub_parts(parts, done, total - done, &mut rest);
                    crate::wsgi::gil::detach(py, || channel.send(&rest, WhenFull::Wait(budget)))
                }
                other => other,
            }
        };
        self.after_send(sent)?;
        self.bytes_out += total as u64;
        Ok(())
    }

    fn after_send(&self, sent: std::io::Result<Sent>) -> PyResult<()> {
        let channel = self.channel()?;
        match sent {
            // Over the watermark, the next piece waits (`wait_below_watermark`); the end
            // of a response does not.
            Ok(Sent::Ok | Sent::Full(_) | Sent::OverWatermark) => Ok(()),
            Err(e) if is_disconnect(&e) || channel.is_closed() => {
                Err(ClientDisconnected::new_err(e.to_string()))
            }
            Err(e) => Err(PyOSError::new_err(e.to_string())),
        }
    }

    /// Sends `len` bytes of an open regular file from `offset` with sendfile.
    pub fn send_file(
        &mut self,
        py: Python<'_>,
        file: &File,
        offset: u64,
        size: u64,
    ) -> PyResult<()> {
        if !self.started {
            return Err(PyRuntimeError::new_err(
                "start_response was not called before body written",
            ));
        }
        // As waitress: the file decides the length; a shorter declared length cuts it.
        let len = self.content_length.map_or(size, |cl| cl.min(size));
        if self.content_length != Some(len) {
            self.content_length = Some(len);
            if let Some(r) = self.cl_line.take() {
                self.lines.drain(r);
            }
            self.app_set.content_length = false;
        }
        if self.h2.is_some() {
            return self.send_file_h2(py, file, offset, len);
        }
        if !self.headers_sent {
            self.claim_head()?;
            self.headers_sent = true;
            let head = self.build_head();
            self.transmit(py, &[&head])?;
        }
        if !self.body_allowed() || len == 0 {
            return Ok(());
        }
        self.written += len;
        let channel = self.channel()?;
        let sent = crate::wsgi::gil::detach(py, || channel.send_file(file, offset, len));
        self.after_send(sent)?;
        self.body_sent += len;
        self.bytes_out += len;
        Ok(())
    }

    /// A file on HTTP/2: read in pieces and sent as DATA (no sendfile: frames wrap it).
    fn send_file_h2(&mut self, py: Python<'_>, file: &File, offset: u64, len: u64) -> PyResult<()> {
        use std::os::unix::fs::FileExt;
        const PIECE: usize = 256 * 1024;
        if !self.body_allowed() || len == 0 {
            return self.send_body(py, b"");
        }
        let mut buf = vec![0u8; PIECE.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(PIECE as u64) as usize;
            let n = crate::wsgi::gil::detach(py, || file.read_at(&mut buf[..want], offset + done))
                .map_err(|e| PyOSError::new_err(e.to_string()))?;
            if n == 0 {
                break;
            }
            self.send_body(py, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Ends an HTTP/2 response: END_STREAM, with the head if nothing was sent yet. A
    /// body shorter than its Content-Length is not ended but reset (`close`), so the
    /// client cannot take it for whole.
    fn finish_h2(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.h2_ended {
            return Ok(());
        }
        let head = if self.headers_sent {
            None
        } else {
            if self.content_length.is_none() {
                self.content_length = Some(self.written);
            }
            self.claim_head()?;
            self.headers_sent = true;
            Some(self.build_head())
        };
        if let Some(cl) = self.content_length {
            if self.written < cl && self.body_allowed() {
                self.close = true;
                self.warn(py, format!("application returned too few bytes ({}) for specified Content-Length ({cl}) via app_iter", self.written));
                if let Some(head) = head {
                    return self.send_h2(py, Some(head), b"", false);
                }
                return Ok(());
            }
        }
        self.send_h2(py, head, b"", true)
    }

    /// Ends the response: the head if nothing was sent yet, the last chunk if chunked.
    pub fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.h2.is_some() {
            return self.finish_h2(py);
        }
        if !self.headers_sent {
            if self.content_length.is_none() {
                // Nothing was sent, so the whole body is known to be empty.
                self.content_length = Some(self.written);
            }
            self.send_body(py, b"")?;
        }
        if self.framing.chunked && self.body_allowed() {
            self.transmit(py, &[b"0\r\n\r\n"])?;
        }
        if let Some(cl) = self.content_length {
            if self.written < cl && self.body_allowed() {
                // The client would wait for bytes that never come: close instead.
                self.close = true;
                self.warn(py, format!("application returned too few bytes ({}) for specified Content-Length ({cl}) via app_iter", self.written));
            }
        }
        Ok(())
    }
}

/// A body item: must be bytes (PEP 3333).
pub fn body_bytes<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    match item.cast::<PyBytes>() {
        Ok(b) => Ok(b.as_bytes()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "application returned a non-bytes object: {}",
            item.repr()?
        ))),
    }
}

/// The connection of a response still in progress.
fn live(channel: &Option<Arc<Channel>>) -> PyResult<&Arc<Channel>> {
    channel
        .as_ref()
        .ok_or_else(|| PyRuntimeError::new_err("the response is already complete"))
}

#[pymethods]
impl Responder {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.try_borrow_mut()?.start(status, headers, exc_info)?;
        slf.getattr("write")
    }

    /// The `write` callable returned by `start_response`.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = body_bytes(data)?;
        self.send_body(py, bytes)
    }
}
