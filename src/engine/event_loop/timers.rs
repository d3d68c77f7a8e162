//! Time: what the loop checks once a tick (`TICK`), and the queue warning checked
//! every round.
//!
//! 1. [`EventLoop::tick`] applies the server's own deadlines on every tick, so that a
//!    connection is cut when its log line says:
//!    - a head (or a TLS handshake and the first head) must arrive whole within
//!      `channel_timeout`, however steadily it trickles in (slowloris);
//!    - after a grace period, a body must arrive at `min_request_body_rate` on average
//!      (408, as Apache's mod_reqtimeout);
//!    - a lingering close ends at its deadline;
//!    - a client that accepts no response bytes for `channel_timeout` is given up on,
//!      which releases its worker;
//!    - a keep-alive connection waiting between requests is closed after
//!      `keepalive_timeout`, when it is set;
//!    - other plain idleness (and all of it without `keepalive_timeout`) waits for the
//!      `cleanup_interval` sweep and `channel_timeout`, as in waitress;
//!
//!    and accepting resumes if it was paused and there is room, or if it was paused at
//!    `connection_limit` and a connection may by now be idle long enough to be evicted
//!    (`accept.rs`); evictions not yet said are summarised (`idle.rs`);
//! 2. [`EventLoop::warn_if_queue_backs_up`] says when requests wait for a worker: once
//!    when the queue starts backing up, at most once a [`QUEUE_REPEAT`] while it stays
//!    backed up, and once when it clears;
//! 3. [`EventLoop::handshake_failed`] counts a failed TLS handshake by reason and says
//!    it at DEBUG; the `maitre` log gets at most one line a minute about them (the
//!    tick says the summary), so that a scanner cannot flood it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{EventLoop, State};
use crate::engine::channel::peer_text;
use crate::engine::dispatch::{LogLevel, LogRecord, Logger};
use crate::engine::tls::handshake_failure;

/// How long the queue must stay non-empty before a "Task queue depth" warning.
const QUEUE_WARNING_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two warnings while the queue stays backed up (as long as
/// waitress's default `cleanup_interval`): one line says it is backed up, not one a
/// second.
const QUEUE_REPEAT: Duration = Duration::from_secs(30);
/// Longest grace period before a body must arrive at `min_request_body_rate` (Apache's
/// mod_reqtimeout default is 20 s); a shorter `channel_timeout` shortens it.
const BODY_GRACE: Duration = Duration::from_secs(20);

impl EventLoop {
    /// Applies the deadlines (see the module comment).
    pub(super) fn tick(&mut self) {
        let now = self.now;
        let sweep = now >= self.next_sweep;
        if sweep {
            self.next_sweep = now + self.cfg.cleanup_interval;
        }
        let timeout = self.cfg.channel_timeout;
        let keepalive = self.cfg.keepalive_timeout;
        let rate = self.cfg.min_body_rate;
        let grace = timeout.min(BODY_GRACE);
        let mut expired = Vec::new();
        // Closed in the middle of a request, which gets its line as a 408.
        let mut gave_up = Vec::new();
        let mut too_slow = Vec::new();
        let mut h2_idle = Vec::new();
        // The deadlines below are the server's own and are checked every tick, so that a
        // connection is cut when the log line says; only plain idleness waits for the
        // cleanup_interval sweep, as in waitress.
        for (token, c) in self.conns.iter() {
            let close = match c.state {
                State::Lingering { deadline } => now >= deadline,
                // A head must arrive whole within channel_timeout, however steadily its
                // bytes trickle in (slowloris): activity alone does not keep it alive.
                State::Head {
                    started: Some(started),
                    ..
                } if now.duration_since(started) > timeout => {
                    let what = match c.channel.tls() {
                        _ if c.proxy_header => {
                            self.stats.proxy_header_errors.fetch_add(1, Relaxed);
                            "PROXY protocol header"
                        }
                        Some(t) if t.is_handshaking() => "TLS handshake",
                        _ => {
                            gave_up.push(token);
                            "request head"
                        }
                    };
                    let msg = format!(
                        "closed connection from {}: {what} incomplete after {} s",
                        peer_text(&c.channel.peer),
                        timeout.as_secs()
                    );
                    self.logs.push(LogRecord {
                        level: LogLevel::Info,
                        message: msg,
                        logger: Logger::Main,
                    });
                    true
                }
                // Nor a body that trickles (as Apache's mod_reqtimeout MinRate): after
                // the grace period it must have arrived at min_request_body_rate bytes
                // a second, on average, counted from the end of the grace period.
                State::Body {
                    ref head,
                    started,
                    received,
                    ..
                } if rate > 0
                    && now.duration_since(started) > grace
                    && (received as f64)
                        < rate as f64 * (now.duration_since(started) - grace).as_secs_f64() =>
                {
                    too_slow.push((token, head.version, received, now.duration_since(started)));
                    false
                }
                // Between requests on a keep-alive connection: keepalive_timeout, when
                // set, instead of channel_timeout, and checked every tick (it is meant to
                // be short). A response still being written is judged as before.
                State::Head { started: None, .. }
                    if !keepalive.is_zero() && !c.fresh && c.rbuf.is_empty() =>
                {
                    let quiet = now.duration_since(c.last_activity);
                    if (quiet > keepalive || quiet > timeout) && c.channel.has_pending_output() {
                        sweep && quiet > timeout
                    } else {
                        quiet > keepalive
                    }
                }
                State::Head { .. } | State::Body { .. } | State::Closing => {
                    let idle = sweep && now.duration_since(c.last_activity) > timeout;
                    if idle && matches!(c.state, State::Body { .. }) {
                        gave_up.push(token);
                    }
                    idle
                }
                // HTTP/2: with nothing under way, the idle rules of HTTP/1 (then a
                // GOAWAY); with streams, the connection's plain inactivity.
                State::H2(ref h2) => {
                    let quiet = now.duration_since(c.last_activity);
                    if c.fresh && h2.quiet() {
                        // No request yet (a preface or SETTINGS that stalled): judged
                        // every tick, as a request head is.
                        if quiet > timeout {
                            h2_idle.push(token);
                        }
                        false
                    } else if h2.quiet() {
                        let limit = if keepalive.is_zero() {
                            timeout
                        } else {
                            keepalive
                        };
                        if quiet > limit && (sweep || !keepalive.is_zero()) {
                            h2_idle.push(token);
                        }
                        false
                    } else {
                        sweep && quiet > timeout
                    }
                }
                // The application waits on a client that reads nothing: give up on the
                // client, which releases the worker (its write raises).
                State::Busy => {
                    if !c.channel.is_closed()
                        && c.channel.stalled_for(now).is_some_and(|d| d > timeout)
                    {
                        let msg = format!(
                            "closed connection from {}: no response bytes accepted for {} s",
                            peer_text(&c.channel.peer),
                            timeout.as_secs()
                        );
                        self.logs.push(LogRecord {
                            level: LogLevel::Info,
                            message: msg,
                            logger: Logger::Main,
                        });
                        c.channel.mark_closed();
                        let _ = c.channel.sock.shutdown(std::net::Shutdown::Both);
                    }
                    false
                }
            };
            if close {
                expired.push(token);
            }
        }
        for token in h2_idle {
            self.h2_go_away(token);
        }
        for token in gave_up {
            self.gave_up(token);
        }
        for token in expired {
            self.close(token);
        }
        for (token, version, received, took) in too_slow {
            let message = format!(
                "request body too slow: {received} bytes in {:.0} s (min_request_body_rate {rate})",
                took.as_secs_f64()
            );
            let seen = self.take_head(token);
            self.refuse(token, version, (408, "Request Timeout"), &message, seen);
        }
        if self
            .accepting
            .room(self.conns.len(), self.cfg.connection_limit)
            || (self.accepting.paused_at_limit() && self.idle.front().is_some())
        {
            // Room, or at the limit a connection that may by now be idle long enough
            // to be evicted (`accept.rs`).
            self.resume_accepting();
        }
        if let Some(line) = self.idle.summary(now, self.cfg.connection_limit) {
            self.log(LogLevel::Info, line);
        }
        if let Some(line) = self.tls_failures.summary(now) {
            self.log(LogLevel::Info, line);
        }
        self.shed_summary();
    }

    /// A TLS handshake with `peer` failed with `e`: counted by reason, said at DEBUG,
    /// and at INFO at most once a minute (`log_socket_errors` off: counted only).
    pub(super) fn handshake_failed(&mut self, peer: &str, e: &std::io::Error) {
        let (reason, detail) = handshake_failure(e);
        if let Some(n) = self.stats.tls_handshake_failures.get(reason) {
            n.fetch_add(1, Relaxed);
        }
        if !self.cfg.log_socket_errors {
            return;
        }
        self.log(
            LogLevel::Debug,
            format!("TLS handshake with {peer} failed: {detail} ({e})"),
        );
        if let Some(line) = self.tls_failures.failed(self.now, reason, &detail, peer) {
            self.log(LogLevel::Info, line);
        }
    }

    /// Like waitress's `maitre.queue` logger: requests wait for a free thread. Said
    /// once the queue has not been empty for a whole second (a busy but keeping-up
    /// server stays quiet), again at most once a [`QUEUE_REPEAT`] while it stays
    /// backed up, and once when it empties again (waitress says it for every request
    /// queued while all threads are busy).
    pub(super) fn warn_if_queue_backs_up(&mut self, waiting: usize) {
        if waiting == 0 {
            self.queue_busy_since = None;
            if let Some((since, most)) = self.queue_warned.take() {
                self.logs.push(LogRecord {
                    level: LogLevel::Info,
                    message: format!(
                        "Task queue cleared after {:.1} s (at most {most} waiting)",
                        self.now.duration_since(since).as_secs_f64()
                    ),
                    logger: Logger::Queue,
                });
            }
            return;
        }
        if let Some((_, most)) = &mut self.queue_warned {
            *most = (*most).max(waiting);
        }
        let since = *self.queue_busy_since.get_or_insert(self.now);
        if self.now.duration_since(since) >= QUEUE_WARNING_INTERVAL
            && self.now >= self.next_queue_warning
        {
            self.next_queue_warning = self.now + QUEUE_REPEAT;
            self.queue_warned.get_or_insert((since, waiting));
            self.logs.push(LogRecord {
                level: LogLevel::Warning,
                message: format!("Task queue depth is {waiting}"),
                logger: Logger::Queue,
            });
        }
    }
}
