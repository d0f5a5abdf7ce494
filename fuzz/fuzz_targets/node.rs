#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| timed_fuzz::node(data));
