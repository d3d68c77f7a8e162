//! The I/O event loop: one thread that accepts connections, reads, parses, receives
//! bodies whole, hands complete requests to the workers, and sends what their writes
//! left queued. It never touches Python.
//!
//! mio is edge-triggered: each connection is registered once for both directions, and the
//! loop remembers `readable` itself. While a worker has a connection's request, the loop
//! does not read from it (waitress's `channel_request_lookahead = 0`): pipelined requests
//! wait in the kernel, and responses go out in request order by construction.
//!
//! This file holds the types, [`EventLoop::run`] and the glue (closing a connection, the
//! panic guard). Each stage a connection's data runs through has a file of its own, an
//! `impl EventLoop` whose header numbers its steps:
//! 1. `accept`: taking connections from the listeners, at most `connection_limit`
//!    (then `proxy_header`: the PROXY protocol header of a peer that must send one);
//! 2. `read`: events, reads and flushes, up to bytes ready to become requests;
//! 3. `requests`: heads and bodies read (`http::reader`, `engine::body`), requests
//!    dispatched to the workers with those pipelined behind them;
//! 4. `completions`: a worker hands the connection back, and the next request is read.
//!
//! Beside them: `answer` (the responses the loop sends itself: refusals, and requests
//! given up on), `shed` (requests not run: overload, departed clients), `timers`
//! (deadlines, checked once a tick) and `shutdown` (stopping, gracefully or at once).
//!
//! The stages use this file (`super::`); this file uses none of them, only the leaf
//! modules holding the state it keeps: `accepting` (whether accepting is paused),
//! `idle` (the idle connections, longest-idle first, evicted at `connection_limit`) and
//! `control` (what other threads share with the loop about stopping). No import
//! circle: a type the loop holds never lives in a stage's file.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::Socket;

use crate::engine::access_log::Sink;
use crate::engine::balance::Balance;
use crate::engine::body::BodyReceiver;
use crate::engine::channel::Channel;
use crate::engine::config::Config;
use crate::engine::dispatch::{
    Completion, Completions, Job, JobQueue, LogLevel, LogQueue, LogRecord, Logger, Request,
};
use crate::engine::errors::panic_message;
use crate::engine::heartbeat::Heartbeat;
use crate::engine::stats::{Stats, StatsBlock};
use crate::engine::sys::SplicePipe;
use crate::engine::tls::TlsAcceptor;
use crate::http::reader::HeadReader;
use crate::http::request::RequestHead;

mod accept;
mod accepting;
mod answer;
mod completions;
mod control;
mod http2;
mod idle;
mod log_limit;
mod proxy_header;
mod read;
mod requests;
mod shed;
mod shutdown;
mod timers;

use accepting::Accepting;
pub use control::LoopHandle;
use control::{Control, Drain, DRAIN_CHECK};
use idle::IdleQueue;

const WAKER: Token = Token(usize::MAX);
/// The least time between two warnings about shed requests (`shed.rs`).
const SHED_LOG_EVERY: Duration = Duration::from_secs(1);
/// Listener `i` has token `LISTENER_BASE - i`; connections use slab keys from 0.
const LISTENER_BASE: usize = usize::MAX - 1;
/// How often timers are looked at (waitress's `asyncore_loop_timeout`).
const TICK: Duration = Duration::from_secs(1);
/// How long a closing connection may keep sending before we stop reading it.
const LINGER: Duration = Duration::from_secs(2);
/// Size of the loop's read buffer (one per loop). Large request bodies arrive in reads
/// of this size, each then written to the body's buffer or file: a larger buffer takes
/// fewer system calls per body, and small reads touch only what arrived.
const READ_SIZE: usize = 256 * 1024;

/// A connection's mio token: its slab slot in the low 32 bits and 31 bits of its id
/// above, so that an event or a retry for a closed connection can never reach a new one
/// that reuses the slot. (Listener and waker tokens sit at the top of the range.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(usize);

// Keys pack two 32-bit fields into a token.
const _: () = assert!(usize::BITS == 64);

impl Key {
    fn new(slot: usize, id: u64) -> Key {
        Key((slot & 0xffff_ffff) | (((id & 0x7fff_ffff) as usize) << 32))
    }

    fn slot(self) -> usize {
        self.0 & 0xffff_ffff
    }
}

pub struct Listener {
    pub sock: Socket,
    /// Set on a TLS listener: its connections start with a handshake.
    pub tls: Option<Arc<TlsAcceptor>>,
}

enum State {
    /// Waiting for a request head, read by `reader`; `started` is when its first byte
    /// arrived.
    Head {
        reader: HeadReader,
        started: Option<Instant>,
    },
    /// Receiving the body of `head`: `received` bytes of it (as sent) since `started`.
    Body {
        head: Box<RequestHead>,
        body: BodyReceiver,
        started: Instant,
        received: u64,
    },
    /// A worker has the request.
    Busy,
    /// Send what is queued, then close.
    Closing,
    /// Our side is shut down; read and discard until the peer closes or the deadline
    /// passes, so that an RST provoked by unread data cannot destroy the last response.
    Lingering { deadline: Instant },
    /// Speaking HTTP/2 (`http2.rs`): streams are received and run side by side.
    H2(Box<http2::H2State>),
}

impl State {
    /// Waiting for a request head (the server's reader, which refuses garbage at once).
    fn head(started: Option<Instant>) -> State {
        State::Head {
            reader: HeadReader::eager(),
            started,
        }
    }
}

struct Conn {
    channel: Arc<Channel>,
    rbuf: Vec<u8>,
    state: State,
    /// Pipelined requests a worker handed back because the client lagged behind its
    /// queued output (`Completion::rest`); dispatched before anything else is read.
    held: Vec<Request>,
    /// Data or EOF may be waiting in the kernel (edge seen, not yet read to EAGAIN).
    readable: bool,
    /// The peer has shut down its side (EPOLLRDHUP): read to the end, not just to a
    /// short read.
    read_closed: bool,
    last_activity: Instant,
    /// No request has been received on it yet (a graceful stop waits a little for the
    /// first one; it closes idle keep-alive connections at once).
    fresh: bool,
    /// When the first byte of the request being received arrived.
    received: Instant,
    /// The peer must send a PROXY protocol header, which has not arrived yet
    /// (`proxy_header.rs`): nothing else is read until it has.
    proxy_header: bool,
    /// The number of its entry in the idle queue (`idle.rs`), 0 for none: it may have
    /// become idle then (an entry is checked before the connection is evicted).
    idle: u64,
    /// Its first bytes have told HTTP/2 from HTTP/1 (`http2.rs`; set from the start
    /// when `http2` is off).
    sniffed: bool,
}

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    cfg: Arc<Config>,
    jobs: Arc<JobQueue>,
    logs: Arc<LogQueue>,
    completions: Arc<Completions>,
    control: Arc<Control>,
    /// A graceful stop is in progress.
    draining: Option<Drain>,
    /// Set when a master process supervises this one.
    heartbeat: Option<Heartbeat>,
    /// Under a master: shares connections evenly with the other workers.
    balance: Option<Balance>,
    scratch: Vec<u8>,
    /// Carries spilled bodies from plain sockets to their files (`None` if the system
    /// would not give us a pipe: they are read through `scratch` then).
    pipe: Option<SplicePipe>,
    batch: Vec<Job>,
    done: Vec<Completion>,
    next_id: u64,
    now: Instant,
    next_sweep: Instant,
    accepting: Accepting,
    /// Connections that may be idle, longest-idle first: at `connection_limit` the
    /// one idle longest is closed to admit a new one.
    idle: IdleQueue,
    /// A connection was marked awaited this round: look at the completions again.
    recheck: bool,
    /// Jobs wait for a worker: when the queue wants to look at the busy workers again.
    look_at: Option<Instant>,
    /// Connections with input left unread after their turn.
    again: Vec<Key>,
    next_queue_warning: Instant,
    /// Since when jobs have been waiting without a break.
    queue_busy_since: Option<Instant>,
    /// The queue was said to back up: since when, and the most jobs waiting since.
    queue_warned: Option<(Instant, usize)>,
    /// Failed TLS handshakes, said at most once a minute.
    tls_failures: crate::engine::tls::HandshakeFailures,
    /// `max_queued_requests` jobs waited at the end of the last round (`/readyz` 503).
    queue_was_full: bool,
    /// When the oldest job waiting reaches `queue_timeout` (set only with it).
    shed_at: Option<Instant>,
    /// The warnings about shed requests, rate-limited.
    shed_log: log_limit::LogLimit<{ crate::engine::stats::SHED_REASONS.len() }>,
    stats: Arc<Stats>,
    /// The access log, for the requests the loop answers itself.
    access: Option<Sink>,
}

impl EventLoop {
    pub fn new(
        listeners: Vec<Listener>,
        cfg: Arc<Config>,
        jobs: Arc<JobQueue>,
        stats: Arc<Stats>,
        logs: Arc<LogQueue>,
    ) -> io::Result<(EventLoop, LoopHandle, Arc<Completions>)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let completions = Arc::new(Completions::new(waker));
        for (i, l) in listeners.iter().enumerate() {
            l.sock.set_nonblocking(true)?;
            poll.registry().register(
                &mut SourceFd(&l.sock.as_raw_fd()),
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
        }
        let control = Arc::new(Control::new());
        let now = Instant::now();
        let handle = LoopHandle {
            control: control.clone(),
            completions: completions.clone(),
        };
        let ev = EventLoop {
            poll,
            listeners,
            conns: Slab::with_capacity(cfg.connection_limit.min(4096)),
            next_sweep: now + cfg.cleanup_interval,
            cfg,
            jobs,
            logs,
            completions: completions.clone(),
            control,
            draining: None,
            heartbeat: None,
            balance: None,
            scratch: vec![0; READ_SIZE],
            // Made here, in the process that serves (after any fork), so that no other
            // process can put its bytes in it.
            pipe: SplicePipe::new().ok(),
            batch: Vec::with_capacity(64),
            done: Vec::with_capacity(64),
            next_id: 0,
            now,
            accepting: Accepting::new(now),
            idle: IdleQueue::default(),
            recheck: false,
            look_at: None,
            again: Vec::new(),
            next_queue_warning: now,
            queue_busy_since: None,
            queue_warned: None,
            tls_failures: Default::default(),
            queue_was_full: false,
            shed_at: None,
            shed_log: log_limit::LogLimit::new(SHED_LOG_EVERY),
            stats,
            access: None,
        };
        Ok((ev, handle, completions))
    }

    /// Reports to a master process through `hb` (see `engine::heartbeat`), and shares
    /// connections evenly with the master's other workers (see `engine::balance`).
    pub fn attach_heartbeat(&mut self, hb: Heartbeat) {
        self.heartbeat = Some(hb);
        self.balance = Balance::new();
    }

    /// Gives the requests the loop answers itself (refused, timed out) their access log
    /// lines, as the workers give theirs to the others.
    pub fn attach_access_log(&mut self, sink: Sink) {
        self.access = Some(sink);
    }

    /// Runs until stopped through a [`LoopHandle`]; returns how many requests the stop
    /// abandoned (still running at the shutdown timeout, or at an immediate stop).
    pub fn run(mut self) -> io::Result<usize> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = self.now + TICK;
        if let Some(hb) = &mut self.heartbeat {
            hb.ready(self.now);
        }
        loop {
            if let Some(abandoned) = self.check_stop() {
                return Ok(abandoned);
            }
            let mut timeout = next_tick.saturating_duration_since(Instant::now());
            if self.draining.is_some() {
                timeout = timeout.min(DRAIN_CHECK);
            }
            if let Some(at) = self.balance.as_ref().and_then(|b| b.retry_at()) {
                timeout = timeout.min(at.saturating_duration_since(Instant::now()));
            }
            if let Some(at) = self.look_at {
                // Jobs are waiting: come back for the queue to add a worker if the busy
                // ones have blocked.
                timeout = timeout.min(at.saturating_duration_since(Instant::now()));
            }
            if let Some(at) = self.shed_at {
                // A job will have waited queue_timeout: answer it on time.
                timeout = timeout.min(at.saturating_duration_since(Instant::now()));
            }
            if !self.again.is_empty() {
                timeout = Duration::ZERO;
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            // Completions arrive without a wake-up unless the loop asked for one.
            self.take_completions();
            for ev in events.iter() {
                let token = ev.token();
                let slot = self.live(Key(token.0));
                self.guarded(slot, |lp| match token {
                    WAKER => lp.take_completions(),
                    Token(t) if t > LISTENER_BASE - lp.listeners.len() => {
                        lp.accept(LISTENER_BASE - t)
                    }
                    Token(t) => lp.conn_event(
                        Key(t),
                        ev.is_readable() || ev.is_read_closed(),
                        ev.is_read_closed(),
                        ev.is_writable(),
                        ev.is_error() || ev.is_write_closed(),
                    ),
                });
            }
            for key in std::mem::take(&mut self.again) {
                self.guarded(self.live(key), |lp| {
                    if let Some(token) = lp.live(key) {
                        lp.drive(token);
                    }
                });
            }
            if self.recheck {
                self.recheck = false;
                self.take_completions();
            }
            if let Some(b) = &mut self.balance {
                if b.retry_due(self.now) {
                    self.accepting.retry();
                }
            }
            if self.accepting.take_due() {
                // Accepting waits for the end of the round, so that no slot freed during
                // it is handed to a new connection while events for the old one remain.
                self.guarded(None, |lp| lp.resume_accepting());
            }
            if self.shed_at.is_some_and(|at| self.now >= at) {
                self.guarded(None, |lp| lp.shed_expired());
            }
            let queued = self.jobs.push_batch(&mut self.batch, self.now);
            self.stats.queue_depth.store(queued.waiting as u64, Relaxed);
            self.look_at = queued.look_at;
            self.after_push(&queued);
            self.warn_if_queue_backs_up(queued.waiting);
            if self.now >= next_tick {
                self.guarded(None, |lp| lp.tick());
                next_tick = self.now + TICK;
            }
            if let Some(hb) = &mut self.heartbeat {
                hb.turn(self.now);
            }
            if let Some(b) = &self.balance {
                b.turned();
            }
        }
    }

    /// A line for the server's log.
    fn log(&mut self, level: LogLevel, message: String) {
        self.logs.push(LogRecord {
            level,
            message,
            logger: Logger::Main,
        });
    }

    /// Runs `f`; a panic in it costs only the connection `token` (closed and logged),
    /// never the loop, let alone the process.
    fn guarded(&mut self, token: Option<usize>, f: impl FnOnce(&mut Self)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if let Err(panic) = result {
            // The panic may have struck while a buffer was lent out.
            if self.scratch.len() != READ_SIZE {
                self.scratch = vec![0; READ_SIZE];
            }
            // Or while spliced bytes were in the pipe, which must reach no other body.
            self.pipe = SplicePipe::new().ok();
            let what = panic_message(&*panic);
            let closed = token.is_some_and(|t| self.conns.contains(t));
            if let (true, Some(t)) = (closed, token) {
                self.close(t);
            }
            self.log(
                LogLevel::Error,
                format!(
                    "internal error in the I/O loop{}: {what}",
                    if closed { " (connection closed)" } else { "" }
                ),
            );
        }
    }

    /// The slab slot `key` names, if its connection is still the one it was made for.
    fn live(&self, key: Key) -> Option<usize> {
        let conn = self.conns.get(key.slot())?;
        (Key::new(key.slot(), conn.channel.id) == key).then_some(key.slot())
    }

    /// Once nothing is queued: shut our side down and linger, or close at once.
    /// The caller reads what may be waiting (`drive`), unless it is `drive` itself.
    fn finish_close(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.channel.has_pending_output() {
            return;
        }
        if conn.read_closed || conn.channel.is_closed() {
            self.close(token);
            return;
        }
        conn.channel.shutdown_write();
        conn.state = State::Lingering {
            deadline: self.now + LINGER,
        };
        // Not `drive` from here: this may run inside `drive` (a rejected request), whose
        // loop goes on to read in the new state; other callers drive afterwards.
        conn.rbuf = Vec::new();
    }

    /// Closes the connection now, whatever it was doing.
    fn close(&mut self, token: usize) {
        if !self.conns.contains(token) {
            return;
        }
        let conn = self.conns.remove(token);
        StatsBlock::dec(&self.stats.open_connections);
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&conn.channel.sock.as_raw_fd()));
        if matches!(conn.state, State::Head { .. }) && !conn.channel.is_closed() {
            // Between requests (an idle timeout): a TLS client is told the end
            // (close_notify) rather than left to guess at a truncation.
            conn.channel.close_notify();
        }
        conn.channel.mark_closed();
        if let State::H2(h2) = &conn.state {
            // Workers waiting for room on its streams must not wait any longer.
            h2.conn.closed();
        }
        // Python may still hold the channel (an environ kept in a reference cycle): the
        // client must see the end now, not when the garbage collector runs.
        let _ = conn.channel.sock.shutdown(std::net::Shutdown::Both);
        if let Some(b) = &self.balance {
            b.publish(self.conns.len());
        }
        if self
            .accepting
            .room(self.conns.len(), self.cfg.connection_limit)
        {
            self.accepting.retry();
        }
    }
}

/// Asks for a wake-up when the running request on `channel` completes, and has the loop
/// look at the completions once more this round (one may have slipped in unannounced).
fn await_completion(channel: &Channel, recheck: &mut bool) {
    if !channel.is_awaited() {
        channel.set_awaited(true);
        std::sync::atomic::fence(Ordering::SeqCst);
        *recheck = true;
    }
}

/// Whether the request in progress on `channel` is its connection's last because a
/// graceful stop has begun. The one source of that rule: the stop marks every open
/// connection (`shutdown`) and each one accepted after it began (`accept`); the loop reads
/// the mark here (no pipelined request is taken behind this one, and the connection
/// closes once it is answered), and the worker reads the same mark
/// (`Channel::is_last`) to say `Connection: close` in the response.
fn last_request(channel: &Channel) -> bool {
    channel.is_last()
}
