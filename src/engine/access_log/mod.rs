//! The access log: one line per answered request, in gunicorn's format language, made
//! from what the engine knows when the response is done (status, body bytes, timings).
//! Requests the I/O loop answers itself (refused, timed out) get theirs from the same
//! [`Entry`] and [`Format`], with what is known of them ([`Seen`]).
//!
//! A worker hands over an [`Entry`] (the request head it already owns, moved, plus a few
//! numbers) under a short lock; a writer thread of its own formats the entries and writes
//! them in batches. No Python runs per request (unless the `logging` sink was asked for,
//! which the WSGI layer serves with the same formatter).
//!
//! The same split as `http` and `engine`: what a line says is pure, what writes it is not.
//! - `entry`: what is known of one answered request ([`Entry`], [`Seen`]);
//! - `format`: the format language, parsed once, and an entry turned into line bytes;
//! - `escape`: nginx's escaping, and the fixed-size appends the frequent atoms use;
//! - `clock`: the `%(t)s` time, wall-clock from the entries' monotonic instants;
//! - `writer`: the batching thread and the file it appends to.
//!
//! What must hold: every value in a line is escaped, so that no header or path can end a
//! line or a quoted field early; a line is written whole, in one `write()` with its batch.

mod clock;
mod entry;
mod escape;
mod format;
mod writer;

use std::sync::Arc;

pub use clock::Clock;
pub use entry::{Entry, Seen};
pub use escape::escape;
pub use format::Format;
pub use writer::{AccessLog, Target, Writer};

/// Where the access log goes, as the I/O loop needs to know it for the requests it
/// answers itself.
#[derive(Clone)]
pub enum Sink {
    /// Written by the engine (a file or stdout).
    Writer(Arc<AccessLog>),
    /// `access_log = logging`: lines in this format go to the `maitre.access` logger
    /// through the loop's logging thread.
    Logging(Format),
}
