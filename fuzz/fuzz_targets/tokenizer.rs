#![no_main]
//! Arbitrary strings through encode and arbitrary ids through decode (built-in
//! SentencePiece and BPE vocabularies), and arbitrary GGUF files as vocabularies.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tramontane::tokenizer::fuzz_tokenizer(data);
});
