//! The HTTP/2 request rules (`h2::request::parse_request` and `request_head`) over
//! field lists built from the input. The properties are in `src/lib.rs`
//! (`check_h2_request`); the first input byte selects END_STREAM and the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_h2_request(data));
