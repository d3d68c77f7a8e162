//! The HTTP/2 connection state machine (`h2::conn::Connection`) after a valid preface,
//! fed arbitrary frames in random read sizes. The properties are in `src/lib.rs`
//! (`check_h2_conn`); the first input byte selects the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_h2_conn(data));
