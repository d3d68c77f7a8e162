//! The hand-offs between the I/O loop and the worker threads.
//!
//! Loop to workers: a queue of jobs, pushed in batches (everything one poll round
//! produced, under one lock). A worker that finishes a job takes the next one without
//! sleeping. A second worker is woken only when the queue has not drained since the
//! loop's last round: on one core, waking every idle worker for a burst of quick
//! requests only makes them fight over the GIL (hello-world: 72k req/s with chained
//! wake-ups, see the commit for the figure with this rule), while an application that
//! blocks leaves a backlog that the loop notices within a millisecond.
//!
//! Workers to loop: a list of completions and a mio `Waker`, woken only by the first
//! completion pushed since the loop last looked.
//!
//! Loop to logging: its own queue ([`LogQueue`]), emptied by a thread of its own that
//! takes the GIL only to emit. Log lines never wait behind requests for a worker (with
//! every worker busy they came out seconds late), and the queue of jobs holds requests
//! only, so its depth is the number of requests waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use mio::Waker;

use crate::engine::body::Body;
use crate::engine::channel::Channel;
use crate::http::request::RequestHead;

/// A request received whole.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub body: Body,
    /// When its first byte arrived (the start of its duration in logs and metrics).
    pub received: Instant,
}

/// Requests of one connection for a worker to run in order: the one the loop parsed,
/// and any complete requests pipelined behind it. Handing them over together costs one
/// hand-off instead of one per request, and keeps the responses in order by construction.
#[derive(Debug)]
pub struct Requests {
    pub channel: Arc<Channel>,
    pub requests: Vec<Request>,
}

/// Something the loop wants said through Python's `logging` (which it must not call
/// itself: a log record takes the GIL). Goes through a [`LogQueue`].
#[derive(Debug)]
pub struct LogRecord {
    pub level: LogLevel,
    pub message: String,
    pub logger: Logger,
}

/// The Python logger a [`LogRecord`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logger {
    /// `maitre`
    Main,
    /// `maitre.queue`: requests wait for a thread.
    Queue,
    /// `maitre.access`: the access log line of a request the loop answered itself.
    Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

#[derive(Debug)]
pub enum Job {
    Requests(Box<Requests>),
}

/// Most log records held for the logging thread; past it the loop drops them (and says
/// how many): a logging handler that blocks must not make the loop's memory grow.
const MAX_PENDING_LOGS: usize = 10_000;

struct LogInner {
    records: Vec<LogRecord>,
    dropped: usize,
    stopping: bool,
}

/// The loop's log records on their way to the logging thread.
pub struct LogQueue {
    inner: Mutex<LogInner>,
    ready: Condvar,
}

impl Default for LogQueue {
    fn default() -> Self {
        LogQueue {
            inner: Mutex::new(LogInner {
                records: Vec::new(),
                dropped: 0,
                stopping: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl LogQueue {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a record to the logging thread; never blocks on it.
    pub fn push(&self, record: LogRecord) {
        let mut inner = self.lock();
        if inner.records.len() >= MAX_PENDING_LOGS {
            inner.dropped += 1;
            return;
        }
        inner.records.push(record);
        if inner.records.len() == 1 {
            self.ready.notify_one();
        }
    }

    /// Waits for records and moves them all to `into` (with a note of any dropped).
    /// False once the queue is stopping and nothing is left.
    pub fn take_wait(&self, into: &mut Vec<LogRecord>) -> bool {
        let mut inner = self.lock();
        loop {
            if !inner.records.is_empty() || inner.dropped > 0 {
                std::mem::swap(&mut inner.records, into);
                let dropped = std::mem::take(&mut inner.dropped);
                if dropped > 0 {
                    into.push(LogRecord {
                        level: LogLevel::Warning,
                        message: format!(
                            "{dropped} log messages of the I/O loop dropped: logging is too slow"
                        ),
                        logger: Logger::Main,
                    });
                }
                return true;
            }
            if inner.stopping {
                return false;
            }
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The logging thread returns once it has emitted what is queued.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.ready.notify_all();
    }
}

struct Inner {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers started (idle or not).
    workers: usize,
    stopping: bool,
}

pub struct JobQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
}

impl Default for JobQueue {
    fn default() -> Self {
        JobQueue {
            inner: Mutex::new(Inner {
                jobs: VecDeque::new(),
                idle: 0,
                workers: 0,
                stopping: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker thread starts serving this queue.
    pub fn add_worker(&self) {
        self.lock().workers += 1;
    }

    /// Queues a batch (possibly empty: the loop calls this every round). Wakes a worker
    /// if none is running, or if jobs were still waiting from an earlier round. Says how
    /// many jobs wait, so the loop can look again soon.
    pub fn push_batch(&self, batch: &mut Vec<Job>) -> usize {
        let mut inner = self.lock();
        let backlog = !inner.jobs.is_empty();
        inner.jobs.extend(batch.drain(..));
        let running = inner.workers.saturating_sub(inner.idle);
        if inner.idle > 0 && !inner.jobs.is_empty() && (running == 0 || backlog) {
            self.ready.notify_one();
        }
        inner.jobs.len()
    }

    /// Takes a job if one is queued, without waiting.
    pub fn try_pop(&self) -> Option<Job> {
        self.lock().jobs.pop_front()
    }

    /// Waits for a job; `None` once the queue is stopping.
    pub fn pop_wait(&self) -> Option<Job> {
        let mut inner = self.lock();
        loop {
            if inner.stopping {
                return None;
            }
            if let Some(job) = inner.jobs.pop_front() {
                return Some(job);
            }
            inner.idle += 1;
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
            inner.idle -= 1;
        }
    }

    /// Makes every worker return from `pop_wait`; returns the jobs never started.
    pub fn stop(&self) -> Vec<Job> {
        let mut inner = self.lock();
        inner.stopping = true;
        self.ready.notify_all();
        inner.jobs.drain(..).collect()
    }
}

/// A worker is done with a request on this connection.
#[derive(Debug)]
pub struct Completion {
    pub token: usize,
    pub id: u64,
    /// Close the connection once its output is flushed.
    pub close: bool,
    /// Requests of the job that were answered (for `max_requests`).
    pub served: usize,
    /// Pipelined requests not served: the client lags behind the responses already
    /// queued, and the loop hands these out again once it has read (a worker never
    /// waits for a slow reader).
    pub rest: Vec<Request>,
}

pub struct Completions {
    list: Mutex<Vec<Completion>>,
    wake_pending: AtomicBool,
    waker: Waker,
}

impl Completions {
    pub fn new(waker: Waker) -> Self {
        Completions {
            list: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            waker,
        }
    }

    /// Hands a completion to the loop, waking it only when it is waiting for this one
    /// (see `Channel::set_awaited`) or the connection is to close.
    pub fn push(&self, c: Completion, channel: &Channel) {
        let close = c.close || !c.rest.is_empty();
        self.list.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        // Pairs with the loop's fence in `EventLoop::await_completion`: either the loop
        // sees this completion when it looks, or we see its flag and wake it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if close || channel.is_awaited() {
            self.wake();
        }
    }

    /// Wakes the loop unless a wake-up is already on its way.
    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // Failure means the loop is gone; nothing is left to tell.
            let _ = self.waker.wake();
        }
    }

    /// Called by the loop when woken: takes everything pushed so far.
    pub fn take(&self, into: &mut Vec<Completion>) {
        // Clear the flag first: a push after this point wakes the loop again.
        self.wake_pending.store(false, Ordering::Release);
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *list, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str) -> LogRecord {
        LogRecord {
            level: LogLevel::Info,
            message: message.into(),
            logger: Logger::Main,
        }
    }

    #[test]
    fn log_records_reach_a_waiting_thread_and_stop_ends_it() {
        let logs = Arc::new(LogQueue::default());
        let reader = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut batch = Vec::new();
                while logs.take_wait(&mut batch) {
                    seen.extend(batch.drain(..).map(|r| r.message));
                }
                seen
            })
        };
        logs.push(record("one"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        logs.push(record("two"));
        logs.stop();
        assert_eq!(reader.join().unwrap(), ["one", "two"]);
    }

    #[test]
    fn a_full_log_queue_drops_and_says_how_many() {
        let logs = LogQueue::default();
        for i in 0..MAX_PENDING_LOGS + 5 {
            logs.push(record(&i.to_string()));
        }
        let mut batch = Vec::new();
        assert!(logs.take_wait(&mut batch));
        assert_eq!(batch.len(), MAX_PENDING_LOGS + 1);
        assert!(batch[MAX_PENDING_LOGS]
            .message
            .starts_with("5 log messages"));
        logs.stop();
        batch.clear();
        assert!(!logs.take_wait(&mut batch));
    }
}
