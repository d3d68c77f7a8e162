//! Replays every saved input (`regressions/<target>/` for crashes found by fuzzing,
//! `seeds/<target>/` for the starting corpus) through the same checks as the fuzz
//! targets. Runs on the stable toolchain: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in ["regressions", "seeds"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn parse_head_inputs() {
    assert!(replay("parse_head", maitre_fuzz::check_head) > 0);
}

#[test]
fn chunked_inputs() {
    assert!(replay("chunked", maitre_fuzz::check_chunked) > 0);
}

#[test]
fn proxy_header_inputs() {
    assert!(replay("proxy_header", maitre_fuzz::check_proxy_header) > 0);
}

#[test]
fn h2_frame_inputs() {
    assert!(replay("h2_frame", maitre_fuzz::check_h2_frame) > 0);
}

#[test]
fn hpack_decode_inputs() {
    assert!(replay("hpack_decode", maitre_fuzz::check_hpack_decode) > 0);
}

#[test]
fn h2_conn_inputs() {
    assert!(replay("h2_conn", maitre_fuzz::check_h2_conn) > 0);
}

#[test]
fn h2_request_inputs() {
    assert!(replay("h2_request", maitre_fuzz::check_h2_request) > 0);
}
