//! The half of a connection that worker threads share with the I/O loop: the socket and
//! its pending output.
//!
//! A worker writes its response straight to the socket when the socket takes it; whatever
//! would block is queued here and the loop sends it on the next writable event. Only the
//! loop ever closes the socket (it drops the last reference after the worker is done), so
//! a descriptor can never be reused under a worker's feet (CVE-2022-31015).

use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use socket2::Socket;

use crate::engine::outbuf::{Flushed, OutBuf};
use crate::engine::transport::{Sink, TlsSession};

/// Who is on the other end.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP peer, with its address already formatted for REMOTE_ADDR/REMOTE_PORT
    /// (once per connection rather than once per request).
    Inet {
        addr: SocketAddr,
        ip: String,
        port: String,
    },
    Unix,
}

/// A peer as log lines name it.
pub fn peer_text(peer: &Peer) -> String {
    match peer {
        Peer::Inet { addr, .. } => addr.to_string(),
        Peer::Unix => "unix socket".into(),
    }
}

impl Peer {
    pub fn inet(addr: SocketAddr) -> Peer {
        Peer::Inet {
            addr,
            ip: addr.ip().to_string(),
            port: addr.port().to_string(),
        }
    }

    /// The address, for an Internet peer.
    pub fn inet_addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Inet { addr, .. } => Some(*addr),
            Peer::Unix => None,
        }
    }
}

/// What a worker should do after handing bytes to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written or queued; carry on.
    Ok,
    /// More is queued than `outbuf_high_watermark`: wait with [`Channel::wait_writable`]
    /// before producing more (what was sent is queued whole).
    OverWatermark,
    /// ([`WhenFull::Return`] only) The socket filled after this many bytes; nothing was
    /// queued.
    Full(usize),
}

/// What [`Channel::send`] does with bytes the socket does not take at once.
#[derive(Debug)]
pub enum WhenFull<'a> {
    /// Queue them for the loop.
    Queue,
    /// Wait for room while the budget allows (the client reads about as fast as the
    /// application writes), then queue. Blocks: call without the GIL.
    Wait(&'a mut DirectBudget),
    /// Return [`Sent::Full`] so that the caller can release the GIL before it waits
    /// (then sends the rest with `Wait` and the same budget).
    Return(&'a mut DirectBudget),
}

impl WhenFull<'_> {
    fn budget(&mut self) -> Option<&mut DirectBudget> {
        match self {
            WhenFull::Queue => None,
            WhenFull::Wait(b) | WhenFull::Return(b) => Some(b),
        }
    }
}

/// How long a worker may wait for room in a full socket during one response.
///
/// Queueing what the socket does not take keeps a slow client from holding a worker, but
/// costs a copy, and past `outbuf_overflow` a trip through a temporary file: for a client
/// that reads as fast as the application writes (a local proxy, a fast network) that is
/// the bulk of the cost of a large response. So a worker first waits for the socket, as
/// long as the client keeps earning it: [`BASE_WAIT`], plus the time the bytes it has
/// taken since the socket first filled would need at [`MIN_RATE`] bytes per
/// microsecond. A client slower than that runs out of budget and gets the queue, as
/// before; the worker is then free. A client that stops reading altogether gets the
/// queue after one wait without room ([`MAX_WAIT`] at most), whatever it had earned:
/// from then on `channel_timeout` judges it, as any client with queued output.
#[derive(Debug, Default)]
pub struct DirectBudget {
    waited: Duration,
    /// Bytes written straight to the socket after it first filled.
    earned: u64,
    filled: bool,
    /// A wait ended without room: no more waiting in this response.
    stalled: bool,
}

/// Long enough for a client busy with many other connections to come back to this one:
/// wrk reading 50 full sockets at 2.5 GB/s comes round every ~50 ms; with 20 ms, waits
/// timed out, the output went to spill files, which kept the client busier still.
const BASE_WAIT: Duration = Duration::from_millis(100);
/// Bytes per microsecond (8 MB/s) a client must take for a worker to keep waiting.
const MIN_RATE: u64 = 8;
/// Longest single wait (a closed connection is noticed by the next write).
const MAX_WAIT: Duration = Duration::from_millis(100);

impl DirectBudget {
    /// How long the next wait may last (zero: queue instead).
    pub fn remaining(&self) -> Duration {
        if self.stalled {
            return Duration::ZERO;
        }
        let allowed = BASE_WAIT + Duration::from_micros(self.earned / MIN_RATE);
        allowed.saturating_sub(self.waited).min(MAX_WAIT)
    }

    fn wrote(&mut self, n: usize) {
        if self.filled {
            self.earned += n as u64;
        }
    }
}

#[derive(Debug)]
pub struct Channel {
    /// Distinguishes this connection from a later one that reuses its slab slot.
    pub id: u64,
    pub token: usize,
    /// Index of the listening socket it came from (selects the environ template).
    pub listener: usize,
    pub sock: Socket,
    pub peer: Peer,
    out: Mutex<OutBuf>,
    drained: Condvar,
    closed: AtomicBool,
    /// The loop is waiting to hear that the running request is done (the client sent
    /// more, or went away). Otherwise a worker's completion needs no wake-up: the loop
    /// picks it up on its next round, which saves a syscall per request.
    awaited: AtomicBool,
    /// The server closes this connection after the response in progress (a graceful
    /// stop has begun): responses not yet started say `Connection: close`.
    last: AtomicBool,
    overflow: usize,
    high_watermark: u64,
    /// The TLS session, on a TLS listener's connections.
    tls: Option<Box<TlsSession>>,
}

impl Channel {
    pub fn new(
        id: u64,
        token: usize,
        listener: usize,
        sock: Socket,
        peer: Peer,
        overflow: usize,
        high_watermark: usize,
    ) -> Self {
        Channel {
            id,
            token,
            listener,
            sock,
            peer,
            out: Mutex::new(OutBuf::default()),
            drained: Condvar::new(),
            closed: AtomicBool::new(false),
            awaited: AtomicBool::new(false),
            last: AtomicBool::new(false),
            overflow,
            high_watermark: high_watermark as u64,
            tls: None,
        }
    }

    /// Carries this connection over TLS.
    pub fn with_tls(mut self, tls: Option<TlsSession>) -> Self {
        self.tls = tls.map(Box::new);
        self
    }

    pub fn tls(&self) -> Option<&TlsSession> {
        self.tls.as_deref()
    }

    /// Environ entries the transport contributes to every request (mod_ssl's, on TLS),
    /// computed once per connection.
    pub fn transport_environ(&self) -> &[(&'static str, String)] {
        self.tls
            .as_ref()
            .and_then(|t| t.environ())
            .unwrap_or_default()
    }

    /// Reads what the client sent (decrypted, on TLS): as `read(2)` on the socket.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.sock).read(buf),
            Some(tls) => tls.read(&self.sock, buf),
        }
    }

    /// Shuts our sending side down (after TLS's close_notify).
    pub fn shutdown_write(&self) {
        self.close_notify();
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// On TLS, says that nothing more will be sent (best effort); nothing on plain.
    pub fn close_notify(&self) {
        if let Some(tls) = &self.tls {
            if !tls.is_handshaking() {
                tls.close_notify(&self.sock);
            }
        }
    }

    fn write_direct(&self, parts: &[&[u8]], start: usize) -> io::Result<usize> {
        match &self.tls {
            None => write_direct(&mut &self.sock, parts, start),
            Some(tls) => tls.with_sink(&self.sock, |sink| write_direct(sink, parts, start)),
        }
    }

    /// Whether encrypted bytes wait in the TLS session (never on a plain connection).
    fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.has_pending())
    }

    /// The client is gone (or the server closed the connection).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Loop side: a completion for this channel must wake the loop.
    pub fn set_awaited(&self, awaited: bool) {
        self.awaited.store(awaited, Ordering::SeqCst);
    }

    pub fn is_awaited(&self) -> bool {
        self.awaited.load(Ordering::SeqCst)
    }

    /// Loop side: no request after the one in progress will be read on this connection.
    pub fn set_last(&self) {
        self.last.store(true, Ordering::Release);
    }

    /// Worker side: the response being made must close the connection.
    pub fn is_last(&self) -> bool {
        self.last.load(Ordering::Acquire)
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        // Take the lock so a worker between its check and its wait cannot miss the signal.
        drop(self.lock_out());
        self.drained.notify_all();
    }

    fn lock_out(&self) -> MutexGuard<'_, OutBuf> {
        // A panic while holding this lock leaves an OutBuf that is still consistent
        // (every mutation completes before returning), so poisoning carries no meaning.
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the concatenation of `parts`: straight to the socket while nothing is queued;
    /// what the socket does not take is handled as `when_full` says.
    ///
    /// The remainder is queued whole, a slice at a time, releasing the lock in between
    /// (the loop flushes under the same lock): in memory up to `outbuf_overflow`, then in
    /// a spill file, so one huge body item neither stalls the loop nor lands in memory
    /// whole, and never holds its worker for a slow client. The high watermark is the
    /// caller's to respect *before* producing more ([`Channel::wait_writable`]), as in
    /// waitress: only an application that keeps producing is paused. Only sends of more
    /// than `QUEUE_SLICE` bytes, or with [`WhenFull::Wait`], can take long, and the
    /// caller makes those without the GIL.
    pub fn send(&self, parts: &[&[u8]], mut when_full: WhenFull<'_>) -> io::Result<Sent> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = 0;
        let mut rest: Vec<&[u8]> = Vec::new();
        loop {
            let mut out = self.lock_out();
            if self.is_closed() {
                return Err(disconnected());
            }
            if out.is_empty() {
                let n = self
                    .write_direct(parts, done)
                    .inspect_err(|_| self.closed.store(true, Ordering::Release))?;
                done += n;
                if let Some(budget) = when_full.budget() {
                    budget.wrote(n);
                    budget.filled |= done < total;
                }
                match &mut when_full {
                    _ if done == total => {}
                    WhenFull::Queue => {}
                    WhenFull::Return(_) => return Ok(Sent::Full(done)),
                    WhenFull::Wait(budget) => {
                        let wait = budget.remaining();
                        if !wait.is_zero() {
                            drop(out);
                            let start = std::time::Instant::now();
                            let room = poll_writable(&self.sock, wait);
                            budget.waited += start.elapsed();
                            budget.stalled |= !room;
                            continue;
                        }
                    }
                }
            }
            if done < total {
                let take = (total - done).min(QUEUE_SLICE);
                sub_parts(parts, done, take, &mut rest);
                out.push(&rest, self.overflow)?;
                done += take;
            }
            if done == total {
                return Ok(self.watermark(&out));
            }
        }
    }

    /// Sends `len` bytes of `file` from `offset` with sendfile; what would block is queued
    /// as a file range on a duplicate of the descriptor, so the caller may close its file.
    pub fn send_file(&self, file: &File, mut offset: u64, len: u64) -> io::Result<Sent> {
        let end = offset + len;
        let mut out = self.lock_out();
        if self.is_closed() {
            return Err(disconnected());
        }
        if out.is_empty() {
            let sent = match &self.tls {
                None => send_file_direct(&mut &self.sock, file, &mut offset, end),
                Some(tls) => tls.with_sink(&self.sock, |sink| {
                    send_file_direct(sink, file, &mut offset, end)
                }),
            };
            if let Err(e) = sent {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    self.closed.store(true, Ordering::Release);
                }
                return Err(e);
            }
        }
        if offset < end {
            out.push_file(file.try_clone()?, offset, end - offset);
        }
        Ok(self.watermark(&out))
    }

    fn watermark(&self, out: &OutBuf) -> Sent {
        if out.len() > self.high_watermark {
            Sent::OverWatermark
        } else {
            Sent::Ok
        }
    }

    /// Whether more output is queued than the high watermark.
    pub fn over_watermark(&self) -> bool {
        self.watermark(&self.lock_out()) == Sent::OverWatermark
    }

    /// Blocks until the queued output is below the high watermark (true) or the
    /// connection is closed (false). Call without holding the GIL.
    pub fn wait_writable(&self) -> bool {
        let mut out = self.lock_out();
        loop {
            if self.is_closed() {
                return false;
            }
            if out.len() <= self.high_watermark {
                return true;
            }
            // The timeout only guards against a lost wake-up; the loop notifies on drain.
            out = self
                .drained
                .wait_timeout(out, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Called by the loop on a writable event: sends what is queued. Also says whether
    /// any byte went out (a client that reads nothing makes no progress).
    pub fn flush(&self) -> io::Result<(Flushed, bool)> {
        let mut out = self.lock_out();
        let result = match &self.tls {
            None if out.is_empty() => return Ok((Flushed::All, false)),
            None => {
                let before = out.len();
                let result = out.flush(&self.sock);
                (result, out.len() < before)
            }
            Some(tls) => {
                // Records the session holds leave before any queued plaintext.
                let before = (out.len(), tls.has_pending());
                let result = match tls.push_pending(&self.sock) {
                    Ok(true) => tls.with_sink(&self.sock, |sink| out.flush_to(sink)),
                    Ok(false) => Ok(Flushed::Blocked),
                    Err(e) => Err(e),
                };
                (result, (out.len(), tls.has_pending()) != before)
            }
        };
        let (result, progressed) = result;
        if progressed && out.len() <= self.high_watermark {
            self.drained.notify_all();
        }
        if result.is_err() {
            self.closed.store(true, Ordering::Release);
        }
        result.map(|f| (f, progressed))
    }

    /// Holds back partial segments (TCP_CORK) while several responses are written in a
    /// row, so that pipelined responses leave in full segments; uncorking sends the rest.
    /// Best effort: a Unix socket has no cork, nor has a system without TCP_CORK
    /// (`engine::sys`).
    pub fn cork(&self, on: bool) {
        crate::engine::sys::cork(&self.sock, on);
    }

    /// How long queued output has waited without the client taking any of it.
    pub fn stalled_for(&self, now: std::time::Instant) -> Option<Duration> {
        self.lock_out().stalled_for(now)
    }

    pub fn has_pending_output(&self) -> bool {
        !self.lock_out().is_empty() || self.tls_pending()
    }
}

/// Waits until `sock` has room for more output (true), or `timeout` passes (false).
/// Errors and hang-ups also end the wait with true: the next write reports them.
fn poll_writable(sock: &Socket, timeout: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fds, 1, ms) };
    // EINTR (n < 0) ends the wait early; it is not a stalled client.
    n != 0
}

fn disconnected() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "client disconnected")
}

/// Bytes queued under the lock at a time by [`Channel::send`].
const QUEUE_SLICE: usize = 1 << 20;

/// The slices of `parts` covering `len` bytes from offset `start` of their concatenation.
pub fn sub_parts<'a>(parts: &[&'a [u8]], start: usize, len: usize, out: &mut Vec<&'a [u8]>) {
    out.clear();
    let (mut skip, mut left) = (start, len);
    for p in parts {
        if left == 0 {
            break;
        }
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        let n = (p.len() - skip).min(left);
        out.push(&p[skip..skip + n]);
        left -= n;
        skip = 0;
    }
}

/// Writes as much of `parts` as the socket takes without blocking, starting `start`
/// bytes into their concatenation; returns the count written.
fn write_direct<S: Sink + ?Sized>(
    sink: &mut S,
    parts: &[&[u8]],
    start: usize,
) -> io::Result<usize> {
    const MAX: usize = 8;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = start;
    while done < total {
        let mut iov: [IoSlice<'_>; MAX] = [IoSlice::new(&[]); MAX];
        let mut n_iov = 0;
        let mut skip = done;
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
            } else if n_iov < MAX {
                iov[n_iov] = IoSlice::new(&p[skip..]);
                n_iov += 1;
                skip = 0;
            }
        }
        match sink.send_vectored(&iov[..n_iov]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A short write leaves the socket full; trying again until EAGAIN guarantees the
            // kernel reports the next writable edge to the loop.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done - start)
}

/// Sends `file` from `*offset` up to `end` until the sink is full (sendfile on a plain
/// socket; read and encrypted on TLS).
fn send_file_direct<S: Sink + ?Sized>(
    sink: &mut S,
    file: &File,
    offset: &mut u64,
    end: u64,
) -> io::Result<()> {
    while *offset < end {
        match sink.send_file(file, offset, end - *offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than its length",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn channel_pair() -> (Channel, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let sock = Socket::from(std::os::fd::OwnedFd::from(a));
        (
            Channel::new(1, 0, 0, sock, Peer::Unix, 1 << 20, 16 << 20),
            b,
        )
    }

    #[test]
    fn a_client_that_reads_gets_everything_without_queueing() {
        use std::io::Read;
        let (channel, mut peer) = channel_pair();
        let body = pattern(32 << 20);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let mut budget = DirectBudget::default();
        // Pieces of odd sizes, alternating the two ways a responder sends.
        for (i, piece) in body.chunks(100_003).enumerate() {
            let sent = if i % 2 == 0 {
                channel.send(&[piece], WhenFull::Wait(&mut budget)).unwrap()
            } else {
                match channel
                    .send(&[piece], WhenFull::Return(&mut budget))
                    .unwrap()
                {
                    Sent::Full(done) => channel
                        .send(&[&piece[done..]], WhenFull::Wait(&mut budget))
                        .unwrap(),
                    other => other,
                }
            };
            assert_eq!(sent, Sent::Ok);
            assert!(
                !channel.has_pending_output(),
                "queued for a client that reads"
            );
        }
        drop(channel);
        let got = reader.join().unwrap();
        assert!(got == body, "bytes lost, repeated or out of order");
    }

    #[test]
    fn a_client_that_stops_reading_gets_the_queue_despite_its_credit() {
        let (channel, _peer) = channel_pair();
        let mut budget = DirectBudget {
            earned: 1 << 40,
            filled: true,
            ..DirectBudget::default()
        };
        let body = vec![5u8; 4 << 20];
        let start = std::time::Instant::now();
        for piece in body.chunks(1 << 16) {
            channel.send(&[piece], WhenFull::Wait(&mut budget)).unwrap();
        }
        assert!(channel.has_pending_output());
        assert!(budget.remaining().is_zero());
        assert!(start.elapsed() < MAX_WAIT * 5, "{:?}", start.elapsed());
    }

    #[test]
    fn a_client_that_does_not_read_gets_the_queue_after_the_base_wait() {
        let (channel, _peer) = channel_pair();
        let body = vec![5u8; 4 << 20];
        let mut budget = DirectBudget::default();
        let start = std::time::Instant::now();
        for piece in body.chunks(1 << 16) {
            channel.send(&[piece], WhenFull::Wait(&mut budget)).unwrap();
        }
        let took = start.elapsed();
        assert!(channel.has_pending_output());
        assert!(budget.remaining().is_zero());
        assert!(took >= BASE_WAIT && took < BASE_WAIT * 5, "{took:?}");
    }

    #[test]
    fn a_huge_send_to_a_stalled_client_is_queued_whole_at_once() {
        let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let sock = Socket::from(std::os::fd::OwnedFd::from(a));
        // A watermark far below the item: the send must not wait for the client.
        let channel = Channel::new(1, 0, 0, sock, Peer::Unix, 64 << 10, 1 << 20);
        let body = pattern(24 << 20);
        let mut budget = DirectBudget::default();
        let start = std::time::Instant::now();
        let sent = channel.send(&[&body], WhenFull::Wait(&mut budget)).unwrap();
        assert_eq!(sent, Sent::OverWatermark);
        assert!(channel.over_watermark());
        assert!(start.elapsed() < BASE_WAIT * 10, "{:?}", start.elapsed());
        let queued = channel.lock_out().len();
        assert!(queued > (20 << 20) && queued <= 24 << 20, "{queued}");
    }

    #[test]
    fn return_mode_reports_a_full_socket_without_queueing() {
        let (channel, _peer) = channel_pair();
        let body = vec![5u8; 4 << 20];
        let mut budget = DirectBudget::default();
        match channel
            .send(&[&body], WhenFull::Return(&mut budget))
            .unwrap()
        {
            Sent::Full(n) => assert!(n > 0 && n < body.len()),
            other => panic!("{other:?}"),
        }
        assert!(!channel.has_pending_output());
    }

    #[test]
    fn sub_parts_cover_any_range() {
        let parts: [&[u8]; 3] = [b"abc", b"", b"defgh"];
        let mut out = Vec::new();
        for start in 0..=8 {
            for len in 0..=(8 - start) {
                sub_parts(&parts, start, len, &mut out);
                let got: Vec<u8> = out.concat();
                assert_eq!(got, &b"abcdefgh"[start..start + len], "{start}+{len}");
            }
        }
    }
}
