//! The HTTP/1.x protocol, as pure functions over bytes.
//!
//! Nothing in this module performs I/O or knows about Python: it takes byte slices and
//! answers "complete", "need more" or "error", like httparse. That keeps it testable at
//! every byte boundary and fuzzable. The engine (`crate::engine`) feeds it bytes from
//! sockets; the WSGI layer (`crate::wsgi`) turns its results into environ entries.

pub mod chunked;
pub mod date;
pub mod proxy;
pub mod reader;
pub mod request;
pub mod response;
pub mod scan;

/// RFC 9110 `tchar`: the bytes of a token (method, header name, coding, extension).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A small deterministic generator (xorshift64) for the randomized parser tests.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
