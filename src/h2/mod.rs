//! HTTP/2 as pure protocol code: bytes in, frames and header fields out, and the bytes a
//! server sends back. Like `crate::http`, nothing here touches a socket, a timer or Python,
//! so every rule is unit-tested and fuzzed on plain byte slices.
//!
//! - [`frame`]: the RFC 9113 frame layer (§4 framing, §6 frame definitions): a decoder over
//!   a borrowed byte slice that answers complete/partial/error, bounded by
//!   SETTINGS_MAX_FRAME_SIZE, and encoders for the frames a server sends.
//! - [`hpack`]: RFC 7541 header compression, with the decoded header-list size and the
//!   dynamic table both bounded (HPACK bombs).
//! - [`error`]: the RFC 9113 §7 error codes and whether an error ends a stream or the
//!   whole connection (§5.4).
//! - [`stream`]: stream states (§5.1) and flow-control windows (§6.9).
//! - [`preface`]: the client preface, and telling HTTP/2 from HTTP/1 by the first bytes.
//! - [`config`]: the settings and limits of a connection, and the SETTINGS advertising
//!   them.
//! - [`flood`]: the flood limits (rapid reset, SETTINGS, PING, empty frames, unread
//!   answers), budgets counted in frames.
//! - [`conn`]: the server side of a connection: the preface, the SETTINGS exchange, PING,
//!   field blocks across CONTINUATION under a cap, stream states and flow control, with
//!   the flood limits applied, as events for the engine and bytes to send.
//! - [`request`]: the request rules of §8.1–8.3 (pseudo-headers, connection-specific
//!   fields, field syntax, content-length against DATA), turning a stream's field list
//!   into the server's `http::request::RequestHead`, read like an HTTP/1.1 head.
//!
//! What must hold: no input, however hostile, makes this code panic, allocate beyond one
//! frame's payload (frames), the caller's header-list limit (HPACK) or the header-block
//! cap (connection), or loop without consuming input.
//!
//! Not here: the engine that drives [`conn::Connection`] from its loop, its timers (idle,
//! SETTINGS ACK), and the WSGI side of a request (`crate::engine`, `crate::wsgi`).

pub mod config;
pub mod conn;
pub mod error;
pub mod flood;
pub mod frame;
pub mod hpack;
pub mod preface;
pub mod request;
pub mod response;
pub mod stream;

pub use error::{ErrorCode, H2Error};
