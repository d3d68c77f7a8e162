//! `wsgi.input`: the request body, complete before the application runs, read from
//! memory or from its temporary file.

use std::io::{BufRead, BufReader, Cursor};
use std::mem::MaybeUninit;

use pyo3::exceptions::PyOSError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::engine::body::{Body, BodyFile};

enum Source {
    Memory(Cursor<Vec<u8>>),
    File(BufReader<BodyFile>),
}

#[pyclass(module = "maitre._maitre", name = "InputStream")]
pub struct Input {
    source: Source,
    /// Bytes of the body not yet read.
    remaining: u64,
}

impl Input {
    pub fn new(body: Body) -> Self {
        let remaining = body.len();
        let source = match body {
            Body::Memory(v) => Source::Memory(Cursor::new(v)),
            // Reads of a spilled body come in application-sized pieces; buffer them.
            Body::File(f) => Source::File(BufReader::with_capacity(64 * 1024, f)),
        };
        Input { source, remaining }
    }

    /// Reads exactly `n` bytes (n <= remaining) straight into a new bytes object: for a
    /// spilled body, one copy from the file instead of two, and none of them a zeroing
    /// of the object first (which `PyBytes::new_with` does: 4 % of an upload's CPU).
    fn read_exact_bytes<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        // SAFETY: a new bytes object of `n` bytes, owned at once by `bytes` (dropped, so
        // freed, on any error); its buffer is filled below before anyone can read it.
        let (bytes, buf) = unsafe {
            let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t);
            let bytes = Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>();
            let data = ffi::PyBytes_AsString(ptr).cast::<MaybeUninit<u8>>();
            (bytes, std::slice::from_raw_parts_mut(data, n))
        };
        self.read_uninit(buf).map_err(io_err)?;
        self.remaining -= n as u64;
        Ok(bytes)
    }

    /// Fills `dst` (not initialised) with the next bytes of the body.
    fn read_uninit(&mut self, dst: &mut [MaybeUninit<u8>]) -> std::io::Result<()> {
        let eof = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        match &mut self.source {
            Source::Memory(c) => {
                let pos = c.position() as usize;
                let src = c.get_ref().get(pos..pos + dst.len()).ok_or_else(eof)?;
                // SAFETY: `src` and `dst` have the same length and cannot overlap (a
                // Python object's buffer against ours).
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast(), src.len())
                };
                c.set_position((pos + dst.len()) as u64);
                Ok(())
            }
            Source::File(f) => {
                // As `BufReader::read_exact`: small reads come from its buffer, and a
                // read at least as large as the buffer straight from the file once what
                // was buffered (by `readline`, by a small read) is taken.
                let mut done = 0;
                while done < dst.len() {
                    let rest = &mut dst[done..];
                    if f.buffer().is_empty() && rest.len() >= f.capacity() {
                        return f.get_mut().read_exact_uninit(rest);
                    }
                    let buffered = f.fill_buf()?;
                    if buffered.is_empty() {
                        return Err(eof());
                    }
                    let k = buffered.len().min(rest.len());
                    // SAFETY: as above, `k` bytes of each.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            buffered.as_ptr(),
                            rest.as_mut_ptr().cast(),
                            k,
                        )
                    };
                    f.consume(k);
                    done += k;
                }
                Ok(())
            }
        }
    }

    fn reader(&mut self) -> &mut dyn BufRead {
        match &mut self.source {
            Source::Memory(c) => c,
            Source::File(f) => f,
        }
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
        let n = limit(size).map_or(self.remaining, |l| self.remaining.min(l as u64)) as usize;
        self.read_exact_bytes(py, n)
    }

    #[pyo3(signature = (size = -1))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.read_line(limit(size)).map_err(io_err)?;
        self.remaining -= line.len() as u64;
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
            self.remaining -= line.len() as u64;
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
        self.remaining -= line.len() as u64;
        Ok(if line.is_empty() {
            None
        } else {
            Some(PyBytes::new(py, &line))
        })
    }

    fn close(&mut self) {}
}
