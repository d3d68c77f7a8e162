//! The answers the loop gives itself, without a worker: requests it refuses, and
//! requests it gives up on. Each is counted and logged as a worker's would be.
//!
//! 1. [`EventLoop::reject`] refuses a request that cannot be taken (its framing is in
//!    doubt, or it is over a limit) with the status its [`RequestError`] maps to;
//! 2. [`EventLoop::refuse`] sends such an error response, logs it and closes the
//!    connection after it (a body that trickles too slowly is refused the same way);
//! 3. [`EventLoop::gave_up`] records a request whose head or body stopped arriving: a
//!    408 in the access log, nothing sent;
//! 4. `answered` counts each of them and gives it its access log line, from the head
//!    the connection was receiving ([`EventLoop::take_head`]) or from its first line.

use std::time::Instant;

use super::{EventLoop, State};
use crate::engine::access_log::{Entry, Seen, Sink};
use crate::engine::channel::peer_text;
use crate::engine::channel::WhenFull;
use crate::engine::dispatch::{LogLevel, LogRecord, Logger};
use crate::engine::stats::method_index;
use crate::http::request::{RequestError, Version};
use crate::http::response::error_response;

impl EventLoop {
    /// Answers a request that cannot be taken, and closes the connection after it: once
    /// framing is in doubt, nothing more on this connection can be trusted.
    pub(super) fn reject(
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
    pub(super) fn refuse(
        &mut self,
        token: usize,
        version: Version,
        (status, reason): (u16, &str),
        message: &str,
        request: Seen,
    ) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let response = error_response(version, status, reason, message, &self.cfg.ident);
        let msg = format!(
            "{status} {reason} from {}: {message}",
            peer_text(&conn.channel.peer),
        );
        self.send_last(token, &response, status, request);
        self.log(LogLevel::Info, msg);
    }

    /// Sends `response` (of status `status`) as the connection's last, gives `request`
    /// its access log line, and closes the connection after it.
    pub(super) fn send_last(&mut self, token: usize, response: &[u8], status: u16, request: Seen) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.state = State::Closing;
        conn.rbuf = Vec::new();
        let sent = conn.channel.send(&[response], WhenFull::Queue);
        let body = memchr::memmem::find(response, b"\r\n\r\n").map_or(0, |i| i + 4);
        let (peer, received) = (conn.channel.peer.inet_addr(), conn.received);
        let (all, body) = (response.len() as u64, (response.len() - body) as u64);
        self.answered(request, peer, received, status, (all, body));
        if sent.is_err() {
            self.close(token);
        } else {
            self.finish_close(token);
        }
    }

    /// The head of a request whose body was being received (the connection closes).
    pub(super) fn take_head(&mut self, token: usize) -> Seen {
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
    pub(super) fn answered(
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
    pub(super) fn gave_up(&mut self, token: usize) {
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
}
