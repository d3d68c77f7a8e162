//! What a client did on an HTTP/2 connection, as `super::conn::Connection` reports it
//! to the engine.

use super::error::ErrorCode;
use super::hpack::HeaderField;

/// What the client did, for the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new request's field list, not yet checked against §8.1–8.3: give it to
    /// `super::request::request_head`.
    RequestHeaders {
        stream: u32,
        fields: Vec<HeaderField>,
        end_stream: bool,
    },
    /// A new request whose decoded header list passed `max_header_list_size`: its
    /// fields were dropped; the engine answers 431 on the stream (RFC 9113 §10.5.1).
    HeadersTooLarge { stream: u32, end_stream: bool },
    /// Trailers: a second field block, which ends the request.
    Trailers {
        stream: u32,
        fields: Vec<HeaderField>,
    },
    /// Request body bytes (padding removed). Call [`Connection::release`] as the
    /// application takes them, so the client's window opens again.
    Data {
        stream: u32,
        bytes: Vec<u8>,
        end_stream: bool,
    },
    /// The stream is gone: reset by the client (`remote`), or by us after a stream error.
    Reset {
        stream: u32,
        code: ErrorCode,
        remote: bool,
    },
    /// The client is going away; streams above `last_stream_id` were not processed.
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
    },
    /// The client's windows grew: output waiting on `stream` (0: any) may go on.
    WindowOpened { stream: u32 },
}
