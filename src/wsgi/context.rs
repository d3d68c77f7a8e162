//! Everything the workers share for the life of a server: the application, the environ
//! keys interned once, the environ templates (one per listening socket), the logger, and
//! `request_timeout`'s watch.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

/// Python strings made once at start, so no request pays to create them.
pub struct Keys {
    pub request_method: Py<PyString>,
    pub path_info: Py<PyString>,
    pub query_string: Py<PyString>,
    pub request_uri: Py<PyString>,
    pub server_protocol: Py<PyString>,
    pub remote_addr: Py<PyString>,
    pub remote_host: Py<PyString>,
    pub remote_port: Py<PyString>,
    pub content_length: Py<PyString>,
    pub wsgi_input: Py<PyString>,
    pub maitre_disconnected: Py<PyString>,
    pub waitress_disconnected: Py<PyString>,
    pub http10: Py<PyString>,
    pub http11: Py<PyString>,
    pub http20: Py<PyString>,
    pub empty: Py<PyString>,
}

/// Header names seen in most requests, with their environ keys.
const COMMON_HEADERS: &[&str] = &[
    "Host",
    "User-Agent",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Charset",
    "Connection",
    "Cookie",
    "Referer",
    "Origin",
    "Cache-Control",
    "Pragma",
    "Content-Type",
    "Content-Length",
    "Authorization",
    "If-None-Match",
    "If-Modified-Since",
    "Upgrade-Insecure-Requests",
    "DNT",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Real-IP",
    "X-Requested-With",
    "Forwarded",
    "Via",
    "Expect",
    "Range",
    "Sec-Fetch-Dest",
    "Sec-Fetch-Mode",
    "Sec-Fetch-Site",
    "Sec-Fetch-User",
    "Priority",
    "Keep-Alive",
];

const METHODS: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The environ key for a header name: `HTTP_` + upper case with `-` as `_`, except the
/// two CGI names without prefix.
pub fn environ_key(name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if !(name.eq_ignore_ascii_case(b"content-type") || name.eq_ignore_ascii_case(b"content-length"))
    {
        out.extend_from_slice(b"HTTP_");
    }
    out.extend(name.iter().map(|&b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
}

/// Settings the WSGI layer acts on.
#[derive(Debug, Clone, Default)]
pub struct WsgiOptions {
    pub ident: String,
    pub url_prefix: String,
    pub expose_tracebacks: bool,
    pub log_socket_errors: bool,
    /// Drop proxy headers (`X-Forwarded-*`, `Forwarded`) from the environ: no proxy is
    /// trusted, so they can only be spoofed (waitress's clear_untrusted_proxy_headers).
    pub clear_proxy_headers: bool,
}

/// Request headers that only a trusted proxy may set.
pub fn is_proxy_header(name: &[u8]) -> bool {
    const PROXY_HEADERS: [&[u8]; 6] = [
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-by",
        b"forwarded",
    ];
    PROXY_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

pub struct WsgiContext {
    pub app: Py<PyAny>,
    /// Per listening socket: the environ entries that never change.
    pub templates: Vec<Py<PyDict>>,
    pub keys: Keys,
    known_headers: Vec<(&'static [u8], Py<PyString>)>,
    methods: Vec<(&'static [u8], Py<PyString>)>,
    pub logger: Py<PyAny>,
    /// `maitre.queue`: warns when requests wait for a thread.
    pub queue_logger: Py<PyAny>,
    pub ident: Vec<u8>,
    pub opts: WsgiOptions,
    /// Counters and the access log, told of every finished request.
    pub observe: crate::wsgi::observe::Observe,
    /// `request_timeout`'s watch over the worker threads; None when it is off.
    pub watch: Option<crate::wsgi::watchdog::Watch>,
}

impl WsgiContext {
    pub fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        templates: Vec<Py<PyDict>>,
        logger: Py<PyAny>,
        opts: WsgiOptions,
    ) -> Self {
        let i = |s: &str| PyString::intern(py, s).unbind();
        let keys = Keys {
            request_method: i("REQUEST_METHOD"),
            path_info: i("PATH_INFO"),
            query_string: i("QUERY_STRING"),
            request_uri: i("REQUEST_URI"),
            server_protocol: i("SERVER_PROTOCOL"),
            remote_addr: i("REMOTE_ADDR"),
            remote_host: i("REMOTE_HOST"),
            remote_port: i("REMOTE_PORT"),
            content_length: i("CONTENT_LENGTH"),
            wsgi_input: i("wsgi.input"),
            maitre_disconnected: i("maitre.client_disconnected"),
            waitress_disconnected: i("waitress.client_disconnected"),
            http10: i("HTTP/1.0"),
            http11: i("HTTP/1.1"),
            http20: i("HTTP/2.0"),
            empty: i(""),
        };
        let mut buf = Vec::new();
        let known_headers = COMMON_HEADERS
            .iter()
            .map(|h| {
                environ_key(h.as_bytes(), &mut buf);
                (
                    h.as_bytes(),
                    i(std::str::from_utf8(&buf).unwrap_or_default()),
                )
            })
            .collect();
        let methods = METHODS.iter().map(|m| (m.as_bytes(), i(m))).collect();
        // Without logging, a queue warning is dropped: the logger it was for is `logger`.
        let queue_logger = py
            .import("logging")
            .and_then(|l| l.call_method1("getLogger", ("maitre.queue",)))
            .map(|l| l.unbind())
            .unwrap_or_else(|_| logger.clone_ref(py));
        WsgiContext {
            app,
            templates,
            keys,
            known_headers,
            methods,
            logger,
            queue_logger,
            ident: opts.ident.as_bytes().to_vec(),
            opts,
            observe: Default::default(),
            watch: None,
        }
    }

    /// The interned environ key of a common header.
    pub fn known_header<'py>(&self, py: Python<'py>, name: &[u8]) -> Option<&Bound<'py, PyString>> {
        self.known_headers
            .iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map(|(_, k)| k.bind(py))
    }

    pub fn method<'py>(&self, py: Python<'py>, method: &[u8]) -> Option<&Bound<'py, PyString>> {
        self.methods
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, k)| k.bind(py))
    }
}
