//! Stopping the loop: gracefully (drain) or at once (halt), on a request from any
//! thread through [`LoopHandle`] (`control.rs`).
//!
//! A graceful stop, in order:
//! 0. with `shutdown_delay`, first the delay: the server is not ready at once (the
//!    probes say so, `control.rs`), and keeps accepting and answering until the delay
//!    ends, but each connection's next request is its last (`last_request`: its
//!    response says `Connection: close`), so that clients reconnect, through the
//!    balancer, elsewhere. A second stop request ends the delay;
//! 1. accept what the kernel has already queued on each listener (a connection the
//!    kernel accepted is never dropped; gunicorn #3397), then close the loop's listening
//!    descriptors: in a single process new connections are then refused (the Python
//!    side closes its own copies); under a master, the socket stays open in the other
//!    workers, so closing this process's copy is what "stop accepting" means. A
//!    listening socket is never `shutdown()`: it may be shared.
//! 2. leave idle keep-alive connections open for `keepalive_linger`: a client's next
//!    request may already be on the wire, and closing under it would lose it (a reset
//!    or an empty reply). A request that arrives is answered with `Connection: close`
//!    (step 3); a connection idle through the whole linger is closed then. With a zero
//!    linger they close at once (waitress's way);
//! 3. let everything already received run to its end: requests with a worker or queued
//!    for one, and requests whose head or body is still arriving (a client in the
//!    middle of an upload gets its answer). Every response started from now on says
//!    `Connection: close`, and the connection closes after it (one whose head went
//!    out keep-alive before the stop leaves its connection idle, as in step 2). A
//!    connection accepted in step 1 (or earlier) that has not sent a byte yet gets
//!    [`FIRST_REQUEST_GRACE`] (or the linger, if longer) to start its request;
//! 4. the loop ends when no connection is left, or at the deadline (`shutdown_timeout`),
//!    abandoning what still runs, with one log line saying how many.
//!
//! A halt closes every connection and ends the loop at once; responses not yet produced
//! are abandoned. Both say what they do in a notice that the thread inside
//! `Engine.run()` logs at once (the workers may all be busy in the application).
//!
//! [`LoopHandle`]: super::control::LoopHandle

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use std::os::fd::AsRawFd;

use super::control::{Drain, Stop};
use super::{EventLoop, State};
use crate::engine::dispatch::{LogLevel, LogRecord, Logger};
use crate::engine::sys;

/// How long a connection that has sent nothing yet may take to start its first
/// request once a graceful stop has begun.
pub(super) const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// Most connections taken from one listener's kernel queue when the stop begins:
/// more than any backlog holds, but finite if clients keep connecting meanwhile.
const MAX_FINAL_ACCEPTS: usize = 65_536;

impl EventLoop {
    fn notice(&self, level: LogLevel, message: String) {
        self.control.notice(LogRecord {
            level,
            message,
            logger: Logger::Main,
        });
    }

    /// Acts on a stop request, if any; `Some(abandoned requests)` when the loop must
    /// end now (its connections are closed by then).
    pub(super) fn check_stop(&mut self) -> Option<usize> {
        match self.control.requested() {
            Stop::None => None,
            Stop::Halt => Some(self.halt()),
            Stop::Delay => {
                self.now = Instant::now();
                match self.draining {
                    None => self.begin_delay(),
                    Some(Drain {
                        delay_until: Some(end),
                        ..
                    }) if self.now >= end => self.begin_drain(),
                    _ => {}
                }
                if self.draining.is_some_and(|d| d.delay_until.is_none()) {
                    return self.drain_progress();
                }
                None
            }
            Stop::Drain => {
                self.now = Instant::now();
                if !self.draining.is_some_and(|d| d.delay_until.is_none()) {
                    self.begin_drain();
                }
                self.drain_progress()
            }
        }
    }

    /// Step 0: every open connection's next request is its last, as is the first of
    /// each one accepted from now on (`accept` reads `draining`).
    fn begin_delay(&mut self) {
        let delay = self.control.delay();
        self.draining = Some(Drain {
            started: self.now,
            deadline: self.now + delay + self.control.drain_timeout(),
            delay_until: Some(self.now + delay),
        });
        for (_, c) in self.conns.iter() {
            c.channel.set_last();
        }
        self.notice(
            LogLevel::Info,
            format!(
                "Shutting down in {} s (shutdown_delay): not ready, still serving; \
                 keep-alive connections close after their next response",
                fmt_secs(delay)
            ),
        );
    }

    fn begin_drain(&mut self) {
        let timeout = self.control.drain_timeout();
        self.draining = Some(Drain {
            started: self.now,
            deadline: self.now + timeout,
            delay_until: None,
        });
        let mut queued = 0;
        for li in 0..self.listeners.len() {
            queued += self.accept_queued(li);
        }
        self.close_listeners();
        self.accepting.stop();
        // No longer one of the workers sharing the load.
        self.balance = None;

        let (mut running, mut partial) = (0, 0);
        let mut idle = Vec::new();
        let mut h2 = Vec::new();
        for (token, c) in self.conns.iter() {
            // Each request in progress is its connection's last (see `last_request`).
            c.channel.set_last();
            match c.state {
                State::Busy => running += 1,
                // GOAWAY: the streams it has go on, no new one is taken.
                State::H2(ref s) => {
                    running += s.running;
                    h2.push(token);
                }
                // (Requests handed back for a lagging client are still to be served.)
                State::Head { started: None, .. } if c.rbuf.is_empty() && c.held.is_empty() => {
                    if !c.fresh {
                        idle.push(token);
                    }
                }
                State::Head { .. } | State::Body { .. } => partial += 1,
                State::Closing | State::Lingering { .. } => {}
            }
        }
        for token in h2 {
            self.h2_go_away(token);
        }
        let linger = self.cfg.keepalive_linger;
        let idle_note = if linger.is_zero() {
            let closed = idle.len();
            for token in idle {
                self.close_idle(token);
            }
            format!("{closed} idle connection(s) closed")
        } else {
            format!(
                "{} idle connection(s) left open up to {} s for a last request",
                idle.len(),
                fmt_secs(linger)
            )
        };
        let mut msg = format!("Shutting down: {running} request(s) in flight, {idle_note}");
        if partial > 0 {
            msg += &format!(", {partial} request(s) being received");
        }
        if queued > 0 {
            msg += &format!(", {queued} queued connection(s) accepted");
        }
        msg += &format!("; waiting up to {} s", fmt_secs(timeout));
        self.notice(LogLevel::Info, msg);
    }

    /// Takes the connections waiting in listener `li`'s kernel queue, whatever
    /// `connection_limit` says: closing the listener would drop them.
    fn accept_queued(&mut self, li: usize) -> usize {
        let mut n = 0;
        while n < MAX_FINAL_ACCEPTS {
            match self.listeners[li].sock.accept() {
                Ok((sock, addr)) => {
                    n += 1;
                    let _ = self.register(li, sock, addr);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(_) => break,
            }
        }
        n
    }

    /// Closes a connection that is between requests: at once if nothing is left to
    /// send, else once it is sent.
    fn close_idle(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.channel.has_pending_output() {
            conn.state = State::Closing;
            self.finish_close(token);
        } else {
            self.close(token);
        }
    }

    /// Closes what no longer has a reason to stay; `Some` when the drain is over.
    fn drain_progress(&mut self) -> Option<usize> {
        let drain = self.draining?;
        let now = self.now;
        let linger_end = drain.started + self.cfg.keepalive_linger;
        let mut expired = Vec::new();
        for (token, c) in self.conns.iter() {
            let close = match c.state {
                State::Head { started: None, .. } if c.rbuf.is_empty() && c.held.is_empty() => {
                    now >= linger_end && (!c.fresh || now >= drain.started + FIRST_REQUEST_GRACE)
                }
                // Lingering protects the last response from an RST provoked by unread
                // input; once the peer has acknowledged every byte (and our FIN) and
                // nothing waits to be read, it has nothing left to protect.
                State::Lingering { deadline } => now >= deadline || settled(&c.channel.sock),
                _ => false,
            };
            if close {
                expired.push(token);
            }
        }
        for token in expired {
            self.close_idle(token);
        }
        if self.conns.is_empty() {
            let took = now.duration_since(drain.started);
            self.notice(
                LogLevel::Info,
                format!(
                    "Shutdown complete: every request answered in {} s",
                    fmt_secs(took)
                ),
            );
            self.shutdown();
            return Some(0);
        }
        if now < drain.deadline {
            return None;
        }
        let running = self.running_requests();
        self.notice(
            LogLevel::Warning,
            format!(
                "Shutdown timeout of {} s reached: abandoning {running} request(s) still running",
                fmt_secs(drain.deadline - drain.started)
            ),
        );
        self.shutdown();
        Some(running)
    }

    fn halt(&mut self) -> usize {
        let running = self.running_requests();
        self.notice(
            LogLevel::Info,
            format!("Stopping at once: {running} request(s) in flight abandoned"),
        );
        self.shutdown();
        running
    }

    /// Requests with a worker, or waiting for one.
    fn running_requests(&self) -> usize {
        self.conns
            .iter()
            .map(|(_, c)| match &c.state {
                State::Busy => 1,
                State::H2(h2) => h2.running,
                _ => 0,
            })
            .sum()
    }

    /// Stops watching the listening sockets and drops them (closing this process's
    /// descriptors; never `shutdown()`, which would stop other workers sharing them).
    fn close_listeners(&mut self) {
        for l in &self.listeners {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.sock.as_raw_fd()));
        }
        self.listeners.clear();
    }

    /// Closes every connection and listener; the loop ends after this.
    pub(super) fn shutdown(&mut self) {
        for (_, conn) in self.conns.iter() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&conn.channel.sock.as_raw_fd()));
            conn.channel.mark_closed();
            // A worker may still hold the channel (and so the socket): the client must
            // see the end now.
            let _ = conn.channel.sock.shutdown(std::net::Shutdown::Both);
        }
        let open = self.conns.len() as u64;
        let _ = self
            .stats
            .open_connections
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(open)));
        self.conns.clear();
        self.close_listeners();
        self.jobs.push_batch(&mut self.batch, Instant::now());
    }
}

/// Whether the peer has acknowledged all we sent and nothing waits to be read (`false`
/// where the system cannot tell what is unacknowledged: the linger deadline decides).
fn settled(sock: &socket2::Socket) -> bool {
    let mut unread: libc::c_int = 0;
    // SAFETY: the ioctl writes one int into the local.
    let readable = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut unread) } == 0;
    sys::unacked_bytes(sock) == Some(0) && readable && unread == 0
}

/// Seconds as a short decimal ("30", "1.5", "0.25").
fn fmt_secs(d: Duration) -> String {
    let s = format!("{:.2}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::fmt_secs;
    use std::time::Duration;

    #[test]
    fn seconds_are_short() {
        assert_eq!(fmt_secs(Duration::from_secs(30)), "30");
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5");
        assert_eq!(fmt_secs(Duration::from_millis(250)), "0.25");
        assert_eq!(fmt_secs(Duration::from_millis(3)), "0");
    }
}
