//! Building the PEP 3333 environ of one request: a copy of the listener's template plus
//! the request's own entries. Header values are decoded as latin-1 (PEP 3333), never as
//! UTF-8; the path is percent-decoded and tunnelled through latin-1, as waitress does.

use std::os::raw::c_void;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use std::sync::Arc;

use crate::engine::body::Body;
use crate::engine::channel::{Channel, Peer};
use crate::http::request::{BodyKind, RequestHead, Version};
use crate::wsgi::context::{environ_key, is_proxy_header, WsgiContext};
use crate::wsgi::input::Input;
use crate::wsgi::worker::DisconnectedCheck;

/// A `str` whose code points are the given bytes (latin-1), with no validation to fail.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the pointer and length describe a live slice; a 1-byte-kind string accepts
    // any byte. PyUnicode_FromKindAndData returns a new reference or NULL with an error
    // set (only on memory exhaustion), which from_owned_ptr would turn into a panic that
    // the worker's panic guard catches.
    unsafe {
        let ptr = ffi::PyUnicode_FromKindAndData(
            ffi::PyUnicode_1BYTE_KIND as _,
            bytes.as_ptr() as *const c_void,
            bytes.len() as ffi::Py_ssize_t,
        );
        Bound::from_owned_ptr(py, ptr).cast_into_unchecked()
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a path; malformed escapes are kept as they are (like `unquote`).
pub fn percent_decode(path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
}

/// Splits a request-target into (path, query): the fragment is dropped, and an
/// absolute-form target loses its scheme and authority.
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut rest = target;
    if let Some(hash) = memchr::memchr(b'#', rest) {
        rest = &rest[..hash];
    }
    let (mut path, query) = match memchr::memchr(b'?', rest) {
        Some(q) => (&rest[..q], &rest[q + 1..]),
        None => (rest, &b""[..]),
    };
    if !path.starts_with(b"/") {
        if let Some(p) = memchr::memmem::find(path, b"://") {
            let after = &path[p + 3..];
            path = match memchr::memchr(b'/', after) {
                Some(slash) => &after[slash..],
                None => b"",
            };
        }
    }
    (path, query)
}

/// SCRIPT_NAME is the configured prefix; PATH_INFO loses it only on an exact segment
/// match (waitress's rule: `/app` and `/app/x` match `/app`, `/apple` does not).
pub fn apply_prefix<'a>(path: &'a [u8], prefix: &[u8]) -> &'a [u8] {
    if prefix.is_empty() {
        return path;
    }
    if path == prefix {
        return b"";
    }
    if path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()] == b'/' {
        return &path[prefix.len()..];
    }
    path
}

/// The environ of one request; `body` becomes `wsgi.input`.
pub fn build<'py>(
    py: Python<'py>,
    ctx: &WsgiContext,
    head: &RequestHead,
    channel: &Arc<Channel>,
    body: Body,
) -> PyResult<Bound<'py, PyDict>> {
    let k = &ctx.keys;
    let chunked = head.body == BodyKind::Chunked;
    let body_len = body.len();
    let env = ctx.templates[channel.listener].bind(py).copy()?;

    let method = head.method();
    match ctx.method(py, method) {
        Some(m) => env.set_item(k.request_method.bind(py), m)?,
        None => env.set_item(k.request_method.bind(py), latin1(py, method))?,
    }

    let target = head.target();
    let (raw_path, query) = split_target(target);
    let mut path = Vec::with_capacity(raw_path.len());
    percent_decode(raw_path, &mut path);
    // Any run of leading slashes becomes one, as in waitress.
    let lead = path.iter().take_while(|&&b| b == b'/').count();
    let path = if lead > 1 {
        &path[lead - 1..]
    } else {
        &path[..]
    };
    let path = apply_prefix(path, ctx.opts.url_prefix.as_bytes());
    env.set_item(k.path_info.bind(py), latin1(py, path))?;
    if query.is_empty() {
        env.set_item(k.query_string.bind(py), k.empty.bind(py))?;
    } else {
        env.set_item(k.query_string.bind(py), latin1(py, query))?;
    }
    env.set_item(k.request_uri.bind(py), latin1(py, target))?;
    let protocol = match head.version {
        Version::Http10 => k.http10.bind(py),
        Version::Http11 => k.http11.bind(py),
    };
    env.set_item(k.server_protocol.bind(py), protocol)?;

    match &channel.peer {
        Peer::Inet { ip, port, .. } => {
            let ip = PyString::new(py, ip);
            env.set_item(k.remote_addr.bind(py), &ip)?;
            env.set_item(k.remote_host.bind(py), &ip)?;
            env.set_item(k.remote_port.bind(py), PyString::new(py, port))?;
        }
        Peer::Unix => {
            let local = PyString::new(py, "localhost");
            env.set_item(k.remote_addr.bind(py), &local)?;
            env.set_item(k.remote_host.bind(py), &local)?;
            env.set_item(k.remote_port.bind(py), PyString::new(py, "None"))?;
        }
    }

    for (key, value) in channel.transport_environ() {
        env.set_item(key, value)?;
    }

    let mut keybuf = Vec::with_capacity(64);
    for (i, h) in head.headers.iter().enumerate() {
        let name = head.header_name(h);
        // The body reaches the application decoded: its framing headers would mislead.
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || (chunked && name.eq_ignore_ascii_case(b"content-length"))
            || (ctx.opts.clear_proxy_headers && is_proxy_header(name))
        {
            continue;
        }
        let value = latin1(py, head.header_value(h));
        let owned_key;
        let key = match ctx.known_header(py, name) {
            Some(key) => key,
            None => {
                environ_key(name, &mut keybuf);
                owned_key = latin1(py, &keybuf);
                &owned_key
            }
        };
        // Repeated fields are joined with ", " (RFC 9110 section 5.3), as waitress does.
        // Whether a field repeats is decided on the bytes: most requests have none, and
        // then no dict lookup is made.
        let repeated = head.headers[..i].iter().any(|p| {
            let other = head.header_name(p);
            other.len() == name.len() && other.eq_ignore_ascii_case(name)
        });
        if repeated {
            if let Some(prev) = env.get_item(key)? {
                let joined = format!("{}, {}", prev.extract::<String>()?, value.to_str()?);
                env.set_item(key, joined)?;
                continue;
            }
        }
        env.set_item(key, value)?;
    }
    if chunked {
        let mut b = itoa::Buffer::new();
        env.set_item(
            k.content_length.bind(py),
            PyString::new(py, b.format(body_len)),
        )?;
    }

    env.set_item(k.wsgi_input.bind(py), Bound::new(py, Input::new(body))?)?;
    let check = Bound::new(py, DisconnectedCheck::new(channel))?;
    env.set_item(k.maitre_disconnected.bind(py), &check)?;
    env.set_item(k.waitress_disconnected.bind(py), check)?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(
            split_target(b"/a/b?x=1&y=2#frag"),
            (&b"/a/b"[..], &b"x=1&y=2"[..])
        );
        assert_eq!(split_target(b"/"), (&b"/"[..], &b""[..]));
        assert_eq!(
            split_target(b"http://example.com/p?q"),
            (&b"/p"[..], &b"q"[..])
        );
        assert_eq!(split_target(b"http://example.com"), (&b""[..], &b""[..]));
        assert_eq!(split_target(b"*"), (&b"*"[..], &b""[..]));
        assert_eq!(
            split_target(b"//double/slash?q"),
            (&b"//double/slash"[..], &b"q"[..])
        );
    }

    #[test]
    fn paths_are_percent_decoded_leniently() {
        let mut out = Vec::new();
        percent_decode(b"/caf%C3%A9/%zz/%2", &mut out);
        assert_eq!(out, b"/caf\xc3\xa9/%zz/%2");
        percent_decode(b"%41%", &mut out);
        assert_eq!(out, b"A%");
    }

    #[test]
    fn url_prefix_matches_whole_segments() {
        assert_eq!(apply_prefix(b"/app", b"/app"), b"");
        assert_eq!(apply_prefix(b"/app/x", b"/app"), b"/x");
        assert_eq!(apply_prefix(b"/apple", b"/app"), b"/apple");
        assert_eq!(apply_prefix(b"/x", b""), b"/x");
    }
}
