//! The metrics listener: `/metrics` in the Prometheus text format and `/`, the status page
//! (rendered by `engine::status_page`)
//! that refreshes itself, on a socket of their own (`metrics_listen`), served by a thread
//! of their own: a scrape never waits for an application thread, and answers while
//! every one of them is busy.
//!
//! It renders one or several [`StatsBlock`]s: one for a single process, one per slot of
//! a shared map when a master runs workers (then every series carries a `worker` label,
//! and `maitre_worker_restarts_total` says how often each slot's worker was replaced).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::process_stats;
use crate::engine::stats::{Snapshot, Stats, BUCKETS_US, CLASSES, METHODS};
use crate::engine::status_page::{render_status, render_status_json, Rates};

/// How often request counts are sampled for the rate on the status page.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How long one client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks at its stop flag while idle.
const POLL: Duration = Duration::from_millis(100);

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
    render_process(&mut out, snaps, labelled);
    out
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

/// The running listener thread.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(
        listener: TcpListener,
        blocks: Blocks,
        ident: String,
    ) -> std::io::Result<MetricsServer> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("maitre-metrics".into())
            .spawn(move || serve(listener, blocks, ident, flag))?;
        Ok(MetricsServer {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn serve(listener: TcpListener, blocks: Blocks, ident: String, stop: Arc<AtomicBool>) {
    let mut rates = Rates::default();
    let mut next_sample = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next_sample {
            rates.sample(now, &blocks.snapshots());
            next_sample = now + SAMPLE_EVERY;
        }
        let mut fds = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut fds, 1, POLL.as_millis() as i32) };
        if n <= 0 {
            continue;
        }
        while let Ok((conn, _)) = listener.accept() {
            // A panic while answering one scrape must not end the listener.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                answer(conn, &blocks, &rates, &ident)
            }));
        }
    }
}

fn answer(mut conn: std::net::TcpStream, blocks: &Blocks, rates: &Rates, ident: &str) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    let target = parts.next().unwrap_or(b"");
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    let (status, ctype, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render_prometheus(&blocks.snapshots(), blocks.labelled),
        ),
        (b"GET" | b"HEAD", b"/") => (
            "200 OK",
            "text/html; charset=utf-8",
            render_status(&blocks.snapshots(), rates, Instant::now(), ident, target),
        ),
        (b"GET" | b"HEAD", b"/status.json") => (
            "200 OK",
            "application/json",
            render_status_json(&blocks.snapshots(), rates, Instant::now(), ident),
        ),
        (b"GET" | b"HEAD", _) => ("404 Not Found", "text/plain", "Not Found\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "Method Not Allowed\n".into(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    if method != b"HEAD" {
        let _ = conn.write_all(body.as_bytes());
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::method_index;

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
