//! Stage 1½: the PROXY protocol header (`proxy_protocol`, `proxy_protocol_from`), read
//! between `accept` and `read` on the connections of the peers that must send one.
//!
//! 1. `accept` marks a connection whose peer `proxy_protocol_from` allows
//!    (`Conn::proxy_header`) and starts its clock: the header, the TLS handshake and
//!    the first request head must together arrive within `channel_timeout`, and the
//!    tick closes it with a line of its own if the header has not (`timers`);
//! 2. [`EventLoop::read_proxy_header`], called by `drive` before any other read while
//!    the mark is set, *peeks* at the socket (at most `http::proxy::MAX_LEN` bytes) and
//!    parses what is there with the pure parser (`http::proxy`). Only once the header
//!    is complete does it take exactly the header's bytes from the socket: whatever
//!    follows (a TLS ClientHello, an HTTP request) stays in the kernel for the
//!    transport to read as if it were the first byte, so the TLS session never sees
//!    the header and nothing needs to be handed over. A partial header leaves the
//!    bytes where they are and waits for the next edge (each arrival raises one);
//! 3. a `Proxied` header replaces the channel's [`Peer`] before any worker or log has
//!    seen it: REMOTE_ADDR/REMOTE_PORT, the access log and every log line use the
//!    client's address for the whole keep-alive connection. A `Local` one (v2 LOCAL,
//!    a balancer's health check) keeps the socket's;
//! 4. anything else (bytes that are not an accepted header, the end of the stream
//!    before one) closes the connection with nothing served, one WARNING line naming
//!    the socket's peer and why, and `proxy_header_errors` counted;
//! 5. a peer *outside* the list is never read for a header: its first bytes are HTTP
//!    or TLS. If they turn out to be a PROXY header (the HTTP reader or the TLS
//!    transport refuses them), [`EventLoop::foreign_proxy_header`] says so in the
//!    refusal's log line and counts `proxy_headers_untrusted`; the address in it is
//!    never used.

use std::io::{self, Read};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::EventLoop;
use crate::engine::access_log::Seen;
use crate::engine::channel::{peer_text, Peer};
use crate::engine::dispatch::LogLevel;
use crate::engine::errors::is_disconnect;
use crate::engine::proxy_protocol::canonical;
use crate::engine::transport::peek;
use crate::http::proxy::{self, Accept, ProxyError, ProxyHeader, Status};
use crate::http::request::Version;

impl EventLoop {
    /// Reads the PROXY header of connection `token` if it has arrived whole. True when
    /// it has been taken (read on: the request, or the TLS handshake, follows); false
    /// while it is incomplete (wait for more) or when the connection was closed.
    pub(super) fn read_proxy_header(&mut self, token: usize) -> bool {
        let Some(accept) = self.cfg.proxy_protocol.as_ref().map(|p| p.accept) else {
            return true;
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return false;
        };
        if !conn.readable {
            return false;
        }
        let buf = &mut self.scratch[..proxy::MAX_LEN];
        let n = loop {
            match peek(&conn.channel.sock, buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return false;
                }
                Err(e) => {
                    self.stats.socket_errors.fetch_add(1, Relaxed);
                    let peer = peer_text(&conn.channel.peer);
                    if self.cfg.log_socket_errors && !is_disconnect(&e) {
                        self.log(LogLevel::Warning, format!("error reading from {peer}: {e}"));
                    }
                    self.close(token);
                    return false;
                }
            }
        };
        let (consumed, header) = match proxy::parse(&buf[..n], accept) {
            _ if n == 0 => return self.no_header(token, "the connection closed"),
            Ok(Status::Complete { consumed, header }) => (consumed, header),
            Ok(Status::Partial) if conn.read_closed => {
                return self.no_header(token, "the connection closed in the middle of it");
            }
            Ok(Status::Partial) => {
                // The bytes stay in the socket; the next arrival raises a new edge.
                conn.readable = false;
                return false;
            }
            Err(e) => return self.no_header(token, &describe(e)),
        };
        // Take exactly the header: what follows is the transport's.
        let mut taken = 0;
        while taken < consumed {
            match (&conn.channel.sock).read(&mut self.scratch[taken..consumed]) {
                Ok(0) => break,
                Ok(k) => taken += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if taken < consumed {
            // The kernel gave back less than it showed: nothing can be trusted.
            return self.no_header(token, "the header could not be read back whole");
        }
        self.stats.bytes_read.fetch_add(consumed as u64, Relaxed);
        conn.last_activity = self.now;
        conn.proxy_header = false;
        if let ProxyHeader::Proxied { source, .. } = header {
            // Only the loop holds the channel before its first request.
            match Arc::get_mut(&mut conn.channel) {
                Some(channel) => channel.peer = Peer::inet(canonical(source)),
                None => {
                    self.log(
                        LogLevel::Error,
                        "internal error: a PROXY header arrived on a shared connection".into(),
                    );
                    self.close(token);
                    return false;
                }
            }
        }
        true
    }

    /// A peer that must send a PROXY header did not: closed, nothing served.
    fn no_header(&mut self, token: usize, why: &str) -> bool {
        if let Some(conn) = self.conns.get(token) {
            self.stats.proxy_header_errors.fetch_add(1, Relaxed);
            let msg = format!(
                "closed connection from {} without serving it: no valid PROXY protocol \
                 header ({why}); proxy_protocol_from lists this peer",
                peer_text(&conn.channel.peer)
            );
            self.log(LogLevel::Warning, msg);
            self.close(token);
        }
        false
    }

    /// Whether `received`, the first bytes of a connection from a peer outside
    /// `proxy_protocol_from` that the HTTP reader or the TLS transport refused, is a
    /// PROXY header; if so it is refused as one (counted, logged, closed; a plain-HTTP
    /// listener answers 400) and true is returned.
    pub(super) fn foreign_proxy_header(&mut self, token: usize, received: &[u8]) -> bool {
        if self.cfg.proxy_protocol.is_none()
            || matches!(
                proxy::parse(received, Accept::Auto),
                Err(ProxyError::NotProxy)
            )
        {
            return false;
        }
        let Some(conn) = self.conns.get(token) else {
            return false;
        };
        self.stats.proxy_headers_untrusted.fetch_add(1, Relaxed);
        let message = "PROXY protocol header from a peer not in proxy_protocol_from";
        if conn.channel.tls().is_some() {
            // A TLS listener: the balancer relays its client's TLS, which would not read
            // an answer in clear.
            let msg = format!(
                "closed connection from {}: {message}",
                peer_text(&conn.channel.peer)
            );
            self.log(LogLevel::Warning, msg);
            self.close(token);
        } else {
            let seen = Seen::Line(Vec::new());
            self.refuse(token, Version::Http10, (400, "Bad Request"), message, seen);
        }
        true
    }

    /// [`EventLoop::foreign_proxy_header`] on what waits unread in the socket (a TLS
    /// listener's transport only peeks at the bytes it refuses).
    pub(super) fn foreign_proxy_header_unread(&mut self, token: usize) -> bool {
        if self.cfg.proxy_protocol.is_none() {
            return false;
        }
        let Some(conn) = self.conns.get(token) else {
            return false;
        };
        let mut first = [0u8; 16];
        match peek(&conn.channel.sock, &mut first) {
            Ok(n) => self.foreign_proxy_header(token, &first[..n]),
            Err(_) => false,
        }
    }
}

/// The log's words for a refused header; "not a PROXY header at all" says what the
/// usual mistake is (the balancer not configured to send one).
fn describe(e: ProxyError) -> String {
    match e {
        ProxyError::NotProxy => {
            "the connection did not start with one: a plain HTTP request or TLS handshake \
             from a peer that should send the header first"
                .into()
        }
        e => e.to_string(),
    }
}
