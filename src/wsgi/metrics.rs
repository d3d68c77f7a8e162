//! The Python face of the counters: counting into a caller's shared memory, the
//! `stats()` dict, and a metrics listener a master process can run over every worker's
//! slot (`MetricsServer`, `render_metrics`).

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::engine::metrics::{render_prometheus, Blocks};
use crate::engine::metrics_listener::{Health, MetricsServer as Server};
use crate::engine::stats::{Stats, ThreadStats, BLOCK_SIZE, BUCKETS_US, CLASSES, RESTART_REASONS};

/// Keeps a Python buffer exported (and so mapped) while an engine counts into it.
struct Exported(#[allow(dead_code)] PyBuffer<u8>);

/// Slot `slot` of the writable, contiguous buffer `buffer` (e.g. `mmap.mmap(-1, n)`,
/// made by a master before it forks, so that every worker's slot is visible to it).
pub fn shared_block(buffer: &Bound<'_, PyAny>, slot: usize) -> PyResult<Stats> {
    let buf: PyBuffer<u8> = PyBuffer::get(buffer)?;
    if buf.readonly() || !buf.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "stats_buffer must be a writable contiguous buffer (e.g. mmap.mmap(-1, n))",
        ));
    }
    let need = (slot + 1) * BLOCK_SIZE;
    if buf.len_bytes() < need {
        return Err(PyValueError::new_err(format!(
            "stats_buffer holds {} bytes; slot {slot} needs {need} ({BLOCK_SIZE} per slot)",
            buf.len_bytes()
        )));
    }
    // SAFETY: within the buffer (checked above); the export keeps it mapped.
    let ptr = unsafe { (buf.buf_ptr() as *mut u8).add(slot * BLOCK_SIZE) };
    // SAFETY: the buffer stays exported while the Stats lives; only atomics touch it.
    unsafe { Stats::shared(ptr, Box::new(Exported(buf))) }
        .ok_or_else(|| PyValueError::new_err("stats_buffer is not 8-byte aligned"))
}

/// Every slot of a shared buffer, labelled by worker index.
fn shared_blocks(buffer: &Bound<'_, PyAny>, slots: usize) -> PyResult<Blocks> {
    let blocks = (0..slots)
        .map(|i| shared_block(buffer, i).map(Arc::new))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Blocks {
        blocks,
        labelled: true,
    })
}

/// A listening socket given by descriptor (duplicated: the caller keeps its own).
pub fn listener_from_fd(fd: RawFd) -> PyResult<TcpListener> {
    // SAFETY: dup returns a new descriptor that we own (or -1, checked).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(PyOSError::new_err(format!(
            "cannot use the metrics socket {fd}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `dup` is ours.
    Ok(unsafe { TcpListener::from_raw_fd(dup) })
}

/// `/metrics` text of every live slot of `buffer` (a master's view of its workers).
#[pyfunction]
pub fn render_metrics(buffer: &Bound<'_, PyAny>, slots: usize) -> PyResult<String> {
    let blocks = shared_blocks(buffer, slots)?;
    Ok(render_prometheus(&blocks.snapshots(), true))
}

/// The master replaced the worker of slot `slot` (for `reason`, a code of
/// `RESTART_REASONS`; 0 when it does not say): counted in the slot, where the next
/// worker's engine keeps it (`maitre_worker_restarts_total`, and the status page's
/// last restart). Returns the new count.
#[pyfunction]
#[pyo3(signature = (buffer, slot, reason = 0))]
pub fn count_restart(buffer: &Bound<'_, PyAny>, slot: usize, reason: u64) -> PyResult<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let block = shared_block(buffer, slot)?;
    block.last_restart_reason.store(reason, Relaxed);
    Ok(block.restarts.fetch_add(1, Relaxed) + 1)
}

/// Whether the worker of slot `slot` turns requests away because `max_queued_requests`
/// wait for a thread (its loop's own verdict, `queue_full`): the master's `/readyz`
/// says 503 while every worker does.
#[pyfunction]
pub fn queue_full(buffer: &Bound<'_, PyAny>, slot: usize) -> PyResult<bool> {
    use std::sync::atomic::Ordering::Relaxed;
    Ok(shared_block(buffer, slot)?.queue_full.load(Relaxed) != 0)
}

/// `_maitre.RESTART_REASONS`: each reason's name to its code (`engine::stats`), so that
/// the master has no copy of its own.
pub fn restart_reasons(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (code, name, _) in RESTART_REASONS {
        d.set_item(name, code)?;
    }
    Ok(d)
}

/// The master has reaped the worker of slot `slot`, or is about to fork one into it:
/// the slot is not rendered until that worker's engine starts counting in it, and that
/// engine starts with `restarts` (how often the worker it replaces, if any, was
/// replaced before) and `last_restart_reason` `reason` (0: none).
#[pyfunction]
#[pyo3(signature = (buffer, slot, restarts = 0, reason = 0))]
pub fn release_stats_slot(
    buffer: &Bound<'_, PyAny>,
    slot: usize,
    restarts: u64,
    reason: u64,
) -> PyResult<()> {
    shared_block(buffer, slot)?.release(restarts, reason);
    Ok(())
}

/// (stuck threads, threads) of the worker counting in slot `slot` (`request_timeout`),
/// None if no engine counts there: the master replaces a worker whose threads are all
/// stuck.
#[pyfunction]
pub fn threads_stuck(buffer: &Bound<'_, PyAny>, slot: usize) -> PyResult<Option<(u64, u64)>> {
    use std::sync::atomic::Ordering::Relaxed;
    let block = shared_block(buffer, slot)?;
    Ok(block.is_live().then(|| {
        (
            block.threads_stuck.load(Relaxed),
            block.threads.load(Relaxed),
        )
    }))
}

/// A metrics listener over every slot of a shared buffer, for a master process that
/// serves no request itself: `MetricsServer(fd, buffer, slots)`, `.close()`; the master
/// says what the probes answer with `.set_health(live, ready)` (both false until then).
#[pyclass(module = "maitre._maitre", name = "MetricsServer")]
pub struct PyMetricsServer {
    server: std::sync::Mutex<Option<Server>>,
    health: Arc<Health>,
    /// The listener's own descriptor (a duplicate of the one given), for a process
    /// forked from the master to close its inherited copy (`fileno()`).
    fd: RawFd,
}

#[pymethods]
impl PyMetricsServer {
    #[new]
    #[pyo3(signature = (fd, buffer, slots, ident = "maitre".to_string()))]
    fn new(fd: RawFd, buffer: &Bound<'_, PyAny>, slots: usize, ident: String) -> PyResult<Self> {
        let blocks = shared_blocks(buffer, slots)?;
        let listener = listener_from_fd(fd)?;
        let own = listener.as_raw_fd();
        let health = Arc::new(Health::default());
        let server = Server::start(listener, blocks, ident, health.clone())
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(PyMetricsServer {
            server: std::sync::Mutex::new(Some(server)),
            health,
            fd: own,
        })
    }

    /// The listening descriptor the listener's thread serves. A child forked after
    /// (a worker) inherits it without the thread: it closes it with `os.close`, and
    /// never calls `close()` (there is no thread of its own to stop).
    fn fileno(&self) -> RawFd {
        self.fd
    }

    /// What `/livez` and `/readyz` answer from now on.
    fn set_health(&self, live: bool, ready: bool) {
        self.health.set_live(live);
        self.health.set_ready(ready);
    }

    fn close(&self, py: Python<'_>) {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = server {
            crate::wsgi::gil::detach(py, || s.stop());
        }
    }
}

/// `server.stats()`: CherryPy's keys where they fit, and maitre's own.
pub fn stats_dict<'py>(
    py: Python<'py>,
    stats: &Stats,
    threads: &[ThreadStats],
) -> PyResult<Bound<'py, PyDict>> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = stats.snapshot();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let run_time = if s.started_ms == 0 {
        0.0
    } else {
        now_ms.saturating_sub(s.started_ms) as f64 / 1000.0
    };
    let per_sec = |n: u64| {
        if run_time > 0.0 {
            n as f64 / run_time
        } else {
            0.0
        }
    };
    let d = PyDict::new(py);
    d.set_item("Enabled", true)?;
    d.set_item("Run time", run_time)?;
    d.set_item("Accepts", s.accepts)?;
    d.set_item("Accepts/sec", per_sec(s.accepts))?;
    d.set_item("Queue", s.queue_depth)?;
    d.set_item("Threads", s.threads)?;
    d.set_item("Threads Idle", s.threads.saturating_sub(s.threads_busy))?;
    d.set_item("Socket Errors", s.socket_errors)?;
    d.set_item("Requests", s.requests)?;
    d.set_item("Bytes Read", s.bytes_read)?;
    d.set_item("Bytes Written", s.bytes_written)?;
    d.set_item("Work Time", s.work_time_us as f64 / 1e6)?;
    d.set_item("Read Throughput", per_sec(s.bytes_read))?;
    d.set_item("Write Throughput", per_sec(s.bytes_written))?;
    d.set_item("Open Connections", s.open_connections)?;
    d.set_item("Requests In Flight", s.in_flight)?;
    d.set_item("Accept Errors", s.accept_errors)?;
    d.set_item("Body Spills", s.body_spills)?;
    d.set_item("Connections Evicted", s.connections_evicted)?;
    d.set_item("HTTP/2 Connections", s.http2_connections)?;
    d.set_item("Process ID", s.pid)?;
    d.set_item("Requests Timed Out", s.requests_timed_out)?;
    d.set_item("Threads Stuck", s.threads_stuck)?;
    let classes = PyDict::new(py);
    for (name, n) in CLASSES.iter().zip(s.by_class()) {
        classes.set_item(*name, n)?;
    }
    d.set_item("Requests By Status", classes)?;
    // Cumulative (upper bound in seconds, count) pairs, the last bound being inf.
    let hist = PyList::empty(py);
    let mut cumulative = 0;
    for (i, n) in s.duration_buckets.iter().enumerate() {
        cumulative += n;
        let le = BUCKETS_US
            .get(i)
            .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
        hist.append((le, cumulative))?;
    }
    d.set_item("Latency Histogram", hist)?;
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        d.set_item(format!("Latency {name}"), s.quantile(q))?;
    }
    let workers = PyDict::new(py);
    for (i, t) in threads.iter().enumerate() {
        let w = PyDict::new(py);
        let work = t.work_time_us.load(Relaxed) as f64 / 1e6;
        let (read, written) = (t.bytes_read.load(Relaxed), t.bytes_written.load(Relaxed));
        w.set_item("Requests", t.requests.load(Relaxed))?;
        w.set_item("Bytes Read", read)?;
        w.set_item("Bytes Written", written)?;
        w.set_item("Work Time", work)?;
        let tp = |n: u64| if work > 0.0 { n as f64 / work } else { 0.0 };
        w.set_item("Read Throughput", tp(read))?;
        w.set_item("Write Throughput", tp(written))?;
        workers.set_item(format!("maitre-{i}"), w)?;
    }
    d.set_item("Worker Threads", workers)?;
    Ok(d)
}
