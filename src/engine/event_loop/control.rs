//! What the loop and other threads share about stopping: the [`LoopHandle`] any thread
//! uses to ask for a stop, the [`Control`] block behind it, and the [`Drain`] a graceful
//! stop keeps while it runs. How the loop acts on a request is `shutdown.rs`.
//!
//! This module uses nothing of the loop's, so the loop's own file can hold these types
//! without depending on the stage that uses them. A stop request only ever escalates:
//! running -> delaying (`shutdown_delay`) -> draining -> halted (a second drain
//! request ends a delay and otherwise changes nothing; a halt overrides both).
//!
//! The [`Health`] the probes of the metrics listener read is kept here too: any stop
//! request makes the server not ready at once, before the loop has even woken.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::dispatch::{Completions, LogRecord};
use crate::engine::metrics_listener::Health;

/// How often a draining loop looks at its connections and its deadline.
pub(super) const DRAIN_CHECK: Duration = Duration::from_millis(50);

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const HALT: u8 = 2;
const DELAY: u8 = 3;

/// The stop asked for, as the loop reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    None,
    /// Answer as usual, each connection's next request its last, until the delay ends.
    Delay,
    Drain,
    Halt,
}

/// Shared between the loop and its handles.
pub(super) struct Control {
    mode: AtomicU8,
    drain_timeout_ms: AtomicU64,
    delay_ms: AtomicU64,
    notices: Mutex<Vec<LogRecord>>,
    pub(super) health: Arc<Health>,
}

impl Control {
    pub(super) fn new() -> Control {
        Control {
            mode: AtomicU8::new(RUN),
            drain_timeout_ms: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            notices: Mutex::new(Vec::new()),
            health: Arc::new(Health::default()),
        }
    }

    /// The stop asked for so far.
    pub(super) fn requested(&self) -> Stop {
        match self.mode.load(Ordering::Acquire) {
            RUN => Stop::None,
            HALT => Stop::Halt,
            DELAY => Stop::Delay,
            _ => Stop::Drain,
        }
    }

    /// How long a graceful stop may take (read once [`Control::requested`] said drain).
    pub(super) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms.load(Ordering::Acquire).max(1))
    }

    /// How long the delay before a graceful stop lasts (read once [`Control::requested`]
    /// said delay).
    pub(super) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Acquire))
    }

    /// A line for the thread inside `Engine.run()` to log now, not when a worker is free.
    pub(super) fn notice(&self, record: LogRecord) {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }
}

/// Stops a running loop from any thread.
#[derive(Clone)]
pub struct LoopHandle {
    pub(super) control: Arc<Control>,
    pub(super) completions: Arc<Completions>,
}

impl LoopHandle {
    /// Immediate stop: every connection is closed now, responses not yet produced are
    /// abandoned.
    pub fn stop(&self) {
        self.control.health.set_stopping();
        self.control.mode.store(HALT, Ordering::Release);
        self.completions.wake();
    }

    /// Graceful stop (see `shutdown.rs`), abandoning what still runs after `timeout`. A
    /// zero timeout is [`LoopHandle::stop`]. During a delay (`drain_after`) it ends the
    /// delay now; otherwise a second call changes nothing.
    pub fn drain(&self, timeout: Duration) {
        self.drain_after(Duration::ZERO, timeout);
    }

    /// Graceful stop after `delay` (`shutdown_delay`): not ready at once; the server
    /// keeps accepting and answering until the delay ends, each connection's next
    /// response its last (`Connection: close`), then drains as [`LoopHandle::drain`].
    pub fn drain_after(&self, delay: Duration, timeout: Duration) {
        if timeout.is_zero() {
            return self.stop();
        }
        self.control.health.set_stopping();
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.control.drain_timeout_ms.store(ms, Ordering::Release);
        let mode = &self.control.mode;
        if delay.is_zero() {
            let _ = mode.compare_exchange(RUN, DRAIN, Ordering::AcqRel, Ordering::Acquire);
            let _ = mode.compare_exchange(DELAY, DRAIN, Ordering::AcqRel, Ordering::Acquire);
        } else {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            self.control.delay_ms.store(ms, Ordering::Release);
            let _ = mode.compare_exchange(RUN, DELAY, Ordering::AcqRel, Ordering::Acquire);
        }
        self.completions.wake();
    }

    /// What the probes of the metrics listener answer from.
    pub fn health(&self) -> Arc<Health> {
        self.control.health.clone()
    }

    /// Log lines the loop wants said now, not when a worker is free.
    pub fn take_notices(&self, into: &mut Vec<LogRecord>) {
        let mut list = self
            .control
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        into.append(&mut list);
    }
}

/// A graceful stop in progress.
#[derive(Debug, Clone, Copy)]
pub(super) struct Drain {
    pub(super) started: Instant,
    pub(super) deadline: Instant,
    /// While `shutdown_delay` runs: when it ends (the drain proper starts then).
    pub(super) delay_until: Option<Instant>,
}
