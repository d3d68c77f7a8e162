//! The portable side of `engine::sys`: the same items as `linux.rs`, with POSIX calls
//! only, for macOS and the BSDs (and for Linux built with the `portable` feature, which
//! is how these paths are tested).
//!
//! What each one gives up:
//! - no splice: [`SplicePipe`] cannot be made, and a spilled body is read through the
//!   loop's buffer and written to its file (the path TLS connections always take);
//! - no sendfile: a file is read into a buffer and sent, a chunk per call (macOS and
//!   FreeBSD have a sendfile of their own, with other signatures; not used yet);
//! - no thread CPU clock: the job queue cannot tell a computing worker from a blocked
//!   one, and counts it as blocked (another worker is woken for waiting jobs);
//! - no SCHED_BATCH: the loop batches less on a busy core;
//! - no TCP_CORK: pipelined responses may leave in more, smaller segments;
//! - no TIOCOUTQ: a lingering connection is kept until its peer closes or its linger
//!   deadline, rather than closed as soon as everything it was sent is acknowledged.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use socket2::Socket;

/// The Linux calls are not built in (true in `linux.rs`).
pub const FAST_PATHS: bool = false;

/// The send flag that keeps a write to a peer that went away from raising SIGPIPE:
/// MSG_NOSIGNAL is POSIX and Linux and the BSDs have it; macOS sets SO_NOSIGPIPE on the
/// socket instead ([`prepare_accepted`]).
#[cfg(not(target_vendor = "apple"))]
const NO_SIGPIPE: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_vendor = "apple")]
const NO_SIGPIPE: libc::c_int = 0;

/// Sets up an accepted socket for what the sends here assume: on macOS, SO_NOSIGPIPE
/// (its sends take no MSG_NOSIGNAL); nothing elsewhere.
pub fn prepare_accepted(sock: &Socket) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    sock.set_nosigpipe(true)?;
    let _ = sock;
    Ok(())
}

/// writev that gives EPIPE, not SIGPIPE, when the peer went away.
pub fn send_vectored(sock: &Socket, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    sock.send_vectored_with_flags(bufs, NO_SIGPIPE)
}

/// File bytes read per call of [`send_file`] (as much as a socket buffer takes in one
/// go, and no more: a full socket leaves the rest in the file, not in memory).
const FILE_CHUNK: usize = 256 * 1024;

thread_local! {
    /// The buffer file bytes pass through on their way to a socket (one per thread that
    /// sends files: the loop and each worker).
    static FILE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Sends up to `count` bytes of `file` at `*offset`, advancing it by what the socket
/// took: one read into a buffer and one send. Bytes read but not taken are read again
/// on the next call (from the page cache).
pub fn send_file(sock: &Socket, file: &File, offset: &mut u64, count: u64) -> io::Result<usize> {
    FILE_BUF.with_borrow_mut(|buf| {
        let want = count.min(FILE_CHUNK as u64) as usize;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let got = loop {
            match file.read_at(&mut buf[..want], *offset) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if got == 0 {
            return Ok(0);
        }
        let n = send_vectored(sock, &[IoSlice::new(&buf[..got])])?;
        *offset += n as u64;
        Ok(n)
    })
}

/// TCP_CORK is Linux's: segments leave as they are written (pipelined responses may
/// take more of them).
pub fn cork(_sock: &Socket, _on: bool) {}

/// Bytes sent on `sock` that its peer has not acknowledged yet: not known here.
pub fn unacked_bytes(_sock: &Socket) -> Option<usize> {
    None
}

/// How long `sock` has received no data: not known here (the caller counts from
/// when it accepted the connection).
pub fn quiet_for(_sock: &Socket) -> Option<Duration> {
    None
}

/// SCHED_BATCH is Linux's: nothing to do.
pub fn prefer_batching() {}

/// A thread's CPU clock: none here (macOS has no `pthread_getcpuclockid`), so there is
/// never a value of this type.
#[derive(Debug, Clone, Copy)]
pub enum CpuClock {}

impl CpuClock {
    /// The calling thread's clock: the system cannot tell.
    pub fn current() -> Option<CpuClock> {
        None
    }

    pub fn read(self) -> Option<Duration> {
        match self {}
    }
}

/// No splice here: [`SplicePipe::new`] always fails, so there is never a value of this
/// type and the loop reads spilled bodies through its buffer.
#[derive(Debug)]
pub enum SplicePipe {}

impl SplicePipe {
    pub fn new() -> io::Result<SplicePipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn fill_from(&self, _sock: RawFd, _max: u64) -> io::Result<usize> {
        match *self {}
    }

    pub fn splice_to(&self, _file: &File, _n: usize, _offset: u64) -> io::Result<()> {
        match *self {}
    }

    pub fn copy_to(&self, _file: &File, _n: usize, _offset: u64) -> io::Result<()> {
        match *self {}
    }

    pub fn discard(&self, _n: usize) {
        match *self {}
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        match *self {}
    }
}
