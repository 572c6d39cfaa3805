//! Building a [`Tokenizer`] from `tokenizer.ggml.*` metadata, as llama.cpp's `load` does.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use super::bpe::Bpe;
use super::special::Specials;
use super::table::{PushError, StrTable};
use super::text::{has_escaped_space, unescape_whitespace};
use super::{
    unicode, IdField, PreTokenizer, SpecialTokens, TokenAttr, Tokenizer, TokenizerError, Vocab,
    VocabKind, MAX_VOCAB,
};
use crate::gguf::{ArrayView, Gguf, ValueType};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// How a `tokenizer.ggml.pre` value configures a BPE vocabulary (llama.cpp's `load`).
struct PreConfig {
    pre: PreTokenizer,
    ignore_merges: bool,
    add_bos: bool,
    clean_spaces: bool,
    no_bos: bool,
}

fn pre_config(name: &str) -> Option<PreConfig> {
    let c = |pre, ignore_merges, add_bos, clean_spaces| PreConfig {
        pre,
        ignore_merges,
        add_bos,
        clean_spaces,
        no_bos: false,
    };
    use PreTokenizer as P;
    Some(match name {
        "" | "default" => c(P::Default, false, false, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => c(P::Llama3, true, true, true),
        "dbrx" | "smaug-bpe" => c(P::Llama3, false, false, true),
        "chatglm-bpe" => PreConfig {
            no_bos: true,
            ..c(P::Llama3, false, false, true)
        },
        "glm4" | "glm5" => PreConfig {
            no_bos: true,
            ..c(P::Llama3, true, false, true)
        },
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "mpt" | "olmo" | "jais" | "exaone4" => c(P::Gpt2, false, false, true),
        "trillion" | "granite-docling" => c(P::Gpt2, false, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open"
        | "grok-2" => c(P::Qwen2, false, false, false),
        "stablelm2" | "megrez" => c(P::Qwen2, false, false, true),
        "qwen35" => c(P::Qwen35, false, false, false),
        "tekken" => c(P::Tekken, true, true, false),
        "smollm" | "command-r" => c(P::StarCoder, false, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            c(P::StarCoder, false, false, true)
        }
        _ => return None,
    })
}

fn wrong_elem(key: &'static str, expected: &'static str, a: &ArrayView<'_>) -> TokenizerError {
    TokenizerError::WrongElementType {
        key,
        expected,
        found: a.elem_type().name(),
    }
}

/// Little-endian elements of a fixed-size array (`i32`/`f32`).
fn le_words<'a>(a: &ArrayView<'a>) -> impl Iterator<Item = [u8; 4]> + 'a {
    a.raw_bytes()
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
}

/// The elements of a string array as bytes (u64 length + bytes each), without
/// validating UTF-8 again: the GGUF parser did when the file was opened.
fn raw_strings<'a>(a: &ArrayView<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = a.raw_bytes();
    let mut left = a.len();
    core::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        left -= 1;
        let (len, tail) = rest.split_at_checked(8)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
        let (s, tail) = tail.split_at_checked(len)?;
        rest = tail;
        Some(s)
    })
}

/// llama.cpp's `strtol(text.substr(3, 2), NULL, 16)` cast to a byte.
fn byte_of_byte_token(text: &[u8]) -> Option<u8> {
    let s = text.get(3..)?;
    let s = s.get(..2).unwrap_or(s);
    let mut i = 0;
    while s.get(i).is_some_and(|&c| matches!(c, 0x09..=0x0D | 0x20)) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    while let Some(d) = s.get(i).and_then(|&c| (c as char).to_digit(16)) {
        v = v * 16 + i64::from(d);
        i += 1;
    }
    if neg {
        v = -v;
    }
    Some(v as u8)
}

/// llama.cpp's `llama_decode_text`: GPT-2 code points back to bytes.
///
/// All GPT-2 code points are below U+0800, so the text of a byte-level token is ASCII
/// and two-byte sequences; those are decoded here directly. Anything else (a longer
/// sequence, a code point that is no byte, invalid UTF-8) starts over in
/// [`decode_bpe_text_chars`].
fn decode_bpe_text(text: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let mut rest = text;
    loop {
        let (cpt, tail) = match rest {
            [] => return,
            [b, tail @ ..] if *b < 0x80 => (u32::from(*b), tail),
            [b @ 0xC2..=0xDF, c @ 0x80..=0xBF, tail @ ..] => {
                ((u32::from(*b & 0x1F) << 6) | u32::from(*c & 0x3F), tail)
            }
            _ => break,
        };
        match unicode::cpt_to_byte(cpt) {
            Some(b) => out.push(b),
            None => break,
        }
        rest = tail;
    }
    out.truncate(start);
    decode_bpe_text_chars(text, out);
}

/// [`decode_bpe_text`] for any text, one `char` at a time.
fn decode_bpe_text_chars(text: &[u8], out: &mut Vec<u8>) {
    let s = core::str::from_utf8(text).unwrap_or("");
    for c in s.chars() {
        match unicode::cpt_to_byte(u32::from(c)) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 15) as usize]);
                }
                out.extend_from_slice(text);
                out.push(b']');
            }
        }
    }
}

impl Tokenizer {
    /// Read the tokenizer described by `g`'s `tokenizer.ggml.*` metadata.
    pub fn from_gguf<B: AsRef<[u8]>>(g: &Gguf<B>) -> Result<Tokenizer, TokenizerError> {
        let model = g.get_str(KEY_MODEL)?;
        let pre_name = g.find_str(KEY_PRE)?.unwrap_or("");
        let kind = match model {
            "llama" => VocabKind::SentencePiece,
            "gpt2" => VocabKind::BytePairEncoding,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_owned(),
                })
            }
        };

        // Defaults by family, then by pre-tokenizer (llama.cpp's `load`).
        let mut ids = SpecialTokens::default();
        let (mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces);
        let mut pre_cfg = None;
        match kind {
            VocabKind::SentencePiece => {
                ids.bos = Some(1);
                ids.eos = Some(2);
                ids.unk = Some(0);
                add_space_prefix = true;
                clean_spaces = false;
                add_bos = true;
                add_eos = false;
            }
            VocabKind::BytePairEncoding => {
                let cfg =
                    pre_config(pre_name).ok_or_else(|| TokenizerError::UnknownPreTokenizer {
                        pre: pre_name.to_owned(),
                    })?;
                ids.bos = Some(11);
                ids.eos = Some(11);
                if cfg.no_bos {
                    ids.bos = None;
                }
                add_space_prefix = false;
                clean_spaces = cfg.clean_spaces;
                add_bos = cfg.add_bos;
                add_eos = false;
                pre_cfg = Some(cfg);
            }
        }
        if let Some(v) = g.find_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        // Token texts, scores, types.
        let tokens = g.get_array(KEY_TOKENS)?;
        if tokens.elem_type() != ValueType::String {
            return Err(wrong_elem(KEY_TOKENS, "string", &tokens));
        }
        let n = tokens.len();
        if n == 0 || n > MAX_VOCAB {
            return Err(TokenizerError::VocabSize {
                n_tokens: n,
                max: MAX_VOCAB,
            });
        }
        let mut scores = alloc::vec![0.0f32; n];
        if let Some(a) = g.find_array(KEY_SCORES)? {
            if a.len() < n {
                return Err(TokenizerError::ArrayTooShort {
                    key: KEY_SCORES,
                    len: a.len(),
                    n_tokens: n,
                });
            }
            match a.elem_type() {
                ValueType::F32 => {
                    for (s, w) in scores.iter_mut().zip(le_words(&a)) {
                        let v = f32::from_le_bytes(w);
                        // NaN would break the priority order; llama.cpp's is undefined then.
                        // -0.0 and 0.0 compare equal there, and here once made one.
                        *s = if v.is_nan() {
                            f32::MIN
                        } else if v == 0.0 {
                            0.0
                        } else {
                            v
                        };
                    }
                }
                ValueType::I32 => {
                    for (s, w) in scores.iter_mut().zip(le_words(&a)) {
                        *s = i32::from_le_bytes(w) as f32;
                    }
                }
                _ => return Err(wrong_elem(KEY_SCORES, "float32 or int32", &a)),
            }
        }
        let mut attrs = alloc::vec![TokenAttr::NORMAL; n];
        if let Some(a) = g.find_array(KEY_TOKEN_TYPE)? {
            if a.elem_type() != ValueType::I32 {
                return Err(wrong_elem(KEY_TOKEN_TYPE, "int32", &a));
            }
            if a.len() < n {
                return Err(TokenizerError::ArrayTooShort {
                    key: KEY_TOKEN_TYPE,
                    len: a.len(),
                    n_tokens: n,
                });
            }
            for (t, w) in attrs.iter_mut().zip(le_words(&a)) {
                *t = TokenAttr::from_token_type(i128::from(i32::from_le_bytes(w)));
            }
        }
        let mut texts = StrTable::with_capacity(
            n,
            tokens.raw_bytes().len().saturating_sub(n.saturating_mul(8)),
        );
        let mut empty = String::new();
        for (i, s) in raw_strings(&tokens).enumerate() {
            let text = if s.is_empty() {
                use core::fmt::Write;
                empty.clear();
                let _ = write!(empty, "[EMPTY_{i}]");
                empty.as_bytes()
            } else {
                s
            };
            match texts.push(text) {
                Ok(_) => {}
                Err(PushError::Duplicate(first)) => {
                    return Err(TokenizerError::DuplicateToken {
                        id: i as u32,
                        first,
                    });
                }
                Err(PushError::TooLarge) => {
                    return Err(TokenizerError::TextTooLarge {
                        max: u64::from(u32::MAX),
                    })
                }
            }
        }
        if texts.len() != n {
            return Err(TokenizerError::VocabSize {
                n_tokens: texts.len(),
                max: MAX_VOCAB,
            });
        }
        texts.shrink_to_fit();
        let mut vocab = Vocab {
            texts,
            scores,
            attrs,
        };
        let n32 = n as u32;

        let bpe = match pre_cfg {
            Some(cfg) => {
                let merges = g.get_array(KEY_MERGES)?;
                if merges.elem_type() != ValueType::String {
                    return Err(wrong_elem(KEY_MERGES, "string", &merges));
                }
                let strings = raw_strings(&merges);
                Some(Bpe::new(
                    &vocab,
                    cfg.pre,
                    cfg.ignore_merges,
                    strings,
                    merges.len(),
                )?)
            }
            None => None,
        };

        // Special token ids: defaults out of range are dropped, metadata out of range ignored.
        let keys: [(&str, IdField); 17] = [
            ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
            ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
            ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
            ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
            ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
            ("tokenizer.ggml.mask_token_id", |s| &mut s.mask),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
            ("tokenizer.ggml.prefix_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.suffix_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.middle_token_id", |s| &mut s.fim_mid),
        ];
        for (key, field) in keys {
            let slot = field(&mut ids);
            if slot.is_some_and(|id| id >= n32) {
                *slot = None;
            }
            if let Some(v) = g.find_u32(key)? {
                if v < n32 {
                    *slot = Some(v);
                }
            }
        }
        if let Some(v) = g.find_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = g.find_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }

        let eog = detect_special_tokens(&mut vocab, &mut ids);

        let specials = Specials::new(&vocab);

        // token_to_piece(special = true) of every token.
        let mut pieces = StrTable::with_capacity(n, vocab.texts.bytes_len());
        let mut buf = Vec::new();
        let mut max_piece_len = 0;
        for id in 0..n32 {
            buf.clear();
            let text = vocab.text(id);
            let attr = vocab.attr(id);
            if attr.intersects(TokenAttr::UNKNOWN | TokenAttr::CONTROL | TokenAttr::USER_DEFINED) {
                buf.extend_from_slice(text);
            } else if attr.intersects(TokenAttr::NORMAL) {
                match kind {
                    VocabKind::SentencePiece => unescape_whitespace(text, &mut buf),
                    VocabKind::BytePairEncoding => decode_bpe_text(text, &mut buf),
                }
            } else if attr.intersects(TokenAttr::BYTE) {
                if let Some(b) = byte_of_byte_token(text) {
                    buf.push(b);
                }
            }
            max_piece_len = max_piece_len.max(buf.len());
            pieces
                .push_unindexed(&buf)
                .map_err(|_| TokenizerError::TextTooLarge {
                    max: u64::from(u32::MAX),
                })?;
        }
        pieces.shrink_to_fit();

        // Attributes set by model name (after the caches, as in llama.cpp).
        let model_name = g
            .find_str("general.name")
            .ok()
            .flatten()
            .unwrap_or("")
            .to_ascii_lowercase();
        let arch = g
            .find_str("general.architecture")
            .ok()
            .flatten()
            .unwrap_or("");
        let set = |vocab: &mut Vocab, text: &str, attr: TokenAttr, on: bool| {
            if let Some(a) = vocab
                .find(text.as_bytes())
                .and_then(|id| vocab.attr_mut(id))
            {
                a.0 = if on { a.0 | attr.0 } else { a.0 & !attr.0 };
            }
        };
        let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
        if contains_any(
            pre_name,
            &["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"],
        ) || contains_any(arch, &["nomic-bert-moe", "jina-bert-v3"])
        {
            set(&mut vocab, "<mask>", TokenAttr::LSTRIP, true);
        } else if contains_any(&model_name, &["phi-3", "phi3"]) {
            for &id in specials.order() {
                if let Some(a) = vocab.attr_mut(id) {
                    a.0 |= TokenAttr::RSTRIP.0;
                }
            }
            set(&mut vocab, "</s>", TokenAttr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(&mut vocab, t, TokenAttr::RSTRIP, false);
            }
        } else if contains_any(&model_name, &["modern-bert"]) {
            set(&mut vocab, "[MASK]", TokenAttr::LSTRIP, true);
        }

        let mut byte_tokens = [None; 256];
        let mut joins_space = Vec::new();
        if kind == VocabKind::SentencePiece {
            for id in 0..n32 {
                // Only a '▁' after the first character follows another one.
                let bytes = vocab.text(id);
                if !bytes.get(1..).is_some_and(has_escaped_space) {
                    continue;
                }
                let text = core::str::from_utf8(bytes).unwrap_or("");
                let mut prev = None;
                for c in text.chars() {
                    if let Some(p) = prev.filter(|&p| c == '\u{2581}' && p != '\u{2581}') {
                        joins_space.push(u32::from(p));
                    }
                    prev = Some(c);
                }
            }
            joins_space.sort_unstable();
            joins_space.dedup();
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            for (b, slot) in byte_tokens.iter_mut().enumerate() {
                let name = [b'<', b'0', b'x', HEX[b >> 4], HEX[b & 15], b'>'];
                // llama.cpp falls back to the one-byte token ("" for NUL, never found).
                *slot =
                    vocab
                        .find(&name)
                        .or_else(|| if b == 0 { None } else { vocab.find(&[b as u8]) });
            }
        }

        Ok(Tokenizer {
            kind,
            pre_name: pre_name.to_owned(),
            vocab,
            pieces,
            max_piece_len,
            bpe,
            byte_tokens,
            joins_space,
            specials,
            ids,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
        })
    }
}

/// Text-based detection of EOT/EOM/FIM/EOG tokens and their attributes, as llama.cpp's
/// `load` does it; returns the sorted end-of-generation set.
fn detect_special_tokens(vocab: &mut Vocab, ids: &mut SpecialTokens) -> Vec<u32> {
    fn mark_control(vocab: &mut Vocab, id: u32) {
        if let Some(a) = vocab.attr_mut(id) {
            a.0 |= TokenAttr::CONTROL.0;
        }
    }
    // llama.cpp walks an unordered map, so with several candidates its pick depends on
    // the hash order; we take the first candidate in its list that the vocabulary has.
    let detect = |vocab: &mut Vocab, slot: &mut Option<u32>, texts: &[&str]| {
        if slot.is_some() {
            return;
        }
        if let Some(id) = texts.iter().find_map(|t| vocab.find(t.as_bytes())) {
            *slot = Some(id);
            mark_control(vocab, id);
        }
    };
    detect(
        vocab,
        &mut ids.eot,
        &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "<｜end▁of▁sentence｜>",
            "<end_of_utterance>",
        ],
    );
    detect(vocab, &mut ids.eom, &["<|eom_id|>"]);
    detect(
        vocab,
        &mut ids.fim_pre,
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    );
    detect(
        vocab,
        &mut ids.fim_suf,
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    );
    detect(
        vocab,
        &mut ids.fim_mid,
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    );
    detect(
        vocab,
        &mut ids.fim_pad,
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    );
    detect(
        vocab,
        &mut ids.fim_rep,
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    );
    detect(vocab, &mut ids.fim_sep, &["<|file_sep|>"]);

    // Control tokens whose text contains "unused" are unused.
    for id in 0..vocab.len() as u32 {
        let a = vocab.attr(id);
        if a.intersects(TokenAttr::CONTROL)
            && !a.intersects(TokenAttr::UNUSED)
            && contains(vocab.text(id), b"unused")
        {
            if let Some(a) = vocab.attr_mut(id) {
                a.0 |= TokenAttr::UNUSED.0;
            }
        }
    }

    let mut eog: Vec<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep]
        .into_iter()
        .flatten()
        .collect();
    const EOG_TEXTS: &[&str] = &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<｜end▁of▁sentence｜>",
        "[e~[",
    ];
    for t in EOG_TEXTS {
        if let Some(id) = vocab.find(t.as_bytes()) {
            eog.push(id);
            mark_control(vocab, id);
        }
    }
    // gpt-oss: always render these.
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(a) = vocab.find(t.as_bytes()).and_then(|id| vocab.attr_mut(id)) {
            *a = TokenAttr::USER_DEFINED;
        }
    }
    eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();

    let text_is = |vocab: &Vocab, id: u32, t: &str| vocab.text(id) == t.as_bytes();
    // o200k_harmony / solar-open: "<|end|>" is not an end of generation there.
    let has = |t: &str| eog.iter().any(|&id| text_is(vocab, id, t));
    let (has_return, has_call, has_flush) = (
        has("<|return|>"),
        has("<|call|>") || has("<|calls|>"),
        has("<|flush|>"),
    );
    if let Some(end) = eog
        .iter()
        .copied()
        .find(|&id| text_is(vocab, id, "<|end|>"))
    {
        if has_call && (has_return || has_flush) {
            eog.retain(|&id| id != end);
            if let Some(a) = vocab.attr_mut(end) {
                *a = TokenAttr::USER_DEFINED;
            }
        }
    }
    // gemma4 / plamo: "</s>" is a normal token there.
    let normal_s = eog
        .iter()
        .any(|&id| text_is(vocab, id, "<|tool_response>") || text_is(vocab, id, "<|plamo:eos|>"));
    if let Some(s) = eog.iter().copied().find(|&id| text_is(vocab, id, "</s>")) {
        if normal_s {
            eog.retain(|&id| id != s);
            if let Some(a) = vocab.attr_mut(s) {
                *a = TokenAttr::NORMAL;
            }
        }
    }
    eog
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn both(text: &[u8]) {
        let (mut fast, mut chars) = (vec![7u8], vec![7u8]);
        decode_bpe_text(text, &mut fast);
        decode_bpe_text_chars(text, &mut chars);
        assert_eq!(fast, chars, "{text:x?}");
    }

    #[test]
    fn decode_bpe_text_matches_the_char_decoder() {
        // Every byte's code point, alone and all together.
        let mut all = Vec::new();
        for b in 0..=255u8 {
            let mut one = Vec::new();
            unicode::push_byte_encoded(&mut one, b);
            both(&one);
            all.extend_from_slice(&one);
        }
        both(&all);
        let mut dec = Vec::new();
        decode_bpe_text(&all, &mut dec);
        assert_eq!(dec, (0..=255u8).collect::<Vec<_>>());
        // Code points that are no byte, longer sequences, invalid UTF-8, truncations.
        for t in [
            "".as_bytes(),
            "ĠhelloĊ".as_bytes(),
            "a\u{144}b".as_bytes(),
            "a\u{7FF}".as_bytes(),
            "Ġ世界".as_bytes(),
            "x😀".as_bytes(),
            b"\xC4",
            b"a\xC4",
            b"\xC0\x80",
            b"\xC1\xBF",
            b"\xC4\xC4",
            b"\xE4\xB8",
            b"\x80",
            b"\xFF",
            b"\xC4\xA0\xED\xA0\x80",
        ] {
            both(t);
        }
        // Random short strings over the interesting bytes.
        let pool = [
            0x20u8, 0x41, 0x7F, 0x80, 0x88, 0xA0, 0xBF, 0xC0, 0xC2, 0xC4, 0xC5, 0xDF, 0xE0, 0xE4,
            0xF0, 0xFF,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 6) as usize;
            let t: Vec<u8> = (0..len)
                .map(|i| pool[((x >> (8 + 4 * i)) & 15) as usize])
                .collect();
            both(&t);
        }
    }
}
