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
//! The [`Tokenizer`] owns its data, so it outlives the [`Gguf`](crate::Gguf) it was read
//! from: all token texts in one buffer, an offset table, and a hash index over them.
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
mod load;
mod pretok;
mod special;
mod spm;
mod table;
mod text;
mod unicode;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use detok::Detokenizer;
pub use error::TokenizerError;
#[doc(hidden)]
pub use fuzz::fuzz_tokenizer;
pub use pretok::PreTokenizer;

use bpe::{Bpe, BpeScratch};
use special::{Fragment, Specials};
use spm::SpmScratch;
use table::StrTable;
use text::{clean_up_spaces, escape_whitespace};

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

impl Tokenizer {
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
