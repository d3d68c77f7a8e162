//! The Linux fast paths (see `engine::sys`); `portable.rs` has the same items for other
//! systems, and for Linux built with the `portable` feature.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use socket2::Socket;

/// The Linux calls are built in (false in `portable.rs`).
pub const FAST_PATHS: bool = true;

/// Sets up an accepted socket for what the other calls here assume: nothing on Linux,
/// where every send says MSG_NOSIGNAL itself.
pub fn prepare_accepted(_sock: &Socket) -> io::Result<()> {
    Ok(())
}

/// writev with MSG_NOSIGNAL: a peer that went away must give EPIPE, not kill the process.
pub fn send_vectored(sock: &Socket, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    sock.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
}

/// One sendfile call for up to `count` bytes of `file` at `*offset`, advancing it: the
/// kernel sends from the file's pages, never through a buffer of ours.
pub fn send_file(sock: &Socket, file: &File, offset: &mut u64, count: u64) -> io::Result<usize> {
    // Linux sends at most 0x7ffff000 bytes per call.
    let count = count.min(0x7fff_f000) as usize;
    let mut off = *offset as libc::off_t;
    // SAFETY: both descriptors are open for the duration of the call (borrowed), and `off`
    // is a valid pointer to a local.
    let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as usize)
}

/// Holds back partial segments (TCP_CORK) while `on`; turning it off sends the rest.
/// Best effort: a Unix socket has no cork.
pub fn cork(sock: &Socket, on: bool) {
    let _ = sock.set_tcp_cork(on);
}

/// Bytes sent on `sock` that its peer has not acknowledged yet (TIOCOUTQ).
pub fn unacked_bytes(sock: &Socket) -> Option<usize> {
    let mut unacked: libc::c_int = 0;
    // SAFETY: the ioctl writes one int into the local.
    let ok = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) } == 0;
    ok.then_some(unacked.max(0) as usize)
}

/// How long `sock` has received no data: since its last data, or since it was
/// established if it never had any (TCP_INFO's `tcpi_last_data_recv`), which counts the
/// time it waited in the listener's backlog. None where it cannot tell (a Unix socket).
pub fn quiet_for(sock: &Socket) -> Option<Duration> {
    // SAFETY: tcp_info is plain integers; all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the local, and says how many.
    let ok = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    } == 0;
    let known = std::mem::offset_of!(libc::tcp_info, tcpi_last_data_recv) + 4;
    (ok && len as usize >= known).then(|| Duration::from_millis(info.tcpi_last_data_recv.into()))
}

/// Puts the calling thread (the I/O loop) under SCHED_BATCH: its wake-ups then do not
/// preempt a worker in the middle of a run of requests, so on a busy core the loop
/// collects bigger batches (fewer context switches and less CPU per request). Best
/// effort: without it the loop only batches less.
pub fn prefer_batching() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// A thread's CPU clock, readable from other threads.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock(libc::clockid_t);

impl CpuClock {
    /// The calling thread's clock; `None` if the system cannot tell.
    pub fn current() -> Option<CpuClock> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self is the calling thread; the call writes `clock` only.
        let ok = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0;
        ok.then_some(CpuClock(clock))
    }

    /// The CPU time the thread has used.
    pub fn read(self) -> Option<Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec we own; the clock of a thread
        // that has ended is an error, not undefined behaviour.
        if unsafe { libc::clock_gettime(self.0, &mut ts) } != 0 {
            return None;
        }
        Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

/// A pipe that carries a spilled body from its socket to its file with splice(2), so
/// that the bytes are copied once, by the kernel, into the file's pages, instead of
/// into our read buffer, then out to the file (and that at a quarter of the system
/// calls: the pipe holds up to a MiB). One per event loop, always left empty; the libc
/// crate gives us splice and pipe2, which std does not wrap. Plain sockets only: TLS
/// must decrypt in user space, and a chunked body must be decoded.
#[derive(Debug)]
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes the pipe holds (F_GETPIPE_SZ): what one splice can move.
    capacity: usize,
}

/// The pipe size asked for; the kernel may cap it (`/proc/sys/fs/pipe-max-size`).
const PIPE_SIZE: libc::c_int = 1 << 20;

impl SplicePipe {
    pub fn new() -> io::Result<SplicePipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Best effort: a smaller pipe only means more system calls.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        // SAFETY: as above.
        let capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if capacity <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SplicePipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }

    /// Moves up to `max` bytes from the socket `sock` into the pipe, as `read(2)` would
    /// read them: `Ok(0)` at the end of the stream, `WouldBlock` when none are waiting.
    /// Fewer than asked does not mean the socket is read dry (the pipe may be full).
    pub fn fill_from(&self, sock: RawFd, max: u64) -> io::Result<usize> {
        let len = (self.capacity as u64).min(max) as usize;
        // SAFETY: both descriptors are open for the duration of the call.
        let n = unsafe {
            libc::splice(
                sock,
                std::ptr::null_mut(),
                self.write.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Moves the `n` bytes waiting in the pipe into `file` at `offset`: the kernel copies
    /// them from the socket's buffers to the file's pages, never through ours. On an
    /// error, what is left in the pipe is the caller's to discard.
    pub fn splice_to(&self, file: &File, n: usize, offset: u64) -> io::Result<()> {
        let fd = file.as_raw_fd();
        let mut off = offset as libc::off64_t;
        let end = offset as libc::off64_t + n as libc::off64_t;
        while off < end {
            let left = (end - off) as usize;
            // SAFETY: both descriptors are open for the duration of the call; the kernel
            // advances `off`, which we own.
            let moved = unsafe {
                libc::splice(
                    self.read.as_raw_fd(),
                    std::ptr::null_mut(),
                    fd,
                    &mut off,
                    left,
                    libc::SPLICE_F_MOVE,
                )
            };
            match moved {
                -1 => {
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EINTR) => {}
                        // A filesystem that cannot take spliced pages: copy instead.
                        Some(libc::EINVAL) => {
                            return self.copy_to(file, (end - off) as usize, off as u64)
                        }
                        _ => return Err(e),
                    }
                }
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// As `splice_to`, through a buffer of ours.
    pub fn copy_to(&self, file: &File, n: usize, offset: u64) -> io::Result<()> {
        let mut buf = vec![0u8; n.min(256 * 1024)];
        let mut done = 0;
        while done < n {
            let len = (n - done).min(buf.len());
            // SAFETY: `buf` has room for `len` bytes.
            let got = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), len) };
            match got {
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                -1 => return Err(io::Error::last_os_error()),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                got => {
                    file.write_all_at(&buf[..got as usize], offset + done as u64)?;
                    done += got as usize;
                }
            }
        }
        Ok(())
    }

    /// Reads and drops `n` bytes the pipe holds (after a failed store).
    pub fn discard(&self, mut n: usize) {
        let mut sink = vec![0u8; n.min(64 * 1024)];
        while n > 0 {
            let len = n.min(sink.len());
            // SAFETY: `sink` has room for `len` bytes.
            let got = unsafe { libc::read(self.read.as_raw_fd(), sink.as_mut_ptr().cast(), len) };
            match got {
                got if got > 0 => n -= got as usize,
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                // Empty already (the store failed half-way through): nothing left.
                _ => return,
            }
        }
    }

    /// Whether the pipe holds nothing (for tests: it must always be left empty).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: one byte into `b`.
        let got = unsafe { libc::read(self.read.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        got == -1 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}
