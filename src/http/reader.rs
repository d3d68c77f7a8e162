//! Reading one request head from bytes that arrive a few at a time: the one reader the
//! event loop (`engine::event_loop::requests`) and the Python-facing parser
//! (`wsgi::parser::Incremental`) both use, so that a request meets the same rules and
//! limits whichever of them reads it.
//!
//! The caller owns the buffer: it appends what arrives and calls [`HeadReader::read`]
//! with everything received since the request began. The reader only remembers how far
//! it has looked, so that a head trickling in a byte at a time costs time linear in the
//! new bytes (`scan::find_head_end`), and runs the full parse (`request::parse_head`)
//! once the empty line that ends a head has arrived.
//!
//! What must hold:
//! - a head is refused with the same error whatever the read sizes, once complete;
//! - a head is never allowed to grow past `max_header_size` while its end is awaited
//!   (431 with the one message built in `request::header_too_large`);
//! - an eager reader (the server's) also parses the first bytes of a head at once, so
//!   that a TLS handshake or other garbage sent to a plain port is answered now rather
//!   than at a timeout; the Python parser stays lazy, as waitress's parser is (it looks
//!   at a head only once its end has arrived). Later reads only look for the end.
//!
//! The body is not read here: receiving it may spill to a temporary file, which is I/O,
//! so the choice of body receiver for a head's framing is
//! `engine::body::BodyReceiver::for_framing`, next to the receivers themselves.

use crate::http::request::{answer_version, header_too_large, parse_head};
use crate::http::request::{Limits, RequestError, RequestHead, Version};
use crate::http::scan::find_head_end;

/// Where the reading of one head stands.
#[derive(Debug, Clone, Copy)]
pub struct HeadReader {
    /// The first `scanned` bytes of the buffer hold no end of a head.
    scanned: usize,
    /// Parse the first bytes at once (see the module comment).
    eager: bool,
}

/// A head refused: what to answer, and in which version.
#[derive(Debug)]
pub struct Refused {
    pub error: RequestError,
    /// The request's own version when its request line was understood, else HTTP/1.0.
    pub version: Version,
    /// Bytes of the buffer the refused head takes: to its end when it was complete,
    /// else all of them.
    pub used: usize,
}

impl HeadReader {
    /// The server's reader: refuses garbage in the first bytes at once.
    pub fn eager() -> HeadReader {
        HeadReader {
            scanned: 0,
            eager: true,
        }
    }

    /// A reader that looks at a head only once its end has arrived.
    pub fn lazy() -> HeadReader {
        HeadReader {
            scanned: 0,
            eager: false,
        }
    }

    /// Looks at `buf`, every byte received since the request began. `Ok(None)`: not a
    /// whole head yet (call again with more); `Ok(Some((head, used)))`: a head, which
    /// took the first `used` bytes (empty lines before its request line included).
    pub fn read(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(RequestHead, usize)>, Refused> {
        let refuse = |error: RequestError, used: usize| {
            // In the request's own version when its request line was understood (an
            // HTTP/1.1 client expects HTTP/1.1).
            let version = answer_version(buf, &error);
            Refused {
                error,
                version,
                used,
            }
        };
        let end = match find_head_end(buf, self.scanned) {
            Err(e) => return Err(refuse(e, buf.len())),
            Ok(Some(end)) => end,
            Ok(None) => {
                if self.eager && self.scanned == 0 {
                    if let Err(e) = parse_head(buf, limits) {
                        return Err(refuse(e, buf.len()));
                    }
                }
                if buf.len() > limits.max_header_size {
                    return Err(refuse(header_too_large(limits), buf.len()));
                }
                self.scanned = buf.len();
                return Ok(None);
            }
        };
        match parse_head(buf, limits) {
            Err(e) => Err(refuse(e, end)),
            // Only empty lines so far (they may precede a request: RFC 9112 2.2).
            Ok(None) => {
                self.scanned = buf.len();
                Ok(None)
            }
            Ok(Some(parsed)) => Ok(Some(parsed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_size: 64,
        max_body_size: 100,
        max_fields: 10,
    };

    /// Feeds `input` in pieces of `step` bytes to a growing buffer.
    fn read_in(mut reader: HeadReader, input: &[u8], step: usize) -> Result<usize, u16> {
        let mut buf = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            match reader.read(&buf, &LIMITS) {
                Ok(None) => {}
                Ok(Some((_, used))) => return Ok(used),
                Err(r) => return Err(r.error.status()),
            }
        }
        Err(0)
    }

    #[test]
    fn a_head_is_read_whatever_the_read_sizes() {
        let req = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        for step in 1..req.len() {
            for reader in [HeadReader::eager(), HeadReader::lazy()] {
                assert_eq!(read_in(reader, req, step), Ok(req.len() - 4), "{step}");
            }
        }
    }

    #[test]
    fn only_the_eager_reader_refuses_a_partial_head_at_once() {
        let garbage = b"\x16\x03\x01\x02\x00\x01\x00";
        assert_eq!(read_in(HeadReader::eager(), garbage, 100), Err(400));
        assert_eq!(read_in(HeadReader::lazy(), garbage, 100), Err(0));
        // Only the first look parses: later reads only look for the end.
        let mut reader = HeadReader::eager();
        assert!(matches!(
            reader.read(b"GET / HTTP/1.1\r\n", &LIMITS),
            Ok(None)
        ));
        assert!(matches!(
            reader.read(b"GET / HTTP/1.1\r\nX\x01", &LIMITS),
            Ok(None)
        ));
    }

    #[test]
    fn a_head_may_not_outgrow_the_limit() {
        for reader in [HeadReader::eager(), HeadReader::lazy()] {
            let long = [b'a'; 65];
            assert_eq!(read_in(reader, &long, 65), Err(431));
            assert_eq!(read_in(reader, &long, 1), Err(431));
        }
    }

    #[test]
    fn a_refused_complete_head_takes_the_bytes_to_its_end() {
        let req = b"GET / HTTP/1.1\r\n\r\nGET";
        let refused = HeadReader::lazy().read(req, &LIMITS).unwrap_err();
        assert_eq!((refused.error.status(), refused.used), (400, req.len() - 3));
        assert_eq!(refused.version, Version::Http11);
    }
}
