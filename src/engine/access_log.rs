//! The access log: one line per answered request, in gunicorn's format language, made
//! from what the engine knows when the response is done (status, body bytes, timings).
//! Requests the I/O loop answers itself (refused, timed out) get theirs from the same
//! [`Entry`] and [`Format`], with what is known of them ([`Seen`]).
//!
//! A worker hands over an [`Entry`] (the request head it already owns, moved, plus a few
//! numbers) under a short lock; a writer thread of its own formats the entries and writes
//! them in batches, each batch one `write()` of whole lines to a file opened with
//! `O_APPEND`: lines from several processes appending to one file never interleave.
//! No Python runs per request (unless the `logging` sink was asked for, which the WSGI
//! layer serves with the same formatter).
//!
//! Values are escaped as nginx does (`"`, `\`, control and non-ASCII bytes as `\xHH`),
//! so that no header or path can end a line or a quoted field early.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::request::{RequestHead, Version};

/// Apache's combined format, gunicorn's default.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// How long a line may wait in memory before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Entries that make the writer start at once rather than at the next interval.
const BATCH: usize = 1024;
/// Bytes reserved before each line.
const LINE_ROOM: usize = 512;
/// Longest request line of a refused request that is logged (a longer one is `-`):
/// its escaped form, up to four times longer, must stay a reasonable line.
const MAX_LOGGED_LINE: usize = 8192;

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
}

const ATOMS: &[u8] = b"hlutrmUqHsBbfaTMDLp";

fn text_piece(text: Vec<u8>) -> Piece {
    if text.len() > 8 {
        return Piece::Text(text);
    }
    let mut short = [0; 8];
    short[..text.len()].copy_from_slice(&text);
    Piece::Short(short, text.len())
}

/// Appends `bytes[..len]` by copying all `N` bytes, then cutting the length back: a
/// copy of constant size is a few stores, where one of variable size is a call to
/// memcpy (a line of short pieces spent more instructions in memcpy than in its own
/// formatting, callgrind). The line's room was reserved at its start.
fn put<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N], len: usize) {
    let at = out.len();
    out.extend_from_slice(bytes);
    out.truncate(at + len);
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
    /// Parses gunicorn's syntax: `%(h)s`, `%({x-request-id}i)s`, `%%` for a percent sign.
    pub fn parse(spec: &str) -> Result<Format, String> {
        let mut f = Format {
            pieces: Vec::new(),
            response_headers: Vec::new(),
            environ_keys: Vec::new(),
        };
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
    fn parts(&self) -> Option<(&[u8], &[u8], &[u8])> {
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

    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        match self {
            Seen::Head(h) => h.header(name),
            Seen::Line(_) => None,
        }
    }
}

/// The request line of `h` as received, when it reads exactly as `%(r)s` shows it
/// (single spaces, the protocol it is served as): one escape instead of three.
fn as_received(h: &RequestHead) -> Option<&[u8]> {
    let end = h.target.end + 9;
    let line = h.buf.get(h.method.start..end)?;
    let fits = h.method.end + 1 == h.target.start
        && h.buf[h.method.end] == b' '
        && h.buf[h.target.end] == b' '
        && &h.buf[h.target.end + 1..end] == protocol(h.version);
    fits.then_some(line)
}

fn protocol(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"HTTP/1.0",
        Version::Http11 => b"HTTP/1.1",
    }
}

/// Where the access log goes, as the I/O loop needs to know it for the requests it
/// answers itself.
#[derive(Clone)]
pub enum Sink {
    /// Written by the engine (a file or stdout).
    Writer(Arc<AccessLog>),
    /// `access_log = logging`: lines in this format go to the `maitre.access` logger
    /// through the loop's logging thread.
    Logging(Format),
}

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
    /// Values of [`Format::response_headers`], in order.
    pub response_headers: Vec<Option<Vec<u8>>>,
    /// Values of [`Format::environ_keys`], in order.
    pub environ: Vec<Option<String>>,
}

/// Writes `v` escaped, or `-` when absent.
fn value(v: Option<&[u8]>, out: &mut Vec<u8>) {
    match v {
        Some(v) => escape(v, out),
        None => out.push(b'-'),
    }
}

/// The bytes [`escape`] writes as they are: a table rather than three comparisons per
/// byte.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// nginx's escaping: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
pub fn escape(v: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = v;
    // Runs of plain bytes are copied whole: most values have nothing to escape.
    while let Some(i) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// An IPv4 address in dotted decimal, built on the stack and appended in one copy.
fn ipv4(octets: [u8; 4], out: &mut Vec<u8>) {
    let mut buf = [0u8; 16];
    let mut len = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if o >= 100 {
            buf[len] = b'0' + o / 100;
            len += 1;
        }
        if o >= 10 {
            buf[len] = b'0' + o / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + o % 10;
        len += 1;
    }
    put(out, &buf, len);
}

/// Where the first byte [`escape`] rewrites is: eight bytes at a time (a user agent
/// is a hundred bytes or more), then byte by byte.
fn first_to_escape(v: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A high bit in each byte that is zero (exact for the first such byte: a borrow
    // only marks bytes after it).
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut chunks = v.chunks_exact(8);
    for (n, chunk) in chunks.by_ref().enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above = (w.wrapping_add(ONES) | w) & HIGH; // 0x7f and up
        let quote = zero(w ^ (ONES * u64::from(b'"')));
        let backslash = zero(w ^ (ONES * u64::from(b'\\')));
        let marked = below | above | quote | backslash;
        if marked != 0 {
            return Some(n * 8 + (marked.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| !PLAIN[b as usize])
        .map(|i| v.len() - tail.len() + i)
}

fn num(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn atom(a: u8, e: &Entry, clock: &mut Clock, out: &mut Vec<u8>) {
    let split = |target: &[u8]| match memchr::memchr(b'?', target) {
        Some(q) => q,
        None => target.len(),
    };
    let parts = || e.request.parts();
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
        b'r' => match &e.request {
            Seen::Head(h) => match as_received(h) {
                Some(line) => escape(line, out),
                None => {
                    escape(h.method(), out);
                    out.push(b' ');
                    escape(h.target(), out);
                    out.push(b' ');
                    out.extend_from_slice(protocol(h.version));
                }
            },
            Seen::Line(line) => value(Some(line).filter(|l| !l.is_empty()).map(|l| &l[..]), out),
        },
        b'm' => value(parts().map(|(m, _, _)| m), out),
        b'U' => value(parts().map(|(_, t, _)| &t[..split(t)]), out),
        b'q' => value(
            parts().map(|(_, t, _)| t.get(split(t) + 1..).unwrap_or(b"")),
            out,
        ),
        b'H' => value(parts().map(|(_, _, p)| p), out),
        b's' => num(e.status as u64, out),
        b'B' => num(e.body_bytes, out),
        b'b' => {
            if e.body_bytes == 0 {
                out.push(b'-')
            } else {
                num(e.body_bytes, out)
            }
        }
        b'f' => value(e.request.header(b"referer"), out),
        b'a' => value(e.request.header(b"user-agent"), out),
        b'T' => num(e.took.as_secs(), out),
        b'M' => num(e.took.as_millis() as u64, out),
        b'D' => num(e.took.as_micros() as u64, out),
        b'L' => {
            let _ = write!(out, "{:.6}", e.took.as_secs_f64());
        }
        b'p' => {
            out.push(b'<');
            num(std::process::id() as u64, out);
            out.push(b'>');
        }
        _ => out.push(b'-'),
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

/// Formats `[10/Oct/2000:13:55:36 -0700]` in local time, remembering the last second;
/// turns the monotonic instants of entries into wall-clock time from one reading of
/// both clocks (per batch).
#[derive(Default)]
pub struct Clock {
    /// The instants that fall in the second `text` shows: most entries are checked
    /// with two comparisons, without converting their instant (that cost more than the
    /// rest of the `%(t)s` atom).
    window: Option<(Instant, Instant)>,
    text: ([u8; 32], usize),
    base: Option<(Instant, SystemTime)>,
}

impl Clock {
    /// A clock that takes `instant` to be `wall`.
    pub fn at(instant: Instant, wall: SystemTime) -> Clock {
        Clock {
            base: Some((instant, wall)),
            ..Clock::default()
        }
    }

    /// Reads both clocks again at the next use (the wall clock may have been set).
    pub fn rebase(&mut self) {
        self.base = None;
        self.window = None;
    }

    fn wall(&mut self, t: Instant) -> SystemTime {
        let (i, w) = *self
            .base
            .get_or_insert_with(|| (Instant::now(), SystemTime::now()));
        if t <= i {
            w - (i - t)
        } else {
            w + (t - i)
        }
    }

    fn write(&mut self, t: Instant, out: &mut Vec<u8>) {
        match self.window {
            Some((from, to)) if from <= t && t < to => {}
            _ => {
                let since = self.wall(t).duration_since(UNIX_EPOCH).unwrap_or_default();
                let from = t
                    .checked_sub(Duration::from_nanos(since.subsec_nanos().into()))
                    .unwrap_or(t);
                self.window = Some((from, from + Duration::from_secs(1)));
                let text = clf_time(since.as_secs());
                let mut fixed = [b'-'; 32];
                let len = text.len().min(32);
                fixed[..len].copy_from_slice(&text[..len]);
                self.text = (fixed, len);
            }
        }
        put(out, &self.text.0, self.text.1);
    }
}

fn clf_time(secs: u64) -> Vec<u8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into the zeroed struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "[{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off.abs() / 60,
        off.abs() % 60
    )
    .into_bytes()
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

struct Pending {
    entries: Vec<Entry>,
    stop: bool,
}

/// The buffered writer: entries in, whole lines out.
pub struct AccessLog {
    pub format: Format,
    target: Target,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The open file (None for stdout); replaced by [`AccessLog::reopen`].
    file: Mutex<Option<File>>,
    /// Something went wrong writing: said once, not once per batch.
    failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AccessLog {
    /// Opens the target at once, so that a path that cannot be written fails at start.
    pub fn new(format: Format, target: Target) -> io::Result<AccessLog> {
        let file = match &target {
            Target::File(p) => Some(open(p)?),
            Target::Stdout => None,
        };
        Ok(AccessLog {
            format,
            target,
            pending: Mutex::new(Pending {
                entries: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            file: Mutex::new(file),
            failed: AtomicBool::new(false),
        })
    }

    /// Queues an entry (called by a worker after its response).
    pub fn push(&self, e: Entry) {
        let mut p = lock(&self.pending);
        p.entries.push(e);
        if p.entries.len() == BATCH {
            self.wake.notify_one();
        }
    }

    /// Starts the writer thread; [`Writer::stop`] writes what is left and ends it.
    pub fn start(self: &Arc<Self>) -> io::Result<Writer> {
        lock(&self.pending).stop = false;
        let log = self.clone();
        let thread = std::thread::Builder::new()
            .name("maitre-access-log".into())
            .spawn(move || log.run())?;
        Ok(Writer {
            log: self.clone(),
            thread: Some(thread),
        })
    }

    fn run(&self) {
        let mut clock = Clock::default();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut batch = Vec::new();
        loop {
            let stop = {
                let mut p = lock(&self.pending);
                // Wait out the interval (or a full batch): one write per interval,
                // not one per request.
                if p.entries.len() < BATCH && !p.stop {
                    p = self
                        .wake
                        .wait_timeout(p, FLUSH_INTERVAL)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                std::mem::swap(&mut p.entries, &mut batch);
                p.stop
            };
            clock.rebase();
            self.write_batch(&mut batch, &mut clock, &mut buf);
            if stop {
                return;
            }
        }
    }

    fn write_batch(&self, batch: &mut Vec<Entry>, clock: &mut Clock, buf: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        buf.clear();
        for e in batch.drain(..) {
            self.format.write_line(&e, clock, buf);
        }
        let file = lock(&self.file);
        let result = match (&self.target, &*file) {
            (Target::File(_), Some(f)) => write_once(f, buf),
            (Target::File(_), None) => Err(io::Error::other("the log file is not open")),
            (Target::Stdout, _) => {
                // SAFETY: fd 1 stays open for the life of the process; not closed here.
                let out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
                write_once(&out, buf)
            }
        };
        if let Err(e) = result {
            if !self.failed.swap(true, Ordering::Relaxed) {
                eprintln!("maitre: cannot write the access log: {e}");
            }
        }
    }

    /// Writes what is queued to the current file, then opens the path again (after a
    /// rotation renamed it). Errors keep the old file.
    pub fn reopen(&self) -> io::Result<()> {
        let mut batch = std::mem::take(&mut lock(&self.pending).entries);
        self.write_batch(&mut batch, &mut Clock::default(), &mut Vec::new());
        if let Target::File(path) = &self.target {
            let f = open(path)?;
            *lock(&self.file) = Some(f);
            self.failed.store(false, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// One `write()` of whole lines: with `O_APPEND` the kernel places it at the end in one
/// piece. A short write (disk full, signal) finishes with more writes.
fn write_once(mut f: &File, buf: &[u8]) -> io::Result<()> {
    f.write_all(buf)
}

/// The running writer thread.
pub struct Writer {
    log: Arc<AccessLog>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        lock(&self.log.pending).stop = true;
        self.log.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits};

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
    fn escape_matches_the_byte_by_byte_rule() {
        let all: Vec<u8> = (0..=255u8).chain(b"plain text".iter().copied()).collect();
        let mut got = Vec::new();
        escape(&all, &mut got);
        let mut want = Vec::new();
        for &b in &all {
            if (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\' {
                want.push(b);
            } else {
                want.extend_from_slice(format!("\\x{b:02X}").as_bytes());
            }
        }
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
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
    fn ipv4_addresses() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.9.100.99", "192.168.1.20"] {
            let mut out = Vec::new();
            ipv4(ip.parse::<std::net::Ipv4Addr>().unwrap().octets(), &mut out);
            assert_eq!(out, ip.as_bytes());
        }
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
    fn the_clock_turns_at_the_second() {
        let start = Instant::now();
        // 0.7 s into second 1_000_000_000.
        let mut clock = Clock::at(start, UNIX_EPOCH + Duration::from_millis(1_000_000_000_700));
        let mut at = |ms: u64| {
            let mut out = Vec::new();
            clock.write(start + Duration::from_millis(ms), &mut out);
            out
        };
        let (first, next) = (clf_time(1_000_000_000), clf_time(1_000_000_001));
        assert_eq!(at(0), first);
        assert_eq!(at(299), first);
        assert_eq!(at(300), next);
        assert_eq!(at(1299), next);
        // An entry older than the last one (entries of several workers).
        assert_eq!(at(100), first);
        assert_eq!(at(1300), clf_time(1_000_000_002));
    }

    #[test]
    fn the_first_byte_to_escape_at_every_place_of_a_word() {
        // Each byte value at each offset of two words, with plain bytes before it and
        // bytes that would mislead a careless word test after it.
        for b in 0..=255u8 {
            for at in 0..16 {
                for after in [b'a', 0x00, 0xff, 0x7f, b'"'] {
                    let mut v = vec![b'a'; 19];
                    v[at] = b;
                    v[at + 1..].iter_mut().step_by(3).for_each(|x| *x = after);
                    let want = v.iter().position(|&x| !PLAIN[x as usize]);
                    assert_eq!(first_to_escape(&v), want, "{b:#x} at {at}, then {after:#x}");
                }
            }
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
    fn bad_formats_are_refused() {
        for bad in ["%(z)s", "%(h", "%d", "%({x}q)s", "%({}i)s", "50%"] {
            assert!(Format::parse(bad).is_err(), "{bad}");
        }
        assert!(Format::parse(DEFAULT_FORMAT).is_ok());
    }
}
