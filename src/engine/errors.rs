//! Small helpers about failures that both the I/O loop and the worker threads need: the
//! text of a caught panic, and whether an I/O error only says the client went away.
//! They live here, not in the loop, so that the WSGI layer does not import the loop for
//! them; and they use nothing of the engine, so that anything may use them (a leaf).

use std::io;

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Errors that only say the client went away.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}
