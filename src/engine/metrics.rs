//! What the metrics listener (`metrics_listener.rs`) renders: `/metrics` in the
//! Prometheus text format and `/`, a status page that refreshes itself.
//!
//! It renders one or several [`StatsBlock`]s: one for a single process, one per slot of
//! a shared map when a master runs workers (then every series carries a `worker` label,
//! and `maitre_worker_restarts_total` says how often each slot's worker was replaced).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::stats::{Snapshot, Stats, BUCKETS_US, CLASSES, METHODS};

/// Samples kept: the rate is over the last this-many seconds.
const SAMPLES: usize = 11;

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

/// Request counts over time, per slot, for the rate.
#[derive(Default)]
pub struct Rates {
    samples: std::collections::VecDeque<(Instant, Vec<(usize, u64)>)>,
}

impl Rates {
    pub fn sample(&mut self, now: Instant, snaps: &[(usize, Snapshot)]) {
        self.samples
            .push_back((now, snaps.iter().map(|(i, s)| (*i, s.requests)).collect()));
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Requests per second of slot `slot` since the oldest sample.
    pub fn rate(&self, now: Instant, slot: usize, requests: u64) -> f64 {
        let Some((t, counts)) = self.samples.front() else {
            return 0.0;
        };
        let then = counts.iter().find(|(i, _)| *i == slot).map_or(0, |c| c.1);
        let dt = now.duration_since(*t).as_secs_f64();
        if dt < 0.5 {
            return 0.0;
        }
        requests.saturating_sub(then) as f64 / dt
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.1}", s * 1000.0))
}

/// The status page: plain HTML and CSS, refreshing itself every 2 seconds.
pub fn render_status(
    snaps: &[(usize, Snapshot)],
    rates: &Rates,
    now: Instant,
    ident: &str,
) -> String {
    let mut total = Snapshot::default();
    let mut rate = 0.0;
    for (i, s) in snaps {
        rate += rates.rate(now, *i, s.requests);
        total.requests += s.requests;
        total.in_flight += s.in_flight;
        total.threads += s.threads;
        total.threads_busy += s.threads_busy;
        total.queue_depth += s.queue_depth;
        total.open_connections += s.open_connections;
        total.bytes_read += s.bytes_read;
        total.bytes_written += s.bytes_written;
        for (b, n) in s.duration_buckets.iter().enumerate() {
            total.duration_buckets[b] += n;
        }
        for (m, row) in s.by_method_class.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                total.by_method_class[m][c] += v;
            }
        }
    }
    let classes = total.by_class();
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="2">
<title>{ident} status</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;padding:1em;background:#f6f6f4;color:#222}}
h1{{font-size:1.3em;margin:0 0 .6em}}
.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(9em,1fr));gap:.6em}}
.card{{background:#fff;border-radius:.5em;padding:.7em;box-shadow:0 1px 2px #0002}}
.card .v{{font-size:1.6em;font-weight:600}}
.card .k{{font-size:.8em;color:#666}}
table{{border-collapse:collapse;width:100%;margin-top:1em;background:#fff;font-size:.9em}}
th,td{{padding:.35em .5em;text-align:right;border-bottom:1px solid #eee}}
th:first-child,td:first-child{{text-align:left}}
.wrap{{overflow-x:auto}}
@media (max-width:600px){{table{{font-size:.72em}}th,td{{padding:.3em .2em}}}}
</style></head><body>
<h1>{ident} &middot; status</h1>
<div class="grid">
<div class="card"><div class="v" id="rate">{rate:.1}</div><div class="k">requests/s (last 10 s)</div></div>
<div class="card"><div class="v" id="requests">{req}</div><div class="k">requests</div></div>
<div class="card"><div class="v"><span id="threads-busy">{busy}</span>/<span id="threads">{threads}</span></div><div class="k">threads busy</div></div>
<div class="card"><div class="v" id="queue">{queue}</div><div class="k">queued</div></div>
<div class="card"><div class="v" id="in-flight">{inflight}</div><div class="k">in flight</div></div>
<div class="card"><div class="v" id="connections">{conns}</div><div class="k">connections</div></div>
<div class="card"><div class="v" id="p50">{p50}</div><div class="k">p50 ms</div></div>
<div class="card"><div class="v" id="p90">{p90}</div><div class="k">p90 ms</div></div>
<div class="card"><div class="v" id="p99">{p99}</div><div class="k">p99 ms</div></div>
</div>
<div class="wrap"><table id="classes"><tr><th>status</th><th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th></tr>
<tr><td>requests</td><td id="c1xx">{c1}</td><td id="c2xx">{c2}</td><td id="c3xx">{c3}</td><td id="c4xx">{c4}</td><td id="c5xx">{c5}</td></tr></table></div>
<div class="wrap"><table id="workers"><tr><th>worker</th><th>pid</th><th>req/s</th><th>requests</th><th>busy</th><th>queue</th><th>conns</th><th>p50 ms</th><th>p99 ms</th></tr>
"#,
        req = total.requests,
        busy = total.threads_busy,
        threads = total.threads,
        queue = total.queue_depth,
        inflight = total.in_flight,
        conns = total.open_connections,
        p50 = ms(total.quantile(0.5)),
        p90 = ms(total.quantile(0.9)),
        p99 = ms(total.quantile(0.99)),
        c1 = classes[0],
        c2 = classes[1],
        c3 = classes[2],
        c4 = classes[3],
        c5 = classes[4],
    );
    for (i, s) in snaps {
        let _ = writeln!(
            h,
            "<tr class=\"worker\"><td>{i}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.pid,
            rates.rate(now, *i, s.requests),
            s.requests,
            s.threads_busy,
            s.threads,
            s.queue_depth,
            s.open_connections,
            ms(s.quantile(0.5)),
            ms(s.quantile(0.99)),
        );
    }
    h.push_str(
        "</table></div>\n<p class=\"k\"><a href=\"/metrics\">/metrics</a></p>\n</body></html>\n",
    );
    h
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
