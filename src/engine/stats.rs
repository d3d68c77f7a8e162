//! What the engine counts: one fixed-layout block of atomics per engine (per worker
//! process), updated on paths that already run and read without stopping anything.
//!
//! The block is `#[repr(C)]` and made only of `AtomicU64`s, so that it can live in
//! memory the engine does not own: a master process maps one anonymous shared region
//! (`mmap.mmap(-1, n * BLOCK_SIZE)`) before it forks, each worker's engine counts into
//! its slot, and the master (or any process holding the map) renders every slot in one
//! scrape with a `worker` label. Layout (version [`LAYOUT_VERSION`]): the figures listed
//! in `figures!` below, in that order, each a word or an array of words (8 bytes,
//! native endianness); [`BLOCK_SIZE`] bytes per slot. A figure is only ever appended
//! (its words taken from `reserved`, which shrinks), never moved, and the version
//! changes when a meaning does.
//!
//! Everything is `Relaxed`: each figure is a counter or a gauge read on its own; no
//! reader needs one figure to be consistent with another.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::tls::HANDSHAKE_FAILURES;

/// "maitreS1" read as a little-endian integer: marks a slot an engine has initialised.
pub const MAGIC: u64 = u64::from_le_bytes(*b"maitreS1");
/// "maitreF1": a slot whose worker has gone (the master released it): not rendered,
/// its `restarts` kept for the next worker of the slot.
pub const FREE: u64 = u64::from_le_bytes(*b"maitreF1");
pub const LAYOUT_VERSION: u64 = 2;

/// Methods counted on their own; any other is "other".
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Status classes 1xx to 5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Upper bounds of the request duration histogram, in microseconds (Prometheus's
/// default buckets, with finer steps below 5 ms where a fast application lives).
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const N_BUCKETS: usize = BUCKETS_US.len() + 1;

/// Words (8 bytes each) in a block: fixed, so that a block keeps its size as figures
/// are added (each takes its words from `reserved`). When `reserved` runs out, this
/// grows (a kibibyte a slot now) and [`LAYOUT_VERSION`] with it.
const BLOCK_WORDS: usize = 128;

/// The type of a figure as a [`Snapshot`] holds it, and its atomic form in a
/// [`StatsBlock`]. Implemented for `u64` and arrays of it only: a block must stay made
/// of `AtomicU64`s alone (see `StatsBlock::words`).
pub trait Figure: Sized {
    type Atomic;
    fn load(atomic: &Self::Atomic) -> Self;
}

impl Figure for u64 {
    type Atomic = AtomicU64;
    fn load(atomic: &AtomicU64) -> u64 {
        atomic.load(Relaxed)
    }
}

impl<T: Figure, const N: usize> Figure for [T; N] {
    type Atomic = [T::Atomic; N];
    fn load(atomic: &Self::Atomic) -> Self {
        std::array::from_fn(|i| T::load(&atomic[i]))
    }
}

/// Declares each figure of a block once, in layout order: it becomes a field of
/// [`StatsBlock`] (atomic) and of [`Snapshot`] (a plain copy), and
/// [`StatsBlock::snapshot`] copies it. A new figure is one line at the end of the
/// list (its words come from `reserved`); its series in `/metrics` is a row of
/// `engine::metrics` (`SERIES`, or a rendering of its own for a labelled family).
macro_rules! figures {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// One engine's counters. Gauges (`open_connections`, `queue_depth`, `threads`,
        /// `threads_busy`, `in_flight`, `threads_stuck`) go up and down; everything else only goes up.
        #[repr(C)]
        pub struct StatsBlock {
            $($(#[$doc])* pub $name: <$ty as Figure>::Atomic,)*
            pub reserved: [AtomicU64; BLOCK_WORDS - FIGURE_WORDS],
        }

        /// A copy of a block's figures, for rendering.
        #[derive(Debug, Clone, Default)]
        pub struct Snapshot {
            $($(#[$doc])* pub $name: $ty,)*
        }

        /// Words taken by the figures.
        const FIGURE_WORDS: usize = 0 $(+ std::mem::size_of::<$ty>() / 8)*;

        impl StatsBlock {
            /// A consistent-enough copy for rendering: each figure is read on its own.
            pub fn snapshot(&self) -> Snapshot {
                Snapshot {
                    $($name: <$ty as Figure>::load(&self.$name),)*
                }
            }
        }
    };
}

figures! {
    /// [`MAGIC`] once initialised.
    magic: u64,
    version: u64,
    /// The process counting into this block.
    pid: u64,
    /// When the engine started serving, in milliseconds since the Unix epoch.
    started_ms: u64,
    /// Times the master replaced the worker of this slot (kept across its engines).
    restarts: u64,
    accepts: u64,
    /// accept() failures other than "would block" (out of descriptors, aborted...).
    accept_errors: u64,
    /// Reads or writes that failed on an open connection.
    socket_errors: u64,
    open_connections: u64,
    /// Jobs waiting for a worker thread, as of the loop's last round.
    queue_depth: u64,
    threads: u64,
    threads_busy: u64,
    /// Requests received whole and not yet answered (queued or running).
    in_flight: u64,
    requests: u64,
    bytes_read: u64,
    bytes_written: u64,
    /// Sum of request durations, in microseconds.
    work_time_us: u64,
    /// Request bodies that went to a temporary file.
    body_spills: u64,
    /// Requests by method ([`METHODS`]) and status class ([`CLASSES`]).
    by_method_class: [[u64; CLASSES.len()]; METHODS.len()],
    /// Request durations: count per bucket (not cumulative), the last one unbounded.
    duration_buckets: [u64; N_BUCKETS],
    /// Failed TLS handshakes by reason (`engine::tls::HANDSHAKE_FAILURES`).
    tls_handshake_failures: [u64; HANDSHAKE_FAILURES.len()],
    /// The `connection_limit` setting (a gauge, for the status page beside
    /// `open_connections`); 0 where the engine did not say.
    connection_limit: u64,
    /// Why the master last replaced the worker of this slot: a code of
    /// [`RESTART_REASONS`], 0 for none (kept across its engines, like `restarts`).
    last_restart_reason: u64,
    /// Connections from a peer in `proxy_protocol_from` closed, unserved, for want of a
    /// valid PROXY protocol header.
    proxy_header_errors: u64,
    /// PROXY protocol headers refused from peers not in `proxy_protocol_from`.
    proxy_headers_untrusted: u64,
    /// Requests the loop answered or dropped without running them, by reason
    /// ([`SHED_REASONS`]).
    requests_shed: [u64; SHED_REASONS.len()],
    /// Idle connections closed at `connection_limit` to admit new ones.
    connections_evicted: u64,
    /// Application calls that outran `request_timeout`.
    requests_timed_out: u64,
    /// Worker threads still in an application call well after `request_timeout`
    /// interrupted it (blocked in C code): a gauge.
    threads_stuck: u64,
    /// 1 while `max_queued_requests` requests wait for a thread (requests are answered
    /// 503 and `/readyz` says so), else 0: what the master's `/readyz` reads.
    queue_full: u64,
    /// Connections that spoke HTTP/2 (`http2`: ALPN h2, or the h2c preface).
    http2_connections: u64,
}

/// Why the loop did not run a request (`requests_shed`, the `reason` label of
/// `maitre_requests_shed_total`). Only ever appended to.
pub const SHED_REASONS: [&str; 3] = ["queue_full", "queue_timeout", "client_gone"];
/// `max_queued_requests` requests already waited for a thread: answered 503.
pub const SHED_QUEUE_FULL: usize = 0;
/// It waited `queue_timeout` for a thread: answered 503.
pub const SHED_QUEUE_TIMEOUT: usize = 1;
/// Its client reset the connection while it waited for a thread: dropped (499).
pub const SHED_CLIENT_GONE: usize = 2;

/// The reasons a master replaces a worker, as `last_restart_reason` holds them: (code,
/// name, words). The name is what `/status.json` and the master's bookkeeping use
/// (exported to Python as `_maitre.RESTART_REASONS`, name to code), the words what the
/// status page shows. A code is only ever appended, never renumbered (as a figure).
pub const RESTART_REASONS: [(u64, &str, &str); 7] = [
    (1, "exited", "exited"),
    (2, "worker_timeout", "timed out"),
    (3, "max_requests", "max_requests"),
    (4, "max_worker_memory", "max_worker_memory"),
    (5, "max_worker_lifetime", "max_worker_lifetime"),
    (6, "boot_error", "boot error"),
    (7, "stuck", "threads stuck"),
];

/// The (name, words) of a `last_restart_reason` code; None for 0 (never replaced) or a
/// code this build does not know.
pub fn restart_reason(code: u64) -> Option<(&'static str, &'static str)> {
    RESTART_REASONS
        .iter()
        .find(|r| r.0 == code)
        .map(|r| (r.1, r.2))
}

pub const BLOCK_SIZE: usize = std::mem::size_of::<StatsBlock>();
const _: () = assert!(BLOCK_SIZE == 8 * BLOCK_WORDS);
// Layout version 1: no figure moves when one is appended.
const _: () = assert!(std::mem::offset_of!(StatsBlock, body_spills) == 8 * 17);
const _: () = assert!(std::mem::offset_of!(StatsBlock, duration_buckets) == 8 * 58);
const _: () = assert!(std::mem::align_of::<StatsBlock>() == 8);

/// Method index in [`METHODS`].
pub fn method_index(method: &[u8]) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(7)
}

fn class_index(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

fn bucket_index(us: u64) -> usize {
    BUCKETS_US.partition_point(|&b| b < us)
}

impl StatsBlock {
    /// Prepares a block for a new engine: counters from zero, `restarts` and
    /// `last_restart_reason` kept (the master sets them across the engines of a slot).
    pub fn init(&self, pid: u32, started_ms: u64) {
        let (restarts, reason) = if matches!(self.magic.load(Relaxed), MAGIC | FREE) {
            (
                self.restarts.load(Relaxed),
                self.last_restart_reason.load(Relaxed),
            )
        } else {
            (0, 0)
        };
        for word in self.words() {
            word.store(0, Relaxed);
        }
        self.restarts.store(restarts, Relaxed);
        self.last_restart_reason.store(reason, Relaxed);
        self.version.store(LAYOUT_VERSION, Relaxed);
        self.pid.store(pid as u64, Relaxed);
        self.started_ms.store(started_ms, Relaxed);
        self.magic
            .store(MAGIC, std::sync::atomic::Ordering::Release);
    }

    /// The worker of this slot has gone: the slot is no longer rendered (a dead process
    /// has no open connections or busy threads), and the next worker's `init` starts
    /// its counters from zero with `restarts` and `last_restart_reason` set to those
    /// given.
    pub fn release(&self, restarts: u64, reason: u64) {
        self.magic.store(FREE, Ordering::Release);
        for gauge in [
            &self.pid,
            &self.open_connections,
            &self.queue_depth,
            &self.threads,
            &self.threads_busy,
            &self.in_flight,
            &self.threads_stuck,
            &self.queue_full,
        ] {
            gauge.store(0, Relaxed);
        }
        self.restarts.store(restarts, Relaxed);
        self.last_restart_reason.store(reason, Relaxed);
    }

    /// Whether an engine has initialised this block (with this layout).
    pub fn is_live(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC && self.version.load(Relaxed) == LAYOUT_VERSION
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the struct is repr(C) and made only of AtomicU64 (every figure is a
        // `Figure`; the size is asserted).
        unsafe {
            std::slice::from_raw_parts(self as *const Self as *const AtomicU64, BLOCK_SIZE / 8)
        }
    }

    /// A request was answered (or refused by the loop).
    pub fn record(&self, method: usize, status: u16, took: Duration, written: u64) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        self.requests.fetch_add(1, Relaxed);
        self.by_method_class[method.min(7)][class_index(status)].fetch_add(1, Relaxed);
        self.duration_buckets[bucket_index(us)].fetch_add(1, Relaxed);
        self.work_time_us.fetch_add(us, Relaxed);
        self.bytes_written.fetch_add(written, Relaxed);
    }

    /// Takes one away from a gauge without wrapping below zero.
    pub fn dec(gauge: &AtomicU64) {
        let _ = gauge.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }
}

impl Snapshot {
    /// Requests per status class, all methods together.
    pub fn by_class(&self) -> [u64; 5] {
        let mut out = [0; 5];
        for row in &self.by_method_class {
            for (c, v) in row.iter().enumerate() {
                out[c] += v;
            }
        }
        out
    }

    /// The `q` quantile (0..1) of request durations in seconds, interpolated within
    /// its histogram bucket (as Prometheus's histogram_quantile); None without requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.duration_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.duration_buckets.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                let lower = if i == 0 { 0 } else { BUCKETS_US[i - 1] } as f64;
                let Some(&upper) = BUCKETS_US.get(i) else {
                    // The unbounded bucket: its lower bound is all we know.
                    return Some(lower / 1e6);
                };
                let within = (rank - seen as f64) / n as f64;
                return Some((lower + (upper as f64 - lower) * within.clamp(0.0, 1.0)) / 1e6);
            }
            seen += n;
        }
        Some(BUCKETS_US[BUCKETS_US.len() - 1] as f64 / 1e6)
    }
}

/// Where an engine's block lives: its own allocation, or memory the caller provides
/// (and keeps alive through an owner). It can move to shared memory once, after a
/// fork and before serving ([`Stats::move_to`]); the memory of a previous place stays
/// allocated until the `Stats` is dropped, so no reference handed out earlier dangles.
pub struct Stats {
    block: AtomicPtr<StatsBlock>,
    owners: Mutex<Vec<Box<dyn Send + Sync>>>,
}

// SAFETY: the block is only ever accessed through atomics, and every place it has had
// stays valid while `owners` holds it.
unsafe impl Send for Stats {}
unsafe impl Sync for Stats {}

impl Stats {
    pub fn owned() -> Stats {
        let boxed: Box<StatsBlock> = Box::new(
            // SAFETY: all-zero bytes are valid AtomicU64s.
            unsafe { std::mem::zeroed() },
        );
        let ptr = &*boxed as *const StatsBlock as *mut StatsBlock;
        Stats {
            block: AtomicPtr::new(ptr),
            owners: Mutex::new(vec![Box::new(boxed)]),
        }
    }

    /// A block at `ptr`, inside memory that `owner` keeps alive and mapped.
    ///
    /// # Safety
    /// `ptr` must point to `BLOCK_SIZE` writable bytes that stay valid while `owner`
    /// lives, and be accessed by others only through atomics.
    pub unsafe fn shared(ptr: *mut u8, owner: Box<dyn Send + Sync>) -> Option<Stats> {
        if ptr.is_null() || (ptr as usize) % 8 != 0 {
            return None;
        }
        Some(Stats {
            block: AtomicPtr::new(ptr as *mut StatsBlock),
            owners: Mutex::new(vec![owner]),
        })
    }

    /// Counts into `other`'s block from now on (a worker taking its slot of a shared
    /// map after the fork). Counts made so far stay behind: call it before serving.
    pub fn move_to(&self, other: Stats) {
        let ptr = other.block.load(Ordering::Acquire);
        let moved = std::mem::take(&mut *other.owners.lock().unwrap_or_else(|p| p.into_inner()));
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(moved);
        self.block.store(ptr, Ordering::Release);
    }
}

impl std::ops::Deref for Stats {
    type Target = StatsBlock;
    fn deref(&self) -> &StatsBlock {
        // SAFETY: every pointer stored is valid while `owners` holds its memory, which
        // is as long as self lives.
        unsafe { &*self.block.load(Ordering::Acquire) }
    }
}

/// Figures of one worker thread (CherryPy's per-thread stats), kept beside the block:
/// they are only ever read by this process.
#[derive(Default)]
pub struct ThreadStats {
    pub requests: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub work_time_us: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound_inclusive() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(100), 0);
        assert_eq!(bucket_index(101), 1);
        assert_eq!(bucket_index(10_000_000), 15);
        assert_eq!(bucket_index(10_000_001), 16);
    }

    #[test]
    fn a_snapshot_copies_every_figure_from_its_place() {
        let s = Stats::owned();
        for (i, word) in s.words().iter().enumerate() {
            word.store(i as u64, Relaxed);
        }
        let snap = s.snapshot();
        assert_eq!((snap.magic, snap.pid, snap.body_spills), (0, 2, 17));
        assert_eq!(snap.by_method_class[0][0], 18);
        assert_eq!(snap.by_method_class[7][4], 57);
        assert_eq!(snap.duration_buckets[0], 58);
        assert_eq!(snap.duration_buckets[N_BUCKETS - 1], 74);
    }

    #[test]
    fn init_keeps_restarts_and_clears_the_rest() {
        let s = Stats::owned();
        s.init(1, 2);
        s.requests.fetch_add(5, Relaxed);
        s.restarts.fetch_add(3, Relaxed);
        s.last_restart_reason.store(3, Relaxed);
        s.init(7, 9);
        assert_eq!(s.requests.load(Relaxed), 0);
        assert_eq!(s.restarts.load(Relaxed), 3);
        assert_eq!(s.last_restart_reason.load(Relaxed), 3);
        assert_eq!(s.pid.load(Relaxed), 7);
        assert!(s.is_live());
    }

    #[test]
    fn a_released_slot_is_not_live_and_passes_its_restarts_on() {
        let s = Stats::owned();
        s.init(1, 2);
        s.open_connections.fetch_add(4, Relaxed);
        s.requests.fetch_add(5, Relaxed);
        s.release(6, 2);
        assert!(!s.is_live());
        assert_eq!(s.open_connections.load(Relaxed), 0);
        assert_eq!(s.pid.load(Relaxed), 0);
        s.init(8, 9);
        assert!(s.is_live());
        assert_eq!(s.restarts.load(Relaxed), 6);
        assert_eq!(s.last_restart_reason.load(Relaxed), 2);
        assert_eq!(s.requests.load(Relaxed), 0);
    }

    #[test]
    fn restart_reasons_have_distinct_nonzero_codes_and_names() {
        for (i, a) in RESTART_REASONS.iter().enumerate() {
            assert_ne!(a.0, 0, "0 is no restart");
            for b in &RESTART_REASONS[i + 1..] {
                assert!(a.0 != b.0 && a.1 != b.1, "{a:?} {b:?}");
            }
        }
        assert_eq!(restart_reason(0), None);
        assert_eq!(restart_reason(2), Some(("worker_timeout", "timed out")));
    }

    #[test]
    fn move_to_counts_into_the_new_block() {
        let s = Stats::owned();
        s.init(1, 0);
        s.requests.fetch_add(2, Relaxed);
        let old: &StatsBlock = &s;
        let other = Stats::owned();
        let target = &*other as *const StatsBlock;
        s.move_to(other);
        assert_eq!(&*s as *const StatsBlock, target);
        assert_eq!(
            old.requests.load(Relaxed),
            2,
            "the old block is still valid"
        );
        s.init(3, 0);
        s.requests.fetch_add(1, Relaxed);
        assert_eq!(s.requests.load(Relaxed), 1);
    }

    #[test]
    fn record_counts_method_class_and_duration() {
        let s = Stats::owned();
        s.init(1, 0);
        s.record(method_index(b"GET"), 200, Duration::from_micros(300), 10);
        s.record(method_index(b"BREW"), 418, Duration::from_millis(20), 5);
        let snap = s.snapshot();
        assert_eq!(snap.requests, 2);
        assert_eq!(snap.by_method_class[0][1], 1);
        assert_eq!(snap.by_method_class[7][3], 1);
        assert_eq!(snap.duration_buckets[2], 1);
        assert_eq!(snap.duration_buckets[7], 1);
        assert_eq!(snap.bytes_written, 15);
        assert_eq!(snap.work_time_us, 20_300);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut snap = Snapshot::default();
        assert_eq!(snap.quantile(0.5), None);
        snap.duration_buckets[3] = 10; // 500 us .. 1 ms
        let p50 = snap.quantile(0.5).unwrap();
        assert!((p50 - 0.00075).abs() < 1e-9, "{p50}");
        snap.duration_buckets[16] = 10;
        assert_eq!(snap.quantile(0.99), Some(10.0));
    }
}
