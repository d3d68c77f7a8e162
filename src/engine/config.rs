//! The settings the engine itself acts on. Parsed and validated once in Python
//! (`maitre.adjustments`), handed over at start.

use std::time::Duration;

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
    pub limits: Limits,
    pub ident: String,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    /// waitress 3.0's defaults.
    fn default() -> Self {
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
        }
    }
}
