//! Responses on an HTTP/2 stream, from the server's HTTP/1 serialisation.
//!
//! The server decides a response head once, in HTTP/1 terms (`http::response`: the
//! application's validated headers, then Content-Length, Date, Server/Via, and the rules
//! for 1xx/204/304). [`head_fields`] turns that head into the field list of a HEADERS
//! frame, so the two protocols cannot disagree on what a response says:
//! - `:status` first (RFC 9113 §8.3.2), from the status line;
//! - names lower-cased (§8.2.1: a field name with an upper-case letter is malformed);
//! - connection-specific fields dropped (§8.2.2: Connection, Keep-Alive,
//!   Proxy-Connection, Transfer-Encoding, Upgrade), whoever set them.
//!
//! [`split_response`] does the same for a complete response the server writes itself
//! (an error page, a 503), returning its body beside the fields.

/// A field of a response head: name (lower case) and value.
pub type Field = (Vec<u8>, Vec<u8>);

/// Fields that belong to one HTTP/1 connection and must not appear in HTTP/2 (§8.2.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// Whether HTTP/2 forbids the field `name` (any case).
pub fn is_connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// The fields of an HTTP/1 response head (`HTTP/x.y NNN reason\r\n`, header lines, and
/// optionally the empty line). Lines that do not parse are skipped: the head was
/// produced by the server from validated parts.
pub fn head_fields(head: &[u8]) -> Vec<Field> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut fields = Vec::with_capacity(8);
    let status = lines
        .next()
        .and_then(|l| l.splitn(3, |&b| b == b' ').nth(1))
        .filter(|s| s.len() == 3)
        .unwrap_or(b"500");
    fields.push((b":status".to_vec(), status.to_vec()));
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        if name.is_empty() || is_connection_specific(name) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        fields.push((name.to_ascii_lowercase(), value.to_vec()));
    }
    fields
}

/// A complete HTTP/1 response (head and a Content-Length body) as fields and body.
pub fn split_response(response: &[u8]) -> (Vec<Field>, &[u8]) {
    match memchr::memmem::find(response, b"\r\n\r\n") {
        Some(end) => (head_fields(&response[..end]), &response[end + 4..]),
        None => (head_fields(response), &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn status_first_names_lowered_connection_fields_dropped() {
        let head = b"HTTP/2.0 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n\
                     X-Custom:  v \r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\
                     Upgrade: h2c\r\nProxy-Connection: x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
        let f = text(&head_fields(head));
        let want = [
            (":status", "404"),
            ("content-type", "text/plain"),
            ("x-custom", "v"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(f, want);
    }

    #[test]
    fn an_error_page_splits_into_fields_and_body() {
        let r = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops";
        let (fields, body) = split_response(r);
        assert_eq!(body, b"oops");
        assert_eq!(
            text(&fields),
            vec![
                (":status".into(), "500".into()),
                ("content-length".into(), "4".into())
            ]
        );
    }

    #[test]
    fn garbage_never_panics() {
        for head in [&b""[..], b"\r\n", b"HTTP/2.0", b"x\r\n:\r\nnocolon\r\n"] {
            let f = head_fields(head);
            assert_eq!(f[0].0, b":status");
        }
    }
}
