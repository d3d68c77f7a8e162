//! The HTTP/2 side of a connection that the loop and the workers share: the protocol
//! state (`crate::h2::conn::Connection`) and the response bytes waiting for the peer's
//! flow-control windows.
//!
//! The loop feeds what it reads ([`H2Conn::receive`]); workers send their stream's
//! response ([`H2Stream`]). Both go through one lock, and whatever the protocol queued is
//! handed to the channel before the lock is released, so frames of different streams
//! never interleave on the wire and the HPACK encoder sees heads in the order they are
//! sent. The lock is never held while waiting: the channel takes bytes with
//! `WhenFull::Queue`, and a worker waits for room (`H2Stream::wait_room`) on a condvar.
//!
//! What must hold:
//! - A worker never waits for a peer's window: what a window does not allow is queued
//!   here, and the loop sends it as windows open. A response is queued whole, as on
//!   HTTP/1; a streaming application waits while its stream has more than
//!   `outbuf_high_watermark` queued, as on HTTP/1.
//! - A stream the client reset, or that the connection lost, fails the worker's next
//!   send (`ClientDisconnected` upstairs) and drops what was queued for it.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::engine::channel::{Channel, WhenFull};
use crate::h2::conn::{Config, Connection, Event};
use crate::h2::response::{split_response, Field};
use crate::h2::{ErrorCode, H2Error};

/// Response bytes of one stream beyond the peer's windows.
#[derive(Default)]
struct Queued {
    data: Vec<u8>,
    /// Bytes of `data` already sent.
    sent: usize,
    /// END_STREAM goes with the last byte.
    end: bool,
}

impl Queued {
    fn len(&self) -> usize {
        self.data.len() - self.sent
    }
}

struct Inner {
    conn: Connection,
    queued: HashMap<u32, Queued>,
}

pub struct H2Conn {
    pub channel: Arc<Channel>,
    inner: Mutex<Inner>,
    /// Workers waiting for their stream's queue to shrink.
    room: Condvar,
    high_watermark: usize,
}

impl std::fmt::Debug for H2Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conn").finish_non_exhaustive()
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the stream was reset")
}

impl H2Conn {
    /// A connection whose SETTINGS are queued: the caller sends them (`flush_protocol`).
    pub fn new(channel: Arc<Channel>, config: Config, high_watermark: usize) -> Arc<H2Conn> {
        Arc::new(H2Conn {
            channel,
            inner: Mutex::new(Inner {
                conn: Connection::new(config),
                queued: HashMap::new(),
            }),
            room: Condvar::new(),
            high_watermark,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every step leaves the state consistent; a panic elsewhere does not matter.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands what the protocol queued to the channel, under the lock.
    fn push(&self, inner: &mut Inner) -> io::Result<()> {
        let out = inner.conn.take_output();
        if !out.is_empty() {
            self.channel.send(&[&out], WhenFull::Queue)?;
        }
        Ok(())
    }

    /// Sends the frames the protocol queued on its own (SETTINGS at the start).
    pub fn flush_protocol(&self) -> io::Result<()> {
        let mut inner = self.lock();
        self.push(&mut inner)
    }

    /// The loop: reads `buf` as far as it forms frames (see `Connection::receive`),
    /// appending what the client did to `events`; sends the answers, and queued output
    /// that opened windows now allow.
    pub fn receive(&self, buf: &[u8], events: &mut Vec<Event>) -> Result<usize, H2Error> {
        let start = events.len();
        let mut inner = self.lock();
        let result = inner.conn.receive(buf, events);
        let mut woke = false;
        for e in &events[start..] {
            match e {
                Event::WindowOpened { .. } => woke = true,
                Event::Reset { stream, .. } => woke |= inner.queued.remove(stream).is_some(),
                _ => {}
            }
        }
        if woke {
            resume(&mut inner);
        }
        let _ = self.push(&mut inner);
        drop(inner);
        if woke {
            self.room.notify_all();
        }
        result
    }

    /// Gives `n` bytes of a stream's request body back to the client's windows.
    pub fn release(&self, stream: u32, n: usize) {
        let mut inner = self.lock();
        inner.conn.release(stream, n.min(u32::MAX as usize) as u32);
        let _ = self.push(&mut inner);
    }

    /// Resets a stream from our side.
    pub fn reset(&self, stream: u32, code: ErrorCode) {
        let mut inner = self.lock();
        inner.queued.remove(&stream);
        inner.conn.reset_stream(stream, code);
        let _ = self.push(&mut inner);
        drop(inner);
        self.room.notify_all();
    }

    /// A graceful close (§6.8): GOAWAY with the last stream taken; those go on. Once.
    pub fn go_away(&self, code: ErrorCode) {
        let mut inner = self.lock();
        if inner.conn.is_going_away() {
            return;
        }
        inner.conn.go_away(code);
        let _ = self.push(&mut inner);
    }

    /// Whether `stream` is still open in either direction.
    pub fn is_open(&self, stream: u32) -> bool {
        self.lock().conn.stream(stream).is_some()
    }

    /// Why the connection failed, when the client broke a rule or a limit (for the log).
    pub fn cause(&self) -> Option<&'static str> {
        self.lock().conn.cause()
    }

    /// GOAWAY was sent (by [`H2Conn::go_away`], or for a connection error) and every
    /// stream is closed both ways: the connection has nothing left to do.
    pub fn gone_away(&self) -> bool {
        let inner = self.lock();
        inner.conn.is_going_away() && inner.conn.open_streams() == 0
    }

    /// Streams not yet closed both ways (a response still going out counts).
    pub fn open_streams(&self) -> usize {
        self.lock().conn.open_streams()
    }

    /// The connection is over (the channel closed): wakes every waiting worker.
    pub fn closed(&self) {
        self.lock().queued.clear();
        self.room.notify_all();
    }

    /// Sends a complete response the server wrote itself (an error page) on `stream`.
    pub fn send_response(&self, stream: u32, response: &[u8]) -> io::Result<()> {
        let (fields, body) = split_response(response);
        self.send(stream, Some(&fields), body, true).map(drop)
    }

    /// Sends on `stream`: the head if given, then what the windows allow of `data`
    /// (the rest is queued), with END_STREAM after the last byte if `end`. One lock and
    /// one write for the lot: a small response is one system call, as on HTTP/1.
    /// Says whether the stream now has more queued than the high watermark: then the
    /// sender waits (`wait_room`) before it produces more.
    pub fn send(
        &self,
        stream: u32,
        head: Option<&[Field]>,
        data: &[u8],
        end: bool,
    ) -> io::Result<bool> {
        let mut inner = self.lock();
        let Inner { conn, queued } = &mut *inner;
        if !conn.stream(stream).is_some_and(|s| s.local_open()) {
            return Err(gone());
        }
        if let Some(fields) = head {
            let fields = fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
            conn.send_headers(stream, fields, end && data.is_empty());
            if data.is_empty() {
                return self.push(&mut inner).map(|()| false);
            }
        }
        match queued.get_mut(&stream) {
            // Behind bytes already waiting: in order, after them.
            Some(q) => {
                q.data.extend_from_slice(data);
                q.end |= end;
            }
            None => {
                let n = conn.send_data(stream, data, end);
                if n < data.len() {
                    queued.insert(
                        stream,
                        Queued {
                            data: data[n..].to_vec(),
                            sent: 0,
                            end,
                        },
                    );
                }
            }
        }
        let full = queued
            .get(&stream)
            .is_some_and(|q| q.len() > self.high_watermark);
        self.push(&mut inner).map(|()| full)
    }

    /// Blocks (without the GIL) while `stream` has more queued than the high watermark;
    /// false once the stream or the connection is gone.
    pub fn wait_room(&self, stream: u32) -> bool {
        let mut inner = self.lock();
        loop {
            if self.channel.is_closed() || inner.conn.stream(stream).is_none() {
                return false;
            }
            if !inner
                .queued
                .get(&stream)
                .is_some_and(|q| q.len() > self.high_watermark)
            {
                return true;
            }
            // The timeout only guards against a lost wake-up; the loop notifies.
            inner = self
                .room
                .wait_timeout(inner, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The application failed mid-response: reset `stream` unless its end is sent or
    /// queued (a complete response is never cut).
    pub fn abort(&self, stream: u32) {
        let mut inner = self.lock();
        let ended = inner.queued.get(&stream).is_some_and(|q| q.end);
        let open = inner.conn.stream(stream).is_some_and(|s| s.local_open());
        if open && !ended {
            inner.queued.remove(&stream);
            inner.conn.reset_stream(stream, ErrorCode::INTERNAL_ERROR);
            let _ = self.push(&mut inner);
        }
    }
}

/// Sends what opened windows allow of every stream's queue.
fn resume(inner: &mut Inner) {
    let Inner { conn, queued } = inner;
    queued.retain(|&stream, q| {
        if conn.stream(stream).is_none() {
            return false;
        }
        let n = conn.send_data(stream, &q.data[q.sent..], q.end);
        q.sent += n;
        if q.sent == q.data.len() {
            return false;
        }
        if q.sent > 1 << 20 && q.sent > q.data.len() / 2 {
            // Most of a big response is gone: give its memory back before the end.
            q.data.drain(..q.sent);
            q.sent = 0;
        }
        true
    });
}

/// A worker's handle on the stream whose request it runs.
#[derive(Debug, Clone)]
pub struct H2Stream {
    pub conn: Arc<H2Conn>,
    pub id: u32,
}
