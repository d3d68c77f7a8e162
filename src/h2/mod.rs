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
//! - [`conn`]: the server side of a connection: the preface, the SETTINGS exchange, PING,
//!   field blocks across CONTINUATION under a cap, stream states and flow control, as
//!   events for the engine and bytes to send.
//! - [`request`]: the request rules of §8.1–8.3 (pseudo-headers, connection-specific
//!   fields, field syntax, content-length against DATA), turning a stream's field list
//!   into the server's `http::request::RequestHead`, read like an HTTP/1.1 head.
//!
//! What must hold: no input, however hostile, makes this code panic, allocate beyond one
//! frame's payload (frames), the caller's header-list limit (HPACK) or the header-block
//! cap (connection), or loop without consuming input.
//!
//! Not here yet: the flood counters (resets, SETTINGS, PING, empty frames), and the
//! engine that drives [`conn::Connection`] from its loop.

pub mod conn;
pub mod error;
pub mod frame;
pub mod hpack;
pub mod request;
pub mod response;
pub mod stream;

pub use error::{ErrorCode, H2Error};
