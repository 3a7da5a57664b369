//! Fuzz target `index`: the pattern index and the prefix ranges the
//! server's walks visit; the checks are in `src/lib.rs`, shared with the
//! regression test that replays saved inputs under plain `cargo test`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipcbus_fuzz::index(data));
