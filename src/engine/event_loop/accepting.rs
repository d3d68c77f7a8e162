//! Whether the loop takes new connections now, and what it has said about
//! `connection_limit`: the state behind stage 1 (`accept.rs`), kept apart from the loop
//! so that the loop's own file holds it without depending on the stage.
//!
//! A server held at its limit on purpose logs reaching it at most once a minute, and
//! says when it listens again only if it said it had stopped. This module uses nothing
//! of the loop's.

use std::time::{Duration, Instant};

/// Least time between two "reached the connection limit" warnings: a server held at
/// its limit on purpose must not flood its log.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Whether the loop takes new connections now, and what it has said about the limit.
pub(super) struct Accepting {
    /// Paused at connection_limit or after an accept error: resumed by `tick`, or at the
    /// end of the round in which a close made room.
    paused: bool,
    /// Accept at the end of this round (a close made room, or a balance retry is due).
    due: bool,
    /// Paused at connection_limit (not for an accept error).
    at_limit: bool,
    /// When reaching the limit may be logged again, and whether this time it was.
    next_limit_warning: Instant,
    limit_warned: bool,
}

impl Accepting {
    pub(super) fn new(now: Instant) -> Accepting {
        Accepting {
            paused: false,
            due: false,
            at_limit: false,
            next_limit_warning: now,
            limit_warned: false,
        }
    }

    /// Pauses at connection_limit; whether to log that the limit was reached.
    pub(super) fn reach_limit(&mut self, now: Instant) -> bool {
        self.paused = true;
        if self.at_limit {
            return false;
        }
        self.at_limit = true;
        self.limit_warned = now >= self.next_limit_warning;
        if self.limit_warned {
            self.next_limit_warning = now + LIMIT_WARNING_INTERVAL;
        }
        self.limit_warned
    }

    /// Ends a pause; whether to log that the server listens again (it is below the
    /// limit, and said it had reached it).
    pub(super) fn resume(&mut self, open: usize, limit: usize) -> bool {
        self.paused = false;
        if !self.at_limit || open >= limit {
            return false;
        }
        self.at_limit = false;
        self.limit_warned
    }

    /// Pauses after an accept error (out of descriptors or memory): the next tick
    /// retries, rather than the loop spinning on the error.
    pub(super) fn pause(&mut self) {
        self.paused = true;
    }

    /// Accepting is paused, and `open` connections leave room under `limit`.
    pub(super) fn room(&self, open: usize, limit: usize) -> bool {
        self.paused && open < limit
    }

    /// Paused at connection_limit: a connection that has become idle since may be
    /// evicted to make room (`accept.rs`).
    pub(super) fn paused_at_limit(&self) -> bool {
        self.paused && self.at_limit
    }

    /// Accept at the end of this round.
    pub(super) fn retry(&mut self) {
        self.due = true;
    }

    /// Whether accepting is due now (once).
    pub(super) fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    /// The listeners are closing (a graceful stop): nothing more to resume.
    pub(super) fn stop(&mut self) {
        self.paused = false;
        self.due = false;
    }
}
