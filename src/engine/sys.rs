//! The operating system's fast paths, each in one place, with a portable fallback.
//!
//! `sys/linux.rs` holds the Linux-only calls the engine uses (splice and pipe sizes,
//! sendfile, thread CPU clocks, SCHED_BATCH, TCP_CORK, TIOCOUTQ, TCP_INFO); `sys/portable.rs`
//! gives every item the same signature with POSIX calls only, for macOS and the BSDs.
//! The build takes the Linux file on Linux unless the `portable` cargo feature is on,
//! which forces the fallbacks there too, so that they are tested code. The condition
//! below is the only place that choice is made, and nothing outside this module names
//! a Linux-only call.
//!
//! What must hold: both files export the same items with the same meaning; a fallback
//! may be slower or know less (and says so: `None`, "cannot tell"), but never changes
//! the bytes a client receives.

#[cfg(all(target_os = "linux", not(feature = "portable")))]
#[path = "sys/linux.rs"]
mod imp;
#[cfg(not(all(target_os = "linux", not(feature = "portable"))))]
#[path = "sys/portable.rs"]
mod imp;

pub use imp::{
    cork, prefer_batching, prepare_accepted, quiet_for, send_file, send_vectored, unacked_bytes,
    CpuClock, SplicePipe, FAST_PATHS,
};
