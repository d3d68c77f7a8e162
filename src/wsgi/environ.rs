//! Building the PEP 3333 environ of one request: a copy of the listener's template plus
//! the request's own entries. Header values are decoded as latin-1 (PEP 3333), never as
//! UTF-8; the path is percent-decoded and tunnelled through latin-1, as waitress does.
//! The environ also carries `maitre.client_disconnected` ([`DisconnectedCheck`]), which
//! holds its connection weakly: an environ the application keeps must not keep a socket.

use std::os::raw::c_void;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use std::sync::{Arc, Weak};

use crate::engine::body::Body;
use crate::engine::channel::{Channel, Peer};
use crate::http::request::{BodyKind, RequestHead, Version};
use crate::wsgi::context::{environ_key, is_proxy_header, WsgiContext};
use crate::wsgi::input::Input;

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

/// Heads with at most this many fields are checked for repeated names pair by pair
/// (no allocation; most requests have a dozen fields and no repeat); larger ones take
/// the sorting path, whose cost grows as n log n, not n squared.
const PAIRWISE_FIELDS: usize = 24;

/// A head with many fields (only when `max_request_headers` allows thousands) makes
/// the environ long to build, all with the GIL held: every this many fields the GIL is
/// let go for a moment, so that other requests' threads run meanwhile.
const FIELDS_PER_GIL_HOLD: usize = 512;

fn let_others_run(py: Python<'_>, fields_done: usize) {
    if fields_done % FIELDS_PER_GIL_HOLD == FIELDS_PER_GIL_HOLD - 1 {
        crate::wsgi::gil::detach(py, || ());
    }
}

fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
}

fn cmp_name(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter()
        .map(u8::to_ascii_lowercase)
        .cmp(b.iter().map(u8::to_ascii_lowercase))
}

/// Whether some field name may repeat (always "maybe" for a head with many fields).
fn has_repeats(head: &RequestHead) -> bool {
    let fields = &head.headers;
    if fields.len() > PAIRWISE_FIELDS {
        return true;
    }
    fields.iter().enumerate().any(|(i, h)| {
        let name = head.header_name(h);
        fields[..i]
            .iter()
            .any(|p| same_name(head.header_name(p), name))
    })
}

/// The environ key of a header name: interned for the common ones, else made here.
fn header_key<'py>(
    py: Python<'py>,
    ctx: &WsgiContext,
    name: &[u8],
    keybuf: &mut Vec<u8>,
) -> Bound<'py, PyString> {
    match ctx.known_header(py, name) {
        Some(key) => key.clone(),
        None => {
            environ_key(name, keybuf);
            latin1(py, keybuf)
        }
    }
}

/// Sets the header entries of a head whose names may repeat: the fields are sorted by
/// name (stably, so repeats keep the order they came in), each name's values are joined
/// once with ", " (RFC 9110 section 5.3, as waitress does), and the entries are set in
/// the order each name first appeared. O(n log n) in the number of fields, and every
/// byte copied once, however the fields repeat.
fn set_grouped(
    py: Python<'_>,
    ctx: &WsgiContext,
    env: &Bound<'_, PyDict>,
    head: &RequestHead,
    kept: &dyn Fn(&[u8]) -> bool,
    keybuf: &mut Vec<u8>,
) -> PyResult<()> {
    let name = |i: usize| head.header_name(&head.headers[i]);
    let value = |i: usize| head.header_value(&head.headers[i]);
    let mut order: Vec<usize> = (0..head.headers.len()).filter(|&i| kept(name(i))).collect();
    // (first position, range in `order`) of each name, in order of first position.
    let group = |order: &mut Vec<usize>| {
        order.sort_by(|&a, &b| cmp_name(name(a), name(b)));
        let mut groups = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && same_name(name(order[start]), name(order[end])) {
                end += 1;
            }
            groups.push((order[start], start..end));
            start = end;
        }
        groups.sort_unstable_by_key(|(first, _)| *first);
        groups
    };
    // Sorting touches no Python object: a long sort runs without the GIL.
    let groups = if order.len() > FIELDS_PER_GIL_HOLD {
        crate::wsgi::gil::detach(py, || group(&mut order))
    } else {
        group(&mut order)
    };
    let mut joined = Vec::new();
    for (g, (first, range)) in groups.into_iter().enumerate() {
        let_others_run(py, g);
        let key = header_key(py, ctx, name(first), keybuf);
        if range.len() == 1 {
            env.set_item(key, latin1(py, value(first)))?;
            continue;
        }
        joined.clear();
        for (n, &i) in order[range].iter().enumerate() {
            if n > 0 {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(value(i));
        }
        env.set_item(key, latin1(py, &joined))?;
    }
    Ok(())
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
        Version::Http2 => k.http20.bind(py),
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

    // The body reaches the application decoded: its framing headers would mislead.
    let kept = |name: &[u8]| {
        !(name.eq_ignore_ascii_case(b"transfer-encoding")
            || (chunked && name.eq_ignore_ascii_case(b"content-length"))
            || (ctx.opts.clear_proxy_headers && is_proxy_header(name)))
    };
    let mut keybuf = Vec::with_capacity(64);
    if has_repeats(head) {
        set_grouped(py, ctx, &env, head, &kept, &mut keybuf)?;
    } else {
        for h in &head.headers {
            let name = head.header_name(h);
            if kept(name) {
                let key = header_key(py, ctx, name, &mut keybuf);
                env.set_item(key, latin1(py, head.header_value(h)))?;
            }
        }
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

/// `environ["maitre.client_disconnected"]`: true once the client is known to be gone.
#[pyclass(module = "maitre._maitre", name = "ClientDisconnectedCheck", frozen)]
pub struct DisconnectedCheck {
    /// Weak: an environ kept alive by the application must not keep the socket open.
    channel: Weak<Channel>,
}

impl DisconnectedCheck {
    pub fn new(channel: &Arc<Channel>) -> Self {
        DisconnectedCheck {
            channel: Arc::downgrade(channel),
        }
    }
}

#[pymethods]
impl DisconnectedCheck {
    fn __call__(&self) -> bool {
        self.channel.upgrade().map_or(true, |c| c.is_closed())
    }
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
