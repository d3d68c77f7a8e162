//! The `%(t)s` clock: `[10/Oct/2000:13:55:36 -0700]` in local time (the Common Log
//! Format's), for entries that carry a monotonic [`Instant`] rather than a wall-clock
//! time, so that no worker reads the wall clock per request.
//!
//! What must hold: the wall-clock time of an instant comes from one reading of both
//! clocks (taken again per batch, [`Clock::rebase`], in case the wall clock was set);
//! entries of several workers arrive out of order, and one of an earlier second than
//! the text kept is formatted anew, never given the later second's text.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::escape::put;

/// Formats `[10/Oct/2000:13:55:36 -0700]` in local time, remembering the last second;
/// turns the monotonic instants of entries into wall-clock time from one reading of
/// both clocks (per batch).
#[derive(Default)]
pub struct Clock {
    /// The instants that fall in the second `text` shows: most entries are checked
    /// with two comparisons, without converting their instant (the conversion is the
    /// costly part of the `%(t)s` atom).
    window: Option<(Instant, Instant)>,
    text: ([u8; 32], usize),
    base: Option<(Instant, SystemTime)>,
}

impl Clock {
    /// A clock that takes `instant` to be `wall`.
    pub fn at(instant: Instant, wall: SystemTime) -> Clock {
        Clock {
            base: Some((instant, wall)),
            ..Clock::default()
        }
    }

    /// Reads both clocks again at the next use (the wall clock may have been set).
    pub fn rebase(&mut self) {
        self.base = None;
        self.window = None;
    }

    fn wall(&mut self, t: Instant) -> SystemTime {
        let (i, w) = *self
            .base
            .get_or_insert_with(|| (Instant::now(), SystemTime::now()));
        if t <= i {
            w - (i - t)
        } else {
            w + (t - i)
        }
    }

    pub(super) fn write(&mut self, t: Instant, out: &mut Vec<u8>) {
        match self.window {
            Some((from, to)) if from <= t && t < to => {}
            _ => {
                let since = self.wall(t).duration_since(UNIX_EPOCH).unwrap_or_default();
                let from = t
                    .checked_sub(Duration::from_nanos(since.subsec_nanos().into()))
                    .unwrap_or(t);
                self.window = Some((from, from + Duration::from_secs(1)));
                let text = clf_time(since.as_secs());
                let mut fixed = [b'-'; 32];
                let len = text.len().min(32);
                fixed[..len].copy_from_slice(&text[..len]);
                self.text = (fixed, len);
            }
        }
        put(out, &self.text.0, self.text.1);
    }
}

fn clf_time(secs: u64) -> Vec<u8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into the zeroed struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "[{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off.abs() / 60,
        off.abs() % 60
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_turns_at_the_second() {
        let start = Instant::now();
        // 0.7 s into second 1_000_000_000.
        let mut clock = Clock::at(start, UNIX_EPOCH + Duration::from_millis(1_000_000_000_700));
        let mut at = |ms: u64| {
            let mut out = Vec::new();
            clock.write(start + Duration::from_millis(ms), &mut out);
            out
        };
        let (first, next) = (clf_time(1_000_000_000), clf_time(1_000_000_001));
        assert_eq!(at(0), first);
        assert_eq!(at(299), first);
        assert_eq!(at(300), next);
        assert_eq!(at(1299), next);
        // An entry older than the last one (entries of several workers).
        assert_eq!(at(100), first);
        assert_eq!(at(1300), clf_time(1_000_000_002));
    }
}
