//! Request bodies, received whole before the application runs (so a slow uploader never
//! holds a worker thread): in memory up to `inbuf_overflow` bytes, in an anonymous
//! temporary file beyond.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use crate::http::chunked::ChunkedDecoder;
use crate::http::request::RequestError;

/// A complete request body, ready to be read by the application.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    /// A temporary file positioned at its start, and its length.
    File(File, u64),
}

impl Body {
    pub fn empty() -> Body {
        Body::Memory(Vec::new())
    }

    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(v) => v.len() as u64,
            Body::File(_, len) => *len,
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
    file: Option<File>,
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
            let mut file = tempfile::tempfile()?;
            file.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(f) => f.write_all(data)?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    pub fn finish(self) -> io::Result<Body> {
        Ok(match self.file {
            Some(mut f) => {
                f.seek(SeekFrom::Start(0))?;
                Body::File(f, self.len)
            }
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
            } => {
                scratch.clear();
                let progress = decoder
                    .decode(input, scratch)
                    .map_err(|e| RequestError::BadRequest(e.0.to_string()))?;
                // Counted on the decoded body, and refused as soon as the limit is crossed.
                if buf.len() + scratch.len() as u64 > *max {
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
    use std::io::Read;

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
            Body::File(mut f, len) => {
                assert_eq!(len, 8);
                let mut s = Vec::new();
                f.read_to_end(&mut s).unwrap();
                assert_eq!(s, b"abcdefgh");
            }
            other => panic!("expected file, got {other:?}"),
        }
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
