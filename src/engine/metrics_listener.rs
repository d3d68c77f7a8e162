//! The metrics listener: the socket of `metrics_listen`, served by a thread of its own,
//! so a scrape never waits for an application thread and answers while every one of
//! them is busy. What it renders is `metrics.rs`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::metrics::{render_prometheus, render_status, Blocks, Rates};

/// How often request counts are sampled for the rate on the status page.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How long one client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks at its stop flag while idle.
const POLL: Duration = Duration::from_millis(100);

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
            render_status(&blocks.snapshots(), rates, Instant::now(), ident),
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
