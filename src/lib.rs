//! maitre's engine, built as the extension module `maitre._maitre`.
//!
//! Three layers, each ignorant of the one above it:
//! - [`http`]: the protocol as pure functions over bytes (parsing, framing, chunked coding,
//!   response heads);
//! - [`engine`]: the I/O event loop, connections, and the queues to and from workers;
//! - [`wsgi`]: the only code that touches Python: environ, start_response, wsgi.input,
//!   wsgi.file_wrapper, the worker threads, and the `Engine` class the package drives.

pub mod engine;
pub mod h2;
pub mod http;
pub mod wsgi;

use pyo3::prelude::*;

#[pymodule]
fn _maitre(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Before any fork: worker processes share this table (see engine::balance).
    engine::balance::init();
    wsgi::register(m)
}
