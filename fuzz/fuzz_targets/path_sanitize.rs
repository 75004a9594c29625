#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graygate_fuzz::path_sanitize(data));
