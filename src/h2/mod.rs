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
//!
//! What must hold: no input, however hostile, makes this code panic, allocate beyond one
//! frame's payload (frames) or the caller's header-list limit (HPACK), or loop without
//! consuming input. The connection state machine (streams, flow control, the preface,
//! CONTINUATION assembly) sits above these layers and is not part of this module yet.

pub mod error;
pub mod frame;
pub mod hpack;

pub use error::{ErrorCode, H2Error};
