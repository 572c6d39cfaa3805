#![no_main]
//! Parse arbitrary bytes as GGUF and touch every metadata value and tensor view.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tramontane::gguf::fuzz_parse(data);
});
