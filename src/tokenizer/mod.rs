//! Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata, identical to llama.cpp.
//!
//! Two families are implemented, as llama.cpp's `llama-vocab.cpp` does them:
//!
//! - **SentencePiece** (`tokenizer.ggml.model = llama`: Llama 2, Mistral v0.x, Gemma):
//!   merges by score, byte fallback (`<0xNN>`), `add_space_prefix`, spaces as `▁`.
//! - **Byte-level BPE** (`gpt2`: Llama 3, Qwen2, Mistral Nemo, SmolLM …): merge ranks,
//!   GPT-2's byte↔unicode map, and the pre-tokenizer named by `tokenizer.ggml.pre`
//!   (see [`PreTokenizer`]). A missing or empty `pre`, or `default`, selects llama.cpp's
//!   default pre-tokenizer; an unknown one is an error.
//!
//! The [`Tokenizer`] owns its data, so it outlives the [`Gguf`] it was read from: all token
//! texts in one buffer, an offset table, and a hash index over them.
//!
//! Special tokens are matched in the text only when asked (`parse_special`): a user who
//! types `<|im_start|>` gets the tokens of that text. (User-defined tokens, such as
//! Gemma's whitespace runs, are always matched, as in llama.cpp.)
//!
//! Decoding gives back the text, with the rules of llama.cpp's `llama_detokenize`:
//!
//! - **leading space**: a SentencePiece vocabulary with `add_space_prefix` (Llama 2,
//!   Mistral v0.x; not Gemma 3) encodes `"Hello"` as `▁Hello`; the first token's leading
//!   space is removed again when decoding, except after a BOS token that
//!   `remove_special` dropped (then `" Hello"` comes back, as in llama.cpp);
//! - **`▁` in the input**: SentencePiece writes spaces as U+2581, so a `▁` typed in the
//!   text decodes as a space;
//! - **`clean_spaces`** (most BPE vocabularies, not Qwen2 or Tekken): [`Tokenizer::detokenize`]
//!   removes the space before `?!.,` and in ` 's` / ` 're` …; the streaming
//!   [`Detokenizer`] does not (llama.cpp's generation loop does not either).
//!
//! Apart from these, `detokenize(encode(s))` is `s` for every string (tested on the
//! corpus and 400 random strings for each vocabulary).
//!
//! Exactness: token ids are compared with llama.cpp's on Gemma 3 (SentencePiece),
//! Qwen2.5 (BPE, `qwen2`), Mistral v0.1 (SentencePiece with space prefix), Llama 3
//! (`llama-bpe`) and Mistral Tekken (`tekken`), see `fixtures/tokenizer/`. Unicode
//! categories come from `unicode-properties` pinned to Unicode 15.1, the version of
//! llama.cpp's tables.
//!
//! ```
//! use tramontane::gguf::{Gguf, GgufWriter};
//! use tramontane::tokenizer::Tokenizer;
//!
//! let mut w = GgufWriter::new();
//! w.add_str("tokenizer.ggml.model", "llama");
//! w.add_str_array("tokenizer.ggml.tokens", &["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi"]);
//! w.add_f32_array("tokenizer.ggml.scores", &[0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -0.5]);
//! w.add_i32_array("tokenizer.ggml.token_type", &[2, 3, 3, 1, 1, 1, 1, 1]);
//! let bytes = w.to_bytes()?;
//! let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes[..])?)?;
//! assert_eq!(tok.encode("hi", true, false)?, [1, 7]); // <s> ▁hi
//! assert_eq!(tok.detokenize(&[7], false, false)?, b"hi"); // the prefix space goes away
//! # Ok::<(), tramontane::Error>(())
//! ```

mod bpe;
mod detok;
mod error;
mod fuzz;
mod pretok;
mod special;
mod spm;
mod table;
mod unicode;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::gguf::{ArrayView, Gguf, ValueType};

pub use detok::Detokenizer;
pub use error::TokenizerError;
#[doc(hidden)]
pub use fuzz::fuzz_tokenizer;
pub use pretok::PreTokenizer;

use bpe::{Bpe, BpeScratch};
use special::{Fragment, Specials};
use spm::SpmScratch;
use table::{PushError, StrTable};

/// llama.cpp's `llama_token_attr` bits of a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(pub u16);

impl TokenAttr {
    /// No attribute (token type `UNDEFINED`, or an unknown type).
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    /// The unknown token.
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    /// A reserved, unused token.
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    /// An ordinary token.
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    /// A control token (`<bos>`, `<|im_end|>` …): not text.
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    /// A user-defined token: matched in text before tokenizing, printed as is.
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    /// A byte-fallback token (`<0xNN>`).
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    /// Normalized.
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    /// Whitespace before it is removed when it is matched in text.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Whitespace after it is removed when it is matched in text.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    /// Single word.
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// True if every bit of `other` is set.
    pub fn contains(self, other: TokenAttr) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any bit of `other` is set.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    fn from_token_type(t: i128) -> TokenAttr {
        match t {
            1 => TokenAttr::NORMAL,
            2 => TokenAttr::UNKNOWN,
            3 => TokenAttr::CONTROL,
            4 => TokenAttr::USER_DEFINED,
            5 => TokenAttr::UNUSED,
            6 => TokenAttr::BYTE,
            _ => TokenAttr::UNDEFINED,
        }
    }
}

impl core::ops::BitOr for TokenAttr {
    type Output = TokenAttr;
    fn bitor(self, rhs: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | rhs.0)
    }
}

/// The tokenizer family (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VocabKind {
    /// SentencePiece (`llama`).
    SentencePiece,
    /// Byte-level BPE (`gpt2`).
    BytePairEncoding,
}

/// Token texts, scores and attributes.
#[derive(Clone, Debug)]
pub(crate) struct Vocab {
    texts: StrTable,
    scores: Vec<f32>,
    attrs: Vec<TokenAttr>,
}

impl Vocab {
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    pub fn find(&self, text: &[u8]) -> Option<u32> {
        self.texts.find(text)
    }
    pub fn text(&self, id: u32) -> &[u8] {
        self.texts.get(id).unwrap_or(&[])
    }
    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }
    pub fn attr(&self, id: u32) -> TokenAttr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }
    fn attr_mut(&mut self, id: u32) -> Option<&mut TokenAttr> {
        self.attrs.get_mut(id as usize)
    }
}

/// Special token ids from the metadata (or llama.cpp's defaults and text-based detection).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn.
    pub eot: Option<u32>,
    /// End of message.
    pub eom: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Separator.
    pub sep: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Mask.
    pub mask: Option<u32>,
    /// Fill-in-the-middle: prefix.
    pub fim_pre: Option<u32>,
    /// Fill-in-the-middle: suffix.
    pub fim_suf: Option<u32>,
    /// Fill-in-the-middle: middle.
    pub fim_mid: Option<u32>,
    /// Fill-in-the-middle: pad.
    pub fim_pad: Option<u32>,
    /// Fill-in-the-middle: repository.
    pub fim_rep: Option<u32>,
    /// Fill-in-the-middle: file separator.
    pub fim_sep: Option<u32>,
}

/// Accessor of one field of [`SpecialTokens`].
type IdField = fn(&mut SpecialTokens) -> &mut Option<u32>;

/// Largest vocabulary accepted: token ids are `i32` in llama.cpp.
pub const MAX_VOCAB: usize = i32::MAX as usize;

/// A SentencePiece or byte-level BPE tokenizer, read from GGUF metadata.
#[derive(Clone)]
pub struct Tokenizer {
    kind: VocabKind,
    pre_name: String,
    vocab: Vocab,
    /// llama.cpp's `token_to_piece(special = true)` of every token.
    pieces: StrTable,
    max_piece_len: usize,
    bpe: Option<Bpe>,
    /// SentencePiece byte fallback: the token of each byte.
    byte_tokens: [Option<u32>; 256],
    /// SentencePiece: the characters that some token has right before a `▁` (sorted).
    joins_space: Vec<u32>,
    specials: Specials,
    ids: SpecialTokens,
    /// End-of-generation tokens, sorted.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("pre", &self.pre_name)
            .field("n_vocab", &self.vocab.len())
            .field("n_merges", &self.bpe.as_ref().map_or(0, Bpe::n_merges))
            .field("special", &self.ids)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("add_space_prefix", &self.add_space_prefix)
            .finish()
    }
}

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
fn decode_bpe_text(text: &[u8], out: &mut Vec<u8>) {
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
                let text = core::str::from_utf8(vocab.text(id)).unwrap_or("");
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

    /// The tokenizer family.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// The pre-tokenizer of a BPE vocabulary.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        self.bpe.as_ref().map(|b| b.pre)
    }

    /// The value of `tokenizer.ggml.pre` ("" when absent).
    pub fn pre_name(&self) -> &str {
        &self.pre_name
    }

    /// Number of tokens.
    pub fn n_vocab(&self) -> u32 {
        self.vocab.len() as u32
    }

    /// Special token ids.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.ids
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.ids.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.ids.eos
    }

    /// End-of-turn token (from metadata, else found by its text, e.g. `<|im_end|>`).
    pub fn eot(&self) -> Option<u32> {
        self.ids.eot
    }

    /// Whether `encode(…, add_special = true, …)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(…, add_special = true, …)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether SentencePiece text gets a leading space (and loses it when decoded).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether [`Tokenizer::detokenize`] removes spaces before punctuation (llama.cpp's
    /// `clean_spaces`, on for most BPE vocabularies, off for Qwen2, Gemma, Tekken …).
    pub fn clean_spaces(&self) -> bool {
        self.clean_spaces
    }

    /// True for every token that ends generation: EOS, EOT, EOM, and the tokens llama.cpp
    /// recognises by their text (`<|im_end|>`, `<end_of_turn>`, `<|endoftext|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation tokens, sorted.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    fn check(&self, id: u32) -> Result<(), TokenizerError> {
        if (id as usize) < self.vocab.len() {
            Ok(())
        } else {
            Err(TokenizerError::InvalidToken {
                id,
                vocab_size: self.n_vocab(),
            })
        }
    }

    /// The token's text as stored in the vocabulary (`▁` for spaces, GPT-2 code points …).
    pub fn token_text(&self, id: u32) -> Result<&str, TokenizerError> {
        self.check(id)?;
        Ok(core::str::from_utf8(self.vocab.text(id)).unwrap_or(""))
    }

    /// The token's score (SentencePiece merge priority).
    pub fn token_score(&self, id: u32) -> Result<f32, TokenizerError> {
        self.check(id)?;
        Ok(self.vocab.score(id))
    }

    /// The token's attributes.
    pub fn token_attr(&self, id: u32) -> Result<TokenAttr, TokenizerError> {
        self.check(id)?;
        Ok(self.vocab.attr(id))
    }

    /// True for control tokens.
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id).intersects(TokenAttr::CONTROL)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.find(text.as_bytes())
    }

    /// Longest piece of any token, in bytes.
    pub fn max_piece_len(&self) -> usize {
        self.max_piece_len
    }

    /// The bytes a token stands for (llama.cpp's `token_to_piece` without lstrip):
    /// spaces for `▁`, the byte of a byte token, GPT-2 code points mapped back to bytes.
    /// Control and unknown tokens give nothing unless `special` is true. A piece can be
    /// part of a UTF-8 character.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<&[u8], TokenizerError> {
        self.check(id)?;
        if !special
            && self
                .vocab
                .attr(id)
                .intersects(TokenAttr::UNKNOWN | TokenAttr::CONTROL)
        {
            return Ok(&[]);
        }
        Ok(self.pieces.get(id).unwrap_or(&[]))
    }

    /// A streaming detokenizer for this vocabulary.
    pub fn detokenizer(&self) -> Detokenizer {
        Detokenizer::new(self)
    }

    /// Tokenize `text`. `add_special` adds BOS/EOS as the metadata asks;
    /// `parse_special` turns the text of control tokens (`<|im_start|>`) into those
    /// tokens — leave it off for text typed by a user.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        self.encode_into(text, add_special, parse_special, &mut out)?;
        Ok(out)
    }

    /// Like [`Tokenizer::encode`], appending to `out`.
    pub fn encode_into(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        if text.len() > (u32::MAX / 4) as usize {
            return Err(TokenizerError::TextTooLong {
                max: u64::from(u32::MAX / 4),
            });
        }
        let mut fragments = Vec::new();
        self.specials
            .partition(&self.vocab, text, parse_special, &mut fragments);
        let start = out.len();
        let bos = |out: &mut Vec<u32>| -> Result<(), TokenizerError> {
            if add_special && self.add_bos {
                out.push(
                    self.ids
                        .bos
                        .ok_or(TokenizerError::MissingSpecialToken { which: "BOS" })?,
                );
            }
            Ok(())
        };
        match &self.bpe {
            None => {
                let mut scratch = SpmScratch::default();
                let mut buf = Vec::new();
                let mut prev_special = true;
                bos(out)?;
                for f in &fragments {
                    match *f {
                        Fragment::Text(s, e) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.extend_from_slice("\u{2581}".as_bytes());
                            }
                            escape_whitespace(text.as_bytes().get(s..e).unwrap_or(&[]), &mut buf);
                            spm::tokenize(
                                &self.vocab,
                                &self.byte_tokens,
                                &self.joins_space,
                                &buf,
                                &mut scratch,
                                out,
                            )?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Some(bpe) => {
                let mut scratch = BpeScratch::default();
                bos(out)?;
                for f in &fragments {
                    match *f {
                        Fragment::Text(s, e) => bpe::tokenize(
                            bpe,
                            &self.vocab,
                            text.get(s..e).unwrap_or(""),
                            &mut scratch,
                            out,
                        ),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.push(
                self.ids
                    .eos
                    .ok_or(TokenizerError::MissingSpecialToken { which: "EOS" })?,
            );
        }
        if out.len() - start > MAX_VOCAB {
            return Err(TokenizerError::TooManyTokens { max: MAX_VOCAB });
        }
        Ok(())
    }

    /// llama.cpp's `llama_detokenize`: the bytes of `ids`. `remove_special` drops a
    /// leading BOS and a trailing EOS (when the vocabulary adds them); `unparse_special`
    /// writes control tokens as their text. With `add_space_prefix`, one leading space
    /// of the first piece is removed (unless a BOS was dropped); BPE vocabularies with
    /// `clean_spaces` remove spaces before punctuation as llama.cpp does.
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>, TokenizerError> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos {
            if let Some((&first, rest)) = ids.split_first() {
                if Some(first) == self.ids.bos {
                    remove_space = false;
                    ids = rest;
                }
            }
        }
        if remove_special && self.add_eos {
            if let Some((&last, rest)) = ids.split_last() {
                if Some(last) == self.ids.eos {
                    ids = rest;
                }
            }
        }
        let mut text = Vec::new();
        for &id in ids {
            let mut piece = self.token_to_piece(id, unparse_special)?;
            if remove_space {
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
            }
            remove_space = false;
            text.extend_from_slice(piece);
        }
        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        Ok(text)
    }

    /// `detokenize(ids, false, special)` as a `String` (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String, TokenizerError> {
        let bytes = self.detokenize(ids, false, special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}

/// ' ' → '▁' (llama.cpp's `llama_escape_whitespace`).
fn escape_whitespace(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        if b == b' ' {
            out.extend_from_slice("\u{2581}".as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// '▁' → ' ' (llama.cpp's `llama_unescape_whitespace`).
fn unescape_whitespace(text: &[u8], out: &mut Vec<u8>) {
    const ESC: &[u8] = "\u{2581}".as_bytes();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with(ESC) {
            out.push(b' ');
            rest = rest.get(ESC.len()..).unwrap_or(&[]);
        } else if let Some((&b, tail)) = rest.split_first() {
            out.push(b);
            rest = tail;
        }
    }
}

/// The three passes of llama.cpp's `clean_spaces` in `detokenize`.
fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," lose the space.
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text.get(i - 1) == Some(&b' ') && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // " ' " → "'" (a single apostrophe between spaces). llama.cpp overwrites the space
    // after it with a NUL, which the next position then sees as its predecessor.
    let t = core::mem::take(&mut out);
    let mut nul_at = usize::MAX;
    let mut i = 1;
    if let Some(&first) = t.first() {
        out.push(first);
    }
    while i < t.len() {
        let x = t[i];
        let prev = if i - 1 == nul_at { 0 } else { t[i - 1] };
        if x == b'\'' && i + 1 < t.len() && prev == b' ' && t[i + 1] == b' ' {
            out.pop();
            nul_at = i + 1;
            out.push(x);
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've" lose the space.
    let t = core::mem::take(&mut out);
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            let remove = matches!(x1, b's' | b'm')
                || (!matches!(x1, b't' | b'd')
                    && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if remove {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
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
