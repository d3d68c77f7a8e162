//! What the loop and other threads share about stopping: the [`LoopHandle`] any thread
//! uses to ask for a stop, the [`Control`] block behind it, and the [`Drain`] a graceful
//! stop keeps while it runs. How the loop acts on a request is `shutdown.rs`.
//!
//! This module uses nothing of the loop's, so the loop's own file can hold these types
//! without depending on the stage that uses them. A stop request only ever escalates:
//! running -> draining -> halted (a second drain changes nothing; a halt overrides a
//! drain).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::dispatch::{Completions, LogRecord};

/// How often a draining loop looks at its connections and its deadline.
pub(super) const DRAIN_CHECK: Duration = Duration::from_millis(50);

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const HALT: u8 = 2;

/// The stop asked for, as the loop reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    None,
    Drain,
    Halt,
}

/// Shared between the loop and its handles.
pub(super) struct Control {
    mode: AtomicU8,
    drain_timeout_ms: AtomicU64,
    notices: Mutex<Vec<LogRecord>>,
}

impl Control {
    pub(super) fn new() -> Control {
        Control {
            mode: AtomicU8::new(RUN),
            drain_timeout_ms: AtomicU64::new(0),
            notices: Mutex::new(Vec::new()),
        }
    }

    /// The stop asked for so far.
    pub(super) fn requested(&self) -> Stop {
        match self.mode.load(Ordering::Acquire) {
            RUN => Stop::None,
            HALT => Stop::Halt,
            _ => Stop::Drain,
        }
    }

    /// How long a graceful stop may take (read once [`Control::requested`] said drain).
    pub(super) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms.load(Ordering::Acquire).max(1))
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
        self.control.mode.store(HALT, Ordering::Release);
        self.completions.wake();
    }

    /// Graceful stop (see `shutdown.rs`), abandoning what still runs after `timeout`. A
    /// zero timeout is [`LoopHandle::stop`]. A second call changes nothing.
    pub fn drain(&self, timeout: Duration) {
        if timeout.is_zero() {
            return self.stop();
        }
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.control.drain_timeout_ms.store(ms, Ordering::Release);
        let _ = self
            .control
            .mode
            .compare_exchange(RUN, DRAIN, Ordering::AcqRel, Ordering::Acquire);
        self.completions.wake();
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
}
