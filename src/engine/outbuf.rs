//! Response bytes that could not be written at once: kept in order until the socket takes
//! them. Memory up to `outbuf_overflow` bytes, then an anonymous temporary file (sent with
//! sendfile); files from `wsgi.file_wrapper` are queued as file ranges, never read in.
//!
//! Bytes leave in the order they were queued, and `len` counts every byte still pending.
//! Writing goes through the transport's [`Sink`] (the socket, or TLS over it); the
//! transport does not know this buffer.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use socket2::Socket;

use crate::engine::transport::Sink;

#[derive(Debug)]
enum Chunk {
    Mem {
        data: Vec<u8>,
        pos: usize,
    },
    /// A byte range of a file: a temporary spill file, or the application's own file.
    File {
        file: File,
        offset: u64,
        end: u64,
        spill: bool,
    },
}

/// What happened to bytes offered to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything pending went out.
    All,
    /// The socket is full; the rest waits for the next writable event.
    Blocked,
}

#[derive(Debug, Default)]
pub struct OutBuf {
    chunks: VecDeque<Chunk>,
    /// Bytes pending in all chunks.
    len: u64,
    /// Bytes pending in memory chunks.
    mem_len: usize,
    /// When bytes were last queued into an empty buffer or taken by the socket.
    progress: Option<Instant>,
}

/// Bytes written to one spill file before the next one starts.
const SPILL_FILE_MAX: u64 = 16 << 20;

/// Largest number of slices handed to one writev.
const MAX_IOV: usize = 64;

impl OutBuf {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How long pending bytes have waited without the socket taking any.
    pub fn stalled_for(&self, now: Instant) -> Option<std::time::Duration> {
        if self.is_empty() {
            return None;
        }
        self.progress.map(|p| now.saturating_duration_since(p))
    }

    /// Queues the concatenation of `parts`, in memory or, past `overflow`, in a spill file.
    pub fn push(&mut self, parts: &[&[u8]], overflow: usize) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        if self.is_empty() {
            self.progress = Some(Instant::now());
        }
        // A spill file is appended to until it holds SPILL_FILE_MAX bytes; then a new one
        // starts, so a long stream to a slow client does not keep one ever-growing file.
        let spill_tail = matches!(
            self.chunks.back(),
            Some(Chunk::File { spill: true, end, .. }) if *end < SPILL_FILE_MAX
        );
        if spill_tail || self.mem_len + total > overflow {
            if !spill_tail {
                let file = tempfile::tempfile()?;
                self.chunks.push_back(Chunk::File {
                    file,
                    offset: 0,
                    end: 0,
                    spill: true,
                });
            }
            if let Some(Chunk::File { file, end, .. }) = self.chunks.back_mut() {
                for p in parts {
                    file.write_all_at(p, *end)?;
                    *end += p.len() as u64;
                }
            }
        } else {
            let mut data = Vec::with_capacity(total);
            for p in parts {
                data.extend_from_slice(p);
            }
            self.mem_len += total;
            self.chunks.push_back(Chunk::Mem { data, pos: 0 });
        }
        self.len += total as u64;
        Ok(())
    }

    /// Queues `len` bytes of `file` from `offset`; the file is closed once sent.
    pub fn push_file(&mut self, file: File, offset: u64, len: u64) {
        if len > 0 {
            if self.is_empty() {
                self.progress = Some(Instant::now());
            }
            self.chunks.push_back(Chunk::File {
                file,
                offset,
                end: offset + len,
                spill: false,
            });
            self.len += len;
        }
    }

    /// Writes as much as the socket takes.
    pub fn flush(&mut self, sock: &Socket) -> io::Result<Flushed> {
        self.flush_to(&mut &*sock)
    }

    /// Writes as much as `sink` (the socket, or a TLS session over it) takes.
    pub fn flush_to<S: Sink + ?Sized>(&mut self, sink: &mut S) -> io::Result<Flushed> {
        let before = self.len;
        let result = self.flush_inner(sink);
        if self.len < before {
            self.progress = Some(Instant::now());
        }
        result
    }

    fn flush_inner<S: Sink + ?Sized>(&mut self, sink: &mut S) -> io::Result<Flushed> {
        while let Some(front) = self.chunks.front_mut() {
            match front {
                Chunk::Mem { .. } => {
                    let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
                    let mut n_iov = 0;
                    for c in self.chunks.iter() {
                        match c {
                            Chunk::Mem { data, pos } if n_iov < MAX_IOV => {
                                iov[n_iov] = IoSlice::new(&data[*pos..]);
                                n_iov += 1;
                            }
                            _ => break,
                        }
                    }
                    let written = match sink.send_vectored(&iov[..n_iov]) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Flushed::Blocked)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    self.consume_mem(written);
                }
                Chunk::File {
                    file, offset, end, ..
                } => {
                    if *offset >= *end {
                        self.chunks.pop_front();
                        continue;
                    }
                    match sink.send_file(file, offset, *end - *offset) {
                        Ok(0) => {
                            // The file shrank under us: what is missing can never be sent,
                            // and the client must not take a short body for a whole one.
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file truncated while being sent",
                            ));
                        }
                        Ok(n) => self.len -= n as u64,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Flushed::Blocked)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(Flushed::All)
    }

    fn consume_mem(&mut self, mut written: usize) {
        self.len -= written as u64;
        self.mem_len -= written;
        while written > 0 {
            let Some(Chunk::Mem { data, pos }) = self.chunks.front_mut() else {
                break;
            };
            let left = data.len() - *pos;
            if written >= left {
                written -= left;
                self.chunks.pop_front();
            } else {
                *pos += written;
                written = 0;
            }
        }
        while let Some(Chunk::Mem { data, pos }) = self.chunks.front() {
            if *pos == data.len() {
                self.chunks.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pair() -> (Socket, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Socket::from(std::os::fd::OwnedFd::from(a)), b)
    }

    #[test]
    fn flushes_memory_and_spilled_bytes_in_order() {
        let (sock, mut peer) = pair();
        let mut out = OutBuf::default();
        out.push(&[b"hello ", b"world"], 8).unwrap();
        out.push(&[b", spilled"], 8).unwrap();
        out.push(&[b" and more"], 1 << 20).unwrap();
        assert_eq!(out.len(), 29);
        assert_eq!(out.flush(&sock).unwrap(), Flushed::All);
        assert!(out.is_empty());
        let mut got = vec![0u8; 29];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world, spilled and more");
    }

    #[test]
    fn sends_file_ranges() {
        let (sock, mut peer) = pair();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let mut out = OutBuf::default();
        out.push(&[b"<"], 1024).unwrap();
        out.push_file(f, 2, 5);
        out.push(&[b">"], 1024).unwrap();
        assert_eq!(out.flush(&sock).unwrap(), Flushed::All);
        let mut got = vec![0u8; 7];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"<23456>");
    }

    #[test]
    fn spill_files_rotate() {
        let mut out = OutBuf::default();
        let block = vec![1u8; 1 << 20];
        for _ in 0..40 {
            out.push(&[&block], 0).unwrap();
        }
        let files = out
            .chunks
            .iter()
            .filter(|c| matches!(c, Chunk::File { spill: true, .. }))
            .count();
        // 40 MiB in files of at most SPILL_FILE_MAX (16 MiB): three of them.
        assert_eq!(files, 3);
        assert_eq!(out.len(), 40 << 20);
    }

    #[test]
    fn blocks_when_the_peer_does_not_read() {
        let (sock, _peer) = pair();
        let mut out = OutBuf::default();
        let big = vec![7u8; 8 << 20];
        out.push(&[&big], 1 << 30).unwrap();
        assert_eq!(out.flush(&sock).unwrap(), Flushed::Blocked);
        assert!(!out.is_empty() && out.len() < big.len() as u64);
    }
}
