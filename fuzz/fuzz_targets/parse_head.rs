//! Request heads: `parse_head`, and the engine's incremental path over it. The
//! properties are in `src/lib.rs` (`check_head`); the first input byte selects the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_head(data));
