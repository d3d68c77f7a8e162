//! What a worker process tells its master, one byte at a time on a pipe the master
//! handed over (`Engine.attach_supervisor`):
//!
//! - `R` once, when the loop runs with its listeners registered (ready to accept);
//! - `.` at most once a second while the loop keeps turning. The loop never runs
//!   application code, so silence means the process is wedged, not that a request is
//!   slow; the loop turns at least once a second even when idle (its timer tick);
//! - `M` once, when the process has served `max_requests` requests (0: never). The
//!   process keeps serving until the master stops it.
//!
//! Writes never block the loop: the pipe is made non-blocking, and a full pipe (EAGAIN)
//! or a master that has gone (EPIPE) only costs the byte.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Least time between two heartbeats.
const BEAT: Duration = Duration::from_secs(1);

pub struct Heartbeat {
    fd: OwnedFd,
    max_requests: u64,
    served: u64,
    said_max: bool,
    next_beat: Option<Instant>,
}

impl Heartbeat {
    /// Takes the write end of the master's pipe (switched to non-blocking).
    pub fn new(fd: OwnedFd, max_requests: u64) -> std::io::Result<Heartbeat> {
        // SAFETY: fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0
            || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Heartbeat {
            fd,
            max_requests,
            served: 0,
            said_max: false,
            next_beat: None,
        })
    }

    fn say(&self, byte: u8) {
        // SAFETY: writes one byte from a local to a descriptor we own. The result is
        // ignored on purpose (see the module comment); SIGPIPE is ignored by Python.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&byte as *const u8).cast(), 1) };
    }

    /// The loop is about to wait for its first events.
    pub fn ready(&mut self, now: Instant) {
        self.say(b'R');
        self.next_beat = Some(now + BEAT);
    }

    /// Called every turn of the loop.
    pub fn turn(&mut self, now: Instant) {
        if self.next_beat.is_some_and(|t| now >= t) {
            self.say(b'.');
            self.next_beat = Some(now + BEAT);
        }
    }

    /// `n` more requests have been answered.
    pub fn served(&mut self, n: usize) {
        self.served += n as u64;
        if self.max_requests > 0 && !self.said_max && self.served >= self.max_requests {
            self.said_max = true;
            self.say(b'M');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    fn available(r: &mut std::fs::File) -> Vec<u8> {
        let fd = r.as_raw_fd();
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        let mut buf = vec![0; 4096];
        match r.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn ready_beats_and_max_requests() {
        let (mut r, w) = pipe();
        let mut hb = Heartbeat::new(w, 3).unwrap();
        let t0 = Instant::now();
        hb.turn(t0);
        assert_eq!(available(&mut r), b"");
        hb.ready(t0);
        hb.turn(t0 + Duration::from_millis(500));
        assert_eq!(available(&mut r), b"R");
        hb.turn(t0 + Duration::from_millis(1000));
        hb.turn(t0 + Duration::from_millis(1500));
        hb.turn(t0 + Duration::from_millis(2100));
        assert_eq!(available(&mut r), b"..");
        hb.served(2);
        assert_eq!(available(&mut r), b"");
        hb.served(1);
        hb.served(5);
        assert_eq!(available(&mut r), b"M");
    }

    #[test]
    fn full_or_closed_pipe_is_ignored() {
        let (r, w) = pipe();
        let mut hb = Heartbeat::new(w, 0).unwrap();
        let t0 = Instant::now();
        hb.ready(t0);
        // Far more beats than a pipe holds: EAGAIN, never a block.
        for i in 1..200_000u64 {
            hb.turn(t0 + BEAT * (i as u32));
        }
        drop(r);
        // EPIPE (SIGPIPE is ignored in the test harness as in Python).
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        hb.turn(t0 + BEAT * 300_000);
        hb.served(1_000_000);
    }
}
