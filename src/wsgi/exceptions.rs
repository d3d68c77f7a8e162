//! The exceptions the WSGI layer raises into Python: `ClientDisconnected` from a write to
//! a client that has gone away, `RequestAbandoned` in application code a stop gave up on,
//! and its subclass `RequestTimeout` in application code that outran `request_timeout`.
//! All are registered on `maitre._maitre` under these names; a module of their own so that
//! every part of the layer can raise or test them without importing the layer's root.

pyo3::create_exception!(
    maitre,
    ClientDisconnected,
    pyo3::exceptions::PyException,
    "Raised by a write when the client has gone away."
);

pyo3::create_exception!(
    maitre,
    RequestAbandoned,
    pyo3::exceptions::PyBaseException,
    "Raised in application code still running when a server stop abandoned its request \
     (shutdown_timeout passed, or an immediate stop); the response is not sent."
);

pyo3::create_exception!(
    maitre,
    RequestTimeout,
    RequestAbandoned,
    "Raised in application code still running after request_timeout: the client has \
     already been answered 504 (or its connection closed), and whatever the call still \
     returns is discarded."
);
