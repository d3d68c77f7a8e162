//! The worker threads: each stays attached to the interpreter, releases the GIL only
//! while waiting for work, and runs one request at a time from environ to last byte.

use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::engine::body::Body;
use crate::engine::channel::{Channel, WhenFull};
use crate::engine::dispatch::{Completion, Completions, Job, JobQueue, Request, Requests};
use crate::engine::errors::panic_message;
use crate::engine::http2::H2Stream;
use crate::engine::stats::StatsBlock;
use crate::http::request::RequestHead;
use crate::http::response::error_response;
use crate::wsgi::context::WsgiContext;
use crate::wsgi::environ;
use crate::wsgi::exceptions::{ClientDisconnected, RequestAbandoned};
use crate::wsgi::file_wrapper::FileWrapper;
use crate::wsgi::logging::{log, log_exception};
use crate::wsgi::observe::Outcome;
use crate::wsgi::responder::{body_bytes, Responder};
use crate::wsgi::watchdog::Ended;

thread_local! {
    static WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of the worker threads.
pub fn on_worker_thread() -> bool {
    WORKER.with(|w| w.get())
}

pub fn worker_main(
    ctx: Arc<WsgiContext>,
    jobs: Arc<JobQueue>,
    completions: Arc<Completions>,
    index: usize,
) {
    WORKER.with(|w| w.set(true));
    if let Some(watch) = &ctx.watch {
        watch.register(index);
    }
    let slot = jobs.add_worker();
    Python::attach(|py| loop {
        let job = match jobs.try_pop(slot) {
            Some(job) => job,
            None => match crate::wsgi::gil::detach(py, || jobs.pop_wait(slot)) {
                Some(job) => job,
                None => return,
            },
        };
        match job {
            Job::Requests(job) => {
                let Requests { channel, requests } = *job;
                // An HTTP/2 job is one stream's request; the connection stays the loop's.
                let stream = requests
                    .first()
                    .and_then(|r| r.h2.as_ref())
                    .map_or(0, |s| s.id);
                let stats = &ctx.observe.stats;
                stats.threads_busy.fetch_add(1, Relaxed);
                let mut left = requests.len() as u64;
                let (token, id) = (channel.token, channel.id);
                let mut close = false;
                let mut served = 0;
                let corked = requests.len() > 1;
                if corked {
                    channel.cork(true);
                }
                let mut rest = Vec::new();
                let mut requests = requests.into_iter();
                while let Some(req) = requests.next() {
                    // In order; after a response that closes the connection (an error,
                    // Connection: close) nothing more on it runs.
                    left -= 1;
                    close = match catch_unwind(AssertUnwindSafe(|| {
                        serve(py, &ctx, &channel, req, index)
                    })) {
                        Ok(close) => close,
                        Err(panic) => {
                            // `serve` did not get to count it done, nor to tell the
                            // watchdog, which must not time out an idle thread.
                            StatsBlock::dec(&stats.in_flight);
                            if let Some(watch) = &ctx.watch {
                                watch.end(py, index);
                            }
                            let what = panic_message(&*panic);
                            log(py, &ctx, "error", &format!("internal error while serving a request (connection closed): {what}"));
                            true
                        }
                    };
                    served += 1;
                    if close || channel.is_closed() {
                        close = true;
                        break;
                    }
                    if requests.len() > 0 && channel.over_watermark() {
                        // The client lags behind what is queued: the loop gets the rest
                        // back and hands it out once the client has read some.
                        rest = requests.collect();
                        break;
                    }
                }
                if corked {
                    channel.cork(false);
                }
                // Requests of the batch that will not run (or that go back to the loop,
                // which counts them again when it hands them out) are no longer in flight.
                let _ = stats
                    .in_flight
                    .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(left)));
                StatsBlock::dec(&stats.threads_busy);
                let done = Completion {
                    token,
                    id,
                    close,
                    served,
                    rest,
                    stream,
                };
                completions.push(done, &channel);
            }
        }
    })
}

/// Runs one request, then counts and logs it; returns whether the connection must
/// close.
fn serve(
    py: Python<'_>,
    ctx: &Arc<WsgiContext>,
    channel: &Arc<Channel>,
    req: Request,
    thread: usize,
) -> bool {
    let Request {
        head,
        body,
        received,
        h2,
    } = req;
    let mut environ = None;
    let mut outcome = Outcome::default();
    let mut close = run_request(
        py,
        ctx,
        channel,
        h2.as_ref(),
        &head,
        body,
        thread,
        &mut environ,
        &mut outcome,
    );
    if let Some(h2) = &h2 {
        // On HTTP/2 a failed response costs its stream, never the connection.
        if close {
            h2.conn.abort(h2.id);
        }
        close = channel.is_closed();
    }
    ctx.observe.done(
        py,
        thread,
        head,
        &channel.peer,
        received,
        outcome,
        environ.as_ref(),
    );
    close
}

/// Runs one request on worker thread `thread`; says how it went in `observed` (and
/// keeps the environ there when the access log reads from it); returns whether the
/// connection must close.
#[allow(clippy::too_many_arguments)]
fn run_request<'py>(
    py: Python<'py>,
    ctx: &Arc<WsgiContext>,
    channel: &Arc<Channel>,
    h2: Option<&H2Stream>,
    head: &RequestHead,
    body: Body,
    thread: usize,
    environ: &mut Option<Bound<'py, PyDict>>,
    observed: &mut Outcome,
) -> bool {
    let is_head = head.method() == b"HEAD";
    let responder = match Bound::new(
        py,
        Responder::new(
            ctx.clone(),
            channel.clone(),
            h2.cloned(),
            head.version,
            head.keep_alive,
            is_head,
            thread,
        ),
    ) {
        Ok(r) => r,
        Err(e) => {
            log_exception(py, ctx, "cannot allocate a response", &e);
            observed.status = 500;
            return true;
        }
    };
    let outcome = (|| -> PyResult<()> {
        let env = environ::build(py, ctx, head, channel, body)?;
        if !ctx.observe.environ_keys().is_empty() {
            *environ = Some(env.clone());
        }
        if let Some(watch) = &ctx.watch {
            watch.begin(thread, channel, h2, head);
        }
        call_app(py, ctx, env, &responder)
    })();
    // From here on the watchdog leaves this request alone.
    let ended = match &ctx.watch {
        Some(watch) => watch.end(py, thread),
        None => Ended::InTime,
    };
    let Ok(mut r) = responder.try_borrow_mut() else {
        // The application kept start_response busy on another thread; give up cleanly.
        observed.status = 500;
        return true;
    };
    r.detach();
    *observed = r.outcome(ctx.observe.response_headers());
    if let Ended::TimedOut(answered) = ended {
        // The watchdog answered (or cut the connection) and logged it; whatever the
        // call returned or raised since is discarded.
        if let Some((body_bytes, bytes_out)) = answered {
            observed.status = 504;
            observed.body_bytes = body_bytes;
            observed.bytes_out = bytes_out;
        }
        return true;
    }
    let Err(err) = outcome else { return r.close };
    if err.is_instance_of::<RequestAbandoned>(py) {
        // The stop that abandoned it has said so; the connection is gone.
        return true;
    }
    let path = String::from_utf8_lossy(head.target()).into_owned();
    if err.is_instance_of::<ClientDisconnected>(py) || channel.is_closed() {
        log(
            py,
            ctx,
            "info",
            &format!("Client disconnected while serving {path}"),
        );
        if !r.headers_sent {
            // nginx's "client closed request": no status was ever sent.
            observed.status = 499;
        }
        return true;
    }
    log_exception(py, ctx, &format!("Exception while serving {path}"), &err);
    if !r.headers_sent {
        let message = if ctx.opts.expose_tracebacks {
            format_traceback(py, &err)
        } else {
            "The server encountered an unexpected internal server error".to_string()
        };
        let response = error_response(
            head.version,
            500,
            "Internal Server Error",
            &message,
            &ctx.opts.ident,
        );
        r.headers_sent = true;
        observed.status = 500;
        observed.body_bytes = 0;
        let sent = match h2 {
            Some(h2) => h2.conn.send_response(h2.id, &response),
            None => channel.send(&[&response], WhenFull::Queue).map(drop),
        };
        if sent.is_ok() {
            // The access log's %(b)s is the body actually sent, whoever wrote it.
            let head = memchr::memmem::find(&response, b"\r\n\r\n").map_or(0, |i| i + 4);
            observed.body_bytes = (response.len() - head) as u64;
            observed.bytes_out += response.len() as u64;
        }
    }
    // Headers already out: closing is the only way to tell the client the body is cut.
    true
}

fn format_traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let tb = py.import("traceback")?;
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let text: String = pyo3::types::PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract()?;
        Ok(text)
    })();
    formatted.unwrap_or_else(|_| err.to_string())
}

fn call_app(
    py: Python<'_>,
    ctx: &WsgiContext,
    env: Bound<'_, PyDict>,
    responder: &Bound<'_, Responder>,
) -> PyResult<()> {
    let result = ctx.app.bind(py).call1((env, responder))?;
    let sent = send_result(py, &result, responder);
    // PEP 3333: close() is called whatever happened while iterating. Lists and tuples
    // have none; asking them raises an AttributeError, which costs ~1 us per request.
    let closed =
        if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
            Ok(())
        } else if result.hasattr(pyo3::intern!(py, "close"))? {
            result.call_method0(pyo3::intern!(py, "close")).map(|_| ())
        } else {
            Ok(())
        };
    sent?;
    closed?;
    responder.try_borrow_mut()?.finish(py)
}

fn send_result(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    responder: &Bound<'_, Responder>,
) -> PyResult<()> {
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if send_file(py, &wrapper.borrow(), responder)? {
            return Ok(());
        }
    }
    if let Ok(list) = result.cast::<PyList>() {
        if list.len() == 1 {
            let item = list.get_item(0)?;
            let data = body_bytes(&item)?;
            let mut r = responder.try_borrow_mut()?;
            r.length_hint(data.len());
            return r.send_body(py, data);
        }
        for item in list.iter() {
            send_item(py, &item, responder)?;
        }
        return Ok(());
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        if tuple.len() == 1 {
            let item = tuple.get_item(0)?;
            let data = body_bytes(&item)?;
            let mut r = responder.try_borrow_mut()?;
            r.length_hint(data.len());
            return r.send_body(py, data);
        }
        for item in tuple.iter() {
            send_item(py, &item, responder)?;
        }
        return Ok(());
    }
    let mut first = true;
    for item in result.try_iter()? {
        let item = item?;
        if first {
            first = false;
            // start_response may only now have been called (PEP 3333): a one-item
            // iterable's length is the response length.
            if has_len(result) && result.len().ok() == Some(1) {
                let data = body_bytes(&item)?;
                responder.try_borrow_mut()?.length_hint(data.len());
            }
        }
        send_item(py, &item, responder)?;
    }
    Ok(())
}

/// Whether `obj` supports len(), from its type's slots: `hasattr(obj, "__len__")` would
/// raise (and discard) an AttributeError for every generator.
fn has_len(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: reading the type slots of a live object; both tables may be NULL.
    unsafe {
        let tp = pyo3::ffi::Py_TYPE(obj.as_ptr());
        let seq = (*tp).tp_as_sequence;
        let map = (*tp).tp_as_mapping;
        (!seq.is_null() && (*seq).sq_length.is_some())
            || (!map.is_null() && (*map).mp_length.is_some())
    }
}

fn send_item(
    py: Python<'_>,
    item: &Bound<'_, PyAny>,
    responder: &Bound<'_, Responder>,
) -> PyResult<()> {
    let data = body_bytes(item)?;
    if data.is_empty() {
        // PEP 3333: empty items do not push the head out.
        return Ok(());
    }
    responder.try_borrow_mut()?.send_body(py, data)
}

/// Sends a wrapped regular file with sendfile; false if it is not one (then the wrapper
/// is iterated like any other body).
fn send_file(
    py: Python<'_>,
    wrapper: &FileWrapper,
    responder: &Bound<'_, Responder>,
) -> PyResult<bool> {
    if responder.try_borrow()?.headers_sent {
        // write() already sent part of the body, framed as the head said: the file must
        // follow in the same framing, which iterating it gives.
        return Ok(false);
    }
    let f = wrapper.filelike.bind(py);
    let Ok(fd) = f.call_method0("fileno").and_then(|v| v.extract::<i32>()) else {
        return Ok(false);
    };
    let Ok(pos) = f.call_method0("tell").and_then(|v| v.extract::<u64>()) else {
        return Ok(false);
    };
    // SAFETY: fstat only writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
        return Ok(false);
    }
    let size = (st.st_size as u64).saturating_sub(pos);
    // SAFETY: the descriptor belongs to the application's file object, which outlives this
    // call; ManuallyDrop keeps us from closing it.
    let file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    responder
        .try_borrow_mut()?
        .send_file(py, &file, pos, size)?;
    Ok(true)
}
