//! What the log knows of one answered request: an [`Entry`] (status, bytes, timings, the
//! captured header and environ values) about a request [`Seen`] as far as it was
//! understood: a parsed head, or only the request line of one refused before parsing.
//!
//! What must hold: a raw request line is kept only whole and only up to
//! [`MAX_LOGGED_LINE`] bytes, and is split into method, target and protocol only when it
//! has that shape (the line itself may be what was wrong).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::request::{RequestHead, Version};

/// Longest request line of a refused request that is logged (a longer one is `-`):
/// its escaped form, up to four times longer, must stay a reasonable line.
pub(super) const MAX_LOGGED_LINE: usize = 8192;

/// What the log needs of one answered request.
#[derive(Debug)]
pub struct Entry {
    pub request: Seen,
    pub peer: Option<SocketAddr>,
    pub status: u16,
    /// Body bytes sent (without the head or chunk framing).
    pub body_bytes: u64,
    /// When the first byte of the request arrived (the writer turns it into wall-clock
    /// time, which keeps a clock read off the worker's path).
    pub received: Instant,
    /// From the request's first byte to the response's last byte handed to the kernel.
    pub took: Duration,
    /// Values of the format's `response_headers`, in order.
    pub response_headers: Vec<Option<Vec<u8>>>,
    /// Values of the format's `environ_keys`, in order.
    pub environ: Vec<Option<String>>,
}

/// The request an entry is about, as far as it was understood.
#[derive(Debug)]
pub enum Seen {
    /// Its head was parsed: every request a worker ran, and one refused for its body.
    Head(RequestHead),
    /// Refused (or given up on) before its head was parsed: its request line as
    /// received, or nothing when no whole line had arrived (logged as `-`).
    Line(Vec<u8>),
}

impl Seen {
    /// The request line at the start of `received` (after the empty lines a client
    /// may send first), when a whole one arrived within [`MAX_LOGGED_LINE`] bytes.
    pub fn line_of(received: &[u8]) -> Seen {
        let start = received
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(received.len());
        let rest = &received[start..];
        let window = &rest[..rest.len().min(MAX_LOGGED_LINE)];
        let line = match memchr::memchr(b'\n', window) {
            Some(end) => window[..end].strip_suffix(b"\r").unwrap_or(&window[..end]),
            None => b"",
        };
        Seen::Line(line.to_vec())
    }

    /// Method, target and protocol; of a line, only when it has their shape (the
    /// line itself may be what was wrong).
    pub(super) fn parts(&self) -> Option<(&[u8], &[u8], &[u8])> {
        match self {
            Seen::Head(h) => Some((h.method(), h.target(), protocol(h.version))),
            Seen::Line(line) => {
                let first = memchr::memchr(b' ', line)?;
                let last = memchr::memrchr(b' ', line)?;
                let protocol = &line[last + 1..];
                (first > 0 && first < last && protocol.starts_with(b"HTTP/"))
                    .then(|| (&line[..first], &line[first + 1..last], protocol))
            }
        }
    }

    /// The method, when known (for the counters).
    pub fn method(&self) -> Option<&[u8]> {
        self.parts().map(|(method, _, _)| method)
    }

    pub(super) fn header(&self, name: &[u8]) -> Option<&[u8]> {
        match self {
            Seen::Head(h) => h.header(name),
            Seen::Line(_) => None,
        }
    }
}

/// The request line of `h` as received, when it reads exactly as `%(r)s` shows it
/// (single spaces, the protocol it is served as): one escape instead of three.
pub(super) fn as_received(h: &RequestHead) -> Option<&[u8]> {
    let end = h.target.end + 9;
    let line = h.buf.get(h.method.start..end)?;
    let fits = h.method.end + 1 == h.target.start
        && h.buf[h.method.end] == b' '
        && h.buf[h.target.end] == b' '
        && &h.buf[h.target.end + 1..end] == protocol(h.version);
    fits.then_some(line)
}

pub(super) fn protocol(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"HTTP/1.0",
        Version::Http11 => b"HTTP/1.1",
        Version::Http2 => b"HTTP/2.0",
    }
}
