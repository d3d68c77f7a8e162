//! What the metrics listener (`metrics_listener.rs`) renders of the stats blocks:
//! `/metrics` in the Prometheus text format (the status page and `/status.json` are
//! `status_page.rs`).
//!
//! It renders one or several [`StatsBlock`]s: one for a single process, one per slot of
//! a shared map when a master runs workers (then every series carries a `worker` label,
//! and `maitre_worker_restarts_total` says how often each slot's worker was replaced).

use std::fmt::Write as _;
use std::sync::Arc;

use crate::engine::process_stats;
use crate::engine::stats::{Snapshot, Stats, BUCKETS_US, CLASSES, METHODS, SHED_REASONS};

/// The blocks one listener renders: `labelled` adds `worker="<index>"` to every series.
pub struct Blocks {
    pub blocks: Vec<Arc<Stats>>,
    pub labelled: bool,
}

impl Blocks {
    /// Snapshots of the live blocks, with their slot index.
    pub fn snapshots(&self) -> Vec<(usize, Snapshot)> {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_live())
            .map(|(i, b)| (i, b.snapshot()))
            .collect()
    }
}

/// A one-value series: name, type, help, and how to get it from a snapshot.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Snapshot) -> u64,
);

/// The one-value series of `/metrics`, in the order they are rendered. A new figure of
/// the block (`engine::stats`) that is one number is one row here; a family with
/// labels (`maitre_requests_total`, the histogram) has a rendering of its own below.
const SERIES: &[Series] = &[
    (
        "maitre_requests_in_flight",
        "gauge",
        "Requests received whole and not yet answered.",
        |s| s.in_flight,
    ),
    (
        "maitre_queue_depth",
        "gauge",
        "Jobs waiting for a worker thread.",
        |s| s.queue_depth,
    ),
    ("maitre_threads", "gauge", "Worker threads.", |s| s.threads),
    (
        "maitre_threads_busy",
        "gauge",
        "Worker threads running a request.",
        |s| s.threads_busy,
    ),
    (
        "maitre_threads_idle",
        "gauge",
        "Worker threads waiting for a request.",
        |s| s.threads.saturating_sub(s.threads_busy),
    ),
    (
        "maitre_open_connections",
        "gauge",
        "Open client connections.",
        |s| s.open_connections,
    ),
    (
        "maitre_accepts_total",
        "counter",
        "Connections accepted.",
        |s| s.accepts,
    ),
    (
        "maitre_accept_errors_total",
        "counter",
        "accept() failures.",
        |s| s.accept_errors,
    ),
    (
        "maitre_socket_errors_total",
        "counter",
        "Reads or writes that failed on a connection.",
        |s| s.socket_errors,
    ),
    (
        "maitre_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        |s| s.bytes_read,
    ),
    (
        "maitre_sent_bytes_total",
        "counter",
        "Response bytes sent (heads and bodies).",
        |s| s.bytes_written,
    ),
    (
        "maitre_body_spills_total",
        "counter",
        "Request bodies spilled to a temporary file.",
        |s| s.body_spills,
    ),
    (
        "maitre_proxy_header_errors_total",
        "counter",
        "Connections from a proxy_protocol_from peer closed without a valid PROXY header.",
        |s| s.proxy_header_errors,
    ),
    (
        "maitre_proxy_headers_untrusted_total",
        "counter",
        "PROXY headers refused from peers not in proxy_protocol_from.",
        |s| s.proxy_headers_untrusted,
    ),
    (
        "maitre_start_time_seconds",
        "gauge",
        "When the server started, in seconds since the epoch.",
        |s| s.started_ms / 1000,
    ),
    (
        "maitre_process_id",
        "gauge",
        "Process serving the requests.",
        |s| s.pid,
    ),
    (
        "maitre_connections_evicted_total",
        "counter",
        "Idle connections closed at connection_limit to admit new ones.",
        |s| s.connections_evicted,
    ),
    (
        "maitre_http2_connections_total",
        "counter",
        "Connections that spoke HTTP/2 (ALPN h2, or the cleartext preface).",
        |s| s.http2_connections,
    ),
    (
        "maitre_requests_timed_out_total",
        "counter",
        "Application calls that outran request_timeout.",
        |s| s.requests_timed_out,
    ),
    (
        "maitre_threads_stuck",
        "gauge",
        "Worker threads still in an application call request_timeout interrupted.",
        |s| s.threads_stuck,
    ),
];

fn labels(worker: Option<usize>, extra: &str) -> String {
    match (worker, extra.is_empty()) {
        (None, true) => String::new(),
        (None, false) => format!("{{{extra}}}"),
        (Some(w), true) => format!("{{worker=\"{w}\"}}"),
        (Some(w), false) => format!("{{worker=\"{w}\",{extra}}}"),
    }
}

/// The Prometheus text exposition (version 0.0.4) of `snaps`.
pub fn render_prometheus(snaps: &[(usize, Snapshot)], labelled: bool) -> String {
    let mut out = String::with_capacity(8192);
    let w = |i: usize| labelled.then_some(i);
    for &(name, kind, help, get) in SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, s) in snaps {
            let _ = writeln!(out, "{name}{} {}", labels(w(*i), ""), get(s));
        }
    }
    if labelled {
        let name = "maitre_worker_restarts_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times the master replaced this worker.\n# TYPE {name} counter"
        );
        for (i, s) in snaps {
            let _ = writeln!(out, "{name}{} {}", labels(w(*i), ""), s.restarts);
        }
    }
    let name = "maitre_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests answered, by method and status class.\n# TYPE {name} counter"
    );
    for (i, s) in snaps {
        for (m, row) in s.by_method_class.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                if *v > 0 {
                    let l = format!("method=\"{}\",status=\"{}\"", METHODS[m], CLASSES[c]);
                    let _ = writeln!(out, "{name}{} {v}", labels(w(*i), &l));
                }
            }
        }
    }
    let name = "maitre_request_duration_seconds";
    let _ = writeln!(out, "# HELP {name} From the first byte of a request to the last byte of its response handed to the kernel.\n# TYPE {name} histogram");
    for (i, s) in snaps {
        let mut cumulative = 0;
        for (b, n) in s.duration_buckets.iter().enumerate() {
            cumulative += n;
            let le = match BUCKETS_US.get(b) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".into(),
            };
            let l = format!("le=\"{le}\"");
            let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(w(*i), &l));
        }
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            labels(w(*i), ""),
            s.work_time_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {cumulative}", labels(w(*i), ""));
    }
    render_tls_failures(&mut out, snaps, labelled);
    render_shed(&mut out, snaps, labelled);
    render_process(&mut out, snaps, labelled);
    out
}

/// `maitre_tls_handshake_failures_total{reason}`: every reason, zeros included, so
/// that a rate can be taken from the first scrape.
fn render_tls_failures(out: &mut String, snaps: &[(usize, Snapshot)], labelled: bool) {
    use crate::engine::tls::HANDSHAKE_FAILURES as FAILURES;
    let name = "maitre_tls_handshake_failures_total";
    let _ = writeln!(
        out,
        "# HELP {name} TLS handshakes that failed, by reason.\n# TYPE {name} counter"
    );
    for (i, s) in snaps {
        for (n, (reason, _)) in s.tls_handshake_failures.iter().zip(FAILURES) {
            let l = format!("reason=\"{reason}\"");
            let _ = writeln!(out, "{name}{} {n}", labels(labelled.then_some(*i), &l));
        }
    }
}

/// `maitre_requests_shed_total{reason}`: every reason, zeros included (as the TLS
/// failures).
fn render_shed(out: &mut String, snaps: &[(usize, Snapshot)], labelled: bool) {
    let name = "maitre_requests_shed_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests not run: answered 503 (queue_full, queue_timeout) or dropped because the client left (client_gone).\n# TYPE {name} counter"
    );
    for (i, s) in snaps {
        for (n, reason) in s.requests_shed.iter().zip(SHED_REASONS) {
            let l = format!("reason=\"{reason}\"");
            let _ = writeln!(out, "{name}{} {n}", labels(labelled.then_some(*i), &l));
        }
    }
}

/// The `process_*` series of the Prometheus client libraries, same names and units:
/// of this process, or of each worker (labelled) under a master. Left out where the
/// system cannot say (see `engine::process_stats`).
fn render_process(out: &mut String, snaps: &[(usize, Snapshot)], labelled: bool) {
    let procs: Vec<(Option<usize>, process_stats::Process)> = if labelled {
        snaps
            .iter()
            .filter_map(|(i, s)| Some((Some(*i), process_stats::read(s.pid)?)))
            .collect()
    } else {
        process_stats::read(std::process::id() as u64)
            .map(|p| (None, p))
            .into_iter()
            .collect()
    };
    if procs.is_empty() {
        return;
    }
    type Get = fn(&process_stats::Process) -> Option<f64>;
    let series: [(&str, &str, &str, Get); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            |p| Some(p.cpu_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            |p| Some(p.resident_memory_bytes as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            |p| Some(p.virtual_memory_bytes as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            |p| Some(p.start_time_seconds),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            |p| p.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            |p| p.max_fds.map(|n| n as f64),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (w, p) in &procs {
            if let Some(v) = get(p) {
                let _ = writeln!(out, "{name}{} {v}", labels(*w, ""));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::method_index;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn renders_labelled_blocks_and_histograms() {
        let a = Stats::owned();
        a.init(10, 0);
        a.record(method_index(b"GET"), 200, Duration::from_micros(50), 3);
        let b = Stats::owned();
        b.init(11, 0);
        b.restarts.store(2, Ordering::Relaxed);
        let snaps = vec![(0, a.snapshot()), (1, b.snapshot())];
        let text = render_prometheus(&snaps, true);
        assert!(
            text.contains("maitre_requests_total{worker=\"0\",method=\"GET\",status=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("maitre_worker_restarts_total{worker=\"1\"} 2\n"));
        assert!(
            text.contains("maitre_request_duration_seconds_bucket{worker=\"0\",le=\"0.0001\"} 1\n")
        );
        assert!(text.contains("maitre_request_duration_seconds_count{worker=\"1\"} 0\n"));
        let single = render_prometheus(&snaps[..1], false);
        assert!(single.contains("maitre_requests_total{method=\"GET\",status=\"2xx\"} 1\n"));
        assert!(!single.contains("worker="));
    }
}
