//! `request_timeout`: ends application calls that run too long.
//!
//! Each worker thread has a [`Slot`]: when its request started, on which connection,
//! and a state word (a generation and a phase: idle, running, response started, timed
//! out). A small thread (`watchdog_main` in `server.rs`, only with the setting on)
//! looks at the slots every tick ([`Watch::check`], without the GIL, then
//! [`Watch::raise_in`] with it for what it timed out). This module knows nothing of
//! the context that holds it. A call still running after `request_timeout`:
//!
//! - gets a `504 Gateway Timeout` (Connection: close) if its response has not started,
//!   or its connection cut otherwise (never a chunked end nor the rest of a
//!   Content-Length: the client sees a broken response, not a short whole one);
//! - gets `maitre.RequestTimeout` raised in its Python code (an asynchronous exception,
//!   seen at its next bytecode), and its stack is logged once (`maitre`, error);
//! - if it is still in the same call [`STUCK_AFTER`] later (blocked in C code, which
//!   no asynchronous exception interrupts), it counts in `threads_stuck` until it ends.
//!
//! What must hold:
//! - exactly one of the response and the timeout reaches the wire: the responder claims
//!   the head (running → started) and the watchdog claims the request (running or
//!   started → timed out) with a compare-and-swap on the same word;
//! - a timed-out call's own response, whatever it returns, is discarded (its head claim
//!   fails), and the thread then serves on as usual;
//! - an asynchronous exception never outlives its request: the watchdog raises it only
//!   while the slot is still timed out in the same generation, the worker clears any
//!   pending one when it ends the request, and both do so holding the GIL, so one sees
//!   what the other did;
//! - with the setting off there is no watchdog and no slot: a request pays nothing.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::engine::channel::{Channel, WhenFull};
use crate::engine::http2::H2Stream;
use crate::engine::stats::StatsBlock;
use crate::h2::ErrorCode;
use crate::http::request::{RequestHead, Version};
use crate::http::response::error_response;
use crate::wsgi::exceptions::RequestTimeout;

// Phases (the low bits of a slot's state); 0 is idle.
const RUNNING: u64 = 1;
const STARTED: u64 = 2;
const TIMED_OUT: u64 = 3;
const PHASE: u64 = 3;
const GENERATION: u64 = 4;

/// How long after its `RequestTimeout` a thread still in the same call counts as
/// stuck: a thread running Python code sees the exception within a switch interval.
pub const STUCK_AFTER: Duration = Duration::from_secs(1);

/// The longest pause between two looks at the slots.
const MAX_TICK: Duration = Duration::from_millis(100);
const MIN_TICK: Duration = Duration::from_millis(10);

/// How a request's call ended, as the worker learns it from [`Watch::end`].
pub enum Ended {
    InTime,
    /// The timeout fired; if it answered 504: (body bytes, bytes sent).
    TimedOut(Option<(u64, u64)>),
}

/// What the watchdog needs of the request a thread runs.
#[derive(Default)]
struct Current {
    channel: Option<Arc<Channel>>,
    /// The request's HTTP/2 stream: answered or cut there, not on the connection.
    h2: Option<H2Stream>,
    version: Option<Version>,
    /// The request line, for the log (its buffer reused from request to request).
    line: String,
    started: Option<Instant>,
    fired: Option<Instant>,
    answered: Option<(u64, u64)>,
}

#[derive(Default)]
struct Slot {
    /// Generation (times `GENERATION`) plus phase.
    state: AtomicU64,
    /// The thread's identifier as CPython knows it (`threading.get_ident()`).
    thread: AtomicU64,
    current: Mutex<Current>,
}

impl Slot {
    /// Responder side: see [`Watch::start_response`].
    fn start_response(&self) -> bool {
        let s = self.state.load(Acquire);
        match s & PHASE {
            RUNNING => match self
                .state
                .compare_exchange(s, s - RUNNING + STARTED, AcqRel, Acquire)
            {
                Ok(_) => true,
                Err(now) => now & PHASE != TIMED_OUT,
            },
            TIMED_OUT => false,
            _ => true,
        }
    }

    /// Watchdog side: takes the request of state `s` (running or started) for the
    /// timeout; false if the worker moved on first (its response started, or the
    /// call ended).
    fn claim(&self, s: u64) -> bool {
        self.state
            .compare_exchange(s, s | TIMED_OUT, AcqRel, Acquire)
            .is_ok()
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        // Every write under the lock completes before it is released: a panic leaves
        // nothing half done.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Watch {
    timeout: Duration,
    slots: Vec<Slot>,
    stopping: Mutex<bool>,
    wake: Condvar,
}

/// A request the watchdog has just timed out, to raise and log under the GIL.
pub struct Fired {
    slot: usize,
    state: u64,
    line: String,
    answered: bool,
}

impl Watch {
    /// None when `timeout` is zero (the setting is off).
    pub fn new(timeout: Duration, threads: usize) -> Option<Watch> {
        (!timeout.is_zero()).then(|| Watch {
            timeout,
            slots: (0..threads).map(|_| Slot::default()).collect(),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    /// Worker side, once at its start: which thread runs slot `slot`.
    pub fn register(&self, slot: usize) {
        // SAFETY: pthread_self has no preconditions.
        let id = unsafe { libc::pthread_self() } as u64;
        self.slots[slot].thread.store(id, Relaxed);
    }

    /// Worker side: the thread of `slot` is about to call the application for `head`.
    pub fn begin(
        &self,
        slot: usize,
        channel: &Arc<Channel>,
        h2: Option<&H2Stream>,
        head: &RequestHead,
    ) {
        let s = &self.slots[slot];
        let mut cur = s.current();
        cur.channel = Some(channel.clone());
        cur.h2 = h2.cloned();
        cur.version = Some(head.version);
        cur.line.clear();
        cur.line.push_str(&String::from_utf8_lossy(head.method()));
        cur.line.push(' ');
        cur.line.push_str(&String::from_utf8_lossy(head.target()));
        cur.started = Some(Instant::now());
        cur.fired = None;
        cur.answered = None;
        let next = (s.state.load(Relaxed) & !PHASE).wrapping_add(GENERATION);
        s.state.store(next | RUNNING, Relaxed);
    }

    /// Responder side: the response's head may go out (false: the request has timed
    /// out, and nothing of the application's response must be sent).
    pub fn start_response(&self, slot: usize) -> bool {
        self.slots[slot].start_response()
    }

    /// Worker side, holding the GIL: the application call of `slot` is over. Clears an
    /// asynchronous exception the watchdog raised that the call did not see.
    pub fn end(&self, _gil: Python<'_>, slot: usize) -> Ended {
        let s = &self.slots[slot];
        // Back to idle, in the same generation.
        let before = s.state.fetch_and(!PHASE, AcqRel);
        let mut cur = s.current();
        // The loop closes the socket once the last reference goes: not ours to keep.
        cur.channel = None;
        cur.h2 = None;
        if before & PHASE != TIMED_OUT {
            return Ended::InTime;
        }
        let answered = cur.answered.take();
        drop(cur);
        // SAFETY: with the GIL held (`_gil`); a NULL exception clears the thread's
        // pending one, if any.
        unsafe {
            pyo3::ffi::PyThreadState_SetAsyncExc(s.thread.load(Relaxed) as _, std::ptr::null_mut());
        }
        Ended::TimedOut(answered)
    }

    /// Ends `run` (from the thread that joins it).
    pub fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// The watchdog thread's wait for its next look at the slots: false once
    /// [`Watch::stop`] was called. A tenth of the timeout, between [`MIN_TICK`] and
    /// [`MAX_TICK`]: a late call ends within about a tenth past its timeout, and a
    /// long timeout does not make it late by seconds.
    pub fn wait_tick(&self) -> bool {
        let tick = (self.timeout / 10).clamp(MIN_TICK, MAX_TICK);
        let stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        let (stopping, _) = self
            .wake
            .wait_timeout_while(stopping, tick, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        !*stopping
    }

    /// One look at the slots, without the GIL: answers (a 504 naming `ident`) or cuts
    /// what has run too long, and counts the requests timed out and the stuck threads
    /// in `stats`. What it timed out goes to [`Watch::raise_in`], under the GIL.
    pub fn check(&self, stats: &StatsBlock, ident: &str, now: Instant) -> Vec<Fired> {
        let mut fired = Vec::new();
        let mut stuck = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let s = slot.state.load(Acquire);
            match s & PHASE {
                RUNNING | STARTED => {
                    let mut cur = slot.current();
                    let due = cur
                        .started
                        .is_some_and(|t| now.saturating_duration_since(t) >= self.timeout);
                    // Under the lock: `begin` cannot move the slot to another request.
                    if !(due && slot.claim(s)) {
                        continue;
                    }
                    cur.fired = Some(now);
                    let answered = s & PHASE == RUNNING;
                    if answered {
                        let version = cur.version.unwrap_or(Version::Http11);
                        cur.answered = Some(answer_504(ident, &cur, version));
                    } else {
                        cut(&cur);
                    }
                    stats.requests_timed_out.fetch_add(1, Relaxed);
                    fired.push(Fired {
                        slot: i,
                        state: s | TIMED_OUT,
                        line: cur.line.clone(),
                        answered,
                    });
                }
                TIMED_OUT => {
                    let cur = slot.current();
                    if cur
                        .fired
                        .is_some_and(|t| now.saturating_duration_since(t) >= STUCK_AFTER)
                    {
                        stuck += 1;
                    }
                }
                _ => {}
            }
        }
        stats.threads_stuck.store(stuck, Relaxed);
        fired
    }

    /// Under the GIL: raises `RequestTimeout` in the thread that still runs the timed
    /// out call; returns what to log: the request, and that thread's stack.
    pub fn raise_in(&self, py: Python<'_>, f: Fired) -> String {
        let slot = &self.slots[f.slot];
        let thread = slot.thread.load(Relaxed);
        // Still in that call: the worker has not ended it (it would hold the GIL to).
        let frame = if slot.state.load(Acquire) == f.state {
            let frame = current_frame(py, thread);
            let exc = py.get_type::<RequestTimeout>();
            // Taking the frame may run Python (a collection's `__del__`) and give the
            // worker the GIL to end this call and begin another: look again, with
            // nothing that could let go of the GIL in between.
            if slot.state.load(Acquire) == f.state {
                // SAFETY: with the GIL held; `thread` is a live worker's identifier.
                unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(thread as _, exc.as_ptr()) };
            }
            frame
        } else {
            None
        };
        let what = if f.answered {
            "answered 504 Gateway Timeout"
        } else {
            "connection closed (the response had started)"
        };
        let stack = match frame {
            Some(frame) => format_stack(py, &frame)
                .map(|s| format!("; RequestTimeout raised in the thread, whose stack was:\n{s}"))
                .unwrap_or_default(),
            None => "; the call ended before its stack could be taken".into(),
        };
        format!(
            "request_timeout ({} s) passed for \"{}\" on thread maitre-{}: {what}{stack}",
            self.timeout.as_secs_f64(),
            f.line,
            f.slot
        )
    }
}

/// The frame thread `thread` is running now, if it runs Python code.
fn current_frame(py: Python<'_>, thread: u64) -> Option<Bound<'_, PyAny>> {
    let frames = py
        .import("sys")
        .and_then(|sys| sys.call_method0("_current_frames"))
        .ok()?;
    frames.get_item(thread).ok()
}

fn format_stack(py: Python<'_>, frame: &Bound<'_, PyAny>) -> Option<String> {
    let lines = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_stack", (frame,)))
        .ok()?;
    let text: String = pyo3::types::PyString::new(py, "")
        .call_method1("join", (lines,))
        .and_then(|s| s.extract())
        .ok()?;
    Some(text.trim_end().to_string())
}

/// Sends the 504 for the request `cur` runs; (body bytes, bytes sent). On HTTP/2 it
/// goes to the request's stream, which ends with it (the connection goes on); on
/// HTTP/1 to the connection, whose sending side is then shut down.
fn answer_504(ident: &str, cur: &Current, version: Version) -> (u64, u64) {
    let response = error_response(
        version,
        504,
        "Gateway Timeout",
        "The application did not answer in time (request_timeout).",
        ident,
    );
    let head = memchr::memmem::find(&response, b"\r\n\r\n").map_or(0, |i| i + 4);
    let sent = match (&cur.h2, &cur.channel) {
        (Some(h2), _) => h2.conn.send_response(h2.id, &response).is_ok(),
        (None, Some(channel)) => {
            let sent = channel.send(&[&response], WhenFull::Queue).is_ok();
            // The client learns at once that nothing follows, even if the thread stays
            // stuck; a response the socket did not take whole is left to the loop.
            if sent && !channel.has_pending_output() {
                channel.shutdown_write();
            }
            sent
        }
        (None, None) => false,
    };
    if !sent {
        return (0, 0);
    }
    ((response.len() - head) as u64, response.len() as u64)
}

/// Cuts the response under way for `cur`, so the client sees it end before the
/// response does: its stream on HTTP/2, its connection on HTTP/1.
fn cut(cur: &Current) {
    match (&cur.h2, &cur.channel) {
        (Some(h2), _) => h2.conn.reset(h2.id, ErrorCode::CANCEL),
        (None, Some(channel)) => {
            channel.mark_closed();
            let _ = channel.sock.shutdown(std::net::Shutdown::Both);
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_no_watch() {
        assert!(Watch::new(Duration::ZERO, 4).is_none());
        assert_eq!(
            Watch::new(Duration::from_secs(1), 4).unwrap().slots.len(),
            4
        );
    }

    #[test]
    fn a_timed_out_request_cannot_start_its_response() {
        let slot = Slot::default();
        slot.state.store(GENERATION | RUNNING, Relaxed);
        assert!(slot.claim(GENERATION | RUNNING));
        assert!(!slot.start_response());
        assert!(!slot.start_response(), "and never later");
    }

    #[test]
    fn a_started_response_is_claimed_only_in_its_phase() {
        let slot = Slot::default();
        slot.state.store(GENERATION | RUNNING, Relaxed);
        assert!(slot.start_response());
        assert!(slot.start_response(), "a second piece of the same response");
        assert!(!slot.claim(GENERATION | RUNNING), "the phase moved on");
        assert!(slot.claim(GENERATION | STARTED));
        assert!(!slot.start_response());
    }

    #[test]
    fn a_claim_of_an_earlier_request_fails() {
        let slot = Slot::default();
        slot.state.store((2 * GENERATION) | RUNNING, Relaxed);
        assert!(!slot.claim(GENERATION | RUNNING));
        assert!(slot.start_response());
    }

    #[test]
    fn exactly_one_of_the_response_and_the_timeout_wins() {
        let slot = Arc::new(Slot::default());
        for generation in 1..2000u64 {
            let s = (generation * GENERATION) | RUNNING;
            slot.state.store(s, Relaxed);
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (slot2, barrier2) = (slot.clone(), barrier.clone());
            let responder = std::thread::spawn(move || {
                barrier2.wait();
                slot2.start_response()
            });
            barrier.wait();
            let timed_out = slot.claim(s);
            let started = responder.join().unwrap();
            assert!(started != timed_out, "generation {generation}");
        }
    }
}
