//! Releasing the GIL, safely at interpreter exit.
//!
//! A thread that takes the GIL back after the interpreter has begun to finalize is ended
//! by CPython with `pthread_exit`: a forced unwind, which aborts the whole process
//! ("FATAL: exception not rethrown") when it meets Rust frames. Daemon threads running a
//! server hit this when a program exits with the server still running. So every place
//! maitre releases the GIL goes through [`detach`], which never takes it back once the
//! interpreter is finalizing: the thread parks instead, and ends with the process.

use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::Python;

type IsFinalizing = unsafe extern "C" fn() -> c_int;

/// `Py_IsFinalizing` (3.13+) or `_Py_IsFinalizing` (3.9-3.12), looked up at run time so
/// one build serves every version.
fn is_finalizing_fn() -> Option<IsFinalizing> {
    static FUNC: OnceLock<Option<IsFinalizing>> = OnceLock::new();
    *FUNC.get_or_init(|| {
        let names: [&CStr; 2] = [c"Py_IsFinalizing", c"_Py_IsFinalizing"];
        names.iter().find_map(|name| {
            // SAFETY: dlsym with RTLD_DEFAULT only looks a symbol up; both candidates
            // have the signature `int (void)`.
            let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!sym.is_null())
                .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, IsFinalizing>(sym) })
        })
    })
}

pub fn interpreter_finalizing() -> bool {
    // SAFETY: the function takes no argument and only reads a runtime flag.
    is_finalizing_fn().is_some_and(|f| unsafe { f() } != 0)
}

/// Runs `f` without the GIL, like `Python::detach`, but parks the thread for good rather
/// than take the GIL back during interpreter finalization. `f` must not touch Python
/// objects (it runs detached, which the `Send` bounds make likely but not certain).
pub fn detach<T: Send>(_py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    // SAFETY: the thread holds the GIL (a `Python` token proves it); it is given back
    // below with the state saved here, unless the thread never returns to Python.
    let tstate = unsafe { ffi::PyEval_SaveThread() };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    if interpreter_finalizing() {
        loop {
            std::thread::park();
        }
    }
    // SAFETY: restores the state saved above on the same thread.
    unsafe { ffi::PyEval_RestoreThread(tstate) };
    match result {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
