//! The I/O event loop: one thread that accepts connections, reads, parses, receives
//! bodies whole, hands complete requests to the workers, and sends what their writes
//! left queued. It never touches Python.
//!
//! mio is edge-triggered: each connection is registered once for both directions, and the
//! loop remembers `readable` itself. While a worker has a connection's request, the loop
//! does not read from it (waitress's `channel_request_lookahead = 0`): pipelined requests
//! wait in the kernel, and responses go out in request order by construction.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{SockAddr, Socket};

use crate::engine::access_log::{Entry, Seen, Sink};
use crate::engine::balance::Balance;
use crate::engine::body::{Body, BodyReceiver, SplicePipe};
use crate::engine::channel::{Channel, Peer, WhenFull};
use crate::engine::config::Config;
use crate::engine::dispatch::{
    Completion, Completions, Job, JobQueue, LogLevel, LogQueue, LogRecord, Logger, Request,
    Requests,
};
use crate::engine::heartbeat::Heartbeat;
use crate::engine::outbuf::Flushed;
use crate::engine::stats::{method_index, Stats, StatsBlock};
use crate::engine::tls::TlsAcceptor;
use crate::engine::transport::{is_not_tls, TlsSession};
use crate::http::request::{
    answer_version, parse_head, BodyKind, RequestError, RequestHead, Version,
};
use crate::http::response::error_response;
use crate::http::scan::find_head_end;

mod shutdown;
pub use shutdown::LoopHandle;
use shutdown::{Control, Drain, DRAIN_CHECK};

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`; connections use slab keys from 0.
const LISTENER_BASE: usize = usize::MAX - 1;
/// How often timers are looked at (waitress's `asyncore_loop_timeout`).
const TICK: Duration = Duration::from_secs(1);
/// How long a closing connection may keep sending before we stop reading it.
const LINGER: Duration = Duration::from_secs(2);
/// Size of the loop's read buffer (one per loop). Large request bodies arrive in reads
/// of this size, each then written to the body's buffer or file: 256 KiB takes a
/// quarter of the system calls 64 KiB did, and small reads touch only what arrived.
const READ_SIZE: usize = 256 * 1024;
/// How long the queue must stay non-empty before a "Task queue depth" warning, and the
/// least time between two of them.
const QUEUE_WARNING_INTERVAL: Duration = Duration::from_secs(1);
/// Most requests pipelined behind one that go to the same worker in one job.
const MAX_PIPELINED: usize = 64;
/// Reads from one connection before the loop turns to the others (up to 1 MiB).
const READS_PER_TURN: usize = 4;
/// Least time between two "reached the connection limit" warnings: a server held at
/// its limit on purpose must not flood its log.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// Longest grace period before a body must arrive at `min_request_body_rate` (Apache's
/// mod_reqtimeout default is 20 s); a shorter `channel_timeout` shortens it.
const BODY_GRACE: Duration = Duration::from_secs(20);

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
    /// Waiting for a request head; `scanned` bytes of the buffer hold no terminator;
    /// `started` is when its first byte arrived.
    Head {
        scanned: usize,
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
    accept_paused: bool,
    /// A connection was marked awaited this round: look at the completions again.
    recheck: bool,
    /// Jobs wait for a worker: when the queue wants to look at the busy workers again.
    look_at: Option<Instant>,
    /// Connections with input left unread after their turn.
    again: Vec<Key>,
    /// A connection closed below connection_limit: accept at the end of the round.
    accept_due: bool,
    next_queue_warning: Instant,
    /// Since when jobs have been waiting without a break.
    queue_busy_since: Option<Instant>,
    stats: Arc<Stats>,
    /// Accepting is paused at connection_limit (not for an accept error).
    at_limit: bool,
    /// When reaching the limit may be logged again, and whether this time it was.
    next_limit_warning: Instant,
    limit_warned: bool,
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
            accept_paused: false,
            recheck: false,
            look_at: None,
            again: Vec::new(),
            accept_due: false,
            next_queue_warning: now,
            queue_busy_since: None,
            stats,
            at_limit: false,
            next_limit_warning: now,
            limit_warned: false,
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
                    self.accept_due = true;
                }
            }
            if self.accept_due {
                // Accepting waits for the end of the round, so that no slot freed during
                // it is handed to a new connection while events for the old one remain.
                self.accept_due = false;
                self.guarded(None, |lp| lp.resume_accepting());
            }
            let queued = self.jobs.push_batch(&mut self.batch, self.now);
            self.stats.queue_depth.store(queued.waiting as u64, Relaxed);
            self.look_at = queued.look_at;
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

    fn log(&mut self, level: LogLevel, message: String) {
        self.logs.push(LogRecord {
            level,
            message,
            logger: Logger::Main,
        });
    }

    /// Like waitress's `maitre.queue` logger: requests wait for a free thread. Said when
    /// the queue has not been empty for a whole second, at most once a second, so that a
    /// busy but keeping-up server stays quiet.
    fn warn_if_queue_backs_up(&mut self, waiting: usize) {
        if waiting == 0 {
            self.queue_busy_since = None;
            return;
        }
        let since = *self.queue_busy_since.get_or_insert(self.now);
        if self.now.duration_since(since) >= QUEUE_WARNING_INTERVAL
            && self.now >= self.next_queue_warning
        {
            self.next_queue_warning = self.now + QUEUE_WARNING_INTERVAL;
            self.logs.push(LogRecord {
                level: LogLevel::Warning,
                message: format!("Task queue depth is {waiting}"),
                logger: Logger::Queue,
            });
        }
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

    fn accept(&mut self, li: usize) {
        loop {
            if self.conns.len() >= self.cfg.connection_limit {
                // Resumed by `tick` or by a close; the kernel backlog holds the rest.
                self.accept_paused = true;
                if !self.at_limit {
                    self.at_limit = true;
                    self.limit_warned = self.now >= self.next_limit_warning;
                    if self.limit_warned {
                        self.next_limit_warning = self.now + LIMIT_WARNING_INTERVAL;
                        self.log(
                            LogLevel::Warning,
                            "total open connections reached the connection limit, \
                             no longer accepting new connections"
                                .into(),
                        );
                    }
                }
                return;
            }
            let conns = self.conns.len();
            if let Some(b) = &mut self.balance {
                if !b.take_now(conns, self.now) {
                    return;
                }
            }
            match self.listeners[li].sock.accept() {
                Ok((sock, addr)) => {
                    self.stats.accepts.fetch_add(1, Relaxed);
                    if let Err(e) = self.register(li, sock, addr) {
                        if self.cfg.log_socket_errors {
                            self.log(
                                LogLevel::Warning,
                                format!("could not set up an accepted connection: {e}"),
                            );
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(b) = &mut self.balance {
                        b.queue_empty();
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                    self.stats.accept_errors.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    self.stats.accept_errors.fetch_add(1, Relaxed);
                    // Out of descriptors or memory: retry on the next tick rather than spin.
                    if self.cfg.log_socket_errors {
                        self.log(LogLevel::Warning, format!("accept failed: {e}"));
                    }
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    fn register(&mut self, li: usize, sock: Socket, addr: SockAddr) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        let peer = match addr.as_socket() {
            Some(a) => {
                // Responses are written whole; Nagle would only delay the last segment.
                sock.set_tcp_nodelay(true)?;
                Peer::inet(a)
            }
            None => Peer::Unix,
        };
        let tls = match &self.listeners[li].tls {
            None => None,
            Some(acceptor) => Some(TlsSession::new(
                acceptor.session().map_err(io::Error::other)?,
            )),
        };
        // The handshake and the first request head must together arrive within
        // channel_timeout, as a head alone must (a slow handshaker is cut like a slowloris).
        let started = tls.as_ref().map(|_| self.now);
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        self.next_id += 1;
        self.poll.registry().register(
            &mut SourceFd(&sock.as_raw_fd()),
            Token(Key::new(token, self.next_id).0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let channel = Arc::new(
            Channel::new(
                self.next_id,
                token,
                li,
                sock,
                peer,
                self.cfg.outbuf_overflow,
                self.cfg.outbuf_high_watermark,
            )
            .with_tls(tls),
        );
        if self.draining.is_some() {
            // Taken from the kernel's queue as the stop began: one request, then close.
            channel.set_last();
        }
        entry.insert(Conn {
            channel,
            rbuf: Vec::new(),
            state: State::Head {
                scanned: 0,
                started,
            },
            held: Vec::new(),
            // Data often arrives with the connection; the first edge may predate the
            // registration.
            readable: true,
            read_closed: false,
            last_activity: self.now,
            fresh: true,
            received: self.now,
        });
        self.stats.open_connections.fetch_add(1, Relaxed);
        self.drive(token);
        Ok(())
    }

    /// The slab slot `key` names, if its connection is still the one it was made for.
    fn live(&self, key: Key) -> Option<usize> {
        let conn = self.conns.get(key.slot())?;
        (Key::new(key.slot(), conn.channel.id) == key).then_some(key.slot())
    }

    fn conn_event(
        &mut self,
        key: Key,
        readable: bool,
        read_closed: bool,
        writable: bool,
        error: bool,
    ) {
        let Some(token) = self.live(key) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if readable {
            conn.readable = true;
        }
        if matches!(conn.state, State::Busy) && (readable || error) {
            await_completion(&conn.channel, &mut self.recheck);
        }
        if read_closed {
            conn.read_closed = true;
            if matches!(conn.state, State::Busy) && self.cfg.channel_request_lookahead > 0 {
                // With lookahead the application may ask whether the client is still there.
                conn.channel.mark_closed();
            }
        }
        if error {
            conn.channel.mark_closed();
            if !matches!(conn.state, State::Busy) {
                self.close(token);
            }
            return;
        }
        if writable {
            self.flush(token);
        }
        if readable {
            self.drive(token);
        }
    }

    fn flush(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.channel.flush() {
            Ok((Flushed::All, progressed)) => {
                conn.last_activity = self.now;
                if matches!(conn.state, State::Closing) {
                    self.finish_close(token);
                    self.drive(token);
                } else if progressed {
                    self.resume_reading(token);
                }
            }
            Ok((Flushed::Blocked, progressed)) => {
                if progressed {
                    conn.last_activity = self.now;
                    self.resume_reading(token);
                }
            }
            Err(e) => {
                self.stats.socket_errors.fetch_add(1, Relaxed);
                let busy = matches!(conn.state, State::Busy);
                if self.cfg.log_socket_errors && !is_disconnect(&e) {
                    let msg = format!("error writing to {}: {e}", peer_text(&conn.channel.peer));
                    self.log(LogLevel::Warning, msg);
                }
                if !busy {
                    self.close(token);
                }
            }
        }
    }

    /// Requests wait while more output is queued than the high watermark (`drive`,
    /// `consume`): once the client has read some, take them up again.
    fn resume_reading(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !matches!(conn.state, State::Head { .. }) || conn.channel.over_watermark() {
            return;
        }
        if !conn.held.is_empty() {
            let requests = std::mem::take(&mut conn.held);
            self.stats
                .in_flight
                .fetch_add(requests.len() as u64, Relaxed);
            conn.state = State::Busy;
            conn.channel.set_awaited(false);
            let channel = conn.channel.clone();
            self.batch
                .push(Job::Requests(Box::new(Requests { channel, requests })));
            return;
        }
        self.consume_buffered(token);
        self.drive(token);
    }

    /// Reads and parses until the connection has to wait for the kernel or for a worker.
    fn drive(&mut self, token: usize) {
        let mut reads = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            let lingering = match conn.state {
                // More of the previous responses is queued than the high watermark: the
                // next request waits in the kernel until the client has read some
                // (`flush`), so that a client that pipelines requests for big responses
                // and reads none cannot make us queue without bound.
                State::Head { .. } if !conn.held.is_empty() || conn.channel.over_watermark() => {
                    return
                }
                State::Head { .. } | State::Body { .. } => false,
                State::Lingering { .. } => true,
                State::Busy | State::Closing => return,
            };
            if !conn.readable {
                return;
            }
            if reads == READS_PER_TURN {
                // A fast sender must not monopolise the loop: finish next round (the
                // edge was consumed, so nothing else would bring us back).
                let key = Key::new(token, conn.channel.id);
                self.again.push(key);
                return;
            }
            reads += 1;
            // The rest of a large Content-Length body skips our buffer (`SplicePipe`),
            // unless bytes of it already wait in `rbuf`.
            let splice = match (&conn.state, &self.pipe) {
                (State::Body { body, .. }, Some(_))
                    if conn.rbuf.is_empty() && conn.channel.tls().is_none() =>
                {
                    body.spliceable()
                }
                _ => None,
            };
            let got = match (splice, &self.pipe) {
                (Some(max), Some(pipe)) => pipe.fill_from(conn.channel.sock.as_raw_fd(), max),
                _ => conn.channel.read(&mut self.scratch),
            };
            let n = match got {
                Ok(0) => {
                    // The peer is done. Whatever it left unfinished cannot be answered.
                    self.close(token);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_not_tls(&e) => {
                    // As nginx does: say so in plain HTTP, then close.
                    let e = RequestError::BadRequest(e.to_string());
                    self.reject(token, e, Version::Http10, 0, Seen::Line(Vec::new()));
                    continue;
                }
                Err(e) if conn.channel.tls().is_some_and(|t| t.is_handshaking()) => {
                    if self.cfg.log_socket_errors && !is_disconnect(&e) {
                        let msg = format!(
                            "TLS handshake with {} failed: {e}",
                            peer_text(&conn.channel.peer)
                        );
                        self.log(LogLevel::Info, msg);
                    }
                    self.close(token);
                    return;
                }
                Err(e) => {
                    self.stats.socket_errors.fetch_add(1, Relaxed);
                    if self.cfg.log_socket_errors && !is_disconnect(&e) {
                        let msg =
                            format!("error reading from {}: {e}", peer_text(&conn.channel.peer));
                        self.log(LogLevel::Warning, msg);
                    }
                    self.close(token);
                    return;
                }
            };
            if n < self.scratch.len() && !conn.read_closed && splice.is_none() {
                // A short read drained the socket; the next arrival raises a new edge.
                // (A short splice may have filled the pipe: the next one tells.)
                conn.readable = false;
            }
            if lingering {
                continue;
            }
            self.stats.bytes_read.fetch_add(n as u64, Relaxed);
            conn.last_activity = self.now;
            if splice.is_some() {
                self.take_spliced(token, n);
            } else if conn.rbuf.is_empty() {
                let scratch = std::mem::take(&mut self.scratch);
                let used = self.consume(token, &scratch[..n]);
                if used < n {
                    if let Some(conn) = self.conns.get_mut(token) {
                        conn.rbuf.extend_from_slice(&scratch[used..n]);
                        if matches!(conn.state, State::Busy) {
                            await_completion(&conn.channel, &mut self.recheck);
                        }
                    }
                }
                self.scratch = scratch;
            } else {
                conn.rbuf.extend_from_slice(&self.scratch[..n]);
                self.consume_buffered(token);
            }
        }
    }

    /// Processes bytes held in the connection's buffer (pipelined requests).
    fn consume_buffered(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.rbuf.is_empty() {
            return;
        }
        let mut rbuf = std::mem::take(&mut conn.rbuf);
        let used = self.consume(token, &rbuf);
        if let Some(conn) = self.conns.get_mut(token) {
            rbuf.drain(..used);
            conn.rbuf = rbuf;
            if !conn.rbuf.is_empty() && matches!(conn.state, State::Busy) {
                await_completion(&conn.channel, &mut self.recheck);
            }
        }
    }

    /// Runs the request state machine over `input`; returns the bytes used. Stops after a
    /// request is dispatched: the rest waits until the worker is done.
    fn consume(&mut self, token: usize, input: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return input.len();
            };
            match &mut conn.state {
                State::Head { scanned, started } => {
                    let buf = &input[pos..];
                    if buf.is_empty() || !conn.held.is_empty() || conn.channel.over_watermark() {
                        return pos;
                    }
                    if started.is_none() {
                        *started = Some(self.now);
                        conn.received = self.now;
                    }
                    match find_head_end(buf, *scanned) {
                        Err(e) => {
                            let version = answer_version(buf, &e);
                            let seen = Seen::line_of(buf);
                            return self.reject(token, e, version, input.len(), seen);
                        }
                        Ok(None) => {
                            // The first bytes of a head are checked at once, so that a TLS
                            // handshake or other garbage is refused now rather than at a
                            // timeout; later reads only look for the end (linear time).
                            if *scanned == 0 {
                                if let Err(e) = parse_head(buf, &self.cfg.limits) {
                                    let version = answer_version(buf, &e);
                                    let seen = Seen::line_of(buf);
                                    return self.reject(token, e, version, input.len(), seen);
                                }
                            }
                            if buf.len() > self.cfg.limits.max_header_size {
                                let e = RequestError::HeaderTooLarge(format!(
                                    "exceeds max_header of {}",
                                    self.cfg.limits.max_header_size
                                ));
                                let seen = Seen::line_of(buf);
                                return self.reject(token, e, Version::Http10, input.len(), seen);
                            }
                            *scanned = buf.len();
                            return pos;
                        }
                        Ok(Some(_)) => {}
                    }
                    match parse_head(buf, &self.cfg.limits) {
                        Err(e) => {
                            // In the request's own version when its request line was
                            // understood (an HTTP/1.1 client expects HTTP/1.1).
                            let version = answer_version(buf, &e);
                            let seen = Seen::line_of(buf);
                            return self.reject(token, e, version, input.len(), seen);
                        }
                        Ok(None) => {
                            *scanned = buf.len();
                            return pos;
                        }
                        Ok(Some((head, used))) => {
                            pos += used;
                            match head.body {
                                BodyKind::Empty => {
                                    return pos
                                        + self.dispatch(token, head, Body::empty(), &input[pos..]);
                                }
                                BodyKind::Length(len) => {
                                    let continue_now = head.expect_continue;
                                    conn.state = State::Body {
                                        head: Box::new(head),
                                        body: BodyReceiver::with_length(
                                            len,
                                            self.cfg.inbuf_overflow,
                                        ),
                                        started: self.now,
                                        received: 0,
                                    };
                                    if continue_now {
                                        self.send_continue(token);
                                    }
                                }
                                BodyKind::Chunked => {
                                    let continue_now = head.expect_continue;
                                    let body = BodyReceiver::chunked(
                                        self.cfg.inbuf_overflow,
                                        self.cfg.limits.max_body_size,
                                    );
                                    conn.state = State::Body {
                                        head: Box::new(head),
                                        body,
                                        started: self.now,
                                        received: 0,
                                    };
                                    if continue_now {
                                        self.send_continue(token);
                                    }
                                }
                            }
                        }
                    }
                }
                State::Body {
                    head,
                    body,
                    received,
                    ..
                } => {
                    let buf = &input[pos..];
                    if buf.is_empty() {
                        return pos;
                    }
                    let version = head.version;
                    match body.feed(buf) {
                        Err(e) => {
                            let seen = self.take_head(token);
                            return self.reject(token, e, version, input.len(), seen);
                        }
                        Ok((used, false)) => {
                            *received += used as u64;
                            return pos + used;
                        }
                        Ok((used, true)) => {
                            pos += used;
                            return match self.body_complete(token, &input[pos..]) {
                                Some(took) => pos + took,
                                None => input.len(),
                            };
                        }
                    }
                }
                State::Busy => return pos,
                State::Closing | State::Lingering { .. } => return input.len(),
            }
        }
    }

    /// Stores the `n` body bytes `drive` spliced into the pipe (which leaves it empty).
    fn take_spliced(&mut self, token: usize, n: usize) {
        let (Some(conn), Some(pipe)) = (self.conns.get_mut(token), &self.pipe) else {
            return;
        };
        let State::Body {
            head,
            body,
            received,
            ..
        } = &mut conn.state
        else {
            unreachable!("spliced outside a body")
        };
        match body.take_from_pipe(pipe, n) {
            Err(e) => {
                let version = head.version;
                let seen = Seen::Head((**head).clone());
                self.reject(token, e, version, 0, seen);
            }
            Ok(false) => *received += n as u64,
            Ok(true) => {
                self.body_complete(token, &[]);
                // The splice stopped at the body's end: what the client sent after it
                // (a pipelined request) is still in the socket, with no new edge to
                // announce it. Have the worker's completion wake the loop to read it,
                // as the read path does for bytes left in `rbuf`.
                if let Some(conn) = self.conns.get(token) {
                    if conn.readable && matches!(conn.state, State::Busy) {
                        await_completion(&conn.channel, &mut self.recheck);
                    }
                }
            }
        }
    }

    /// Dispatches the request whose body has just been received whole, with the complete
    /// requests pipelined behind it in `rest`; returns the bytes of `rest` those took, or
    /// `None` when the body could not be stored (answered, and the connection closing).
    fn body_complete(&mut self, token: usize, rest: &[u8]) -> Option<usize> {
        let conn = self.conns.get_mut(token)?;
        let State::Body { head, body, .. } = std::mem::replace(&mut conn.state, State::Busy) else {
            unreachable!("no body to complete")
        };
        match body.finish() {
            Ok(body) => Some(self.dispatch(token, *head, body, rest)),
            Err(e) => {
                let e = RequestError::BodyTooLarge(format!("cannot store the request body: {e}"));
                let version = head.version;
                self.reject(token, e, version, 0, Seen::Head(*head));
                None
            }
        }
    }

    fn send_continue(&mut self, token: usize) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if conn
            .channel
            .send(&[b"HTTP/1.1 100 Continue\r\n\r\n"], WhenFull::Queue)
            .is_err()
        {
            self.close(token);
        }
    }

    /// Hands a request to the workers, with the complete requests pipelined behind it in
    /// `rest`; returns the bytes of `rest` those took.
    fn dispatch(&mut self, token: usize, head: RequestHead, body: Body, rest: &[u8]) -> usize {
        let mut requests = Vec::with_capacity(1);
        // Stopping: this request is the connection's last, whatever follows it.
        let more = head.keep_alive && self.draining.is_none();
        let received = self.conns.get(token).map_or(self.now, |c| c.received);
        if matches!(body, Body::File(_)) {
            self.stats.body_spills.fetch_add(1, Relaxed);
        }
        requests.push(Request {
            head,
            body,
            received,
        });
        let used = if more {
            self.pipelined(rest, &mut requests)
        } else {
            0
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return used;
        };
        conn.state = State::Busy;
        conn.fresh = false;
        self.stats
            .in_flight
            .fetch_add(requests.len() as u64, Relaxed);
        // Without further input the loop has nothing to do for this connection when the
        // requests are done; `conn_event` and `drive` say otherwise when there is some.
        conn.channel.set_awaited(false);
        let channel = conn.channel.clone();
        self.batch
            .push(Job::Requests(Box::new(Requests { channel, requests })));
        used
    }

    /// Takes the requests of `rest` that are complete (head, and body if it has a
    /// Content-Length) up to the first that is not, or that closes the connection.
    /// Anything else (a partial request, a chunked body, an error) is left for the
    /// normal path once these are done, so an error is still answered in its turn.
    fn pipelined(&self, rest: &[u8], out: &mut Vec<Request>) -> usize {
        let mut pos = 0;
        while out.len() < MAX_PIPELINED && pos < rest.len() {
            let buf = &rest[pos..];
            if !matches!(find_head_end(buf, 0), Ok(Some(_))) {
                break;
            }
            let Ok(Some((head, used))) = parse_head(buf, &self.cfg.limits) else {
                break;
            };
            let body = match head.body {
                BodyKind::Empty => Body::empty(),
                BodyKind::Length(n)
                    if n <= (buf.len() - used) as u64 && n <= self.cfg.inbuf_overflow as u64 =>
                {
                    Body::Memory(buf[used..used + n as usize].to_vec())
                }
                _ => break,
            };
            pos += used + body.len() as usize;
            let last = !head.keep_alive;
            out.push(Request {
                head,
                body,
                // Read in the same round as the request before it.
                received: self.now,
            });
            if last {
                break;
            }
        }
        pos
    }

    /// Answers a request that cannot be taken, and closes the connection after it: once
    /// framing is in doubt, nothing more on this connection can be trusted.
    fn reject(
        &mut self,
        token: usize,
        err: RequestError,
        version: Version,
        consumed: usize,
        request: Seen,
    ) -> usize {
        self.refuse(
            token,
            version,
            (err.status(), err.reason()),
            err.message(),
            request,
        );
        consumed
    }

    /// Sends an error response, counts and logs it, and closes the connection after it.
    fn refuse(
        &mut self,
        token: usize,
        version: Version,
        (status, reason): (u16, &str),
        message: &str,
        request: Seen,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.state = State::Closing;
        conn.rbuf = Vec::new();
        let response = error_response(version, status, reason, message, &self.cfg.ident);
        let sent = conn.channel.send(&[&response], WhenFull::Queue);
        let body = memchr::memmem::find(&response, b"\r\n\r\n").map_or(0, |i| i + 4);
        let (peer, received) = (conn.channel.peer.inet_addr(), conn.received);
        let msg = format!(
            "{status} {reason} from {}: {message}",
            peer_text(&conn.channel.peer),
        );
        let (all, body) = (response.len() as u64, (response.len() - body) as u64);
        self.answered(request, peer, received, status, (all, body));
        self.log(LogLevel::Info, msg);
        if sent.is_err() {
            self.close(token);
        } else {
            self.finish_close(token);
        }
    }

    /// The head of a request whose body was being received (the connection closes).
    fn take_head(&mut self, token: usize) -> Seen {
        let state = self
            .conns
            .get_mut(token)
            .map(|c| std::mem::replace(&mut c.state, State::Closing));
        match state {
            Some(State::Body { head, .. }) => Seen::Head(*head),
            _ => Seen::Line(Vec::new()),
        }
    }

    /// Counts a request the loop answered itself, or gave up on (nothing sent), and
    /// gives it its access log line, as a worker does for the others
    /// (`wsgi::observe`): every request counted is logged, and every one logged is
    /// counted. `bytes` is (all bytes sent, body bytes sent).
    fn answered(
        &self,
        request: Seen,
        peer: Option<std::net::SocketAddr>,
        received: Instant,
        status: u16,
        (bytes_out, body_bytes): (u64, u64),
    ) {
        let took = self.now.saturating_duration_since(received);
        let method = method_index(request.method().unwrap_or(b""));
        self.stats.record(method, status, took, bytes_out);
        let Some(sink) = &self.access else {
            return;
        };
        let entry = Entry {
            request,
            peer,
            status,
            body_bytes,
            received,
            took,
            response_headers: Vec::new(),
            environ: Vec::new(),
        };
        match sink {
            Sink::Writer(log) => log.push(entry),
            Sink::Logging(format) => self.logs.push(LogRecord {
                level: LogLevel::Info,
                message: format.text(&entry),
                logger: Logger::Access,
            }),
        }
    }

    /// A request whose head or body stopped arriving: logged as 408 with nothing sent,
    /// as nginx logs it (the connection is only closed, as waitress does).
    fn gave_up(&mut self, token: usize) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let (peer, received) = (conn.channel.peer.inet_addr(), conn.received);
        let request = if matches!(conn.state, State::Body { .. }) {
            self.take_head(token)
        } else {
            Seen::line_of(&conn.rbuf)
        };
        self.answered(request, peer, received, 408, (0, 0));
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
        // Python may still hold the channel (an environ kept in a reference cycle): the
        // client must see the end now, not when the garbage collector runs.
        let _ = conn.channel.sock.shutdown(std::net::Shutdown::Both);
        if let Some(b) = &self.balance {
            b.publish(self.conns.len());
        }
        if self.accept_paused && self.conns.len() < self.cfg.connection_limit {
            self.accept_due = true;
        }
    }

    fn resume_accepting(&mut self) {
        self.accept_paused = false;
        if self.at_limit && self.conns.len() < self.cfg.connection_limit {
            self.at_limit = false;
            if self.limit_warned {
                self.log(
                    LogLevel::Info,
                    "total open connections dropped below the connection limit, \
                     listening again"
                        .into(),
                );
            }
        }
        for li in 0..self.listeners.len() {
            self.accept(li);
        }
    }

    fn take_completions(&mut self) {
        let mut done = std::mem::take(&mut self.done);
        self.completions.take(&mut done);
        for c in done.drain(..) {
            let token = Some(c.token);
            self.guarded(token, |lp| lp.complete(c));
        }
        self.done = done;
    }

    fn complete(&mut self, c: Completion) {
        let Some(conn) = self.conns.get_mut(c.token) else {
            return;
        };
        if conn.channel.id != c.id {
            return;
        }
        conn.last_activity = self.now;
        if let Some(hb) = &mut self.heartbeat {
            hb.served(c.served);
        }
        if conn.channel.is_closed() {
            self.close(c.token);
        } else if c.close || self.draining.is_some() {
            // (Stopping: a response whose head went out before the stop began did not
            // say Connection: close, but it is complete; the connection ends here.)
            conn.state = State::Closing;
            self.finish_close(c.token);
            self.drive(c.token);
        } else {
            conn.state = State::Head {
                scanned: 0,
                started: None,
            };
            if c.rest.is_empty() {
                self.consume_buffered(c.token);
                self.drive(c.token);
            } else {
                conn.held = c.rest;
                self.resume_reading(c.token);
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        let sweep = now >= self.next_sweep;
        if sweep {
            self.next_sweep = now + self.cfg.cleanup_interval;
        }
        let timeout = self.cfg.channel_timeout;
        let rate = self.cfg.min_body_rate;
        let grace = timeout.min(BODY_GRACE);
        let mut expired = Vec::new();
        // Closed in the middle of a request, which gets its line as a 408.
        let mut gave_up = Vec::new();
        let mut too_slow = Vec::new();
        // The deadlines below are the server's own and are checked every tick, so that a
        // connection is cut when the log line says; only plain idleness waits for the
        // cleanup_interval sweep, as in waitress.
        for (token, c) in self.conns.iter() {
            let close = match c.state {
                State::Lingering { deadline } => now >= deadline,
                // A head must arrive whole within channel_timeout, however steadily its
                // bytes trickle in (slowloris): activity alone does not keep it alive.
                State::Head {
                    started: Some(started),
                    ..
                } if now.duration_since(started) > timeout => {
                    let what = match c.channel.tls() {
                        Some(t) if t.is_handshaking() => "TLS handshake",
                        _ => {
                            gave_up.push(token);
                            "request head"
                        }
                    };
                    let msg = format!(
                        "closed connection from {}: {what} incomplete after {} s",
                        peer_text(&c.channel.peer),
                        timeout.as_secs()
                    );
                    self.logs.push(LogRecord {
                        level: LogLevel::Info,
                        message: msg,
                        logger: Logger::Main,
                    });
                    true
                }
                // Nor a body that trickles (as Apache's mod_reqtimeout MinRate): after
                // the grace period it must have arrived at min_request_body_rate bytes
                // a second, on average, counted from the end of the grace period.
                State::Body {
                    ref head,
                    started,
                    received,
                    ..
                } if rate > 0
                    && now.duration_since(started) > grace
                    && (received as f64)
                        < rate as f64 * (now.duration_since(started) - grace).as_secs_f64() =>
                {
                    too_slow.push((token, head.version, received, now.duration_since(started)));
                    false
                }
                State::Head { .. } | State::Body { .. } | State::Closing => {
                    let idle = sweep && now.duration_since(c.last_activity) > timeout;
                    if idle && matches!(c.state, State::Body { .. }) {
                        gave_up.push(token);
                    }
                    idle
                }
                // The application waits on a client that reads nothing: give up on the
                // client, which releases the worker (its write raises).
                State::Busy => {
                    if !c.channel.is_closed()
                        && c.channel.stalled_for(now).is_some_and(|d| d > timeout)
                    {
                        let msg = format!(
                            "closed connection from {}: no response bytes accepted for {} s",
                            peer_text(&c.channel.peer),
                            timeout.as_secs()
                        );
                        self.logs.push(LogRecord {
                            level: LogLevel::Info,
                            message: msg,
                            logger: Logger::Main,
                        });
                        c.channel.mark_closed();
                        let _ = c.channel.sock.shutdown(std::net::Shutdown::Both);
                    }
                    false
                }
            };
            if close {
                expired.push(token);
            }
        }
        for token in gave_up {
            self.gave_up(token);
        }
        for token in expired {
            self.close(token);
        }
        for (token, version, received, took) in too_slow {
            let message = format!(
                "request body too slow: {received} bytes in {:.0} s (min_request_body_rate {rate})",
                took.as_secs_f64()
            );
            let seen = self.take_head(token);
            self.refuse(token, version, (408, "Request Timeout"), &message, seen);
        }
        if self.accept_paused && self.conns.len() < self.cfg.connection_limit {
            self.resume_accepting();
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

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Errors that only say the client went away.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

pub fn peer_text(peer: &Peer) -> String {
    match peer {
        Peer::Inet { addr, .. } => addr.to_string(),
        Peer::Unix => "unix socket".into(),
    }
}
