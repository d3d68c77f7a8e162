//! Sharing connections evenly between worker processes that accept from one listening
//! socket.
//!
//! With a shared socket, every worker's epoll wakes for a new connection and the first
//! to run takes everything queued (`bench/investigations/spread.py` shows it; the
//! figures are in docs/performance.md, "Worker processes sharing one listening
//! socket"). So the workers under a master keep their counts of open connections in
//! a small table of memory shared by every process forked from the one that imported
//! maitre (it is mapped when the extension module is loaded, before any fork), one
//! slot per worker. A worker holding more than [`SLACK`] connections above the least
//! loaded live worker leaves a new connection in the queue for the others, and takes
//! it anyway if it is still there after [`DEFER`], one connection per [`DEFER`]. When
//! connections have been left for [`STALE_MS`], the workers whose loop has not turned
//! since (they were woken and did not come: stopped, wedged, or starved of CPU for
//! that long) are counted out until they turn again: a worker that does not accept
//! costs a burst [`STALE_MS`], not every connection a delay until the master replaces
//! it. A worker whose queue of requests is full (`max_queued_requests`) shows a load
//! above any count of connections, so that new connections go to a worker with room
//! rather than to one that would answer them 503. Simpler policies were tried first and lost to a peer that is slow to be
//! scheduled: taking a connection anyway after a short wait and then ignoring the
//! balance for a while, or counting a peer out as soon as it missed one retry.
//!
//! Only processes attached to a supervisor take part; a single process never looks.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Slots in the table: more workers than that simply do not balance.
const SLOTS: usize = 256;
/// How many more connections than the least loaded worker a worker may hold.
pub const SLACK: u32 = 1;
/// How long a connection left for the others may wait before this worker takes it.
pub const DEFER: Duration = Duration::from_millis(20);
/// How long (ms) connections may be left for workers that do not come (their loop
/// does not turn) before they are counted out.
pub const STALE_MS: u64 = 100;
/// What a worker whose queue is full (`max_queued_requests`) adds to the load it
/// shows: more than any count of connections, so that a worker with room takes the
/// new connections rather than one that would answer them 503; among full workers
/// the connections still count.
const FULL: usize = 1 << 20;

#[repr(C)]
struct Slot {
    /// The worker's pid; 0 when free.
    pid: AtomicI32,
    /// Its open connections.
    conns: AtomicU32,
    /// When its loop last turned (CLOCK_MONOTONIC, ms).
    turned: AtomicU64,
}

struct Table(&'static [Slot]);

static TABLE: OnceLock<Option<Table>> = OnceLock::new();

/// Maps the shared table (call once, before any fork: at module import).
pub fn init() {
    TABLE.get_or_init(|| {
        let size = SLOTS * std::mem::size_of::<Slot>();
        // SAFETY: a fresh anonymous shared mapping, zero-filled by the kernel, which
        // is a valid array of free slots (atomics of 0). Never unmapped.
        unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return None;
            }
            Some(Table(std::slice::from_raw_parts(ptr as *const Slot, SLOTS)))
        }
    });
}

fn table() -> Option<&'static [Slot]> {
    TABLE.get().and_then(|t| t.as_ref()).map(|t| t.0)
}

/// CLOCK_MONOTONIC in milliseconds: the same clock in every process.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into the local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// This process's slot in the table, free again when dropped.
pub struct Share {
    slot: &'static Slot,
    pid: i32,
}

impl Share {
    /// Takes a free slot (or one a dead process left); `None` without a table or room.
    pub fn claim() -> Option<Share> {
        let slots = table()?;
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        for slot in slots {
            let owner = slot.pid.load(Ordering::Acquire);
            if owner == pid || (owner != 0 && alive(owner)) {
                continue;
            }
            if slot
                .pid
                .compare_exchange(owner, pid, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.conns.store(0, Ordering::Release);
                slot.turned.store(monotonic_ms(), Ordering::Release);
                return Some(Share { slot, pid });
            }
        }
        None
    }

    /// Says how many connections this process holds.
    pub fn publish(&self, conns: usize) {
        self.slot
            .conns
            .store(u32::try_from(conns).unwrap_or(u32::MAX), Ordering::Release);
    }

    /// The loop is turning (called every turn).
    pub fn turned(&self, now_ms: u64) {
        self.slot.turned.store(now_ms, Ordering::Relaxed);
    }

    /// Whether this process, holding `mine` connections, should take the next one:
    /// no more than [`SLACK`] above the least loaded live worker. With `turned_since`,
    /// workers whose loop has not turned since then are left out: they were woken by
    /// the connections left for them and did not come (stopped, wedged, starved).
    pub fn should_accept(&self, mine: usize, turned_since: Option<u64>) -> bool {
        let Some(slots) = table() else {
            return true;
        };
        let mine = u32::try_from(mine).unwrap_or(u32::MAX);
        let least = slots
            .iter()
            .filter(|s| {
                let pid = s.pid.load(Ordering::Acquire);
                pid != 0
                    && pid != self.pid
                    && turned_since.map_or(true, |t| s.turned.load(Ordering::Relaxed) >= t)
            })
            .map(|s| s.conns.load(Ordering::Acquire))
            .min();
        match least {
            None => true,
            Some(least) if mine <= least.saturating_add(SLACK) => true,
            Some(_) => {
                // Before leaving a connection to the others: are the lighter ones
                // alive? A killed worker's slot is cleared here.
                let mut live_lighter = false;
                for s in slots {
                    let pid = s.pid.load(Ordering::Acquire);
                    if pid == 0 || pid == self.pid {
                        continue;
                    }
                    if s.conns.load(Ordering::Acquire).saturating_add(SLACK) < mine {
                        if alive(pid) {
                            live_lighter = true;
                        } else {
                            let _ =
                                s.pid
                                    .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
                        }
                    }
                }
                !live_lighter
            }
        }
    }
}

/// A supervised worker's accepting policy: when to leave a connection to the others.
pub struct Balance {
    share: Share,
    /// Its queue of requests is full (`max_queued_requests`): it shows [`FULL`] more.
    full: bool,
    /// A connection was left for the others: take it then if still queued.
    retry: Option<Instant>,
    /// The next accept ignores the balance (the retry came).
    forced: bool,
    /// Since when (CLOCK_MONOTONIC ms) connections are being left; 0 when none are.
    deferred_at: u64,
    /// Workers whose loop has not turned since then are not accepting: left out.
    stale_since: Option<u64>,
}

impl Balance {
    /// `None` without a shared table or a free slot (then this worker takes all).
    pub fn new() -> Option<Balance> {
        Some(Balance {
            share: Share::claim()?,
            full: false,
            retry: None,
            forced: false,
            deferred_at: 0,
            stale_since: None,
        })
    }

    /// Says how many connections this worker holds (after a close).
    pub fn publish(&self, conns: usize) {
        self.share.publish(self.load(conns));
    }

    /// The queue of requests became full, or has room again (`max_queued_requests`).
    pub fn set_full(&mut self, full: bool, conns: usize) {
        self.full = full;
        self.publish(conns);
    }

    /// The load this worker shows, holding `conns`.
    fn load(&self, conns: usize) -> usize {
        if self.full {
            conns.saturating_add(FULL)
        } else {
            conns
        }
    }

    /// The loop turned (every turn).
    pub fn turned(&self) {
        self.share.turned(monotonic_ms());
    }

    /// Whether to accept the next connection now, holding `conns`.
    pub fn take_now(&mut self, conns: usize, now: Instant) -> bool {
        let conns = self.load(conns);
        self.share.publish(conns);
        if std::mem::take(&mut self.forced) {
            // The retry: one connection the others did not take in DEFER.
            return true;
        }
        let now_ms = monotonic_ms();
        if self.deferred_at != 0 && now_ms >= self.deferred_at + STALE_MS {
            // Connections left for the others for that long: those that have not
            // turned since are not accepting.
            self.stale_since = Some(self.deferred_at);
        }
        if self.share.should_accept(conns, self.stale_since) {
            return true;
        }
        self.retry.get_or_insert(now + DEFER);
        if self.deferred_at == 0 {
            self.deferred_at = now_ms;
        }
        false
    }

    /// The listener's queue is empty: nothing is being left for the others.
    pub fn queue_empty(&mut self) {
        self.forced = false;
        self.deferred_at = 0;
    }

    /// When the loop must look again (a connection left for the others).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry
    }

    /// Whether the retry is due; if so, the next accept is forced.
    pub fn retry_due(&mut self, now: Instant) -> bool {
        if self.retry.is_some_and(|at| now >= at) {
            self.retry = None;
            self.forced = true;
            return true;
        }
        false
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = self
            .slot
            .pid
            .compare_exchange(self.pid, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_above_the_least_loaded_leaves_connections() {
        init();
        let me = Share::claim().expect("a slot");
        // A peer: this test process's parent stands in for a live worker.
        let peer_pid = unsafe { libc::getppid() };
        let peer = table()
            .unwrap()
            .iter()
            .find(|s| s.pid.load(Ordering::Acquire) == 0)
            .unwrap();
        peer.pid.store(peer_pid, Ordering::Release);
        peer.conns.store(3, Ordering::Release);
        peer.turned.store(1000, Ordering::Release);
        assert!(me.should_accept(3, None));
        assert!(me.should_accept(4, None));
        assert!(!me.should_accept(5, None));
        assert!(!me.should_accept(5, Some(1000)));
        // It has not turned since 1001: not accepting, left out.
        assert!(me.should_accept(5, Some(1001)));
        // A worker whose queue is full shows more than any count of connections: it
        // leaves new connections to the peer with room, until its queue has room again.
        let mut full = Balance::new().expect("a slot");
        full.set_full(true, 0);
        assert!(!full.take_now(0, Instant::now()));
        full.set_full(false, 0);
        assert!(full.take_now(0, Instant::now()));
        drop(full);
        // The peer dies (a pid that cannot exist): its slot is freed, we take all.
        peer.pid.store(i32::MAX - 1, Ordering::Release);
        assert!(me.should_accept(50, None));
        assert_eq!(peer.pid.load(Ordering::Acquire), 0);
        drop(me);
    }
}
