//! The access log's writer: entries queued by the workers under a short lock, formatted
//! and written by a thread of its own, in batches (at the latest every
//! [`FLUSH_INTERVAL`], at once when [`BATCH`] entries wait), to stdout or to a file it
//! reopens on request (log rotation).
//!
//! What must hold: each batch is one `write()` of whole lines to a file opened with
//! `O_APPEND`, so that lines from several processes appending to one file never
//! interleave; a failed write is said once, not once per batch; stopping writes what is
//! queued before the thread ends, and a reopen writes it to the old file first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::clock::Clock;
use super::entry::Entry;
use super::format::Format;

/// How long a line may wait in memory before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Entries that make the writer start at once rather than at the next interval.
const BATCH: usize = 1024;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

struct Pending {
    entries: Vec<Entry>,
    stop: bool,
}

/// The buffered writer: entries in, whole lines out.
pub struct AccessLog {
    pub format: Format,
    target: Target,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The open file (None for stdout); replaced by [`AccessLog::reopen`].
    file: Mutex<Option<File>>,
    /// Something went wrong writing: said once, not once per batch.
    failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AccessLog {
    /// Opens the target at once, so that a path that cannot be written fails at start.
    pub fn new(format: Format, target: Target) -> io::Result<AccessLog> {
        let file = match &target {
            Target::File(p) => Some(open(p)?),
            Target::Stdout => None,
        };
        Ok(AccessLog {
            format,
            target,
            pending: Mutex::new(Pending {
                entries: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            file: Mutex::new(file),
            failed: AtomicBool::new(false),
        })
    }

    /// Queues an entry (called by a worker after its response).
    pub fn push(&self, e: Entry) {
        let mut p = lock(&self.pending);
        p.entries.push(e);
        if p.entries.len() == BATCH {
            self.wake.notify_one();
        }
    }

    /// Starts the writer thread; [`Writer::stop`] writes what is left and ends it.
    pub fn start(self: &Arc<Self>) -> io::Result<Writer> {
        lock(&self.pending).stop = false;
        let log = self.clone();
        let thread = std::thread::Builder::new()
            .name("maitre-access-log".into())
            .spawn(move || log.run())?;
        Ok(Writer {
            log: self.clone(),
            thread: Some(thread),
        })
    }

    fn run(&self) {
        let mut clock = Clock::default();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut batch = Vec::new();
        loop {
            let stop = {
                let mut p = lock(&self.pending);
                // Wait out the interval (or a full batch): one write per interval,
                // not one per request.
                if p.entries.len() < BATCH && !p.stop {
                    p = self
                        .wake
                        .wait_timeout(p, FLUSH_INTERVAL)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                std::mem::swap(&mut p.entries, &mut batch);
                p.stop
            };
            clock.rebase();
            self.write_batch(&mut batch, &mut clock, &mut buf);
            if stop {
                return;
            }
        }
    }

    fn write_batch(&self, batch: &mut Vec<Entry>, clock: &mut Clock, buf: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        buf.clear();
        for e in batch.drain(..) {
            self.format.write_line(&e, clock, buf);
        }
        let file = lock(&self.file);
        let result = match (&self.target, &*file) {
            (Target::File(_), Some(f)) => write_once(f, buf),
            (Target::File(_), None) => Err(io::Error::other("the log file is not open")),
            (Target::Stdout, _) => {
                // SAFETY: fd 1 stays open for the life of the process; not closed here.
                let out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
                write_once(&out, buf)
            }
        };
        if let Err(e) = result {
            if !self.failed.swap(true, Ordering::Relaxed) {
                eprintln!("maitre: cannot write the access log: {e}");
            }
        }
    }

    /// Writes what is queued to the current file, then opens the path again (after a
    /// rotation renamed it). Errors keep the old file.
    pub fn reopen(&self) -> io::Result<()> {
        let mut batch = std::mem::take(&mut lock(&self.pending).entries);
        self.write_batch(&mut batch, &mut Clock::default(), &mut Vec::new());
        if let Target::File(path) = &self.target {
            let f = open(path)?;
            *lock(&self.file) = Some(f);
            self.failed.store(false, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// One `write()` of whole lines: with `O_APPEND` the kernel places it at the end in one
/// piece. A short write (disk full, signal) finishes with more writes.
fn write_once(mut f: &File, buf: &[u8]) -> io::Result<()> {
    f.write_all(buf)
}

/// The running writer thread.
pub struct Writer {
    log: Arc<AccessLog>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        lock(&self.log.pending).stop = true;
        self.log.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}
