//! Stage 1 of a connection's life: taking it from a listener and registering it.
//!
//! 1. [`EventLoop::accept`] takes connections from a listener's kernel queue until the
//!    queue is empty, `connection_limit` is reached with no idle connection to evict
//!    (accepting pauses; the kernel backlog holds the rest), or, under a master,
//!    [`Balance`] says another worker's turn has come;
//! 2. at `connection_limit`, as nginx does when it runs out of connections, the
//!    connection idle longest is closed to admit the new one ([`EventLoop::evict`]),
//!    so that clients that merely stay connected cannot keep everyone else out. Idle
//!    means: waiting for a request with no byte of it received (between requests on a
//!    keep-alive connection, or nothing received since accept, or a TLS handshake not
//!    started or done with), nothing held back, nothing queued to send, and nothing
//!    waiting in the kernel (looked at with a peek just before: a request already
//!    there is read instead). A connection with a request in progress is never
//!    evicted. The close is plain (close_notify on TLS), which HTTP/1.1 allows between
//!    requests; no keep-alive linger, which would hold the very slot the newcomer
//!    needs; and only a connection idle for at least [`MIN_IDLE`]. Idle connections
//!    are found through [`IdleQueue`]: marked when they become idle (`mark_idle`),
//!    checked only when they reach its front. While accepting is paused at the limit,
//!    each tick looks again (a connection may have become idle since);
//! 3. [`EventLoop::register`] sets the socket up (non-blocking, no Nagle, a TLS session
//!    on a TLS listener), gives it a [`Key`] and a [`Conn`], and reads at once: data
//!    often arrives with the connection;
//! 4. [`EventLoop::resume_accepting`] takes up accepting again once a close has made
//!    room (at the end of the round: see `run`) or on the next tick after an accept
//!    error.
//!
//! Whether accepting is paused, and what was said about the limit, is kept in
//! [`Accepting`] (`accepting.rs`).
//!
//! [`Balance`]: crate::engine::balance::Balance
//! [`Accepting`]: super::accepting::Accepting
//! [`IdleQueue`]: super::idle::IdleQueue

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use socket2::{SockAddr, Socket};

use super::{Conn, EventLoop, Key, State};
use crate::engine::channel::{Channel, Peer};
use crate::engine::dispatch::LogLevel;
use crate::engine::sys;
use crate::engine::transport::TlsSession;

/// How long a connection must have been idle to be evicted: one just connected has had
/// no time to send its request, and a keep-alive client just answered may be sending
/// its next one. (A burst of new clients at the limit waits in the backlog rather than
/// evicting one another before any has spoken.) A connection that has never sent
/// anything counts the time it waited in the backlog too (`sys::quiet_for`), so that a
/// backlog full of silent connections is worked through at once.
const MIN_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

impl EventLoop {
    /// Takes what listener `li`'s kernel queue holds, as far as the limit allows.
    pub(super) fn accept(&mut self, li: usize) {
        loop {
            // At the limit, the connection idle longest makes room, once a new one is
            // actually there to take it.
            let mut victim = None;
            if self.conns.len() >= self.cfg.connection_limit {
                victim = self.idle_victim();
            }
            if self.conns.len() >= self.cfg.connection_limit && victim.is_none() {
                // Resumed by `tick` or by a close; the kernel backlog holds the rest.
                if self.accepting.reach_limit(self.now) {
                    self.log(
                        LogLevel::Warning,
                        "total open connections reached the connection limit, \
                         no longer accepting new connections"
                            .into(),
                    );
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
                    if let Some(slot) = victim {
                        self.evict(slot);
                    }
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
                    self.accepting.pause();
                    return;
                }
            }
        }
    }

    /// Sets up an accepted connection and reads what it has sent already.
    pub(super) fn register(&mut self, li: usize, sock: Socket, addr: SockAddr) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        sys::prepare_accepted(&sock)?;
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
        // A balancer listed in proxy_protocol_from must start with a PROXY header.
        let proxy_header = (self.cfg.proxy_protocol.as_ref()).is_some_and(|p| p.from.allows(&peer));
        // The header, the handshake and the first request head must together arrive
        // within channel_timeout, as a head alone must (a slow one is cut like a slowloris).
        let started = (tls.is_some() || proxy_header).then_some(self.now);
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
            // Taken from the kernel's queue as the stop began: one request, then close
            // (see `last_request`).
            channel.set_last();
        }
        entry.insert(Conn {
            channel,
            rbuf: Vec::new(),
            state: State::head(started),
            held: Vec::new(),
            // Data often arrives with the connection; the first edge may predate the
            // registration.
            readable: true,
            read_closed: false,
            last_activity: self.now,
            fresh: true,
            received: self.now,
            proxy_header,
            idle: 0,
            sniffed: !self.cfg.http2,
        });
        self.stats.open_connections.fetch_add(1, Relaxed);
        // Nothing received yet: idle until its first byte (checked before eviction).
        self.mark_idle(token);
        self.drive(token);
        Ok(())
    }

    /// Puts connection `token` at the back of the idle queue, if it waits for a request
    /// with none of it received (and no TLS handshake under way): on the request path,
    /// so a few comparisons and a push; the rest is checked before an eviction.
    pub(super) fn mark_idle(&mut self, token: usize) {
        let open = self.conns.len();
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        if !matches!(conn.state, State::Head { .. })
            || !conn.rbuf.is_empty()
            || !conn.held.is_empty()
            || conn
                .channel
                .tls()
                .is_some_and(|t| t.is_handshaking() && !t.is_untouched())
        {
            return;
        }
        let conns = &self.conns;
        let seq = self.idle.mark(token, open, |slot, seq| {
            conns.get(slot).is_some_and(|c| c.idle == seq)
        });
        if let Some(conn) = self.conns.get_mut(token) {
            conn.idle = seq;
        }
    }

    /// The open connection idle longest, if one is (see the module comment); it stays
    /// at the front of the idle queue until [`EventLoop::evict`] closes it. Entries that
    /// are stale, or whose connection is no longer idle, are dropped on the way.
    fn idle_victim(&mut self) -> Option<usize> {
        while let Some((slot, seq)) = self.idle.front() {
            let Some(conn) = self.conns.get_mut(slot).filter(|c| c.idle == seq) else {
                self.idle.pop_front();
                continue;
            };
            let waiting = matches!(conn.state, State::Head { .. })
                && conn.rbuf.is_empty()
                && conn.held.is_empty()
                && !conn
                    .channel
                    .tls()
                    .is_some_and(|t| t.is_handshaking() && !t.is_untouched())
                && !conn.channel.has_pending_output();
            let mut quiet = self.now.duration_since(conn.last_activity);
            if waiting && quiet < MIN_IDLE && conn.fresh {
                // Never spoken: it may have waited in the backlog before we took it.
                quiet = quiet.max(sys::quiet_for(&conn.channel.sock).unwrap_or_default());
            }
            if waiting && quiet < MIN_IDLE {
                // Idle, but not for long (nor, roughly, is any behind it): the tick
                // tries again.
                return None;
            }
            if waiting {
                let mut byte = [std::mem::MaybeUninit::uninit()];
                match conn.channel.sock.peek(&mut byte) {
                    // Something arrived (a request, a ClientHello): read it instead.
                    Ok(n) if n > 0 => {
                        conn.readable = true;
                        self.again.push(Key::new(slot, conn.channel.id));
                    }
                    // Nothing, or the end (the client has gone: closing it is no loss).
                    _ => return Some(slot),
                }
            }
            conn.idle = 0;
            self.idle.pop_front();
        }
        None
    }

    /// Closes the idle connection `slot` (from [`EventLoop::idle_victim`]) to admit a
    /// new one: counted, and said at most once a minute.
    fn evict(&mut self, slot: usize) {
        self.idle.pop_front();
        if let Some(conn) = self.conns.get_mut(slot) {
            // Looked at again after the accept: a request that arrived meanwhile is read,
            // not reset (the newcomer is admitted all the same, one over the limit
            // until a connection closes).
            let mut byte = [std::mem::MaybeUninit::uninit()];
            if matches!(conn.channel.sock.peek(&mut byte), Ok(n) if n > 0) {
                conn.idle = 0;
                conn.readable = true;
                self.again.push(Key::new(slot, conn.channel.id));
                return;
            }
        }
        self.stats.connections_evicted.fetch_add(1, Relaxed);
        if let Some(line) = self.idle.evicted(self.now, self.cfg.connection_limit) {
            self.log(LogLevel::Info, line);
        }
        self.close(slot);
    }

    /// Ends a pause in accepting, and accepts what waits.
    pub(super) fn resume_accepting(&mut self) {
        if self
            .accepting
            .resume(self.conns.len(), self.cfg.connection_limit)
        {
            self.log(
                LogLevel::Info,
                "total open connections dropped below the connection limit, \
                 listening again"
                    .into(),
            );
        }
        for li in 0..self.listeners.len() {
            self.accept(li);
        }
    }
}
