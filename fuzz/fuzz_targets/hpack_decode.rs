//! HPACK: `h2::hpack::Decoder` over arbitrary field blocks with a small header-list
//! limit, and the encoder round trip. The properties are in `src/lib.rs`
//! (`check_hpack_decode`); the first input byte selects the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_hpack_decode(data));
