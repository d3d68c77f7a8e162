//! The loop's side of an HTTP/2 connection: what `State::H2` holds, kept apart from
//! the stage (`http2.rs`) so that the loop's own file holds it without depending on
//! the stage. This module uses nothing of the loop's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::body::BodyBuffer;
use crate::engine::http2::H2Conn;
use crate::h2::conn::Event;
use crate::h2::request::BodyCheck;
use crate::http::request::RequestHead;

/// A request whose body is still arriving.
pub(super) struct Incoming {
    pub(super) head: RequestHead,
    pub(super) body: BodyBuffer,
    pub(super) received: Instant,
    /// Its DATA against its content-length and `max_request_body_size` (§8.1.1).
    pub(super) check: BodyCheck,
}

/// The loop's side of an HTTP/2 connection.
pub(super) struct H2State {
    pub(super) conn: Arc<H2Conn>,
    pub(super) incoming: HashMap<u32, Incoming>,
    /// Streams a worker has, or that wait for one.
    pub(super) running: usize,
    /// Kept between reads so its allocation is reused.
    pub(super) events: Vec<Event>,
}

impl H2State {
    /// Whether nothing is under way: no stream open, running or being received.
    pub(super) fn quiet(&self) -> bool {
        self.running == 0 && self.incoming.is_empty() && self.conn.open_streams() == 0
    }
}
