//! The connections that are idle, longest-idle first, and what has been said about
//! closing them: the state behind the eviction at `connection_limit` (`accept.rs`),
//! kept apart from the loop so that the loop's own file holds it without depending on
//! the stage. This module uses nothing of the loop's.
//!
//! What must hold:
//! - marking a connection idle is a push at the back, and nothing is done when it
//!   stops being idle: an entry is only a candidate, checked when it reaches the front
//!   (lazy deletion). Entries carry a sequence number that is never reused; the
//!   connection keeps the number of its one current entry (`Conn::idle`), so an entry
//!   whose connection was closed, or marked again since, is stale and skipped;
//! - the queue stays in proportion to the open connections: once it holds more than
//!   twice as many entries (plus [`SLACK`]), the stale ones are dropped, which costs
//!   one pass per that many marks (amortised O(1) a mark);
//! - entries go in in the order their connections became idle, so the front is the
//!   one idle longest.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::log_limit::LogLimit;

/// Entries beyond twice the open connections before stale ones are dropped.
const SLACK: usize = 64;
/// Least time between two lines about evictions: a flood of new connections evicts
/// one idle connection each, and must not flood the log.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Idle connections as (slab slot, sequence number), oldest first.
pub(super) struct IdleQueue {
    entries: VecDeque<(usize, u64)>,
    /// The last sequence number given (0 is never given: it means "no entry").
    seq: u64,
    /// What was said about evictions, and when a line may be said again.
    log: LogLimit<1>,
}

impl Default for IdleQueue {
    fn default() -> IdleQueue {
        IdleQueue {
            entries: VecDeque::new(),
            seq: 0,
            log: LogLimit::new(EVICTION_LOG_INTERVAL),
        }
    }
}

impl IdleQueue {
    /// Puts the connection in slot `slot` at the back; returns the number its entry
    /// carries. `open` connections exist: stale entries are dropped, with `is_current`
    /// saying which are not, when the queue has grown out of proportion.
    pub(super) fn mark(
        &mut self,
        slot: usize,
        open: usize,
        is_current: impl Fn(usize, u64) -> bool,
    ) -> u64 {
        if self.entries.len() >= 2 * open + SLACK {
            self.entries.retain(|&(s, n)| is_current(s, n));
        }
        self.seq += 1;
        self.entries.push_back((slot, self.seq));
        self.seq
    }

    /// The entry idle longest, if any (perhaps stale: the caller checks it).
    pub(super) fn front(&self) -> Option<(usize, u64)> {
        self.entries.front().copied()
    }

    pub(super) fn pop_front(&mut self) {
        self.entries.pop_front();
    }

    /// A connection was evicted: the line to log now, if one is due (the first
    /// eviction, then a summary at most once an [`EVICTION_LOG_INTERVAL`]).
    pub(super) fn evicted(&mut self, now: Instant, limit: usize) -> Option<String> {
        let [before] = self.log.occurred(now, 0)?;
        Some(if before == 0 {
            format!(
                "connection_limit ({limit}) reached: closed the connection idle longest to \
                 admit a new one"
            )
        } else {
            evictions_line(before + 1, limit)
        })
    }

    /// On a tick: the summary of evictions not yet said, once the interval is over.
    pub(super) fn summary(&mut self, now: Instant, limit: usize) -> Option<String> {
        let [n] = self.log.due(now)?;
        Some(evictions_line(n, limit))
    }
}

fn evictions_line(n: u64, limit: usize) -> String {
    format!("connection_limit ({limit}) reached: closed {n} idle connections to admit new ones")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_is_the_oldest_and_stale_entries_are_dropped_in_proportion() {
        let mut q = IdleQueue::default();
        let a = q.mark(3, 2, |_, _| true);
        let b = q.mark(5, 2, |_, _| true);
        assert_eq!(q.front(), Some((3, a)));
        assert!(b > a);
        // Slot 3 marked again and again: only its newest entry is current.
        let mut current = a;
        for _ in 0..1000 {
            let cur = current;
            current = q.mark(3, 2, |s, n| (s == 3 && n == cur) || (s == 5 && n == b));
        }
        assert!(q.entries.len() <= 2 * 2 + SLACK + 1);
        // The stale entries went; slot 5 (idle longest) is at the front.
        let cur = current;
        q.entries
            .retain(|&(s, n)| (s == 3 && n == cur) || (s == 5 && n == b));
        assert_eq!(q.front(), Some((5, b)));
        q.pop_front();
        assert_eq!(q.front(), Some((3, current)));
    }

    #[test]
    fn evictions_are_said_once_then_summarised_at_most_once_a_minute() {
        let mut q = IdleQueue::default();
        let t = Instant::now();
        assert!(q
            .evicted(t, 20)
            .unwrap()
            .contains("closed the connection idle longest"));
        for _ in 0..500 {
            assert_eq!(q.evicted(t, 20), None);
        }
        assert_eq!(q.summary(t + Duration::from_secs(30), 20), None);
        let line = q.summary(t + EVICTION_LOG_INTERVAL, 20).unwrap();
        assert!(line.contains("closed 500 idle connections"), "{line}");
        assert_eq!(q.summary(t + 2 * EVICTION_LOG_INTERVAL, 20), None);
    }
}
