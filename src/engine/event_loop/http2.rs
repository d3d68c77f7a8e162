//! HTTP/2 connections (`http2`): the second protocol beside HTTP/1, on the same loop.
//!
//! 1. [`EventLoop::sniff_h2`]: a connection's first bytes decide. On TLS, ALPN has
//!    chosen already; on cleartext, the client connection preface (prior knowledge)
//!    is told from an HTTP/1 request at its first differing byte (for "GET", the very
//!    first), so both share a port;
//! 2. [`EventLoop::consume_h2`]: bytes go through the protocol (`H2Conn::receive`),
//!    which answers SETTINGS, PING and windows itself; what the client did comes back
//!    as events:
//!    - a request head is checked (RFC 9113 §8, `h2::request`) and its body received
//!      whole, in memory or spilled to a file past `inbuf_overflow` as on HTTP/1. The
//!      client's windows are given back as the body is stored, so a large upload is
//!      never held up by the thread pool, and its size by `max_request_body_size`;
//!    - a complete request is one job: streams of a connection run in parallel on
//!      the thread pool, each answering on its stream (`engine::http2`);
//! 3. [`EventLoop::h2_stream_done`]: a worker is done with a stream;
//! 4. a graceful stop sends GOAWAY naming the last stream taken
//!    ([`EventLoop::h2_go_away`]); the connection closes once its streams are done.
//!
//! What must hold: a connection error ends the connection after its GOAWAY is sent;
//! a stream error costs that stream only; no byte the protocol queued is lost.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::h2_state::{H2State, Incoming};
use super::{EventLoop, State};
use crate::engine::body::{Body, BodyBuffer};
use crate::engine::channel::peer_text;
use crate::engine::dispatch::{is_stream, Completion, Job, LogLevel, Request, Requests};
use crate::engine::http2::{H2Conn, H2Stream};
use crate::engine::stats::{SHED_CLIENT_GONE, SHED_QUEUE_FULL};
use crate::h2::conn::{check_preface, Config as H2Config, Event, PrefaceMatch};
use crate::h2::request::{check_trailers, parse_request, BodyCheck, Refusal};
use crate::h2::ErrorCode;
use crate::http::request::{BodyKind, RequestHead, Version};
use crate::http::response::{error_response, unavailable_response};

/// The per-stream window we advertise: how much of a request body a client may send
/// before the loop has stored it. Stored bytes are given back at once, so this only
/// bounds what is in flight; larger than the protocol's 65,535 so that an upload is not
/// paced by round trips.
const STREAM_WINDOW: u32 = 1 << 20;
/// The connection-wide receive window (every stream's bodies together).
const CONNECTION_WINDOW: u32 = 4 << 20;
/// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
const MAX_STREAMS: u32 = 100;

impl EventLoop {
    /// At the first bytes of a connection with `http2` on: switches it to HTTP/2 when
    /// they say so. Returns `None` to wait for more bytes (a partial preface), else
    /// whether the connection now speaks HTTP/2.
    pub(super) fn sniff_h2(&mut self, token: usize, buf: &[u8]) -> Option<bool> {
        let conn = self.conns.get_mut(token)?;
        let h2 = match conn.channel.tls() {
            // On TLS only ALPN decides (RFC 9113 §3.3): no prior knowledge there.
            Some(tls) => tls.is_h2(),
            None => match check_preface(buf) {
                PrefaceMatch::Http2 => true,
                PrefaceMatch::Partial => return None,
                PrefaceMatch::NotHttp2 => false,
            },
        };
        conn.sniffed = true;
        if !h2 {
            return Some(false);
        }
        let limits = &self.cfg.limits;
        let config = H2Config {
            max_concurrent_streams: MAX_STREAMS,
            initial_window_size: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            max_request_header_size: limits.max_header_size,
            max_header_list_size: limits.max_header_size.min(u32::MAX as usize) as u32,
            ..H2Config::default()
        };
        let shared = H2Conn::new(conn.channel.clone(), config, self.cfg.outbuf_high_watermark);
        let _ = shared.flush_protocol();
        conn.state = State::H2(Box::new(H2State {
            conn: shared,
            incoming: HashMap::new(),
            running: 0,
            events: Vec::new(),
        }));
        conn.received = self.now;
        self.stats.http2_connections.fetch_add(1, Relaxed);
        if self.draining.is_some() {
            self.h2_go_away(token);
        }
        Some(true)
    }

    /// Runs the protocol over `input`; returns the bytes used (a partial frame waits
    /// in the connection's buffer for the rest).
    pub(super) fn consume_h2(&mut self, token: usize, input: &[u8]) -> usize {
        let Some(conn) = self.conns.get_mut(token) else {
            return input.len();
        };
        let State::H2(h2) = &mut conn.state else {
            return 0;
        };
        let mut events = std::mem::take(&mut h2.events);
        let result = h2.conn.receive(input, &mut events);
        let cause = result.as_ref().err().and(h2.conn.cause());
        for event in events.drain(..) {
            self.h2_event(token, event);
        }
        if let Some(State::H2(h2)) = self.conns.get_mut(token).map(|c| &mut c.state) {
            h2.events = events;
        }
        match result {
            Ok(used) => {
                self.h2_maybe_done(token);
                used
            }
            Err(e) => {
                // The GOAWAY is queued: send it, then close.
                let Some(conn) = self.conns.get_mut(token) else {
                    return input.len();
                };
                let code = e.code();
                let level = if code == ErrorCode::ENHANCE_YOUR_CALM {
                    LogLevel::Warning
                } else {
                    LogLevel::Info
                };
                let msg = format!(
                    "HTTP/2 connection from {} ended with GOAWAY {}{}",
                    peer_text(&conn.channel.peer),
                    code.name().unwrap_or("error"),
                    cause.map(|c| format!(": {c}")).unwrap_or_default()
                );
                conn.state = State::Closing;
                self.log(level, msg);
                self.finish_close(token);
                input.len()
            }
        }
    }

    fn h2_state(&mut self, token: usize) -> Option<&mut H2State> {
        match &mut self.conns.get_mut(token)?.state {
            State::H2(h2) => Some(h2),
            _ => None,
        }
    }

    fn h2_event(&mut self, token: usize, event: Event) {
        match event {
            Event::RequestHeaders {
                stream,
                fields,
                end_stream,
            } => {
                let limits = self.cfg.limits;
                let now = self.now;
                let Some(h2) = self.h2_state(token) else {
                    return;
                };
                let head = match parse_request(&fields, end_stream, &limits) {
                    Ok(head) => head,
                    // Malformed (§8.1.1): a stream error, as the RFC says.
                    Err(refusal @ Refusal::Malformed(_)) => {
                        h2.conn.reset(stream, refusal.code());
                        return;
                    }
                    // Well-formed but over a limit, or CONNECT: answered as on HTTP/1.
                    Err(refusal) => {
                        let conn = h2.conn.clone();
                        let e = refusal.request_error(&limits);
                        self.h2_refuse(&conn, stream, refusal.status(), e.reason(), e.message());
                        return;
                    }
                };
                if end_stream {
                    self.h2_dispatch(token, stream, head, Body::empty(), now);
                    return;
                }
                let expected = match head.body {
                    BodyKind::Length(n) => Some(n),
                    BodyKind::Empty => Some(0),
                    BodyKind::Chunked => None,
                };
                let check = BodyCheck::new(&head, &limits);
                // Bodies of one connection arrive side by side: each new one may keep
                // less in memory before it spills to a file, so that a hundred streams
                // cost a few times `inbuf_overflow`, not a hundred times.
                let receiving = self.h2_state(token).map_or(0, |h2| h2.incoming.len());
                let overflow = self.cfg.inbuf_overflow / (1 + receiving);
                let body = BodyBuffer::new(overflow, expected);
                let Some(h2) = self.h2_state(token) else {
                    return;
                };
                h2.incoming.insert(
                    stream,
                    Incoming {
                        head,
                        body,
                        received: now,
                        check,
                    },
                );
            }
            Event::Data {
                stream,
                bytes,
                end_stream,
            } => self.h2_data(token, stream, &bytes, end_stream),
            Event::Trailers { stream, fields } => match check_trailers(&fields) {
                // Trailers end the request; the WSGI environ has no place for them.
                Ok(()) => self.h2_data(token, stream, &[], true),
                Err(refusal) => {
                    if let Some(h2) = self.h2_state(token) {
                        h2.incoming.remove(&stream);
                        h2.conn.reset(stream, refusal.code());
                    }
                }
            },
            Event::Reset { stream, remote, .. } => {
                if let Some(h2) = self.h2_state(token) {
                    h2.incoming.remove(&stream);
                }
                if remote {
                    self.h2_withdraw(token, stream);
                }
            }
            Event::HeadersTooLarge { stream, .. } => {
                let Some(h2) = self.h2_state(token) else {
                    return;
                };
                let conn = h2.conn.clone();
                let max = self.cfg.limits.max_header_size;
                let message = format!("exceeds max_header of {max}");
                let reason = "Request Header Fields Too Large";
                self.h2_refuse(&conn, stream, 431, reason, &message);
            }
            Event::GoAway { .. } | Event::WindowOpened { .. } => {}
        }
    }

    /// Body bytes of `stream`: stored (and the windows given back), then the request
    /// dispatched at its end.
    fn h2_data(&mut self, token: usize, stream: u32, bytes: &[u8], end: bool) {
        let max = self.cfg.limits.max_body_size;
        let Some(h2) = self.h2_state(token) else {
            return;
        };
        let conn = h2.conn.clone();
        let Some(inc) = h2.incoming.get_mut(&stream) else {
            // A stream answered or refused already: its bytes still count in the windows.
            conn.release(stream, bytes.len());
            return;
        };
        match inc.check.data(bytes.len(), end) {
            Ok(()) => {}
            // Past max_request_body_size, with no content-length to say so up front.
            Err(Refusal::BodyTooLarge) => {
                h2.incoming.remove(&stream);
                let message = format!("exceeds max_body of {max}");
                self.h2_refuse(&conn, stream, 413, "Request Entity Too Large", &message);
                return;
            }
            // DATA that disagrees with content-length is malformed (§8.1.1).
            Err(refusal) => {
                h2.incoming.remove(&stream);
                conn.reset(stream, refusal.code());
                return;
            }
        }
        if let Err(e) = inc.body.extend(bytes) {
            h2.incoming.remove(&stream);
            let msg = format!("cannot store a request body: {e}");
            self.h2_refuse(&conn, stream, 500, "Internal Server Error", &msg);
            self.log(LogLevel::Error, msg);
            return;
        }
        conn.release(stream, bytes.len());
        if !end {
            return;
        }
        let Some(inc) = h2.incoming.remove(&stream) else {
            return;
        };
        match inc.body.finish() {
            Ok(body) => {
                if matches!(body, Body::File(_)) {
                    self.stats.body_spills.fetch_add(1, Relaxed);
                }
                self.h2_dispatch(token, stream, inc.head, body, inc.received);
            }
            Err(e) => {
                let msg = format!("cannot store a request body: {e}");
                self.h2_refuse(&conn, stream, 500, "Internal Server Error", &msg);
                self.log(LogLevel::Error, msg);
            }
        }
    }

    /// Answers `stream` with an error page of the loop's own.
    fn h2_refuse(&mut self, conn: &H2Conn, stream: u32, code: u16, reason: &str, message: &str) {
        let page = error_response(Version::Http2, code, reason, message, &self.cfg.ident);
        if conn.send_response(stream, &page).is_ok() && conn.is_open(stream) {
            // The client may still be sending: tell it to stop (§8.1).
            conn.reset(stream, ErrorCode::NO_ERROR);
        }
    }

    /// Hands a complete request to the workers (or turns it away when the queue is full).
    fn h2_dispatch(
        &mut self,
        token: usize,
        stream: u32,
        head: RequestHead,
        body: Body,
        received: Instant,
    ) {
        let full = super::shed::queue_full(&self.cfg, &self.jobs, &self.batch);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let State::H2(h2) = &mut conn.state else {
            return;
        };
        if full {
            let shared = h2.conn.clone();
            self.h2_shed(&shared, stream, SHED_QUEUE_FULL);
            return;
        }
        h2.running += 1;
        conn.fresh = false;
        let request = Request {
            head,
            body,
            received,
            h2: Some(H2Stream {
                conn: h2.conn.clone(),
                id: stream,
            }),
        };
        self.stats.in_flight.fetch_add(1, Relaxed);
        let channel = conn.channel.clone();
        self.batch.push(Job::Requests(Box::new(Requests {
            channel,
            requests: vec![request],
        })));
    }

    /// A stream the client reset while its request waited for a thread is not run
    /// (the answer would go nowhere); counted as a departed client's.
    fn h2_withdraw(&mut self, token: usize, stream: u32) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let id = conn.channel.id;
        let job = match self
            .batch
            .iter()
            .position(|Job::Requests(r)| is_stream(r, id, stream))
        {
            Some(i) => Some(self.batch.remove(i)),
            None => self.jobs.withdraw_stream(id, stream),
        };
        if job.is_none() {
            return;
        }
        if let Some(h2) = self.h2_state(token) {
            h2.running = h2.running.saturating_sub(1);
        }
        self.not_in_flight(1);
        self.stats.requests_shed[SHED_CLIENT_GONE].fetch_add(1, Relaxed);
    }

    /// A 503 on `stream`, counted under `reason` (the connection goes on).
    pub(super) fn h2_shed(&mut self, conn: &H2Conn, stream: u32, reason: usize) {
        let page =
            unavailable_response(Version::Http2, "The server is overloaded.", &self.cfg.ident);
        let _ = conn.send_response(stream, &page);
        self.stats.requests_shed[reason].fetch_add(1, Relaxed);
    }

    /// A worker is done with a stream of connection `c.token`.
    pub(super) fn h2_stream_done(&mut self, c: Completion) {
        if let Some(hb) = &mut self.heartbeat {
            hb.served(c.served);
        }
        let Some(conn) = self.conns.get_mut(c.token) else {
            return;
        };
        if conn.channel.id != c.id {
            return;
        }
        conn.last_activity = self.now;
        if let State::H2(h2) = &mut conn.state {
            h2.running = h2.running.saturating_sub(1);
        }
        if conn.channel.is_closed() {
            self.close(c.token);
            return;
        }
        self.h2_maybe_done(c.token);
    }

    /// A connection that sent GOAWAY closes once its streams are done.
    fn h2_maybe_done(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let State::H2(h2) = &conn.state else {
            return;
        };
        // Nothing of the loop's under way (checked first: no lock), then the protocol's.
        if h2.running == 0 && h2.incoming.is_empty() && h2.conn.gone_away() {
            conn.state = State::Closing;
            self.finish_close(token);
        }
    }

    /// Starts the graceful close of an HTTP/2 connection (a stop, or idleness).
    pub(super) fn h2_go_away(&mut self, token: usize) {
        if let Some(h2) = self.h2_state(token) {
            h2.conn.go_away(ErrorCode::NO_ERROR);
        }
        self.h2_maybe_done(token);
    }
}
