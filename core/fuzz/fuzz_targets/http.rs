//! libFuzzer entry point; the harness is `polysocket_fuzz::http` so that
//! `core/tests/fuzz_regressions.rs` can replay inputs without cargo-fuzz.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| polysocket_fuzz::http::run(data));
