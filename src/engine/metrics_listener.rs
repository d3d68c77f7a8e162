//! The metrics listener: the socket of `metrics_listen`, served by a thread of its own,
//! so a scrape or a health probe never waits for an application thread and answers
//! while every one of them is busy. What it renders is `metrics.rs` (`/metrics`) and
//! `status_page.rs` (`/` and `/status.json`).
//!
//! Routes (`answer`): `/metrics`, `/` (the status page), `/status.json`, and the
//! probes `/livez` and `/readyz`, answered from a [`Health`] the engine (or, under a
//! master, the master) keeps up to date.
//!
//! What must hold: no client can delay another. The thread serves up to
//! [`MAX_CLIENTS`] connections at once, non-blocking, from one `poll()`; each has
//! [`CLIENT_TIMEOUT`] from its accept to send its request and take the whole answer,
//! and is closed then whatever it did. At the limit, the oldest connection is closed
//! to admit a new one, so idle sockets cannot lock a probe out.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::metrics::{render_prometheus, Blocks};
use crate::engine::status_page::{render_status, render_status_json, Rates};

/// How often request counts are sampled for the rate on the status page.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How long one client may take, from its accept, to send its request and read the
/// answer. Short: a probe's own timeout is typically a second.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often the thread looks at its stop flag while idle.
const POLL: Duration = Duration::from_millis(100);
/// Connections served at once; the oldest goes to admit one more.
pub const MAX_CLIENTS: usize = 64;
/// Most bytes of a request head read.
const MAX_HEAD: usize = 8192;

/// What the probes answer. In a single process the engine keeps it (`live` while its
/// I/O loop runs, `stopping` from the first stop signal on); under a master, the
/// master sets both from its view of the workers.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
    stopping: AtomicBool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            live: AtomicBool::new(false),
            ready: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// Whether the server runs (`/livez`).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }

    /// Whether it accepts and can take a request (`/readyz`): live, not stopping,
    /// and able to take one more. The hook for overload: when `max_queued_requests`
    /// is reached, the engine calls `set_ready(false)` (and `true` once below it);
    /// nothing else needs to change here.
    pub fn is_ready(&self) -> bool {
        self.is_live()
            && !self.stopping.load(Ordering::Acquire)
            && self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// A stop has begun: not ready from now on (never undone).
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
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
        health: Arc<Health>,
    ) -> std::io::Result<MetricsServer> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let site = Site {
            blocks,
            ident,
            health,
            rates: Rates::default(),
        };
        let thread = std::thread::Builder::new()
            .name("maitre-metrics".into())
            .spawn(move || serve(listener, site, flag))?;
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

/// What the routes answer from.
struct Site {
    blocks: Blocks,
    ident: String,
    health: Arc<Health>,
    rates: Rates,
}

/// One client connection.
struct Client {
    sock: TcpStream,
    deadline: Instant,
    input: Vec<u8>,
    /// The answer, once the head has arrived; `sent` bytes of it are written.
    output: Option<Vec<u8>>,
    sent: usize,
}

impl Client {
    /// Reads and writes what it can; `false` once the connection is done with.
    fn progress(&mut self, site: &Site) -> bool {
        if self.output.is_none() {
            let mut chunk = [0u8; 2048];
            loop {
                match self.sock.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.input.extend_from_slice(&chunk[..n]);
                        if self.input.len() >= MAX_HEAD {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if !self.input.windows(4).any(|w| w == b"\r\n\r\n") {
                            return true;
                        }
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
                if self.input.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            // A panic while answering one request must not end the listener.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                answer(&self.input, site)
            }));
            match answer {
                Ok(a) => self.output = Some(a),
                Err(_) => return false,
            }
        }
        let Some(out) = &self.output else {
            return true;
        };
        while self.sent < out.len() {
            match self.sock.write(&out[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        false
    }
}

fn serve(listener: TcpListener, mut site: Site, stop: Arc<AtomicBool>) {
    let mut next_sample = Instant::now();
    let mut clients: Vec<Client> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next_sample {
            let snaps = site.blocks.snapshots();
            site.rates.sample(now, &snaps);
            next_sample = now + SAMPLE_EVERY;
        }
        clients.retain(|c| c.deadline > now);
        let mut fds = Vec::with_capacity(clients.len() + 1);
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for c in &clients {
            let events = if c.output.is_some() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            fds.push(libc::pollfd {
                fd: c.sock.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        let wait = clients
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .fold(POLL, Duration::min)
            .max(Duration::from_millis(1));
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the call.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as i32,
            )
        };
        if n <= 0 {
            continue;
        }
        // Clients first (their indexes match `fds[1..]`), then the new ones.
        let mut keep = Vec::with_capacity(clients.len());
        for (c, fd) in clients.drain(..).zip(&fds[1..]) {
            if fd.revents == 0 {
                keep.push(c);
                continue;
            }
            let mut c = c;
            if c.progress(&site) {
                keep.push(c);
            }
        }
        clients = keep;
        if fds[0].revents != 0 {
            while let Ok((sock, _)) = listener.accept() {
                if sock.set_nonblocking(true).is_err() {
                    continue;
                }
                if clients.len() >= MAX_CLIENTS {
                    // The oldest is the first: accepted first, same timeout.
                    clients.remove(0);
                }
                let mut c = Client {
                    sock,
                    deadline: Instant::now() + CLIENT_TIMEOUT,
                    input: Vec::with_capacity(512),
                    output: None,
                    sent: 0,
                };
                // The request often comes with the connection.
                if c.progress(&site) {
                    clients.push(c);
                }
            }
        }
    }
}

/// The route table: a request head in, the whole answer (head and body) out.
fn answer(input: &[u8], site: &Site) -> Vec<u8> {
    let line = input
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    let target = parts.next().unwrap_or(b"");
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    let health = &site.health;
    let probe = |ok: bool, yes: &str, no: &str| -> (&'static str, &'static str, String) {
        if ok {
            ("200 OK", "text/plain", format!("{yes}\n"))
        } else {
            ("503 Service Unavailable", "text/plain", format!("{no}\n"))
        }
    };
    let (status, ctype, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render_prometheus(&site.blocks.snapshots(), site.blocks.labelled),
        ),
        (b"GET" | b"HEAD", b"/") => (
            "200 OK",
            "text/html; charset=utf-8",
            render_status(
                &site.blocks.snapshots(),
                &site.rates,
                Instant::now(),
                &site.ident,
                target,
            ),
        ),
        (b"GET" | b"HEAD", b"/status.json") => (
            "200 OK",
            "application/json",
            render_status_json(
                &site.blocks.snapshots(),
                &site.rates,
                Instant::now(),
                &site.ident,
            ),
        ),
        (b"GET" | b"HEAD", b"/livez") => probe(health.is_live(), "live", "not live"),
        (b"GET" | b"HEAD", b"/readyz") => probe(
            health.is_ready(),
            "ready",
            if health.is_stopping() {
                "stopping"
            } else {
                "not ready"
            },
        ),
        (b"GET" | b"HEAD", _) => ("404 Not Found", "text/plain", "Not Found\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "Method Not Allowed\n".into(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            blocks: Blocks {
                blocks: Vec::new(),
                labelled: false,
            },
            ident: "maitre".into(),
            health: Arc::new(Health::default()),
            rates: Rates::default(),
        }
    }

    fn status(out: &[u8]) -> &str {
        let line = out.split(|&b| b == b'\r').next().unwrap();
        std::str::from_utf8(line).unwrap()
    }

    #[test]
    fn probes_follow_health() {
        let site = site();
        let get = |path: &str| answer(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(), &site);
        // Not started yet: neither live nor ready.
        assert_eq!(status(&get("/livez")), "HTTP/1.1 503 Service Unavailable");
        assert_eq!(status(&get("/readyz")), "HTTP/1.1 503 Service Unavailable");
        site.health.set_live(true);
        assert_eq!(status(&get("/livez")), "HTTP/1.1 200 OK");
        assert_eq!(status(&get("/readyz?verbose")), "HTTP/1.1 200 OK");
        // The overload hook.
        site.health.set_ready(false);
        assert_eq!(status(&get("/readyz")), "HTTP/1.1 503 Service Unavailable");
        site.health.set_ready(true);
        site.health.set_stopping();
        let out = get("/readyz");
        assert_eq!(status(&out), "HTTP/1.1 503 Service Unavailable");
        assert!(out.ends_with(b"stopping\n"));
        assert_eq!(status(&get("/livez")), "HTTP/1.1 200 OK");
        let head = answer(b"HEAD /livez HTTP/1.1\r\n\r\n", &site);
        assert!(head.ends_with(b"\r\n\r\n"));
        assert_eq!(
            status(&answer(b"POST /readyz HTTP/1.1\r\n\r\n", &site)),
            "HTTP/1.1 405 Method Not Allowed"
        );
    }
}
