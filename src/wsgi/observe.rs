//! What a worker reports when a request is done: the counters (`engine::stats`) and the
//! access log entry (`engine::access_log`), or a line for the `maitre.access` logger
//! when `access_log = logging` asked for Python's logging.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::engine::access_log::{AccessLog, Entry, Format, Seen, Sink};
use crate::engine::channel::Peer;
use crate::engine::stats::{method_index, Stats, ThreadStats};
use crate::http::request::RequestHead;

pub struct Observe {
    pub stats: Arc<Stats>,
    /// Per worker thread, by index.
    pub threads: Vec<ThreadStats>,
    pub access: Option<Arc<AccessLog>>,
    /// `access_log = logging`: the format and the `maitre.access` logger.
    pub access_logger: Option<(Format, Py<PyAny>)>,
}

impl Default for Observe {
    fn default() -> Self {
        let stats = Stats::owned();
        stats.init(std::process::id(), 0);
        Observe {
            stats: Arc::new(stats),
            threads: Vec::new(),
            access: None,
            access_logger: None,
        }
    }
}

/// How a response went, as the worker saw it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: u16,
    /// Body bytes handed to the kernel (or queued for it).
    pub body_bytes: u64,
    /// Every byte of the response (head, framing, body).
    pub bytes_out: u64,
    pub response_headers: Vec<Option<Vec<u8>>>,
}

impl Observe {
    fn format(&self) -> Option<&Format> {
        match (&self.access, &self.access_logger) {
            (Some(log), _) => Some(&log.format),
            (None, Some((f, _))) => Some(f),
            (None, None) => None,
        }
    }

    /// Where the I/O loop sends the lines of the requests it answers itself.
    pub fn sink(&self) -> Option<Sink> {
        match (&self.access, &self.access_logger) {
            (Some(log), _) => Some(Sink::Writer(log.clone())),
            (None, Some((format, _))) => Some(Sink::Logging(format.clone())),
            (None, None) => None,
        }
    }

    /// Response header names the access log needs (lower case).
    pub fn response_headers(&self) -> &[Vec<u8>] {
        self.format().map_or(&[], |f| &f.response_headers)
    }

    /// Environ keys the access log needs: only these are read back from the environ.
    pub fn environ_keys(&self) -> &[String] {
        self.format().map_or(&[], |f| &f.environ_keys)
    }

    /// Records a finished request; `head` moves into the access log entry.
    #[allow(clippy::too_many_arguments)]
    pub fn done(
        &self,
        py: Python<'_>,
        thread: usize,
        head: RequestHead,
        peer: &Peer,
        received: Instant,
        outcome: Outcome,
        environ: Option<&Bound<'_, PyDict>>,
    ) {
        let took = received.elapsed();
        let s = &self.stats;
        s.record(
            method_index(head.method()),
            outcome.status,
            took,
            outcome.bytes_out,
        );
        crate::engine::stats::StatsBlock::dec(&s.in_flight);
        let body_len = head_body_len(&head);
        if let Some(t) = self.threads.get(thread) {
            t.requests.fetch_add(1, Relaxed);
            t.bytes_read
                .fetch_add(head.buf.len() as u64 + body_len, Relaxed);
            t.bytes_written.fetch_add(outcome.bytes_out, Relaxed);
            t.work_time_us
                .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        }
        if self.access.is_none() && self.access_logger.is_none() {
            return;
        }
        let environ_values = self
            .environ_keys()
            .iter()
            .map(|k| environ_value(environ, k))
            .collect();
        let entry = Entry {
            request: Seen::Head(head),
            peer: peer.inet_addr(),
            status: outcome.status,
            body_bytes: outcome.body_bytes,
            received,
            took,
            response_headers: outcome.response_headers,
            environ: environ_values,
        };
        if let Some(log) = &self.access {
            log.push(entry);
        } else if let Some((format, logger)) = &self.access_logger {
            if let Err(e) = logger.bind(py).call_method1("info", (format.text(&entry),)) {
                e.print(py);
            }
        }
    }
}

/// The request body's declared length (Content-Length), for per-thread bytes read.
fn head_body_len(head: &RequestHead) -> u64 {
    match head.body {
        crate::http::request::BodyKind::Length(n) => n,
        _ => 0,
    }
}

fn environ_value(environ: Option<&Bound<'_, PyDict>>, key: &str) -> Option<String> {
    let v = environ?.get_item(key).ok()??;
    match v.cast::<PyString>() {
        Ok(s) => s.to_str().ok().map(str::to_owned),
        Err(_) => v
            .str()
            .ok()
            .and_then(|s| s.to_str().ok().map(str::to_owned)),
    }
}
