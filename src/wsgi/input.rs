//! `wsgi.input`: the request body, complete before the application runs, read from
//! memory or from its temporary file.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::engine::body::Body;

enum Source {
    Memory(Cursor<Vec<u8>>),
    File(BufReader<File>),
}

#[pyclass(module = "maitre._maitre", name = "InputStream")]
pub struct Input {
    source: Source,
}

impl Input {
    pub fn new(body: Body) -> Self {
        let source = match body {
            Body::Memory(v) => Source::Memory(Cursor::new(v)),
            // Reads of a spilled body come in application-sized pieces; buffer them.
            Body::File(f, _) => Source::File(BufReader::with_capacity(64 * 1024, f)),
        };
        Input { source }
    }

    fn reader(&mut self) -> &mut dyn BufRead {
        match &mut self.source {
            Source::Memory(c) => c,
            Source::File(f) => f,
        }
    }

    fn read_up_to(&mut self, limit: Option<usize>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match limit {
            None => {
                self.reader().read_to_end(&mut out)?;
            }
            Some(n) => {
                self.reader().take(n as u64).read_to_end(&mut out)?;
            }
        }
        Ok(out)
    }

    fn read_line(&mut self, limit: Option<usize>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let r = self.reader();
        loop {
            let room = limit.map_or(usize::MAX, |l| l - out.len());
            if room == 0 {
                break;
            }
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let window = &buf[..buf.len().min(room)];
            match memchr::memchr(b'\n', window) {
                Some(i) => {
                    out.extend_from_slice(&window[..=i]);
                    r.consume(i + 1);
                    break;
                }
                None => {
                    let n = window.len();
                    out.extend_from_slice(window);
                    r.consume(n);
                }
            }
        }
        Ok(out)
    }
}

/// Negative or absent sizes mean "no limit", as for Python files.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

fn io_err(e: std::io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        if let (Source::Memory(c), lim) = (&mut self.source, limit(size)) {
            // Slice straight out of memory: one copy, into the bytes object.
            let data = c.get_ref();
            let pos = (c.position() as usize).min(data.len());
            let end = lim.map_or(data.len(), |n| data.len().min(pos.saturating_add(n)));
            let bytes = PyBytes::new(py, &data[pos..end]);
            c.set_position(end as u64);
            return Ok(bytes);
        }
        let data = self.read_up_to(limit(size)).map_err(io_err)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size = -1))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.read_line(limit(size)).map_err(io_err)?;
        Ok(PyBytes::new(py, &line))
    }

    #[pyo3(signature = (hint = -1))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.read_line(None).map_err(io_err)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn readable(&self) -> bool {
        true
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(None).map_err(io_err)?;
        Ok(if line.is_empty() {
            None
        } else {
            Some(PyBytes::new(py, &line))
        })
    }

    fn close(&mut self) {}
}
