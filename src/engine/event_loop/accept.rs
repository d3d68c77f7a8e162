//! Stage 1 of a connection's life: taking it from a listener and registering it.
//!
//! 1. [`EventLoop::accept`] takes connections from a listener's kernel queue until the
//!    queue is empty, `connection_limit` is reached (accepting pauses; the kernel
//!    backlog holds the rest), or, under a master, [`Balance`] says another worker's
//!    turn has come;
//! 2. [`EventLoop::register`] sets the socket up (non-blocking, no Nagle, a TLS session
//!    on a TLS listener), gives it a [`Key`] and a [`Conn`], and reads at once: data
//!    often arrives with the connection;
//! 3. [`EventLoop::resume_accepting`] takes up accepting again once a close has made
//!    room (at the end of the round: see `run`) or on the next tick after an accept
//!    error.
//!
//! Whether accepting is paused, and what was said about the limit, is kept in
//! [`Accepting`] (`accepting.rs`).
//!
//! [`Balance`]: crate::engine::balance::Balance
//! [`Accepting`]: super::accepting::Accepting

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

impl EventLoop {
    /// Takes what listener `li`'s kernel queue holds, as far as the limit allows.
    pub(super) fn accept(&mut self, li: usize) {
        loop {
            if self.conns.len() >= self.cfg.connection_limit {
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
        });
        self.stats.open_connections.fetch_add(1, Relaxed);
        self.drive(token);
        Ok(())
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
