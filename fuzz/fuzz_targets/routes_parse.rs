#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graygate_fuzz::routes_parse(data));
