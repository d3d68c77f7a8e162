//! A log line said at most once an interval, whatever floods it: the first occurrence
//! after a quiet interval is said at once, the ones that follow within the interval
//! are counted (by kind) and said together once it is over, on the occurrence or the
//! tick that comes first. The loop's shed requests (`shed.rs`) and evicted idle
//! connections (`idle.rs`) are said this way; the words are theirs, the timing is
//! this module's. A leaf: the loop holds these without depending on a stage.

use std::time::{Duration, Instant};

/// Occurrences of `N` kinds, said at most once an `every`.
#[derive(Debug)]
pub(super) struct LogLimit<const N: usize> {
    every: Duration,
    /// No line before this.
    next: Option<Instant>,
    /// Occurrences since the last line, by kind.
    unsaid: [u64; N],
}

impl<const N: usize> LogLimit<N> {
    pub(super) fn new(every: Duration) -> LogLimit<N> {
        LogLimit {
            every,
            next: None,
            unsaid: [0; N],
        }
    }

    /// An occurrence of `kind` at `now`. When a line is due, the counts of the
    /// occurrences said by no line before this one (all zero after a quiet interval);
    /// otherwise `None`, and it is counted for the next line.
    pub(super) fn occurred(&mut self, now: Instant, kind: usize) -> Option<[u64; N]> {
        if self.next.is_some_and(|next| now < next) {
            self.unsaid[kind] += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::replace(&mut self.unsaid, [0; N]))
    }

    /// At a tick: the counts not yet said, once the interval is over and if any.
    pub(super) fn due(&mut self, now: Instant) -> Option<[u64; N]> {
        if self.unsaid.iter().all(|&n| n == 0) || self.next.is_some_and(|next| now < next) {
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::replace(&mut self.unsaid, [0; N]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_said_at_once_then_counted_until_the_interval_is_over() {
        let every = Duration::from_secs(1);
        let mut limit = LogLimit::<2>::new(every);
        let t0 = Instant::now();
        assert_eq!(limit.occurred(t0, 0), Some([0, 0]));
        assert_eq!(limit.occurred(t0, 0), None);
        assert_eq!(limit.occurred(t0, 1), None);
        assert_eq!(limit.due(t0), None);
        assert_eq!(limit.due(t0 + every), Some([1, 1]));
        assert_eq!(limit.due(t0 + 3 * every), None);
        assert_eq!(limit.occurred(t0 + 3 * every, 1), Some([0, 0]));
        assert_eq!(limit.occurred(t0 + 3 * every, 1), None);
        assert_eq!(limit.occurred(t0 + 4 * every, 0), Some([0, 1]));
    }
}
