//! Finding the end of a request head in bytes that arrive a few at a time.
//!
//! The engine calls this on every read before a head is complete, so it must cost time
//! linear in the *new* bytes only: a client trickling a 256 KiB head one byte at a time
//! must not make us rescan it from the start each time.

use crate::http::request::RequestError;

/// Scans `buf[from..]` (with three bytes of overlap) for the empty line that ends a head.
///
/// Returns the offset just past `\r\n\r\n`, `None` if it has not arrived yet, or an error
/// for a bare LF: a client that ends lines with LF alone would otherwise wait for a
/// terminator that never comes (and RFC 9112 forbids accepting it: CVE-2019-16785).
pub fn find_head_end(buf: &[u8], from: usize) -> Result<Option<usize>, RequestError> {
    let start = from.saturating_sub(3);
    for i in memchr::memchr_iter(b'\n', &buf[start..]).map(|i| i + start) {
        if i == 0 || buf[i - 1] != b'\r' {
            return Err(RequestError::BadRequest(
                "Bare CR or LF found in HTTP message".into(),
            ));
        }
        if i >= 3 && &buf[i - 3..i - 1] == b"\r\n" {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_terminator_at_any_split() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let end = req.len() - 4;
        for split in 0..req.len() {
            let first = find_head_end(&req[..split], 0).unwrap();
            let found = match first {
                Some(e) => Some(e),
                None => find_head_end(req, split).unwrap(),
            };
            assert_eq!(found, Some(end), "split at {split}");
        }
    }

    #[test]
    fn rejects_bare_lf() {
        assert!(find_head_end(b"GET / HTTP/1.1\nHost: x\n\n", 0).is_err());
        assert!(find_head_end(b"\n", 0).is_err());
        assert!(find_head_end(b"GET / HTTP/1.1\r\nX: y\r\n", 0)
            .unwrap()
            .is_none());
    }
}
