//! The chunked decoder, fed in random splits. The properties are in `src/lib.rs`
//! (`check_chunked`); the first input byte selects raw bytes or a valid encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_chunked(data));
