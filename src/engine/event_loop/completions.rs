//! Stage 4: completions. A worker done with a connection's requests hands it back.
//!
//! 1. [`EventLoop::take_completions`] takes what the workers have finished: the loop is
//!    woken for a completion only when it asked (`await_completion`: input is waiting),
//!    and otherwise picks them up at the start of each round;
//! 2. `complete` decides what comes next for the connection:
//!    - the client is gone: close;
//!    - the response closes the connection (it says so, as every response to the last
//!      request of a graceful stop does: `last_request`): send what is queued, then
//!      close;
//!    - a response that went out keep-alive before the stop began leaves the
//!      connection idle like any other: the client may send its next request at once,
//!      and closing now would lose it. That request is answered with
//!      `Connection: close`, or the drain's linger closes the connection
//!      (`shutdown.rs`);
//!    - otherwise wait for the next request: requests a worker handed back because the
//!      client lagged behind its queued output go first (once it has read some), then
//!      what is buffered, then what the kernel holds; with none of those, the
//!      connection is idle (`mark_idle`: it may be evicted at `connection_limit`).

use super::{EventLoop, State};
use crate::engine::dispatch::Completion;

impl EventLoop {
    pub(super) fn take_completions(&mut self) {
        let mut done = std::mem::take(&mut self.done);
        self.completions.take(&mut done);
        for c in done.drain(..) {
            let token = Some(c.token);
            self.guarded(token, |lp| lp.complete(c));
        }
        self.done = done;
    }

    /// Takes up a connection whose requests a worker has finished.
    fn complete(&mut self, c: Completion) {
        if c.stream != 0 {
            // One stream of an HTTP/2 connection: the connection was never the worker's.
            return self.h2_stream_done(c);
        }
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
        } else if c.close {
            conn.state = State::Closing;
            self.finish_close(c.token);
            self.drive(c.token);
        } else {
            conn.state = State::head(None);
            if c.rest.is_empty() {
                self.consume_buffered(c.token);
                self.drive(c.token);
            } else {
                conn.held = c.rest;
                self.resume_reading(c.token);
            }
            // Waiting for the next request, unless it was there already: idle.
            self.mark_idle(c.token);
        }
    }
}
