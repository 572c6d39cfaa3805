//! The body of the `tokenizer` fuzz target (kept in the crate so the target is one line).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::Tokenizer;
use crate::gguf::{Gguf, GgufWriter};

/// Pre-tokenizer names the built-in BPE vocabulary is tried with.
const PRES: [&str; 8] = [
    "",
    "default",
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "tekken",
    "smollm",
    "qwen35",
];

fn small_vocab(bpe: Option<&str>) -> Option<Tokenizer> {
    let mut w = GgufWriter::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut types: Vec<i32> = Vec::new();
    match bpe {
        None => {
            w.add_str("tokenizer.ggml.model", "llama");
            for t in [
                "<unk>",
                "<s>",
                "</s>",
                "<start_of_turn>",
                "  ",
                "\n\n",
                "<ud>",
            ] {
                tokens.push(t.into());
                types.push(match t {
                    "<unk>" => 2,
                    "  " | "\n\n" | "<ud>" => 4,
                    _ => 3,
                });
            }
            for t in ["▁", "▁a", "ab", "▁ab", "a", "b", "é", "▁é", "中", "🦀"] {
                tokens.push(t.into());
                types.push(1);
            }
            for b in 0..=255u8 {
                tokens.push(format!("<0x{b:02X}>"));
                types.push(6);
            }
            let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32) / 7.0).collect();
            w.add_f32_array("tokenizer.ggml.scores", &scores);
        }
        Some(pre) => {
            w.add_str("tokenizer.ggml.model", "gpt2");
            w.add_str("tokenizer.ggml.pre", pre);
            for b in 0..=255u8 {
                let mut s = String::new();
                let mut enc = Vec::new();
                super::unicode::push_byte_encoded(&mut enc, b);
                s.push_str(core::str::from_utf8(&enc).unwrap_or("?"));
                tokens.push(s);
                types.push(1);
            }
            for t in ["Ġa", "ab", "Ġab", "ĠĠ", "ÃĹ", "<|im_start|>", "<|im_end|>"] {
                tokens.push(t.into());
                types.push(if t.starts_with('<') { 3 } else { 1 });
            }
            w.add_str_array(
                "tokenizer.ggml.merges",
                &["Ġ a", "a b", "Ġa b", "Ġ Ġ", "Ã Ĺ", "ĠĠ Ġ"],
            );
        }
    }
    w.add_str_array("tokenizer.ggml.tokens", &tokens);
    w.add_i32_array("tokenizer.ggml.token_type", &types);
    let bytes = w.to_bytes().ok()?;
    let g = Gguf::parse(&bytes[..]).ok()?;
    Tokenizer::from_gguf(&g).ok()
}

/// Vocabulary 0 is the SentencePiece one, 1 + i the BPE one with `PRES[i]`; built once
/// per process when `std` is there.
fn with_vocab(which: usize, f: impl FnOnce(&Tokenizer) -> usize) -> usize {
    let build = |which: usize| match which {
        0 => small_vocab(None),
        i => small_vocab(Some(PRES.get(i - 1).copied().unwrap_or(""))),
    };
    #[cfg(feature = "std")]
    {
        static CACHE: std::sync::OnceLock<Vec<Option<Tokenizer>>> = std::sync::OnceLock::new();
        let all = CACHE.get_or_init(|| (0..=PRES.len()).map(build).collect());
        all.get(which).and_then(Option::as_ref).map_or(0, f)
    }
    #[cfg(not(feature = "std"))]
    {
        build(which).as_ref().map_or(0, f)
    }
}

fn exercise(tok: &Tokenizer, text: &str, ids: &[u32], flags: u8) -> usize {
    let mut touched = 0usize;
    let add_special = flags & 1 != 0;
    let parse_special = flags & 2 != 0;
    if let Ok(enc) = tok.encode(text, add_special, parse_special) {
        touched = touched.wrapping_add(enc.len());
        if let Ok(back) = tok.detokenize(&enc, flags & 4 != 0, flags & 8 != 0) {
            touched = touched.wrapping_add(back.len());
        }
    }
    if let Ok(back) = tok.detokenize(ids, flags & 4 != 0, flags & 8 != 0) {
        touched = touched.wrapping_add(back.len());
    }
    let mut d = tok.detokenizer().render_special(flags & 16 != 0);
    for &id in ids {
        if let Ok(s) = d.push(tok, id) {
            touched = touched.wrapping_add(s.len());
        }
    }
    touched.wrapping_add(d.finish().len())
}

/// Fuzz entry: the first byte picks a vocabulary (a GGUF file in the rest of the input,
/// or a built-in SentencePiece / BPE one) and the flags; the rest is encoded as text
/// (lossy UTF-8) and decoded as token ids (little-endian `u32`s). Returns a value that
/// depends on everything computed.
#[doc(hidden)]
pub fn fuzz_tokenizer(data: &[u8]) -> usize {
    let Some((&head, rest)) = data.split_first() else {
        return 0;
    };
    let text = String::from_utf8_lossy(rest);
    let ids: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % 300)
        .collect();
    let flags = head >> 3;
    match head & 7 {
        0 => {
            // Hostile vocabularies: the input is the whole GGUF file.
            let Ok(g) = Gguf::parse(rest) else { return 0 };
            let Ok(tok) = Tokenizer::from_gguf(&g) else {
                return 1;
            };
            let n = tok.n_vocab();
            let all: Vec<u32> = (0..n.min(512)).chain([n, u32::MAX]).collect();
            exercise(&tok, "Hello, world! <s> 123 é中🦀\n\n  x", &all, flags)
        }
        1 => with_vocab(0, |t| exercise(t, &text, &ids, flags)),
        k => with_vocab(1 + usize::from(k - 2) % PRES.len(), |t| {
            exercise(t, &text, &ids, flags)
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_entry_runs_on_samples() {
        let samples: [&[u8]; 6] = [
            b"",
            b"\x01hello  world\n\n<start_of_turn>",
            b"\x0a \xe2\x96\x81ab\xc3\xa9\xff\xfe",
            b"\x1b<|im_start|>x 12345",
            b"\x07Hello WORLD camelCase 1234567",
            b"\x00GGUF\x03\x00\x00\x00",
        ];
        for s in samples {
            super::fuzz_tokenizer(s);
        }
        assert!(super::small_vocab(None).is_some());
        for pre in super::PRES {
            assert!(super::small_vocab(Some(pre)).is_some(), "{pre}");
        }
    }
}
