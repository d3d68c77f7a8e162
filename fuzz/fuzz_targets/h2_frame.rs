//! HTTP/2 frames: `h2::frame::decode` over arbitrary bytes, frame after frame. The
//! properties are in `src/lib.rs` (`check_h2_frame`); the first input byte selects
//! SETTINGS_MAX_FRAME_SIZE.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maitre_fuzz::check_h2_frame(data));
