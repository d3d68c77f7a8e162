//! Stage 2: reading. What the kernel reports for a connection, and the reads that
//! follow, up to the point where bytes become requests (`requests`).
//!
//! 1. [`EventLoop::conn_event`] records what an edge says (readable, the peer's side
//!    closed, writable, an error) and acts on it: a connection whose request a worker
//!    has is not read, but its completion is made to wake the loop;
//! 2. `flush` sends what the workers' writes left queued; once the client has taken
//!    some, requests held back by the high watermark are taken up again
//!    ([`EventLoop::resume_reading`]);
//! 3. [`EventLoop::drive`] reads until the socket is drained, the connection must wait
//!    for a worker, or it has had its turn (`READS_PER_TURN`: the rest is read at the
//!    end of the round). A fresh read is parsed straight from the loop's buffer; only
//!    what is left over is copied to the connection's own;
//! 4. the rest of a large Content-Length body bypasses both buffers: it is spliced from
//!    the socket into a pipe and from there into the body's file (`take_spliced`), where
//!    the system has splice (`engine::sys`; elsewhere there is no pipe, and the body is
//!    read through the loop's buffer as a TLS connection's always is).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;

use super::{await_completion, EventLoop, Key, State};
use crate::engine::access_log::Seen;
use crate::engine::channel::peer_text;
use crate::engine::dispatch::{Job, LogLevel, Requests};
use crate::engine::errors::is_disconnect;
use crate::engine::outbuf::Flushed;
use crate::engine::transport::is_not_tls;
use crate::http::request::{RequestError, Version};

/// Reads from one connection before the loop turns to the others.
const READS_PER_TURN: usize = 4;

impl EventLoop {
    /// Acts on one event of connection `key`.
    pub(super) fn conn_event(
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
        // The first word that the peer has shut down its side.
        let fin = read_closed && !conn.read_closed;
        if read_closed {
            conn.read_closed = true;
            if matches!(conn.state, State::Busy) && self.cfg.channel_request_lookahead > 0 {
                // With lookahead the application may ask whether the client is still there.
                conn.channel.mark_closed();
            }
        }
        if error {
            conn.channel.mark_closed();
            if matches!(conn.state, State::Busy) {
                // Its request may still wait for a thread: not run then (`shed`).
                self.client_gone(token);
            } else {
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
        if fin {
            // Gone, or only half-closed? Its request may wait for a thread (`shed`).
            self.probe_departure(token);
        }
    }

    /// Sends what is queued for the connection.
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
                    // The last response has gone out whole: idle from now.
                    self.mark_idle(token);
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
    pub(super) fn resume_reading(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if matches!(conn.state, State::H2(_)) && !conn.channel.over_watermark() {
            self.drive(token);
            return;
        }
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
    pub(super) fn drive(&mut self, token: usize) {
        if self.conns.get(token).is_some_and(|c| c.proxy_header) && !self.read_proxy_header(token) {
            return;
        }
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
                // The same for HTTP/2: a client that reads none of its responses must not
                // have us run (and queue) more of them.
                State::H2(_) if conn.channel.over_watermark() => return,
                // HTTP/2 is always read: WINDOW_UPDATEs and resets come that way.
                State::Head { .. } | State::Body { .. } | State::H2(_) => false,
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
                    if conn.idle == 0 {
                        // Taken off the idle queue while busy (a TLS handshake under
                        // way, say): back on it if idle now.
                        self.mark_idle(token);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_not_tls(&e) => {
                    if self.foreign_proxy_header_unread(token) {
                        return;
                    }
                    // As nginx does: say so in plain HTTP, then close.
                    let e = RequestError::BadRequest(e.to_string());
                    self.reject(token, e, Version::Http10, 0, Seen::Line(Vec::new()));
                    continue;
                }
                Err(e) if conn.channel.tls().is_some_and(|t| t.is_handshaking()) => {
                    let peer = peer_text(&conn.channel.peer);
                    if self.foreign_proxy_header_unread(token) {
                        return;
                    }
                    self.handshake_failed(&peer, &e);
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
}
