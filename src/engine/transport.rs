//! What carries a connection's bytes: the socket itself, or a TLS session over it.
//!
//! The connection code above (the loop's reader, `Channel::send`/`send_file`, `OutBuf`)
//! is the same for both: it reads plaintext with [`TlsSession::read`] and writes through
//! a [`Sink`]. A TLS sink encrypts into the session and pushes records to the socket,
//! keeping at most one chunk of records pending in the session when the socket is full:
//! the rest waits as plaintext in the `OutBuf` like any other queued output, so a slow
//! TLS client costs what a slow plain one does.
//!
//! Lock order: the channel's output lock, then the session's (the loop reads and drives
//! the handshake under the session's lock alone; it never reads while a worker writes).

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rustls::ServerConnection;
use socket2::Socket;

use crate::engine::sys;

/// Where queued or direct output goes: the plain socket, or the TLS session over it.
pub trait Sink {
    /// Takes some of `bufs`; `WouldBlock` when nothing can be taken now.
    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Takes some of `count` bytes of `file` at `*offset`, advancing it; 0 at the file's end.
    fn send_file(&mut self, file: &File, offset: &mut u64, count: u64) -> io::Result<usize>;
}

impl Sink for &Socket {
    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self, bufs)
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, count: u64) -> io::Result<usize> {
        sys::send_file(self, file, offset, count)
    }
}

/// Plaintext taken into the session per call: records of this much are encrypted and
/// written in one go (large enough for few system calls, small enough that a full socket
/// leaves little behind in the session).
const CHUNK: usize = 256 * 1024;

/// The TLS side of one connection.
pub struct TlsSession {
    conn: Mutex<Tls>,
    /// The mod_ssl environ entries, set once the handshake is done.
    environ: OnceLock<Vec<(&'static str, String)>>,
    /// The client spoke plain HTTP: the connection is answered (400) and closed in clear.
    plain: AtomicBool,
    /// ALPN chose `h2` (set with `environ`, when the handshake is done).
    h2: AtomicBool,
}

struct Tls {
    conn: ServerConnection,
    /// File bytes on their way into the session (allocated on the first file sent).
    file_buf: Vec<u8>,
    /// Whether any byte has arrived (the first one tells TLS from plain HTTP).
    started: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession").finish_non_exhaustive()
    }
}

/// The error [`TlsSession::read`] gives for a client that spoke plain HTTP.
#[derive(Debug)]
pub struct NotTls;

impl std::fmt::Display for NotTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("plain HTTP request sent to an HTTPS port")
    }
}

impl std::error::Error for NotTls {}

pub fn is_not_tls(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotTls>())
}

/// The socket as `io::Read`/`io::Write` for rustls, with MSG_NOSIGNAL on writes.
struct SockIo<'a>(&'a Socket);

impl Read for SockIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SockIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send_vectored(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    pub fn new(mut conn: ServerConnection) -> TlsSession {
        conn.set_buffer_limit(Some(CHUNK));
        TlsSession {
            conn: Mutex::new(Tls {
                conn,
                file_buf: Vec::new(),
                started: false,
            }),
            environ: OnceLock::new(),
            plain: AtomicBool::new(false),
            h2: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tls> {
        // Every step leaves the session consistent; a panic elsewhere does not matter.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client turned out to speak plain HTTP: from now on bytes pass in clear.
    pub fn is_plain(&self) -> bool {
        self.plain.load(Ordering::Relaxed)
    }

    pub fn is_handshaking(&self) -> bool {
        !self.is_plain() && self.environ.get().is_none()
    }

    /// No byte of a handshake has arrived yet (nor of plain HTTP): the client has sent
    /// nothing we have looked at.
    pub fn is_untouched(&self) -> bool {
        !self.is_plain() && !self.lock().started
    }

    /// The handshake agreed on HTTP/2 (ALPN `h2`).
    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    pub fn environ(&self) -> Option<&[(&'static str, String)]> {
        self.environ.get().map(Vec::as_slice)
    }

    /// Reads plaintext into `buf`, driving the handshake on the way. Like a socket read:
    /// `Ok(0)` at the end, `WouldBlock` when nothing is available, and a count short of
    /// `buf.len()` only once the socket has been read dry.
    pub fn read(&self, sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
        if self.is_plain() {
            return (&*sock).read(buf);
        }
        let mut tls = self.lock();
        if !tls.started {
            let mut first = [0u8; 16];
            match peek(sock, &mut first)? {
                0 => return Ok(0),
                // A TLS handshake record starts with 22.
                _ if first[0] == 22 => tls.started = true,
                n if looks_like_http(&first[..n]) => {
                    self.plain.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, NotTls));
                }
                // Anything else is not answered: it would not read an HTTP answer.
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        crate::engine::tls::NotAHandshake,
                    ))
                }
            }
        }
        let mut n = 0;
        let mut eof = false;
        loop {
            // Plaintext the session already holds comes first.
            match tls.conn.reader().read(&mut buf[n..]) {
                Ok(0) => eof = true,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => eof = true,
                Err(e) => return Err(e),
            }
            if n == buf.len() || eof {
                break;
            }
            match tls.conn.read_tls(&mut SockIo(sock)) {
                Ok(0) => {
                    eof = true;
                    // Whatever the session still decrypts from what it holds.
                    let _ = tls.conn.process_new_packets();
                    if let Ok(k) = tls.conn.reader().read(&mut buf[n..]) {
                        n += k;
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let processed = tls.conn.process_new_packets();
            // Handshake messages, or an alert telling the client why it failed.
            let _ = push_records(&mut tls.conn, sock);
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if self.environ.get().is_none() && !tls.conn.is_handshaking() {
                let h2 = tls.conn.alpn_protocol() == Some(b"h2".as_slice());
                self.h2.store(h2, Ordering::Relaxed);
                let _ = self.environ.set(crate::engine::tls::environ_of(&tls.conn));
            }
        }
        if n > 0 {
            Ok(n)
        } else if eof {
            Ok(0)
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    /// Whether encrypted bytes wait in the session for the socket.
    pub fn has_pending(&self) -> bool {
        !self.is_plain() && self.lock().conn.wants_write()
    }

    /// Writes as much of the session's pending records as the socket takes; true when
    /// none is left.
    pub fn push_pending(&self, sock: &Socket) -> io::Result<bool> {
        if self.is_plain() {
            return Ok(true);
        }
        let mut tls = self.lock();
        match push_records(&mut tls.conn, sock) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` with the sink output goes through (the plain socket once the client
    /// turned out to speak plain HTTP).
    pub fn with_sink<R>(&self, sock: &Socket, f: impl FnOnce(&mut dyn Sink) -> R) -> R {
        if self.is_plain() {
            return f(&mut &*sock);
        }
        let mut tls = self.lock();
        let Tls { conn, file_buf, .. } = &mut *tls;
        f(&mut TlsSink {
            sock,
            conn,
            file_buf,
        })
    }

    /// Says goodbye (close_notify) before our side of the socket is shut down.
    pub fn close_notify(&self, sock: &Socket) {
        if self.is_plain() {
            return;
        }
        let mut tls = self.lock();
        tls.conn.send_close_notify();
        let _ = push_records(&mut tls.conn, sock);
    }
}

/// Peeks at the first bytes without taking them; 0 at the end of the stream.
pub fn peek(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: a buffer of `buf.len()` bytes that outlives the call.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether the first bytes received look like the start of an HTTP request line: a
/// method (capital letters) followed by a space, or capital letters so far.
fn looks_like_http(bytes: &[u8]) -> bool {
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method > 0 && (method == bytes.len() || bytes[method] == b' ')
}

/// Writes the session's pending records until none is left (`Ok`) or the socket is full
/// (`WouldBlock`).
fn push_records(conn: &mut ServerConnection, sock: &Socket) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(&mut SockIo(sock)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct TlsSink<'a> {
    sock: &'a Socket,
    conn: &'a mut ServerConnection,
    file_buf: &'a mut Vec<u8>,
}

impl Sink for TlsSink<'_> {
    fn send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Records already made go first; while they wait, nothing more is taken.
        push_records(self.conn, self.sock)?;
        let mut slices: [IoSlice<'_>; 64] = [IoSlice::new(&[]); 64];
        let mut n_slices = 0;
        let mut total = 0;
        for b in bufs {
            if total == CHUNK || n_slices == slices.len() {
                break;
            }
            let take = b.len().min(CHUNK - total);
            slices[n_slices] = IoSlice::new(&b[..take]);
            n_slices += 1;
            total += take;
        }
        let n = self.conn.writer().write_vectored(&slices[..n_slices])?;
        // Send now what the socket takes; the rest leaves on the next call or flush.
        match push_records(self.conn, self.sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if n == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, count: u64) -> io::Result<usize> {
        // Records still waiting: do not read the file for nothing.
        push_records(self.conn, self.sock)?;
        let want = count.min(CHUNK as u64) as usize;
        if self.file_buf.len() < want {
            self.file_buf.resize(want, 0);
        }
        let got = loop {
            match file.read_at(&mut self.file_buf[..want], *offset) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if got == 0 {
            return Ok(0);
        }
        let buf = std::mem::take(self.file_buf);
        let sent = self.send_vectored(&[IoSlice::new(&buf[..got])]);
        *self.file_buf = buf;
        let n = sent?;
        *offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::channel::{Channel, Peer, WhenFull};
    use crate::engine::outbuf::Flushed;
    use crate::engine::tls::{TlsAcceptor, TlsSettings, VerifyClient};
    use rustls::pki_types::pem::PemObject;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::sync::Arc;

    /// A CA and a certificate for localhost made now with the openssl command.
    fn make_certificates(dir: &Path) {
        let script = "set -e
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout ca.key -out ca.pem -days 2 -subj /CN=ca 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout key.pem -out leaf.csr -subj /CN=localhost 2>/dev/null
            printf 'subjectAltName=DNS:localhost\\nbasicConstraints=critical,CA:FALSE\\n' >ext
            openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                -days 2 -extfile ext -out cert.pem 2>/dev/null";
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .expect("sh");
        assert!(
            status.success(),
            "openssl could not make the test certificates"
        );
    }

    struct Pair {
        channel: Channel,
        client: rustls::ClientConnection,
        peer: UnixStream,
        _dir: tempfile::TempDir,
    }

    fn tls_pair() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let acceptor = TlsAcceptor::new(TlsSettings {
            certificate: path("cert.pem"),
            private_key: path("key.pem"),
            certificate_chain: None,
            private_key_password: None,
            ca_certificate: None,
            verify_client: VerifyClient::None,
            tls13_only: false,
            http2: false,
        })
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(path("ca.pem")).unwrap();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client =
            rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
                .unwrap();
        let (a, peer) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let sock = Socket::from(std::os::fd::OwnedFd::from(a));
        let channel = Channel::new(1, 0, 0, sock, Peer::Unix, 1 << 20, 16 << 20)
            .with_tls(Some(TlsSession::new(acceptor.session().unwrap())));
        Pair {
            channel,
            client,
            peer,
            _dir: dir,
        }
    }

    /// Moves bytes both ways until the handshake is done (the server side as the loop
    /// drives it: reads, and flushes on writable).
    fn handshake(p: &mut Pair) {
        let mut buf = vec![0u8; 4096];
        for _ in 0..100 {
            while p.client.wants_write() {
                p.client.write_tls(&mut p.peer).unwrap();
            }
            match p.channel.read(&mut buf) {
                Ok(n) => assert_eq!(n, 0, "no plaintext during the handshake"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
            }
            p.channel.flush().unwrap();
            if p.channel.tls().unwrap().environ().is_some() && !p.client.is_handshaking() {
                return;
            }
            p.peer.set_nonblocking(true).unwrap();
            let _ = p.client.read_tls(&mut p.peer);
            p.peer.set_nonblocking(false).unwrap();
            p.client.process_new_packets().unwrap();
        }
        panic!("no handshake");
    }

    #[test]
    fn queued_output_reaches_a_slow_tls_reader_whole_and_in_order() {
        let mut p = tls_pair();
        handshake(&mut p);
        let env = p.channel.transport_environ();
        assert!(env.contains(&("HTTPS", "on".to_string())));
        // 6 MiB while the client reads nothing: most is queued, as plaintext.
        let body: Vec<u8> = (0..6usize << 20).map(|i| (i % 251) as u8).collect();
        for piece in body.chunks(1 << 20) {
            p.channel.send(&[piece], WhenFull::Queue).unwrap();
        }
        assert!(p.channel.has_pending_output());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < body.len() {
            p.peer.set_nonblocking(true).unwrap();
            match p.client.read_tls(&mut p.peer) {
                Ok(_) => {
                    p.client.process_new_packets().unwrap();
                    loop {
                        match p.client.reader().read(&mut buf) {
                            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                            _ => break,
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The loop's part: a writable socket gets what is queued.
                    p.channel.flush().unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got == body, "bytes lost, repeated or out of order");
        assert_eq!(p.channel.flush().unwrap().0, Flushed::All);
        assert!(!p.channel.has_pending_output());
    }

    #[test]
    fn plain_http_is_told_apart_from_a_handshake() {
        let mut p = tls_pair();
        p.peer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        let e = p.channel.read(&mut buf).unwrap_err();
        assert!(is_not_tls(&e), "{e}");
        // From then on the connection is plain: an answer goes out in clear.
        assert_eq!(p.channel.read(&mut buf).unwrap(), 18);
        p.channel.send(&[b"HTTP/1.0 400"], WhenFull::Queue).unwrap();
        let mut got = [0u8; 12];
        p.peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HTTP/1.0 400");
    }

    #[test]
    fn binary_bytes_are_not_taken_for_plain_http() {
        let mut p = tls_pair();
        p.peer.write_all(b"\x8f\x00\x01binary").unwrap();
        let mut buf = [0u8; 64];
        let e = p.channel.read(&mut buf).unwrap_err();
        assert!(!is_not_tls(&e), "{e}");
        assert_eq!(
            crate::engine::tls::handshake_failure(&e).0,
            crate::engine::tls::NOT_TLS
        );
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(looks_like_http(b"OPTI"));
        assert!(!looks_like_http(b"GET\x00"));
        assert!(!looks_like_http(b"\x80\x2e\x01"));
        assert!(!looks_like_http(b" GET"));
    }
}
