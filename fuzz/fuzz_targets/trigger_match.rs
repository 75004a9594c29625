#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graygate_fuzz::trigger_match(data));
