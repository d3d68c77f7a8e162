//! HTTP/2 error codes (RFC 9113 §7) and the two scopes an error can have (§5.4): a
//! connection error ends the connection with GOAWAY, a stream error resets one stream
//! with RST_STREAM and the connection goes on.
//!
//! What must hold: an error code received from the peer is kept as its number, even when
//! it is one this code does not know (§7: unknown codes MUST NOT trigger special
//! behaviour), so the code is a newtype over `u32` rather than a closed enum.

use std::fmt;

/// An RFC 9113 §7 error code, as carried by RST_STREAM and GOAWAY.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    pub const PROTOCOL_ERROR: ErrorCode = ErrorCode(0x1);
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x2);
    pub const FLOW_CONTROL_ERROR: ErrorCode = ErrorCode(0x3);
    pub const SETTINGS_TIMEOUT: ErrorCode = ErrorCode(0x4);
    pub const STREAM_CLOSED: ErrorCode = ErrorCode(0x5);
    pub const FRAME_SIZE_ERROR: ErrorCode = ErrorCode(0x6);
    pub const REFUSED_STREAM: ErrorCode = ErrorCode(0x7);
    pub const CANCEL: ErrorCode = ErrorCode(0x8);
    pub const COMPRESSION_ERROR: ErrorCode = ErrorCode(0x9);
    pub const CONNECT_ERROR: ErrorCode = ErrorCode(0xa);
    pub const ENHANCE_YOUR_CALM: ErrorCode = ErrorCode(0xb);
    pub const INADEQUATE_SECURITY: ErrorCode = ErrorCode(0xc);
    pub const HTTP_1_1_REQUIRED: ErrorCode = ErrorCode(0xd);

    /// The RFC's name for a known code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ErrorCode({:#x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A protocol error and its scope (RFC 9113 §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Error {
    /// §5.4.1: send GOAWAY with this code and close the connection.
    Connection(ErrorCode),
    /// §5.4.2: send RST_STREAM with this code on `stream_id`; the connection goes on.
    Stream { stream_id: u32, code: ErrorCode },
}

impl H2Error {
    pub fn code(self) -> ErrorCode {
        match self {
            H2Error::Connection(code) | H2Error::Stream { code, .. } => code,
        }
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::Connection(code) => write!(f, "connection error {code}"),
            H2Error::Stream { stream_id, code } => {
                write!(f, "stream error {code} on stream {stream_id}")
            }
        }
    }
}

impl std::error::Error for H2Error {}

/// A connection error and why it happened: the code for the GOAWAY, and a short text for
/// the engine's log (`conn::Connection::cause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: ErrorCode,
    pub cause: &'static str,
}

impl Failure {
    pub(crate) fn new(code: ErrorCode, cause: &'static str) -> Failure {
        Failure { code, cause }
    }

    pub(crate) fn protocol(cause: &'static str) -> Failure {
        Failure::new(ErrorCode::PROTOCOL_ERROR, cause)
    }
}
