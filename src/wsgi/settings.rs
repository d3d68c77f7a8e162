//! The settings dict the Python package hands to the engine
//! (`maitre.server._engine_settings`), read into what each part takes: the loop's
//! [`Config`], the TLS acceptor, the counters and the access log.
//!
//! What must hold: the dict is built from the settings table (`maitre.adjustments`,
//! the rows marked `engine`), which is the one place where a default is written. So
//! every key read here is required, and `Engine()` refuses a key it did not read.
//! A new engine setting is a field of `Config` and its line in [`engine_config`].

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::access_log;
use crate::engine::config::Config;
use crate::engine::proxy_protocol::{ProxyProtocol, Sources};
use crate::engine::stats::{Stats, ThreadStats};
use crate::engine::tls::{TlsAcceptor, TlsSettings, VerifyClient};
use crate::http::proxy::Accept;
use crate::http::request::Limits;
use crate::wsgi::observe::Observe;

/// The longest duration a setting in seconds takes: a century.
pub const LONGEST_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

/// The dict, and the keys read from it so far.
pub struct Settings<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    read: RefCell<Vec<&'static str>>,
}

impl<'a, 'py> Settings<'a, 'py> {
    pub fn new(dict: &'a Bound<'py, PyDict>) -> Self {
        Settings {
            dict,
            read: RefCell::new(Vec::new()),
        }
    }

    /// The value of setting `name` (`None` only where `T` is an `Option`).
    pub fn get<T>(&self, name: &'static str) -> PyResult<T>
    where
        T: for<'b> FromPyObject<'b, 'py>,
    {
        self.read.borrow_mut().push(name);
        let value = self
            .dict
            .get_item(name)?
            .ok_or_else(|| PyValueError::new_err(format!("missing engine setting {name}")))?;
        value.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            PyValueError::new_err(format!("invalid value for setting {name}: {e}"))
        })
    }

    /// A count that must be at least 1.
    fn positive(&self, name: &'static str) -> PyResult<usize> {
        match self.get(name)? {
            0 => Err(PyValueError::new_err(format!(
                "setting {name} must be at least 1"
            ))),
            v => Ok(v),
        }
    }

    /// A number of seconds, `at_least` if less.
    fn seconds(&self, name: &'static str, at_least: f64) -> PyResult<Duration> {
        let value = self.get::<f64>(name)?;
        if value.is_nan() {
            return Err(PyValueError::new_err(format!(
                "{name} must be a number of seconds, not {value}"
            )));
        }
        // A longer time than anyone means (or infinity) is this: an `Instant` plus it
        // must not overflow, which a deadline of 1e19 s would, panicking the loop.
        Ok(Duration::from_secs_f64(
            value.clamp(at_least, LONGEST_SECONDS),
        ))
    }

    /// Fails on the first key that was never read.
    pub fn check_all_read(&self) -> PyResult<()> {
        let read = self.read.borrow();
        for key in self.dict.keys() {
            let key: String = key.extract()?;
            if !read.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "unknown engine setting {key}"
                )));
            }
        }
        Ok(())
    }
}

/// What the I/O loop acts on, one field per setting of the table.
pub fn engine_config(s: &Settings<'_, '_>) -> PyResult<Config> {
    Ok(Config {
        threads: s.positive("threads")?,
        recv_bytes: s.positive("recv_bytes")?,
        inbuf_overflow: s.get("inbuf_overflow")?,
        outbuf_overflow: s.get("outbuf_overflow")?,
        outbuf_high_watermark: s.get("outbuf_high_watermark")?,
        connection_limit: s.positive("connection_limit")?,
        cleanup_interval: s.seconds("cleanup_interval", 0.01)?,
        channel_timeout: s.seconds("channel_timeout", 0.0)?,
        channel_request_lookahead: s.get("channel_request_lookahead")?,
        min_body_rate: s.get("min_request_body_rate")?,
        log_socket_errors: s.get("log_socket_errors")?,
        limits: Limits {
            max_header_size: s.positive("max_request_header_size")?,
            max_body_size: s.get("max_request_body_size")?,
            max_fields: s.positive("max_request_headers")?,
        },
        // Unset (None): no Server header of our own (see `http::response`).
        ident: s.get::<Option<String>>("ident")?.unwrap_or_default(),
        shutdown_timeout: s.seconds("shutdown_timeout", 0.0)?,
        keepalive_linger: s.seconds("keepalive_linger", 0.0)?,
        proxy_protocol: proxy_protocol(s)?,
        max_queued_requests: s.get("max_queued_requests")?,
        queue_timeout: s.seconds("queue_timeout", 0.0)?,
        keepalive_timeout: s.seconds("keepalive_timeout", 0.0)?,
        request_timeout: s.seconds("request_timeout", 0.0)?,
        http2: s.get("http2")?,
    })
}

/// `proxy_protocol` and `proxy_protocol_from` (checked in the table too; here again,
/// since an engine that trusted headers from nobody in particular would be a hole).
fn proxy_protocol(s: &Settings<'_, '_>) -> PyResult<Option<ProxyProtocol>> {
    let version: String = s.get("proxy_protocol")?;
    let from: Vec<String> = s.get("proxy_protocol_from")?;
    let from = Sources::parse(&from)
        .map_err(|e| PyValueError::new_err(format!("invalid proxy_protocol_from: {e}")))?;
    let accept = match version.as_str() {
        "off" => return Ok(None),
        "v1" => Accept::V1,
        "v2" => Accept::V2,
        "auto" => Accept::Auto,
        other => {
            return Err(PyValueError::new_err(format!(
                "proxy_protocol must be off, v1, v2 or auto, not {other:?}"
            )))
        }
    };
    if from.is_empty() {
        return Err(PyValueError::new_err(format!(
            "proxy_protocol={version} needs proxy_protocol_from: the addresses of the \
             load balancers that send the PROXY header"
        )));
    }
    Ok(Some(ProxyProtocol { accept, from }))
}

/// The TLS settings, if `ssl_certificate` is given; files are read (and checked) here,
/// at start.
pub fn tls_acceptor(s: &Settings<'_, '_>) -> PyResult<Option<Arc<TlsAcceptor>>> {
    let certificate: Option<String> = s.get("ssl_certificate")?;
    let private_key: Option<String> = s.get("ssl_private_key")?;
    let certificate_chain = s.get("ssl_certificate_chain")?;
    let private_key_password = s.get("ssl_private_key_password")?;
    let ca_certificate = s.get("ssl_ca_certificate")?;
    let verify_client: String = s.get("ssl_verify_client")?;
    let min_version: String = s.get("ssl_min_version")?;
    let Some(certificate) = certificate else {
        return Ok(None);
    };
    let private_key = private_key
        .ok_or_else(|| PyValueError::new_err("ssl_private_key must be set with ssl_certificate"))?;
    let verify_client = match verify_client.as_str() {
        "none" => VerifyClient::None,
        "optional" => VerifyClient::Optional,
        "required" => VerifyClient::Required,
        other => {
            return Err(PyValueError::new_err(format!(
                "ssl_verify_client must be none, optional or required, not {other:?}"
            )))
        }
    };
    let tls13_only = match min_version.as_str() {
        "1.2" => false,
        "1.3" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "ssl_min_version must be 1.2 or 1.3, not {other:?}"
            )))
        }
    };
    let tls = TlsSettings {
        certificate,
        private_key,
        certificate_chain,
        private_key_password,
        ca_certificate,
        verify_client,
        tls13_only,
        http2: s.get("http2")?,
    };
    TlsAcceptor::new(tls)
        .map(|a| Some(Arc::new(a)))
        .map_err(PyValueError::new_err)
}

/// Reads and checks the TLS files the settings name, as an engine would at start
/// (raising `ValueError` naming the setting), and keeps nothing: for a master process,
/// which serves nothing itself, before it starts or reloads its workers.
#[pyfunction]
pub fn check_tls_files(py: Python<'_>, settings: &Bound<'_, PyDict>) -> PyResult<()> {
    let _ = py;
    tls_acceptor(&Settings::new(settings)).map(drop)
}

/// The counters (`stats`, and a figure per worker thread) and the access log.
pub fn observe_settings(s: &Settings<'_, '_>, stats: Stats, threads: usize) -> PyResult<Observe> {
    let target: Option<String> = s.get("access_log")?;
    let spec: String = s.get("access_log_format")?;
    // The `maitre.access` logger, for `access_log=logging` (None otherwise).
    let logger: Option<Py<PyAny>> = s.get("access_logger")?;
    let mut observe = Observe {
        stats: Arc::new(stats),
        threads: (0..threads).map(|_| ThreadStats::default()).collect(),
        access: None,
        access_logger: None,
    };
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Ok(observe);
    };
    let format = access_log::Format::parse(&spec)
        .map_err(|e| PyValueError::new_err(format!("invalid access_log_format: {e}")))?;
    match target.as_str() {
        "logging" => {
            let logger = logger.ok_or_else(|| {
                PyValueError::new_err("access_log=logging needs the access_logger setting")
            })?;
            observe.access_logger = Some((format, logger));
        }
        t => {
            let dest = if t == "-" {
                access_log::Target::Stdout
            } else {
                access_log::Target::File(t.into())
            };
            let log = access_log::AccessLog::new(format, dest).map_err(|e| {
                PyOSError::new_err(format!("cannot open access_log {target:?}: {e}"))
            })?;
            observe.access = Some(Arc::new(log));
        }
    }
    Ok(observe)
}
