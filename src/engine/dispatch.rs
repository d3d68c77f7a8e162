//! The hand-offs between the I/O loop and the worker threads.
//!
//! Loop to workers: a queue of jobs, pushed in batches (everything one poll round
//! produced, under one lock). A worker that finishes a job takes the next one without
//! sleeping. While jobs wait and a worker is busy, another is woken only when the busy
//! ones leave the interpreter idle: all of them blocked (a sleep, I/O, a lock), judged
//! by their threads' CPU clocks, or computing for longer than [`CPU_BUDGET`]; and a
//! worker that finishes a job while another computes goes to sleep rather than take the
//! next. A second worker running Python only takes the GIL from the first: on one core
//! that is futex calls and context switches per request for nothing
//! (docs/performance.md, "Waking workers by their CPU clocks"). Go's scheduler
//! decides the same way when it hands a processor to another thread: when a goroutine
//! blocks in a system call, or has run past its time slice. Where threads have no CPU
//! clock to read (`engine::sys`: not on macOS, nor in the portable build), every busy
//! worker counts as blocked, and waiting jobs wake another worker.
//!
//! Workers to loop: a list of completions and a mio `Waker`, woken only by the first
//! completion pushed since the loop last looked.
//!
//! Loop to logging: its own queue ([`LogQueue`]), emptied by a thread of its own that
//! takes the GIL only to emit. Log lines never wait behind requests for a worker (with
//! every worker busy they came out seconds late), and the queue of jobs holds requests
//! only, so its depth is the number of requests waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::engine::body::Body;
use crate::engine::channel::Channel;
use crate::engine::http2::H2Stream;
use crate::engine::sys::CpuClock;
use crate::http::request::RequestHead;

/// A request received whole.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub body: Body,
    /// When its first byte arrived (the start of its duration in logs and metrics).
    pub received: Instant,
    /// The HTTP/2 stream it came on; its response goes there, not to the channel.
    pub h2: Option<H2Stream>,
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
    Debug,
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

/// How soon, once jobs wait, the queue looks at the busy workers (and again after a
/// look that found them blocked, or could not tell).
const FIRST_LOOK: Duration = Duration::from_millis(1);
/// Longest time between two looks: each look that finds a worker computing doubles the
/// wait up to this. The loop wakes for each look, so looking every millisecond while one
/// worker computes cost 5 loop wake-ups (10 context switches) per Django request; and a
/// blocked worker is still noticed before CPython would force a GIL hand-off to a thread
/// waiting for it (its switch interval is 5 ms).
const LONGEST_LOOK: Duration = Duration::from_millis(4);
/// CPU time of one job after which it no longer holds the others back: it counts as
/// blocked, so another worker is woken and the two share the GIL (CPython switches every
/// 5 ms). Several times a framework page (Django ~5 ms on the bench VM), so ordinary
/// requests never reach it; short enough that a long computation delays the requests
/// queued behind it by about this much, not by its whole length.
pub const CPU_BUDGET: Duration = Duration::from_millis(20);

/// One worker thread, as the queue sees it.
struct Worker {
    /// Its thread's CPU clock (`None`: unknown, the worker always counts as blocked).
    clock: Option<CpuClock>,
    /// Running a job (from taking it to asking for the next).
    busy: bool,
    /// Computed, within [`CPU_BUDGET`], during the interval before the last look.
    computing: bool,
    /// Jobs taken so far: tells a look whether the job is the one it saw last time.
    taken: u64,
    /// When a look last saw it busy (the count of looks), its `taken` and CPU clock
    /// then, and its clock when that job was first seen.
    seen_look: u64,
    seen_taken: u64,
    seen_cpu: Duration,
    job_cpu_from: Duration,
}

struct Inner {
    /// Jobs waiting, oldest first, each with when it was queued (for `queue_timeout`).
    jobs: VecDeque<(Instant, Job)>,
    /// Workers waiting for a job.
    idle: usize,
    /// Every worker started (idle or not), by the slot `add_worker` gave it.
    workers: Vec<Worker>,
    /// When the busy workers' clocks were last looked at, how many looks so far, and
    /// how long until the next.
    last_look: Option<Instant>,
    looks: u64,
    interval: Duration,
    stopping: bool,
}

impl Inner {
    fn set_busy(&mut self, worker: usize, busy: bool) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.busy = busy;
            w.computing = false;
            if busy {
                w.taken += 1;
            }
        }
    }

    /// Reads the busy workers' CPU clocks; says whether they keep the interpreter busy:
    /// since the last look, those whose job is within [`CPU_BUDGET`] computed for at
    /// least a quarter of the time (then another worker would only contend for the GIL),
    /// or one of them was not busy at the last look (it gets until the next). Not when
    /// they all sit in blocking calls (their clocks stand still), or only a job past its
    /// budget computes. A quarter, not all: the loop and other processes take their
    /// share of the core.
    fn look(&mut self, now: Instant) -> Verdict {
        let elapsed = self
            .last_look
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_look = Some(now);
        self.looks += 1;
        let looks = self.looks;
        let mut computed = Duration::ZERO;
        let mut unknown = false;
        for w in self.workers.iter_mut().filter(|w| w.busy) {
            w.computing = false;
            let Some(cpu) = w.clock.and_then(CpuClock::read) else {
                continue;
            };
            if w.seen_taken != w.taken {
                w.seen_taken = w.taken;
                w.job_cpu_from = cpu;
            }
            if w.seen_look == 0 || w.seen_look + 1 != looks {
                unknown = true;
            } else if cpu.saturating_sub(w.job_cpu_from) < CPU_BUDGET {
                let delta = cpu.saturating_sub(w.seen_cpu);
                w.computing = !delta.is_zero() && delta * 4 >= elapsed;
                computed += delta;
            }
            w.seen_cpu = cpu;
            w.seen_look = looks;
        }
        if !computed.is_zero() && computed * 4 >= elapsed {
            Verdict::Computing
        } else if unknown {
            Verdict::Unknown
        } else {
            Verdict::Blocked
        }
    }

    /// Whether a worker other than `worker` was computing at the last look: then
    /// `worker` leaves the queued jobs to it (it takes them as it finishes) rather than
    /// contend for the GIL, and sleeps until a look finds the busy ones blocked.
    fn other_computing(&self, worker: usize) -> bool {
        self.workers
            .iter()
            .enumerate()
            .any(|(i, w)| i != worker && w.busy && w.computing)
    }

    /// The next job for `worker`, unless another worker computes (see `other_computing`).
    fn take(&mut self, worker: usize) -> Option<Job> {
        if self.jobs.is_empty() || self.other_computing(worker) {
            return None;
        }
        let job = self.jobs.pop_front().map(|(_, job)| job);
        self.set_busy(worker, true);
        job
    }

    /// Jobs waiting beyond the workers waiting for one (which take them at once).
    fn backlog(&self) -> i64 {
        self.jobs.len() as i64 - self.idle as i64
    }
}

/// What a look found the busy workers doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Computing,
    /// One of them was not busy at the previous look: no interval to judge it by.
    Unknown,
    /// Blocked, or computing past their budget: the interpreter has room for another.
    Blocked,
}

/// What `JobQueue::push_batch` leaves for the loop.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    /// Jobs waiting for a worker.
    pub waiting: usize,
    /// Of those, the jobs no idle worker is there to take (see [`JobQueue::backlog`]).
    pub backlog: usize,
    /// When the oldest job waiting was queued.
    pub oldest: Option<Instant>,
    /// When the queue wants to look at the busy workers again (jobs wait).
    pub look_at: Option<Instant>,
}

pub struct JobQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// `Inner::backlog` as of the last change, for the loop to read without the lock
    /// (`max_queued_requests`).
    backlog: AtomicI64,
}

impl Default for JobQueue {
    fn default() -> Self {
        JobQueue {
            inner: Mutex::new(Inner {
                jobs: VecDeque::new(),
                idle: 0,
                workers: Vec::new(),
                last_look: None,
                looks: 0,
                interval: FIRST_LOOK,
                stopping: false,
            }),
            ready: Condvar::new(),
            backlog: AtomicI64::new(0),
        }
    }
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The calling thread starts serving this queue; returns its slot, for `try_pop`
    /// and `pop_wait`.
    pub fn add_worker(&self) -> usize {
        let mut inner = self.lock();
        inner.workers.push(Worker {
            clock: CpuClock::current(),
            busy: false,
            computing: false,
            taken: 0,
            seen_look: 0,
            seen_taken: 0,
            seen_cpu: Duration::ZERO,
            job_cpu_from: Duration::ZERO,
        });
        inner.workers.len() - 1
    }

    /// Queues a batch (possibly empty: the loop calls this every round). While jobs
    /// wait, looks at the busy workers when due (see `Inner::look`), and wakes a worker
    /// if none is running or the running ones leave the interpreter idle. Says how many
    /// jobs wait and when the next look is due, for the loop to come back then.
    pub fn push_batch(&self, batch: &mut Vec<Job>, now: Instant) -> Queued {
        let mut inner = self.lock();
        inner.jobs.extend(batch.drain(..).map(|job| (now, job)));
        let backlog = inner.backlog();
        self.backlog.store(backlog, Relaxed);
        if inner.jobs.is_empty() {
            inner.interval = FIRST_LOOK;
            return Queued {
                waiting: 0,
                backlog: 0,
                oldest: None,
                look_at: None,
            };
        }
        let interval = inner.interval;
        let verdict = match inner.last_look {
            Some(t) if now.saturating_duration_since(t) < interval => None,
            _ => Some(inner.look(now)),
        };
        if let Some(v) = verdict {
            inner.interval = match v {
                Verdict::Computing => (interval * 2).min(LONGEST_LOOK),
                Verdict::Unknown | Verdict::Blocked => FIRST_LOOK,
            };
        }
        let running = inner.workers.len().saturating_sub(inner.idle);
        if inner.idle > 0 && (running == 0 || verdict == Some(Verdict::Blocked)) {
            self.ready.notify_one();
        }
        Queued {
            waiting: inner.jobs.len(),
            backlog: backlog.max(0) as usize,
            oldest: inner.jobs.front().map(|(t, _)| *t),
            look_at: inner.last_look.map(|t| t + inner.interval),
        }
    }

    /// Jobs waiting that no idle worker is there to take, as of the last change (read
    /// without the lock: `max_queued_requests` counts these); negative while workers
    /// are idle. A worker that finishes one job and takes the next is not idle in
    /// between, so this may count a job about to be taken; never one that waits
    /// uncounted.
    pub fn backlog(&self) -> i64 {
        self.backlog.load(Relaxed)
    }

    /// Takes back the job of connection `id` if it is still waiting for a worker (its
    /// client has gone); `None` once a worker has it.
    pub fn withdraw(&self, id: u64) -> Option<Job> {
        let mut inner = self.lock();
        let at = inner
            .jobs
            .iter()
            .position(|(_, Job::Requests(r))| r.channel.id == id)?;
        let job = inner.jobs.remove(at).map(|(_, job)| job);
        self.backlog.store(inner.backlog(), Relaxed);
        job
    }

    /// Runs `f` on the job of connection `id` if it waits behind busy workers (more
    /// jobs wait than workers are idle), with the queue locked: no worker takes it, and
    /// so writes to its connection, until `f` returns. Says whether `f` ran.
    pub fn if_waiting(&self, id: u64, f: impl FnOnce(&Requests)) -> bool {
        let inner = self.lock();
        if inner.backlog() <= 0 {
            return false;
        }
        let Some((_, Job::Requests(r))) = inner
            .jobs
            .iter()
            .find(|(_, Job::Requests(r))| r.channel.id == id)
        else {
            return false;
        };
        f(r);
        true
    }

    /// Takes back every job queued at or before `before` (they waited too long, for
    /// `queue_timeout`), into `into`; returns when the oldest job left was queued.
    pub fn withdraw_older(&self, before: Instant, into: &mut Vec<Job>) -> Option<Instant> {
        let mut inner = self.lock();
        while inner.jobs.front().is_some_and(|(t, _)| *t <= before) {
            if let Some((_, job)) = inner.jobs.pop_front() {
                into.push(job);
            }
        }
        self.backlog.store(inner.backlog(), Relaxed);
        inner.jobs.front().map(|(t, _)| *t)
    }

    /// Takes a job if one is queued and no other worker computes, without waiting.
    pub fn try_pop(&self, worker: usize) -> Option<Job> {
        let mut inner = self.lock();
        inner.set_busy(worker, false);
        let job = inner.take(worker);
        if job.is_some() {
            self.backlog.store(inner.backlog(), Relaxed);
        }
        job
    }

    /// Waits for a job; `None` once the queue is stopping.
    pub fn pop_wait(&self, worker: usize) -> Option<Job> {
        let mut inner = self.lock();
        inner.set_busy(worker, false);
        loop {
            if inner.stopping {
                return None;
            }
            if let Some(job) = inner.take(worker) {
                self.backlog.store(inner.backlog(), Relaxed);
                return Some(job);
            }
            inner.idle += 1;
            self.backlog.store(inner.backlog(), Relaxed);
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
            inner.idle -= 1;
        }
    }

    /// Makes every worker return from `pop_wait`; returns the jobs never started.
    pub fn stop(&self) -> Vec<Job> {
        let mut inner = self.lock();
        inner.stopping = true;
        self.ready.notify_all();
        inner.jobs.drain(..).map(|(_, job)| job).collect()
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
    /// The HTTP/2 stream whose request this was (0: an HTTP/1 job, which hands the
    /// whole connection back).
    pub stream: u32,
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

    fn job(id: u64) -> Job {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock = socket2::Socket::from(std::os::fd::OwnedFd::from(a));
        let peer = crate::engine::channel::Peer::Unix;
        let channel = Arc::new(Channel::new(id, 0, 0, sock, peer, 1 << 20, 16 << 20));
        Job::Requests(Box::new(Requests {
            channel,
            requests: Vec::new(),
        }))
    }

    fn id(job: &Job) -> u64 {
        let Job::Requests(r) = job;
        r.channel.id
    }

    #[test]
    fn jobs_are_withdrawn_by_connection_and_by_age() {
        let q = JobQueue::default();
        let t0 = Instant::now();
        let queued = q.push_batch(&mut vec![job(1), job(2)], t0);
        assert_eq!((queued.waiting, queued.backlog), (2, 2));
        assert_eq!(queued.oldest, Some(t0));
        let t1 = t0 + Duration::from_millis(100);
        q.push_batch(&mut vec![job(3)], t1);
        assert_eq!(q.backlog(), 3);
        // A departed client's job, wherever it waits.
        assert_eq!(q.withdraw(2).as_ref().map(id), Some(2));
        assert!(q.withdraw(2).is_none());
        assert_eq!(q.backlog(), 2);
        // The jobs queued at or before t0 waited too long; the one of t1 is next.
        let mut old = Vec::new();
        assert_eq!(q.withdraw_older(t0, &mut old), Some(t1));
        assert_eq!(old.iter().map(id).collect::<Vec<_>>(), [1]);
        assert_eq!(q.backlog(), 1);
        // A worker takes the last: nothing waits.
        let w = q.add_worker();
        assert_eq!(q.try_pop(w).as_ref().map(id), Some(3));
        assert_eq!(q.backlog(), 0);
        assert_eq!(q.withdraw_older(t1, &mut old), None);
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
