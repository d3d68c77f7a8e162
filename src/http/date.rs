//! The `Date` header value (RFC 9110 section 5.6.7), formatted at most once a second per
//! thread: formatting a date costs more than the rest of a small response head.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

thread_local! {
    static CACHE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Calls `f` with the current date as an IMF-fixdate.
pub fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            let bytes = text.as_bytes();
            if bytes.len() == DATE_LEN {
                cache.1.copy_from_slice(bytes);
                cache.0 = secs;
            } else {
                // Years beyond 9999 do not fit the fixed format; never cache them.
                return f(bytes);
            }
        }
        f(&cache.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_imf_fixdate() {
        with_http_date(|d| {
            assert_eq!(d.len(), DATE_LEN);
            assert!(d.ends_with(b" GMT"));
            assert!(httpdate::parse_http_date(std::str::from_utf8(d).unwrap()).is_ok());
        });
    }
}
