//! Request bodies, received whole before the application runs (so a slow uploader never
//! holds a worker thread): in memory up to `inbuf_overflow` bytes, in an anonymous
//! temporary file beyond.
//!
//! The head of a request is read by `http::reader` (pure); the body's receiver is chosen
//! here ([`BodyReceiver::for_framing`]) because it may spill to a file, which is I/O.
//! The event loop and `wsgi::parser` both take their receivers from it, and both get a
//! body that cannot be stored refused with the one error built here.

use std::fs::File;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::engine::sys::SplicePipe;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{BodyKind, RequestError};

/// A complete request body, ready to be read by the application.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    File(BodyFile),
}

/// Temporary files for bodies are reused: a new file costs the filesystem a block
/// reservation and fresh page-cache pages for every byte, and closing it frees them
/// again, which made a large upload spend longer in its file than in writing and reading
/// the bytes. A reused file is overwritten in place. Only request bodies are pooled: response spill files are
/// sent with sendfile, whose pages may still be in flight when the file is dropped.
const POOLED_FILES: usize = 8;
/// Files that grew larger than this are closed rather than kept.
const POOLED_EXTENT: u64 = 16 << 20;

struct Pool {
    /// The process the files belong to: after a fork, parent and child share the open
    /// files, so a child must not reuse what it inherited.
    pid: u32,
    files: Vec<File>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    pid: 0,
    files: Vec::new(),
});

fn lock_pool() -> std::sync::MutexGuard<'static, Pool> {
    // A file list stays valid whatever panicked while it was held.
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A temporary file for one body, from the pool when there is one; back to the pool
/// when dropped. Bytes past what this body wrote may be a previous body's: readers are
/// bounded by the body's length ([`BodyFile`]).
#[derive(Debug)]
pub struct SpillFile {
    file: Option<File>,
    /// At least as far as any body has written into the file.
    extent: u64,
    /// The process that took the file: a child forked while a body is being received
    /// shares it with its parent, and must not pool it.
    pid: u32,
}

impl SpillFile {
    pub fn new() -> io::Result<SpillFile> {
        let pid = std::process::id();
        let pooled = {
            let mut pool = lock_pool();
            if pool.pid == pid {
                pool.files.pop()
            } else {
                None
            }
        };
        let (file, extent) = match pooled {
            Some(f) => (f, POOLED_EXTENT),
            None => (tempfile::tempfile()?, 0),
        };
        Ok(SpillFile {
            file: Some(file),
            extent,
            pid,
        })
    }

    fn file(&self) -> &File {
        self.file.as_ref().expect("present until dropped")
    }

    pub fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        // Counted first: a write that fails half-way may still have grown the file.
        self.extent = self.extent.max(offset + data.len() as u64);
        self.file().write_all_at(data, offset)
    }

    /// Moves the `n` bytes waiting in `pipe` into the file at `offset` (see
    /// [`SplicePipe::splice_to`]). On an error, what is left in the pipe is the caller's
    /// to discard.
    fn splice_from(&mut self, pipe: &SplicePipe, n: usize, offset: u64) -> io::Result<()> {
        self.extent = self.extent.max(offset + n as u64);
        pipe.splice_to(self.file(), n, offset)
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else { return };
        let pid = std::process::id();
        if self.extent > POOLED_EXTENT || self.pid != pid {
            return;
        }
        let mut pool = lock_pool();
        if pool.pid != pid {
            pool.files.clear();
            pool.pid = pid;
        }
        if pool.files.len() < POOLED_FILES {
            pool.files.push(file);
        }
    }
}

/// A body stored in a [`SpillFile`], read from its start and never past its length.
#[derive(Debug)]
pub struct BodyFile {
    file: SpillFile,
    pos: u64,
    len: u64,
}

impl Read for BodyFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.pos;
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.file().read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl BodyFile {
    /// Fills `dst` from the body, with no intermediate buffer: `dst` need not be
    /// initialised (a new Python bytes object), so that it is written once, by the
    /// kernel. Fails with `UnexpectedEof` if fewer bytes are left.
    pub fn read_exact_uninit(&mut self, dst: &mut [MaybeUninit<u8>]) -> io::Result<()> {
        if (dst.len() as u64) > self.len - self.pos {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let fd = self.file.file().as_raw_fd();
        let mut done = 0;
        while done < dst.len() {
            let rest = &mut dst[done..];
            // SAFETY: `rest` is valid for writes of its length; pread writes no more.
            let got = unsafe {
                libc::pread(
                    fd,
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    (self.pos + done as u64) as libc::off_t,
                )
            };
            match got {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                -1 => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                got => done += got as usize,
            }
        }
        self.pos += done as u64;
        Ok(())
    }
}

impl Body {
    pub fn empty() -> Body {
        Body::Memory(Vec::new())
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(v) => v.len() as u64,
            Body::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Accumulates a body, spilling to a temporary file once it outgrows memory.
#[derive(Debug)]
pub struct BodyBuffer {
    mem: Vec<u8>,
    file: Option<SpillFile>,
    len: u64,
    overflow: usize,
}

impl BodyBuffer {
    /// `expected` is the declared length, if any: it sizes the memory buffer once.
    pub fn new(overflow: usize, expected: Option<u64>) -> Self {
        let capacity = expected.map_or(0, |n| n.min(overflow as u64) as usize);
        BodyBuffer {
            mem: Vec::with_capacity(capacity),
            file: None,
            len: 0,
            overflow,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn extend(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.file.is_none() && self.mem.len() + data.len() > self.overflow {
            let mut file = SpillFile::new()?;
            file.write_at(&self.mem, 0)?;
            self.mem = Vec::new();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(f) => f.write_at(data, self.len)?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Moves the body to its file now (it is bound to go there).
    fn spill(&mut self) -> io::Result<&mut SpillFile> {
        if self.file.is_none() {
            let mut file = SpillFile::new()?;
            file.write_at(&self.mem, 0)?;
            self.mem = Vec::new();
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("just set"))
    }

    /// Appends the `n` bytes waiting in `pipe` to the file. The pipe is empty afterwards
    /// whatever happens: it carries the next connection's bytes.
    fn take_from_pipe(&mut self, pipe: &SplicePipe, n: usize) -> io::Result<()> {
        let offset = self.len;
        let stored = match self.spill() {
            Ok(file) => file.splice_from(pipe, n, offset),
            Err(e) => Err(e),
        };
        if stored.is_err() {
            pipe.discard(n);
        }
        stored?;
        self.len += n as u64;
        Ok(())
    }

    pub fn finish(self) -> io::Result<Body> {
        Ok(match self.file {
            Some(file) => Body::File(BodyFile {
                file,
                pos: 0,
                len: self.len,
            }),
            None => Body::Memory(self.mem),
        })
    }
}

/// Receives a body framed by Content-Length or chunked coding.
#[derive(Debug)]
pub enum BodyReceiver {
    Length {
        remaining: u64,
        buf: BodyBuffer,
    },
    Chunked {
        decoder: ChunkedDecoder,
        buf: BodyBuffer,
        scratch: Vec<u8>,
        max: u64,
        /// Bytes of the body as framed on the wire, received so far.
        wire: u64,
    },
}

impl BodyReceiver {
    /// The receiver for a body framed as `kind` (`None` when there is no body): the one
    /// choice the server and `wsgi::parser` share, after `http::reader` has read the head.
    pub fn for_framing(kind: BodyKind, overflow: usize, max: u64) -> Option<Self> {
        match kind {
            BodyKind::Empty => None,
            BodyKind::Length(len) => Some(BodyReceiver::with_length(len, overflow)),
            BodyKind::Chunked => Some(BodyReceiver::chunked(overflow, max)),
        }
    }

    pub fn with_length(len: u64, overflow: usize) -> Self {
        BodyReceiver::Length {
            remaining: len,
            buf: BodyBuffer::new(overflow, Some(len)),
        }
    }

    pub fn chunked(overflow: usize, max: u64) -> Self {
        BodyReceiver::Chunked {
            decoder: ChunkedDecoder::new(),
            buf: BodyBuffer::new(overflow, None),
            scratch: Vec::new(),
            max,
            wire: 0,
        }
    }

    /// Feeds received bytes; returns how many were used and whether the body is complete.
    /// Bytes after the body are never used: they belong to the next request.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), RequestError> {
        match self {
            BodyReceiver::Length { remaining, buf } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                buf.extend(&input[..n]).map_err(io_error)?;
                *remaining -= n as u64;
                Ok((n, *remaining == 0))
            }
            BodyReceiver::Chunked {
                decoder,
                buf,
                scratch,
                max,
                wire,
            } => {
                scratch.clear();
                let progress = match decoder.decode(input, scratch) {
                    Ok(progress) => progress,
                    // A client that has sent more than the limit is told 413 whatever
                    // is wrong in what it sent, as waitress does (and as a too large
                    // Content-Length is refused before its body is looked at).
                    Err(_) if wire.saturating_add(input.len() as u64) > *max => {
                        return Err(RequestError::BodyTooLarge(format!(
                            "exceeds max_body of {max}"
                        )));
                    }
                    Err(e) => return Err(RequestError::BadRequest(e.0.to_string())),
                };
                *wire = wire.saturating_add(progress.consumed as u64);
                // Counted on the decoded body, and refused as soon as the limit is crossed,
                // or is bound to be: a chunk whose size alone does not fit is refused
                // when its size line arrives, not when its data has.
                let declared = buf.len() + scratch.len() as u64;
                if declared.saturating_add(decoder.pending_data()) > *max {
                    return Err(RequestError::BodyTooLarge(format!(
                        "exceeds max_body of {max}"
                    )));
                }
                buf.extend(scratch).map_err(io_error)?;
                Ok((progress.consumed, progress.done))
            }
        }
    }

    /// How many bytes may go straight from the socket to the file (`SplicePipe`): the
    /// rest of a Content-Length body that does not fit in memory; `None` for any other.
    pub fn spliceable(&self) -> Option<u64> {
        match self {
            BodyReceiver::Length { remaining, buf }
                if *remaining > 0
                    && (buf.file.is_some() || buf.len + *remaining > buf.overflow as u64) =>
            {
                Some(*remaining)
            }
            _ => None,
        }
    }

    /// Stores the `n` bytes (at most `spliceable()`) that `pipe` holds, which leaves it
    /// empty; returns whether the body is complete.
    pub fn take_from_pipe(&mut self, pipe: &SplicePipe, n: usize) -> Result<bool, RequestError> {
        let BodyReceiver::Length { remaining, buf } = self else {
            unreachable!("only a Content-Length body is spliced")
        };
        assert!(n as u64 <= *remaining, "spliced past the body");
        buf.take_from_pipe(pipe, n).map_err(io_error)?;
        *remaining -= n as u64;
        Ok(*remaining == 0)
    }

    /// The body received whole.
    pub fn finish(self) -> Result<Body, RequestError> {
        match self {
            BodyReceiver::Length { buf, .. } | BodyReceiver::Chunked { buf, .. } => {
                buf.finish().map_err(io_error)
            }
        }
    }
}

/// The one place the "cannot store" refusal is built.
fn io_error(e: io::Error) -> RequestError {
    // Only the temporary file can fail here (a full disk): the client is not at fault, but
    // the request cannot be taken, and 413 tells it not to retry the same body blindly.
    RequestError::BodyTooLarge(format!("cannot store the request body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_memory_below_overflow() {
        let mut b = BodyBuffer::new(10, Some(5));
        b.extend(b"hello").unwrap();
        match b.finish().unwrap() {
            Body::Memory(v) => assert_eq!(v, b"hello"),
            other => panic!("expected memory, got {other:?}"),
        }
    }

    #[test]
    fn spills_to_a_file_above_overflow() {
        let mut b = BodyBuffer::new(4, None);
        b.extend(b"abc").unwrap();
        b.extend(b"defgh").unwrap();
        match b.finish().unwrap() {
            Body::File(mut f) => {
                assert_eq!(f.len, 8);
                let mut s = Vec::new();
                f.read_to_end(&mut s).unwrap();
                assert_eq!(s, b"abcdefgh");
            }
            other => panic!("expected file, got {other:?}"),
        }
    }

    #[test]
    fn a_reused_file_never_shows_the_previous_body() {
        // Whatever the pool holds, a short body after a long one reads back short.
        for _ in 0..3 {
            let mut long = BodyBuffer::new(4, None);
            long.extend(&[b'x'; 10_000]).unwrap();
            drop(long.finish().unwrap());
            let mut short = BodyBuffer::new(4, None);
            short.extend(b"short body").unwrap();
            let Body::File(mut f) = short.finish().unwrap() else {
                panic!("expected a file")
            };
            let mut s = Vec::new();
            f.read_to_end(&mut s).unwrap();
            assert_eq!(s, b"short body");
        }
    }

    /// Sends `data` into a socket and splices what arrives into `r` as the loop does.
    fn splice_all(r: &mut BodyReceiver, pipe: &SplicePipe, data: &[u8]) -> bool {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (mut tx, rx) = UnixStream::pair().unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut done = false;
        for piece in data.chunks(100_000) {
            tx.write_all(piece).unwrap();
            loop {
                let Some(max) = r.spliceable() else {
                    return done;
                };
                match pipe.fill_from(rx.as_raw_fd(), max) {
                    Ok(n) => done = r.take_from_pipe(pipe, n).unwrap(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        done
    }

    /// The loop's pipe; `None` in a build without splice (nothing to test then).
    fn pipe() -> Option<SplicePipe> {
        match SplicePipe::new() {
            Ok(pipe) => Some(pipe),
            Err(e) if crate::engine::sys::FAST_PATHS => panic!("no pipe: {e}"),
            Err(_) => None,
        }
    }

    #[test]
    fn a_spliced_body_reads_back_exactly_and_never_past_its_end() {
        let Some(pipe) = pipe() else { return };
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for overflow in [0, 1000, 2_999_999] {
            // A longer body first, so that the file reused next holds bytes past the end.
            let mut long = BodyReceiver::with_length(4_000_000, overflow);
            assert!(splice_all(&mut long, &pipe, &[b'x'; 4_000_000]));
            drop(long.finish().unwrap());
            let mut r = BodyReceiver::with_length(body.len() as u64, overflow);
            // The first bytes arrive with the head, through the read buffer.
            assert_eq!(r.feed(&body[..500]).unwrap(), (500, false));
            assert!(splice_all(&mut r, &pipe, &body[500..]));
            assert!(r.spliceable().is_none());
            assert!(pipe.is_empty());
            let Body::File(mut f) = r.finish().unwrap() else {
                panic!("expected a file")
            };
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert!(got == body, "overflow {overflow}: {} bytes back", got.len());
        }
    }

    #[test]
    fn only_a_length_body_bound_for_its_file_is_spliced() {
        assert_eq!(BodyReceiver::with_length(100, 100).spliceable(), None);
        assert_eq!(BodyReceiver::with_length(101, 100).spliceable(), Some(101));
        assert_eq!(BodyReceiver::chunked(100, 1000).spliceable(), None);
        let mut r = BodyReceiver::with_length(150, 100);
        r.feed(&[b'a'; 60]).unwrap();
        assert_eq!(r.spliceable(), Some(90));
    }

    #[test]
    fn a_failed_store_leaves_the_pipe_empty() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let Some(pipe) = pipe() else { return };
        let mut r = BodyReceiver::with_length(10_000, 0);
        let BodyReceiver::Length { buf, .. } = &mut r else {
            unreachable!()
        };
        // A file that cannot be written (and is too large to be pooled afterwards).
        buf.file = Some(SpillFile {
            file: Some(File::open("/dev/null").unwrap()),
            extent: u64::MAX,
            pid: std::process::id(),
        });
        let (mut tx, rx) = UnixStream::pair().unwrap();
        tx.write_all(&[b'y'; 5000]).unwrap();
        let n = pipe.fill_from(rx.as_raw_fd(), 10_000).unwrap();
        assert_eq!(n, 5000);
        assert!(matches!(
            r.take_from_pipe(&pipe, n),
            Err(RequestError::BodyTooLarge(_))
        ));
        assert!(pipe.is_empty());
    }

    #[test]
    fn bytes_in_the_pipe_can_also_be_copied_to_the_file() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let Some(pipe) = pipe() else { return };
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
        tx.write_all(&data).unwrap();
        let file = SpillFile::new().unwrap();
        let mut at = 0;
        while at < data.len() {
            let n = pipe.fill_from(rx.as_raw_fd(), u64::MAX).unwrap();
            pipe.copy_to(file.file(), n, 10 + at as u64).unwrap();
            at += n;
        }
        assert!(pipe.is_empty());
        let mut got = vec![0u8; data.len()];
        file.file().read_exact_at(&mut got, 10).unwrap();
        assert!(got == data);
    }

    #[test]
    fn a_chunk_that_cannot_fit_is_refused_at_its_size_line() {
        for size in [&b"ffffffffffffffff"[..], b"65", b"1f4; ext=1\r\n"] {
            let mut r = BodyReceiver::chunked(1024, 100);
            match r.feed(size) {
                Err(RequestError::BodyTooLarge(_)) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(size)),
            }
        }
        // Exactly the limit is fine.
        let mut r = BodyReceiver::chunked(1024, 100);
        assert_eq!(r.feed(b"64\r\n").unwrap(), (4, false));
    }

    #[test]
    fn length_receiver_stops_at_the_body_end() {
        let mut r = BodyReceiver::with_length(3, 1024);
        assert_eq!(r.feed(b"ab").unwrap(), (2, false));
        assert_eq!(r.feed(b"cGET").unwrap(), (1, true));
        match r.finish().unwrap() {
            Body::Memory(v) => assert_eq!(v, b"abc"),
            other => panic!("{other:?}"),
        }
    }
}
