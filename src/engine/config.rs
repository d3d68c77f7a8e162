//! The settings the engine itself acts on. Each is a row of the settings table
//! (`SETTINGS` in `maitre.adjustments`, marked `engine=True`), parsed and validated
//! once in Python, and handed over at start (`src/wsgi/settings.rs` reads each field
//! from its row's key).
//!
//! What must hold: the engine declares no defaults of its own. A value is the one the
//! table gave, or starting fails naming the missing key; the table is the one place
//! where a default is written.

use std::time::Duration;

use crate::engine::proxy_protocol::ProxyProtocol;
use crate::http::request::Limits;

#[derive(Debug, Clone)]
pub struct Config {
    pub threads: usize,
    pub recv_bytes: usize,
    pub inbuf_overflow: usize,
    pub outbuf_overflow: usize,
    pub outbuf_high_watermark: usize,
    pub connection_limit: usize,
    pub cleanup_interval: Duration,
    pub channel_timeout: Duration,
    pub channel_request_lookahead: usize,
    /// Bytes per second a request body must average once its grace period is over
    /// (`min_request_body_rate`; 0: no minimum).
    pub min_body_rate: u64,
    pub log_socket_errors: bool,
    /// `max_request_header_size`, `max_request_body_size`, `max_request_headers`.
    pub limits: Limits,
    pub ident: String,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// How long a graceful stop leaves idle keep-alive connections open for a last
    /// request (`keepalive_linger`; zero: closed at once).
    pub keepalive_linger: Duration,
    /// `proxy_protocol` and `proxy_protocol_from` (`None`: off).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Jobs that may wait for a thread before the next request is answered 503 by the
    /// loop (`max_queued_requests`; 0: no limit).
    pub max_queued_requests: usize,
    /// How long a job may wait for a thread before its request is answered 503 by the
    /// loop (`queue_timeout`; zero: no limit).
    pub queue_timeout: Duration,
    /// How long a keep-alive connection may wait between requests (`keepalive_timeout`;
    /// zero: `channel_timeout`, checked at its sweep, as in waitress).
    pub keepalive_timeout: Duration,
    /// How long an application call may run before it is answered 504 (or its
    /// connection cut) and interrupted (`request_timeout`; zero: no limit). Acted on by
    /// the WSGI layer's watchdog, which alone may touch Python.
    pub request_timeout: Duration,
    /// Serve HTTP/2 (`http2`): ALPN `h2` on TLS listeners, the prior-knowledge preface
    /// on cleartext ones.
    pub http2: bool,
}

#[cfg(test)]
impl Config {
    /// A configuration for unit tests. Test data, not defaults: the values a running
    /// engine uses always come from the settings table. These happen to be waitress's,
    /// so that a test reads like a default server; a test that depends on one sets it.
    pub fn for_tests() -> Config {
        Config {
            threads: 4,
            recv_bytes: 8192,
            inbuf_overflow: 524_288,
            outbuf_overflow: 1_048_576,
            outbuf_high_watermark: 16_777_216,
            connection_limit: 100,
            cleanup_interval: Duration::from_secs(30),
            channel_timeout: Duration::from_secs(120),
            channel_request_lookahead: 0,
            min_body_rate: 500,
            log_socket_errors: true,
            limits: Limits {
                max_header_size: 262_144,
                max_body_size: 1_073_741_824,
                max_fields: 100,
            },
            ident: "maitre".into(),
            shutdown_timeout: Duration::from_secs(30),
            keepalive_linger: Duration::from_secs(2),
            proxy_protocol: None,
            max_queued_requests: 0,
            queue_timeout: Duration::ZERO,
            keepalive_timeout: Duration::ZERO,
            request_timeout: Duration::ZERO,
            http2: false,
        }
    }
}
