//! The WSGI layer (PEP 3333): the only part of maitre that touches Python.

pub mod context;
pub mod environ;
pub mod exceptions;
pub mod file_wrapper;
pub mod gil;
pub mod input;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod parser;
pub mod responder;
pub mod server;
pub mod settings;
pub mod watchdog;
pub mod worker;

use pyo3::prelude::*;

pub use exceptions::{ClientDisconnected, RequestAbandoned, RequestTimeout};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<server::Engine>()?;
    m.add_function(pyo3::wrap_pyfunction!(settings::check_tls_files, m)?)?;
    m.add_class::<file_wrapper::FileWrapper>()?;
    m.add_class::<input::Input>()?;
    m.add_class::<responder::Responder>()?;
    m.add_class::<environ::DisconnectedCheck>()?;
    m.add_class::<metrics::PyMetricsServer>()?;
    m.add_function(pyo3::wrap_pyfunction!(metrics::render_metrics, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(metrics::count_restart, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(metrics::queue_full, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(metrics::release_stats_slot, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(metrics::threads_stuck, m)?)?;
    m.add("STATS_BLOCK_SIZE", crate::engine::stats::BLOCK_SIZE)?;
    m.add("RESTART_REASONS", metrics::restart_reasons(m.py())?)?;
    m.add("STATS_LAYOUT_VERSION", crate::engine::stats::LAYOUT_VERSION)?;
    parser::register(m)?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<ClientDisconnected>(),
    )?;
    m.add("RequestAbandoned", m.py().get_type::<RequestAbandoned>())?;
    m.add("RequestTimeout", m.py().get_type::<RequestTimeout>())?;
    Ok(())
}
