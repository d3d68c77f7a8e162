//! The client connection preface (RFC 9113 §3.4), and telling an HTTP/2 prior-knowledge
//! connection from an HTTP/1 one by its first bytes.
//!
//! What must hold: an HTTP/1 request is told apart at its first byte that differs from
//! the preface, so a cleartext listener never waits on it.

/// The client connection preface (§3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefaceMatch {
    /// The whole preface is there.
    Http2,
    /// Every byte so far matches the preface: wait for more.
    Partial,
    /// A byte differs: not HTTP/2 prior knowledge (an HTTP/1 request, or garbage).
    NotHttp2,
}

/// Compares the start of a connection with the preface, so an HTTP/1 request is told
/// apart at its first byte that differs (for "GET", the very first).
pub fn check_preface(buf: &[u8]) -> PrefaceMatch {
    let n = buf.len().min(PREFACE.len());
    if buf[..n] != PREFACE[..n] {
        PrefaceMatch::NotHttp2
    } else if n == PREFACE.len() {
        PrefaceMatch::Http2
    } else {
        PrefaceMatch::Partial
    }
}
