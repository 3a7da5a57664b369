//! Fuzz target `frame_json`: the checks are in `src/lib.rs`, shared with the
//! regression test that replays saved inputs under plain `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipcbus_fuzz::frame_json(data));
