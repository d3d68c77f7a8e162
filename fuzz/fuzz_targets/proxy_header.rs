//! PROXY protocol headers: `http::proxy::parse`. The properties are in `src/lib.rs`
//! (`check_proxy_header`); the first input byte selects the accepted versions, or a
//! valid header built from the rest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_proxy_header(data));
