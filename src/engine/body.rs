//! Request bodies, received whole before the application runs (so a slow uploader never
//! holds a worker thread): in memory up to `inbuf_overflow` bytes, in an anonymous
//! temporary file beyond.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use crate::http::chunked::ChunkedDecoder;
use crate::http::request::RequestError;

/// A complete request body, ready to be read by the application.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    File(BodyFile),
}

/// Temporary files for bodies are reused: a new file costs the filesystem a block
/// reservation and fresh page-cache pages for every byte, and closing it frees them
/// again, which made an 8 MiB upload spend about three times as long in its file as in
/// writing and reading the bytes (2.6 ms against 0.8 ms per 8 MiB here). A reused file
/// is overwritten in place. Only request bodies are pooled: response spill files are
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

    pub fn finish(self) -> io::Result<Body> {
        match self {
            BodyReceiver::Length { buf, .. } | BodyReceiver::Chunked { buf, .. } => buf.finish(),
        }
    }
}

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
