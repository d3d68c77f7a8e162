//! Shedding: requests the loop does not hand to the application, because the server is
//! overloaded or their client has gone. Each is counted (`requests_shed`, by reason)
//! and gets its access log line, like any request the loop answers itself (`answer`).
//!
//! 1. `max_queued_requests`: a request that arrives while that many jobs already wait
//!    for a thread ([`EventLoop::queue_full`], checked when its head is read if a body
//!    follows, else when it is dispatched) is answered 503 with `Retry-After` and
//!    `Connection: close` at once ([`EventLoop::shed`]); a body it was about to send is
//!    not read but discarded by the lingering close, so nothing desynchronises. A job
//!    is one connection's request with those pipelined behind it (they run on one
//!    thread in one go), and jobs an idle worker is about to take do not count. While
//!    the queue is full, `/readyz` says 503 ([`EventLoop::after_push`]);
//! 2. `queue_timeout`: the loop wakes when the oldest job will have waited that long
//!    for a thread, takes every job that has back from the queue, and answers each 503
//!    the same way ([`EventLoop::shed_expired`]), so that the client hears on time even
//!    while every thread stays busy. Requests pipelined behind the first of such a job
//!    are not answered: the connection closes after the 503, as after any error;
//! 3. a client that resets its connection (the loop sees an error on it) while its
//!    job waits for a thread: the job is taken back and its requests are logged as 499
//!    (nginx's "client closed request"), never run ([`EventLoop::client_gone`]). A
//!    FIN alone is no departure: a client may shut down its sending side after a
//!    complete request and still read the response (HTTP/1.0 clients, `nc -q0`). But
//!    on the wire a plain `close()` before any response byte looks the same, and that
//!    is how most clients that gave up leave. So a FIN on a connection whose HTTP/1.1
//!    request waits behind busy threads is answered with an interim `100 Continue`
//!    ([`EventLoop::probe_departure`]): a client still there reads past it, a closed
//!    socket answers it with a reset, which is a departure. Only a reset (or a failed
//!    write) says the client cannot read any more; an HTTP/1.0 request (which must
//!    get no 1xx) is run whatever its client did.
//!
//! With both settings off, what is added to a request's path is a test of
//! `max_queued_requests` in `dispatch` (and when a head with a body is read), a
//! relaxed store of the backlog where the queue's lock is already held, and, once a
//! round, three tests (`shed_at`, and two in [`EventLoop::after_push`]). A departure
//! costs nothing until a connection whose request waits sees an error.
//!
//! The warnings are rate-limited ([`ShedLog`]): an overload sheds many requests a
//! second, and one line a second says how many.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::log_limit::LogLimit;
use super::{EventLoop, State};
use crate::engine::access_log::Seen;
use crate::engine::channel::{peer_text, WhenFull};
use crate::engine::config::Config;
use crate::engine::dispatch::{Job, JobQueue, LogLevel, Queued, Requests};
use crate::engine::stats::{SHED_CLIENT_GONE, SHED_QUEUE_FULL, SHED_QUEUE_TIMEOUT, SHED_REASONS};
use crate::http::request::Version;
use crate::http::response::unavailable_response;

/// What `probe_departure` sends a half-closed client whose request waits.
const PROBE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The warnings about shed requests: one a [`SHED_LOG_EVERY`] at most, counting the
/// requests shed in between by reason.
pub(super) type ShedLog = LogLimit<{ SHED_REASONS.len() }>;

/// A warning for a request shed now, `what`, if one is due (with what was shed since
/// the last one without a line of its own).
fn shed_line(log: &mut ShedLog, now: Instant, reason: usize, what: String) -> Option<String> {
    let unsaid = log.occurred(now, reason)?;
    Some(match shed_summary(unsaid) {
        Some(more) => format!("{what} ({more} since the last such line)"),
        None => what,
    })
}

/// "N more queue_full, ..." for the requests shed without a line of their own.
fn shed_summary(unsaid: [u64; SHED_REASONS.len()]) -> Option<String> {
    let parts: Vec<String> = unsaid
        .iter()
        .zip(SHED_REASONS)
        .filter(|(n, _)| **n > 0)
        .map(|(n, reason)| format!("{n} more {reason}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// At a tick: the count of what was shed since the last line, once it is due.
fn shed_due(log: &mut ShedLog, now: Instant) -> Option<String> {
    let summary = shed_summary(log.due(now)?)?;
    Some(format!("requests shed: {summary}"))
}

/// [`EventLoop::queue_full`], from the loop's fields (for a caller that holds a
/// connection).
pub(super) fn queue_full(cfg: &Config, jobs: &JobQueue, batch: &[Job]) -> bool {
    let max = cfg.max_queued_requests as i64;
    max > 0 && jobs.backlog() + batch.len() as i64 >= max
}

impl EventLoop {
    /// Whether a request received now must be turned away: `max_queued_requests` jobs
    /// already wait for a thread (see the module comment).
    pub(super) fn queue_full(&self) -> bool {
        queue_full(&self.cfg, &self.jobs, &self.batch)
    }

    /// Answers `request` (the one the connection was receiving) 503 with `Retry-After`,
    /// and closes the connection after it.
    pub(super) fn shed(&mut self, token: usize, request: Seen, version: Version, reason: usize) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let peer = peer_text(&conn.channel.peer);
        let why = match reason {
            SHED_QUEUE_FULL => format!(
                "max_queued_requests ({}) reached",
                self.cfg.max_queued_requests
            ),
            _ => format!(
                "waited queue_timeout ({} s) for a thread",
                self.cfg.queue_timeout.as_secs_f64()
            ),
        };
        let response = unavailable_response(version, "The server is overloaded.", &self.cfg.ident);
        self.send_last(token, &response, 503, request);
        self.stats.requests_shed[reason].fetch_add(1, Relaxed);
        let what = format!("503 Service Unavailable to {peer}: {why}");
        self.shed_said(LogLevel::Warning, reason, what);
    }

    /// Once a round, after the batch went to the queue: readiness follows
    /// `max_queued_requests`, and the loop comes back when the oldest job reaches
    /// `queue_timeout`.
    pub(super) fn after_push(&mut self, queued: &Queued) {
        let max = self.cfg.max_queued_requests;
        if max > 0 {
            let full = queued.backlog >= max;
            if full != self.queue_was_full {
                self.queue_was_full = full;
                self.control.health.set_ready(!full);
                self.stats.queue_full.store(u64::from(full), Relaxed);
                if let Some(b) = &mut self.balance {
                    // Under a master: new connections go to a worker with room first.
                    b.set_full(full, self.conns.len());
                }
            }
        }
        if !self.cfg.queue_timeout.is_zero() {
            self.shed_at = queued
                .oldest
                .and_then(|t| t.checked_add(self.cfg.queue_timeout));
        }
    }

    /// Answers 503 every job that has waited `queue_timeout` for a thread.
    pub(super) fn shed_expired(&mut self) {
        let timeout = self.cfg.queue_timeout;
        let Some(before) = self.now.checked_sub(timeout) else {
            return;
        };
        let mut expired = Vec::new();
        self.shed_at = self
            .jobs
            .withdraw_older(before, &mut expired)
            .map(|t| t + timeout);
        for Job::Requests(job) in expired {
            let Requests { channel, requests } = *job;
            self.not_in_flight(requests.len());
            let token = channel.token;
            if !self
                .conns
                .get(token)
                .is_some_and(|c| c.channel.id == channel.id)
            {
                continue;
            }
            if let Some(first) = requests.into_iter().next() {
                if let Some(h2) = &first.h2 {
                    // Only the stream is turned away; the connection's others go on.
                    if let Some(super::State::H2(s)) =
                        self.conns.get_mut(token).map(|c| &mut c.state)
                    {
                        s.running = s.running.saturating_sub(1);
                    }
                    self.h2_shed(&h2.conn, h2.id, SHED_QUEUE_TIMEOUT);
                    continue;
                }
                let version = first.head.version;
                self.shed(token, Seen::Head(first.head), version, SHED_QUEUE_TIMEOUT);
            }
        }
    }

    /// The connection `token`, whose request a worker has or will have, saw an error
    /// (its client reset it): if its job still waits for a thread, it is taken back,
    /// its requests logged as 499 and counted, and the connection closed.
    pub(super) fn client_gone(&mut self, token: usize) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let (id, peer) = (conn.channel.id, conn.channel.peer.inet_addr());
        let peer_said = peer_text(&conn.channel.peer);
        // Dispatched this round: still in the loop's batch.
        let job = match self
            .batch
            .iter()
            .position(|Job::Requests(r)| r.channel.id == id)
        {
            Some(i) => Some(self.batch.remove(i)),
            None => self.jobs.withdraw(id),
        };
        let Some(Job::Requests(job)) = job else {
            // A worker has it: its writes fail, and it ends as usual.
            return;
        };
        let n = job.requests.len();
        self.not_in_flight(n);
        for req in job.requests {
            self.answered(Seen::Head(req.head), peer, req.received, 499, (0, 0));
        }
        self.stats.requests_shed[SHED_CLIENT_GONE].fetch_add(n as u64, Relaxed);
        let what = format!(
            "499 for {peer_said}: the client reset the connection while its request waited for a thread (not run)"
        );
        self.shed_said(LogLevel::Info, SHED_CLIENT_GONE, what);
        self.close(token);
    }

    /// The peer of connection `token` has sent a FIN. If its request waits behind busy
    /// threads and is an HTTP/1.1 one, the client is sent an interim `100 Continue`,
    /// which an HTTP/1.1 client must accept before any response (RFC 9110, 15.2): a
    /// client that only half-closed reads past it to its response, while the system
    /// of one that has closed its socket answers with a reset, which `client_gone`
    /// takes up. Sent with the queue locked, so that no worker writes the response
    /// meanwhile; nothing is sent to a request a worker has, or is about to take.
    pub(super) fn probe_departure(&mut self, token: usize) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if !matches!(conn.state, State::Busy) {
            return;
        }
        let channel = conn.channel.clone();
        let mut failed = false;
        self.jobs.if_waiting(channel.id, |job| {
            if job.requests.first().map(|r| r.head.version) == Some(Version::Http11) {
                failed = channel.send(&[PROBE], WhenFull::Queue).is_err();
            }
        });
        if failed {
            self.client_gone(token);
        }
    }

    /// At a tick: says what was shed without a line of its own.
    pub(super) fn shed_summary(&mut self) {
        if let Some(line) = shed_due(&mut self.shed_log, self.now) {
            self.log(LogLevel::Warning, line);
        }
    }

    pub(super) fn not_in_flight(&self, n: usize) {
        let _ = self
            .stats
            .in_flight
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n as u64)));
    }

    fn shed_said(&mut self, level: LogLevel, reason: usize, what: String) {
        if let Some(line) = shed_line(&mut self.shed_log, self.now, reason, what) {
            self.log(level, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::SHED_LOG_EVERY;
    use super::*;

    #[test]
    fn shed_lines_are_rate_limited_and_counted() {
        let mut log = ShedLog::new(SHED_LOG_EVERY);
        let t0 = Instant::now();
        assert_eq!(shed_line(&mut log, t0, 0, "a".into()).as_deref(), Some("a"));
        assert_eq!(shed_line(&mut log, t0, 0, "b".into()), None);
        assert_eq!(shed_line(&mut log, t0, 2, "c".into()), None);
        assert_eq!(shed_due(&mut log, t0), None);
        let t1 = t0 + SHED_LOG_EVERY;
        assert_eq!(
            shed_due(&mut log, t1).as_deref(),
            Some("requests shed: 1 more queue_full, 1 more client_gone")
        );
        assert_eq!(shed_due(&mut log, t1 + SHED_LOG_EVERY), None);
        assert_eq!(shed_line(&mut log, t1, 1, "d".into()), None);
        let t2 = t1 + SHED_LOG_EVERY;
        assert_eq!(
            shed_line(&mut log, t2, 1, "e".into()).as_deref(),
            Some("e (1 more queue_timeout since the last such line)")
        );
    }
}
