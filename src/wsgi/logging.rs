//! The logging thread: says through Python's `logging` what the I/O loop wants said
//! (timeouts, refused requests, queue depth, accept errors; with `access_log = logging`
//! the access log lines of the requests it answers itself). It waits without the GIL
//! and takes it only to emit, so the loop's messages come out when they happen, never
//! behind requests waiting for a worker.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::engine::dispatch::{LogLevel, LogQueue, LogRecord, Logger};
use crate::wsgi::context::WsgiContext;
use crate::wsgi::worker::{log, print_error};

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
