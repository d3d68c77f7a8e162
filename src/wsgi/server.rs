//! `maitre._maitre.Engine`: what the Python package drives. Created with the listening
//! sockets and settings (read by `wsgi::settings`; no thread starts until `run()`, so a
//! process that made one can still fork); `run()` serves and blocks, `close()` stops it
//! from any thread: gracefully (see `engine::event_loop::shutdown`) or at once.
//!
//! `run()` in three steps:
//! 1. `start`: the listeners go to a new I/O loop, then the observers (access log
//!    writer, metrics listener), the logging thread, the I/O thread and the workers
//!    start, in that order;
//! 2. `wait`: until the loop ends, Python's signal handlers run and the loop's notices
//!    are logged, on the thread inside `run()`;
//! 3. `join`: the logging thread, the jobs never started, the workers, then the
//!    observers end; `run()` returns or raises what stopped it.
//!
//! Worker threads still running application code when a stop abandons their requests
//! are not waited for: `run()` returns, and each gets a `RequestAbandoned` exception
//! raised in its Python code (as a signal would), so that a thread in a Python loop
//! ends instead of taking the GIL back while the interpreter exits.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use socket2::Socket;

use crate::engine::access_log;
use crate::engine::config::Config;
use crate::engine::dispatch::{Completions, JobQueue, LogLevel, LogQueue, LogRecord};
use crate::engine::event_loop::{EventLoop, Listener, LoopHandle};
use crate::engine::heartbeat::Heartbeat;
use crate::engine::metrics::Blocks;
use crate::engine::metrics_listener::MetricsServer;
use crate::engine::stats::Stats;
use crate::engine::tls::TlsAcceptor;
use crate::wsgi::context::{WsgiContext, WsgiOptions};
use crate::wsgi::settings::{
    engine_config, observe_settings, tls_acceptor, Settings, LONGEST_SECONDS,
};
use crate::wsgi::watchdog::{Fired, Watch};
use crate::wsgi::worker::worker_main;
use crate::wsgi::RequestAbandoned;
use std::sync::atomic::Ordering::Relaxed;

enum State {
    Ready(Vec<Listener>),
    Running(LoopHandle),
    Closed,
}

/// Set when the I/O thread has ended: the requests its stop abandoned, or its error.
type Finished = Arc<(Mutex<Option<Result<usize, String>>>, Condvar)>;

/// How long `close()` waits beyond the shutdown timeout for `run()` to return.
const CLOSE_MARGIN: Duration = Duration::from_secs(5);

#[pyclass(module = "maitre._maitre", name = "Engine")]
pub struct Engine {
    state: Mutex<State>,
    /// Signalled when `run()` has returned (state back to `Closed`).
    stopped: Condvar,
    /// The thread inside `run()`, which `close()` must not wait for.
    run_thread: Mutex<Option<std::thread::ThreadId>>,
    cfg: Arc<Config>,
    ctx: Arc<WsgiContext>,
    /// The pipe to a master process, until `run()` hands it to the loop.
    heartbeat: Mutex<Option<Heartbeat>>,
    /// Worker threads that a stop left in the application.
    stragglers: Mutex<Vec<JoinHandle<()>>>,
    /// The metrics listener's socket, until `run()` serves it.
    metrics: Mutex<Option<std::net::TcpListener>>,
    /// The TLS configuration of the TLS listeners, if any.
    tls: Option<Arc<TlsAcceptor>>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[pymethods]
impl Engine {
    /// `listeners`: (file descriptor, environ template) per listening socket. The
    /// descriptors are duplicated: the caller keeps ownership of its sockets.
    #[new]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        listeners: Vec<(RawFd, Py<PyDict>)>,
        settings: &Bound<'_, PyDict>,
        logger: Py<PyAny>,
    ) -> PyResult<Self> {
        let settings = Settings::new(settings);
        let cfg = engine_config(&settings)?;
        let tls = tls_acceptor(&settings)?;
        // Indices of the listeners that speak TLS.
        let tls_listeners: Vec<usize> = settings.get("tls_listeners")?;
        if tls.is_none() && !tls_listeners.is_empty() {
            return Err(PyValueError::new_err(
                "a TLS listener needs ssl_certificate and ssl_private_key",
            ));
        }
        let mut socks = Vec::with_capacity(listeners.len());
        let mut templates = Vec::with_capacity(listeners.len());
        for (i, (fd, template)) in listeners.into_iter().enumerate() {
            // SAFETY: dup returns a new descriptor that we own (or -1, checked).
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err(PyOSError::new_err(format!(
                    "cannot use listening socket {fd}: {}",
                    std::io::Error::last_os_error()
                )));
            }
            socks.push(Listener {
                sock: unsafe { Socket::from_raw_fd(dup) },
                tls: tls.clone().filter(|_| tls_listeners.contains(&i)),
            });
            templates.push(template);
        }
        if socks.is_empty() {
            return Err(PyValueError::new_err("no listening socket"));
        }
        let opts = WsgiOptions {
            ident: cfg.ident.clone(),
            url_prefix: settings.get("url_prefix")?,
            expose_tracebacks: settings.get("expose_tracebacks")?,
            log_socket_errors: cfg.log_socket_errors,
            clear_proxy_headers: settings.get("clear_proxy_headers")?,
        };
        let mut ctx = WsgiContext::new(py, app, templates, logger, opts);
        let stats = Stats::owned();
        stats.init(std::process::id(), unix_ms());
        ctx.observe = observe_settings(&settings, stats, cfg.threads)?;
        ctx.watch = Watch::new(cfg.request_timeout, cfg.threads);
        let metrics = match settings.get::<Option<RawFd>>("metrics_fd")? {
            Some(fd) => Some(crate::wsgi::metrics::listener_from_fd(fd)?),
            None => None,
        };
        settings.check_all_read()?;
        Ok(Engine {
            state: Mutex::new(State::Ready(socks)),
            stopped: Condvar::new(),
            run_thread: Mutex::new(None),
            cfg: Arc::new(cfg),
            ctx: Arc::new(ctx),
            heartbeat: Mutex::new(None),
            stragglers: Mutex::new(Vec::new()),
            metrics: Mutex::new(metrics),
            tls,
        })
    }

    /// Reports to a master process on the pipe `fd` (duplicated; the caller keeps
    /// its own): see `engine::heartbeat`. Call before `run()`.
    #[pyo3(signature = (fd, max_requests = 0))]
    fn attach_supervisor(&self, fd: RawFd, max_requests: u64) -> PyResult<()> {
        // SAFETY: dup returns a new descriptor that we own (or -1, checked).
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(PyOSError::new_err(format!(
                "cannot use supervisor pipe {fd}: {}",
                std::io::Error::last_os_error()
            )));
        }
        let hb = Heartbeat::new(unsafe { OwnedFd::from_raw_fd(dup) }, max_requests)
            .map_err(|e| PyOSError::new_err(format!("cannot use supervisor pipe {fd}: {e}")))?;
        *self.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(hb);
        Ok(())
    }

    /// How many worker threads a stop left running application code (they end when
    /// the application returns).
    fn threads_left_running(&self) -> usize {
        let mut list = self.stragglers.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| !w.is_finished());
        list.len()
    }

    /// Counters as a dict (CherryPy's `stats` keys, and more); never stops the loop.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let o = &self.ctx.observe;
        crate::wsgi::metrics::stats_dict(py, &o.stats, &o.threads)
    }

    /// Counts into slot `slot` of the shared writable `buffer` from now on (a worker
    /// process of a master, after the fork, before `run()`): the master renders every
    /// slot in one scrape, so this engine no longer serves a metrics listener itself.
    fn use_stats_slot(&self, buffer: &Bound<'_, PyAny>, slot: usize) -> PyResult<()> {
        if !matches!(
            &*self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Ready(_)
        ) {
            return Err(PyRuntimeError::new_err(
                "use_stats_slot() must be called before run()",
            ));
        }
        let block = crate::wsgi::metrics::shared_block(buffer, slot)?;
        let stats = &self.ctx.observe.stats;
        stats.move_to(block);
        stats.init(std::process::id(), unix_ms());
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(())
    }

    /// Writes what the access log holds and opens its file again (after a rotation
    /// renamed it); the old file keeps everything logged before.
    fn reopen_logs(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(log) = &self.ctx.observe.access {
            crate::wsgi::gil::detach(py, || log.reopen())
                .map_err(|e| PyOSError::new_err(format!("cannot reopen access_log: {e}")))?;
        }
        Ok(())
    }

    /// Reads the certificate and key files again: new connections get them, open ones
    /// keep what they have. Raises (keeping the old ones) if the new files are not usable.
    fn reload_certificates(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(tls) = &self.tls else {
            return Ok(false);
        };
        crate::wsgi::gil::detach(py, || tls.reload())
            .map(|()| true)
            .map_err(PyValueError::new_err)
    }

    /// Serves until `close()` is called or a signal handler raises (Ctrl-C): starts the
    /// loop and its threads, waits for the loop to end, then joins what it started.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        let Some(run) = self.start()? else {
            return Ok(()); // closed before it ran
        };
        let waited = self.wait(py, &run);
        self.join(py, run, waited)
    }

    /// Stops a running server (from any thread): gracefully, abandoning what still runs
    /// after `timeout` seconds (default: the `shutdown_timeout` setting); with
    /// `timeout=0`, at once. Then waits, without the GIL, until `run()` has returned (up
    /// to the timeout and a few seconds): a program may exit right after `close()`,
    /// and nothing of the server must still be running then. A server not yet running
    /// never will. From a worker or from the thread in `run()` (a signal handler) it
    /// cannot wait, and does not. A second call may turn a graceful stop into an
    /// immediate one, not the reverse. With `delay` seconds (`shutdown_delay`, from a
    /// stop signal), the server is not ready at once but serves on for that long, each
    /// keep-alive connection closing after its next response, before the graceful stop;
    /// a second call without a delay ends the delay. Waits for that too.
    #[pyo3(signature = (timeout = None, delay = 0.0))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>, delay: f64) -> PyResult<()> {
        if !(delay.is_finite() && delay >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "delay must be a number of seconds >= 0, not {delay}"
            )));
        }
        let delay = Duration::from_secs_f64(delay.min(LONGEST_SECONDS));
        let timeout = match timeout {
            None => self.cfg.shutdown_timeout,
            Some(t) if t.is_finite() && t >= 0.0 => Duration::from_secs_f64(t.min(LONGEST_SECONDS)),
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a number of seconds >= 0, not {t}"
                )))
            }
        };
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match &*state {
                State::Running(h) => h.drain_after(delay, timeout),
                State::Ready(_) => *state = State::Closed,
                State::Closed => return Ok(()),
            }
        }
        let me = std::thread::current().id();
        let on_run_thread = *self.run_thread.lock().unwrap_or_else(|p| p.into_inner()) == Some(me);
        if on_run_thread || crate::wsgi::worker::on_worker_thread() {
            return Ok(());
        }
        crate::wsgi::gil::detach(py, || {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self
                .stopped
                .wait_timeout_while(state, delay + timeout + CLOSE_MARGIN, |s| {
                    matches!(s, State::Running(_))
                })
                .unwrap_or_else(|p| p.into_inner());
        });
        Ok(())
    }
}

/// What `Engine::start` started, for `wait` and `join`.
struct Run {
    handle: LoopHandle,
    jobs: Arc<JobQueue>,
    logs: Arc<LogQueue>,
    /// Set by the I/O thread as it ends.
    finished: Finished,
    io_thread: JoinHandle<()>,
    log_thread: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    access_writer: Option<access_log::Writer>,
    metrics_server: Option<MetricsServer>,
    /// The `request_timeout` watchdog, when the setting is on.
    watchdog: Option<JoinHandle<()>>,
    /// A worker thread that could not be started (the loop was told to stop at once):
    /// `run()` raises it at the end.
    spawn_error: Option<PyErr>,
}

/// How the wait for the I/O loop ended.
struct Waited {
    /// The number of requests the stop abandoned, or the loop's error.
    outcome: Result<usize, String>,
    /// What a Python signal handler raised: `run()` raises it at the end.
    interrupted: Option<PyErr>,
}

impl Engine {
    /// Step 1 of `run()`: takes the listeners (the state becomes `Running`), builds the
    /// loop, then starts, in this order, the observers (they must see the first
    /// request), the logging thread, the I/O thread and the workers. None if the
    /// engine was closed before it ran.
    fn start(&self) -> PyResult<Option<Run>> {
        let jobs = Arc::new(JobQueue::default());
        let logs = Arc::new(LogQueue::default());
        let Some((ev, handle, completions)) = self.build_loop(&jobs, &logs)? else {
            return Ok(None);
        };
        let access_writer = match &self.ctx.observe.access {
            Some(log) => Some(
                log.start()
                    .map_err(|e| PyOSError::new_err(format!("cannot start access log: {e}")))?,
            ),
            None => None,
        };
        let metrics_server = self.start_metrics(&handle)?;
        let log_thread = {
            let (ctx, logs) = (self.ctx.clone(), logs.clone());
            std::thread::Builder::new()
                .name("maitre-log".into())
                .spawn(move || crate::wsgi::logging::log_main(ctx, logs))
                .map_err(|e| PyOSError::new_err(e.to_string()))?
        };
        let finished: Finished = Arc::new((Mutex::new(None), Condvar::new()));
        // Live (`/livez`) from here until the I/O thread has ended (`join`).
        handle.health().set_live(true);
        let io_thread = match spawn_io_thread(ev, finished.clone()) {
            Ok(t) => t,
            Err(e) => {
                handle.health().set_live(false);
                return Err(e);
            }
        };
        let (workers, spawn_error) = self.spawn_workers(&jobs, &completions, &handle);
        let (watchdog, spawn_error) = match self.spawn_watchdog() {
            Ok(w) => (w, spawn_error),
            Err(e) => {
                handle.stop();
                (None, spawn_error.or(Some(e)))
            }
        };
        Ok(Some(Run {
            handle,
            jobs,
            logs,
            finished,
            io_thread,
            log_thread,
            workers,
            access_writer,
            metrics_server,
            watchdog,
            spawn_error,
        }))
    }

    /// The loop over this engine's listeners, with the supervisor's pipe and the access
    /// log attached; the state is `Running` from here on.
    fn build_loop(
        &self,
        jobs: &Arc<JobQueue>,
        logs: &Arc<LogQueue>,
    ) -> PyResult<Option<(EventLoop, LoopHandle, Arc<Completions>)>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let listeners = match std::mem::replace(&mut *state, State::Closed) {
            State::Ready(l) => l,
            State::Running(h) => {
                *state = State::Running(h);
                return Err(PyRuntimeError::new_err("the server is already running"));
            }
            State::Closed => return Ok(None),
        };
        let stats = self.ctx.observe.stats.clone();
        stats.started_ms.store(unix_ms(), Relaxed);
        stats.threads.store(self.cfg.threads as u64, Relaxed);
        stats
            .connection_limit
            .store(self.cfg.connection_limit as u64, Relaxed);
        let (mut ev, handle, completions) = EventLoop::new(
            listeners,
            self.cfg.clone(),
            jobs.clone(),
            stats,
            logs.clone(),
        )
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
        if let Some(hb) = self
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            ev.attach_heartbeat(hb);
        }
        if let Some(sink) = self.ctx.observe.sink() {
            ev.attach_access_log(sink);
        }
        *state = State::Running(handle.clone());
        *self.run_thread.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::thread::current().id());
        Ok(Some((ev, handle, completions)))
    }

    /// The metrics listener over this engine's block, if `metrics_listen` gave one.
    fn start_metrics(&self, handle: &LoopHandle) -> PyResult<Option<MetricsServer>> {
        let listener = self
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(listener) = listener else {
            return Ok(None);
        };
        let blocks = Blocks {
            blocks: vec![self.ctx.observe.stats.clone()],
            labelled: false,
        };
        MetricsServer::start(listener, blocks, self.cfg.ident.clone(), handle.health())
            .map(Some)
            .map_err(|e| PyOSError::new_err(format!("cannot start metrics listener: {e}")))
    }

    /// One thread per `threads`. If one cannot start, the loop is told to stop at once
    /// (what did start ends through the normal shutdown) and the error is returned
    /// beside the threads that did start.
    fn spawn_workers(
        &self,
        jobs: &Arc<JobQueue>,
        completions: &Arc<Completions>,
        handle: &LoopHandle,
    ) -> (Vec<JoinHandle<()>>, Option<PyErr>) {
        let mut workers = Vec::with_capacity(self.cfg.threads);
        for i in 0..self.cfg.threads {
            let (ctx, jobs, completions) = (self.ctx.clone(), jobs.clone(), completions.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("maitre-{i}"))
                .spawn(move || worker_main(ctx, jobs, completions, i));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    handle.stop();
                    let error = PyOSError::new_err(format!("cannot start worker thread: {e}"));
                    return (workers, Some(error));
                }
            }
        }
        (workers, None)
    }

    /// The `request_timeout` watchdog (`wsgi::watchdog`), if the setting is on. If it
    /// cannot start, the loop is told to stop at once and `run()` raises.
    fn spawn_watchdog(&self) -> PyResult<Option<JoinHandle<()>>> {
        if self.ctx.watch.is_none() {
            return Ok(None);
        }
        let ctx = self.ctx.clone();
        std::thread::Builder::new()
            .name("maitre-watchdog".into())
            .spawn(move || watchdog_main(ctx))
            .map(Some)
            .map_err(|e| PyOSError::new_err(format!("cannot start the watchdog: {e}")))
    }

    /// Step 2 of `run()`: waits for the loop to end, waking often enough to run
    /// Python's signal handlers (they only run on the main thread, between bytecodes)
    /// and to log what the loop has to say now (the workers may all be busy). A handler
    /// that raises (KeyboardInterrupt when nobody installed one) starts a graceful stop,
    /// a second one an immediate stop.
    fn wait(&self, py: Python<'_>, run: &Run) -> Waited {
        let mut interrupted = None;
        let mut notices = Vec::new();
        let outcome = loop {
            let done = crate::wsgi::gil::detach(py, || {
                let (lock, cv) = &*run.finished;
                let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                let (guard, _) = cv
                    .wait_timeout_while(guard, Duration::from_millis(100), |r| r.is_none())
                    .unwrap_or_else(|p| p.into_inner());
                guard.clone()
            });
            run.handle.take_notices(&mut notices);
            self.log_records(py, &mut notices);
            if let Some(result) = done {
                break result;
            }
            if let Err(e) = py.check_signals() {
                if interrupted.is_none() {
                    interrupted = Some(e);
                    run.handle.drain(self.cfg.shutdown_timeout);
                } else {
                    run.handle.stop();
                }
            }
        };
        Waited {
            outcome,
            interrupted,
        }
    }

    /// Step 3 of `run()`: once the loop has ended, ends what `start` started: the
    /// logging thread, the queued jobs, the workers (those still in the application
    /// are left behind, see `abandon`), then the observers, last so that every request
    /// the workers finished is in the access log. The state is `Closed` after it.
    fn join(&self, py: Python<'_>, run: Run, waited: Waited) -> PyResult<()> {
        let _ = run.io_thread.join();
        run.handle.health().set_live(false);
        // No request runs any more that it should time out; it takes the GIL to log.
        if let (Some(watch), Some(dog)) = (&self.ctx.watch, run.watchdog) {
            watch.stop();
            crate::wsgi::gil::detach(py, || {
                let _ = dog.join();
            });
        }
        // The loop has said all it will.
        let mut notices = Vec::new();
        run.handle.take_notices(&mut notices);
        self.log_records(py, &mut notices);
        stop_log_thread(py, &run.logs, run.log_thread);
        // Jobs never started: their connections are closed.
        drop(run.jobs.stop());
        let abandoned = *waited.outcome.as_ref().unwrap_or(&0);
        self.join_workers(py, run.workers, abandoned);
        crate::wsgi::gil::detach(py, || {
            if let Some(w) = run.access_writer {
                w.stop();
            }
            if let Some(m) = run.metrics_server {
                m.stop();
            }
        });
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Closed;
        self.stopped.notify_all();
        if let Some(e) = waited.interrupted.or(run.spawn_error) {
            return Err(e);
        }
        waited.outcome.map(|_| ()).map_err(PyRuntimeError::new_err)
    }

    /// Waits for the workers: after a clean drain they are idle and end at once; after
    /// a stop that abandoned `abandoned` requests, those in the application are not
    /// waited for but told to end (`abandon`).
    fn join_workers(&self, py: Python<'_>, workers: Vec<JoinHandle<()>>, abandoned: usize) {
        let patience = if abandoned > 0 {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let deadline = Instant::now() + patience;
        crate::wsgi::gil::detach(py, || {
            while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let (done, stuck): (Vec<_>, Vec<_>) = workers.into_iter().partition(|w| w.is_finished());
        for w in done {
            let _ = w.join();
        }
        if stuck.is_empty() {
            return;
        }
        if abandoned == 0 {
            crate::wsgi::logging::log(
                py,
                &self.ctx,
                "warning",
                &format!("{} thread(s) still running", stuck.len()),
            );
        }
        self.abandon(py, stuck);
    }

    /// Raises `RequestAbandoned` in each worker thread still in the application, gives
    /// them a moment to end, and keeps those that did not (`threads_left_running`).
    fn abandon(&self, py: Python<'_>, stuck: Vec<JoinHandle<()>>) {
        let exc = py.get_type::<RequestAbandoned>();
        for w in &stuck {
            // SAFETY: with the GIL held; the id is the thread's pthread_t, which is
            // CPython's thread identifier. An id with no Python thread state is
            // ignored by CPython.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    w.as_pthread_t() as std::os::raw::c_long,
                    exc.as_ptr(),
                )
            };
        }
        // A thread in a Python loop raises it within a switch interval or so; give
        // those the time to end (one that outlived the interpreter would abort the
        // process). One blocked in C (a sleep, a socket) is left to itself.
        let deadline = Instant::now() + Duration::from_millis(250);
        crate::wsgi::gil::detach(py, || {
            while stuck.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        self.stragglers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(stuck.into_iter().filter(|w| !w.is_finished()));
    }

    /// Says `records` through the `maitre` logger (on the calling thread, which holds
    /// the GIL).
    fn log_records(&self, py: Python<'_>, records: &mut Vec<LogRecord>) {
        for r in records.drain(..) {
            let level = match r.level {
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warning => "warning",
                LogLevel::Error => "error",
            };
            crate::wsgi::logging::log(py, &self.ctx, level, &r.message);
        }
    }
}

/// The `request_timeout` watchdog's thread: looks at the worker threads every tick
/// until the watch is stopped (see `wsgi::watchdog`). What needs the GIL (raising
/// `RequestTimeout`, the stack, the log line) is done by a thread of its own: a call
/// that never lets go of the GIL (C code that holds it) must not stop the ticks that
/// count its thread stuck, for the master to replace the worker.
fn watchdog_main(ctx: Arc<WsgiContext>) {
    let Some(watch) = ctx.watch.as_ref() else {
        return;
    };
    let (to_raise, fired_rx) = std::sync::mpsc::channel::<Vec<Fired>>();
    let raiser_ctx = Arc::clone(&ctx);
    let raiser = std::thread::Builder::new()
        .name("maitre-watchdog-gil".into())
        .spawn(move || {
            for fired in fired_rx {
                raise_fired(&raiser_ctx, fired);
            }
        });
    while watch.wait_tick() {
        let fired = watch.check(&ctx.observe.stats, &ctx.opts.ident, Instant::now());
        if fired.is_empty() {
            continue;
        }
        if raiser.is_ok() {
            let _ = to_raise.send(fired);
        } else {
            // No thread to spare: raise from here.
            raise_fired(&ctx, fired);
        }
    }
    // The raiser ends once it has done what was sent; not joined, as it may wait for a
    // GIL a stuck call never gives back.
}

/// Under the GIL: raises `RequestTimeout` in the threads of calls the watchdog timed
/// out, and logs each with its stack.
fn raise_fired(ctx: &WsgiContext, fired: Vec<Fired>) {
    let Some(watch) = ctx.watch.as_ref() else {
        return;
    };
    if crate::wsgi::gil::interpreter_finalizing() {
        return;
    }
    Python::attach(|py| {
        for f in fired {
            let message = watch.raise_in(py, f);
            crate::wsgi::logging::log(py, ctx, "error", &message);
        }
    });
}

/// The thread running the I/O loop; it records how the loop ended in `finished`.
fn spawn_io_thread(ev: EventLoop, finished: Finished) -> PyResult<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("maitre-io".into())
        .spawn(move || {
            crate::engine::sys::prefer_batching();
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ev.run())) {
                Ok(Ok(abandoned)) => Ok(abandoned),
                Ok(Err(e)) => Err(format!("I/O loop failed: {e}")),
                Err(_) => Err("I/O loop panicked".to_string()),
            };
            let (lock, cv) = &*finished;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            cv.notify_all();
        })
        .map_err(|e| PyOSError::new_err(e.to_string()))
}

/// Ends the logging thread once it has said what its queue holds, unless a logging
/// handler hangs: then it is left behind, like a stuck worker.
fn stop_log_thread(py: Python<'_>, logs: &LogQueue, log_thread: JoinHandle<()>) {
    logs.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    crate::wsgi::gil::detach(py, || {
        while !log_thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    if log_thread.is_finished() {
        let _ = log_thread.join();
    }
}
