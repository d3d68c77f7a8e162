//! Stage 3: requests. Bytes read from a connection become requests, which go to the
//! workers.
//!
//! 1. [`EventLoop::consume`] runs a connection's request state machine over bytes just
//!    read (or held over in its buffer: `consume_buffered`): the head through the
//!    server's `http::reader::HeadReader`, the body through the receiver
//!    `BodyReceiver::for_framing` chooses (in memory, or spilled to a file). A refused
//!    request is answered (`answer`) and ends the connection;
//! 2. a client that sent `Expect: 100-continue` is told to go on (`send_continue`) when
//!    its head is taken;
//! 3. a request whose body is complete ([`EventLoop::body_complete`]) is dispatched, with
//!    the complete requests pipelined behind it in what was read (`pipelined`, at most
//!    `MAX_PIPELINED`): one job for one worker, answered in order;
//!    unless `max_queued_requests` jobs already wait (answered 503 by `shed`, before
//!    the body is read when there is one);
//! 4. the connection is then `Busy`: nothing more is read from it until its worker is
//!    done (`completions`), so pipelined requests wait in the kernel.

use std::sync::atomic::Ordering::Relaxed;

use super::{await_completion, last_request, shed, EventLoop, State};
use crate::engine::access_log::Seen;
use crate::engine::body::{Body, BodyReceiver};
use crate::engine::channel::WhenFull;
use crate::engine::dispatch::{Job, Request, Requests};
use crate::engine::stats::SHED_QUEUE_FULL;
use crate::http::reader::HeadReader;
use crate::http::request::{BodyKind, RequestHead};

/// Most requests pipelined behind one that go to the same worker in one job.
const MAX_PIPELINED: usize = 64;

impl EventLoop {
    /// Processes bytes held in the connection's buffer (pipelined requests).
    pub(super) fn consume_buffered(&mut self, token: usize) {
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
    pub(super) fn consume(&mut self, token: usize, input: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return input.len();
            };
            if !conn.sniffed && matches!(conn.state, State::Head { .. }) {
                // `http2` is on and nothing has been read yet: which protocol?
                if input.len() == pos {
                    return pos;
                }
                if let State::Head { started, .. } = &mut conn.state {
                    // A partial preface must arrive whole within channel_timeout, as a
                    // request head must (`timers`).
                    if started.is_none() {
                        *started = Some(self.now);
                        conn.received = self.now;
                    }
                }
                match self.sniff_h2(token, &input[pos..]) {
                    None => return pos,
                    Some(_) => continue,
                }
            }
            if matches!(conn.state, State::H2(_)) {
                return pos + self.consume_h2(token, &input[pos..]);
            }
            match &mut conn.state {
                State::Head { reader, started } => {
                    let buf = &input[pos..];
                    if buf.is_empty() || !conn.held.is_empty() || conn.channel.over_watermark() {
                        return pos;
                    }
                    if started.is_none() {
                        *started = Some(self.now);
                        conn.received = self.now;
                    }
                    let (head, used) = match reader.read(buf, &self.cfg.limits) {
                        Ok(Some(parsed)) => parsed,
                        Ok(None) => return pos,
                        Err(_) if self.foreign_proxy_header(token, buf) => return input.len(),
                        Err(refused) => {
                            let (e, version) = (refused.error, refused.version);
                            let seen = Seen::line_of(buf);
                            return self.reject(token, e, version, input.len(), seen);
                        }
                    };
                    pos += used;
                    let (overflow, max) = (self.cfg.inbuf_overflow, self.cfg.limits.max_body_size);
                    let Some(body) = BodyReceiver::for_framing(head.body, overflow, max) else {
                        return pos + self.dispatch(token, head, Body::empty(), &input[pos..]);
                    };
                    if shed::queue_full(&self.cfg, &self.jobs, &self.batch) {
                        // Turned away before its body is read (`shed`).
                        let version = head.version;
                        self.shed(token, Seen::Head(head), version, SHED_QUEUE_FULL);
                        return input.len();
                    }
                    let continue_now = head.expect_continue;
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
                State::Busy | State::H2(_) => return pos,
                State::Closing | State::Lingering { .. } => return input.len(),
            }
        }
    }

    /// Dispatches the request whose body has just been received whole, with the complete
    /// requests pipelined behind it in `rest`; returns the bytes of `rest` those took, or
    /// `None` when the body could not be stored (answered, and the connection closing).
    pub(super) fn body_complete(&mut self, token: usize, rest: &[u8]) -> Option<usize> {
        let conn = self.conns.get_mut(token)?;
        let State::Body { head, body, .. } = std::mem::replace(&mut conn.state, State::Busy) else {
            unreachable!("no body to complete")
        };
        match body.finish() {
            Ok(body) => Some(self.dispatch(token, *head, body, rest)),
            Err(e) => {
                let version = head.version;
                self.reject(token, e, version, 0, Seen::Head(*head));
                None
            }
        }
    }

    /// Tells a client that waits for it to send its body (`Expect: 100-continue`).
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
        if self.queue_full() {
            let version = head.version;
            self.shed(token, Seen::Head(head), version, SHED_QUEUE_FULL);
            return rest.len();
        }
        let mut requests = Vec::with_capacity(1);
        let (last, received) = self.conns.get(token).map_or((false, self.now), |c| {
            (last_request(&c.channel), c.received)
        });
        // Stopping: this request is the connection's last, whatever follows it.
        let more = head.keep_alive && !last;
        if matches!(body, Body::File(_)) {
            self.stats.body_spills.fetch_add(1, Relaxed);
        }
        requests.push(Request {
            head,
            body,
            received,
            h2: None,
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
            // Lazy: a partial head is left for the normal path, which looks at it again.
            let Ok(Some((head, used))) = HeadReader::lazy().read(buf, &self.cfg.limits) else {
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
                h2: None,
            });
            if last {
                break;
            }
        }
        pos
    }
}
