#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graygate_fuzz::signature_verify(data));
