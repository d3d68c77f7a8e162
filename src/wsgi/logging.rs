//! The logging thread: says through Python's `logging` what the I/O loop wants said
//! (timeouts, refused requests, queue depth, accept errors; with `access_log = logging`
//! the access log lines of the requests it answers itself). It waits without the GIL
//! and takes it only to emit, so the loop's messages come out when they happen, never
//! behind requests waiting for a worker.
//!
//! Also the calls every thread logs through (`log`, `log_exception`): a failing logging
//! handler is printed and swallowed, never raised into the request that logged.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::dispatch::{LogLevel, LogQueue, LogRecord, Logger};
use crate::wsgi::context::WsgiContext;
use crate::wsgi::exceptions::RequestAbandoned;

pub fn log_main(ctx: Arc<WsgiContext>, logs: Arc<LogQueue>) {
    let mut records = Vec::new();
    // Attached for its whole life, like a worker: the GIL is released while waiting,
    // through `gil::detach`, which never takes it back during interpreter finalization.
    Python::attach(|py| {
        while crate::wsgi::gil::detach(py, || logs.take_wait(&mut records)) {
            for record in records.drain(..) {
                emit(py, &ctx, &record);
            }
        }
    });
}

fn emit(py: Python<'_>, ctx: &WsgiContext, record: &LogRecord) {
    let level = match record.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warning",
        LogLevel::Error => "error",
    };
    let logger = match record.logger {
        Logger::Main => return log(py, ctx, level, &record.message),
        Logger::Queue => &ctx.queue_logger,
        Logger::Access => match &ctx.observe.access_logger {
            Some((_, logger)) => logger,
            None => return,
        },
    };
    if let Err(e) = logger.bind(py).call_method1(level, (&record.message,)) {
        print_error(py, e);
    }
}

/// Logs through the `maitre` logger; a failing handler must not take the worker down.
pub fn log(py: Python<'_>, ctx: &WsgiContext, level: &str, message: &str) {
    if let Err(e) = ctx.logger.bind(py).call_method1(level, (message,)) {
        print_error(py, e);
    }
}

/// Prints an error of a log call, except the one a stop raises in an abandoned thread
/// (that thread is only ending).
fn print_error(py: Python<'_>, e: PyErr) {
    if !e.is_instance_of::<RequestAbandoned>(py) {
        e.print(py);
    }
}

/// Logs `message` at error level with `err` and its traceback attached (`exc_info`).
pub fn log_exception(py: Python<'_>, ctx: &WsgiContext, message: &str, err: &PyErr) {
    let kwargs = PyDict::new(py);
    // The (type, value, traceback) triple: before Python 3.12 the exception value alone
    // may not carry its traceback, and the record would have no stack.
    let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
    let logged = kwargs.set_item("exc_info", exc_info).and_then(|_| {
        ctx.logger
            .bind(py)
            .call_method("error", (message,), Some(&kwargs))
    });
    if let Err(e) = logged {
        print_error(py, e);
    }
}
