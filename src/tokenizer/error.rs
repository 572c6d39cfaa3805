//! Errors of the tokenizer: building it from metadata, encoding and decoding.

use alloc::string::String;

use crate::gguf::GgufError;

/// What went wrong while building a [`super::Tokenizer`] or using it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A metadata key could not be read (missing where required, or of the wrong type).
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    /// A `tokenizer.ggml.*` array is shorter than the token list.
    #[error("{key} has {len} elements, the vocabulary has {n_tokens} tokens")]
    ArrayTooShort {
        /// The metadata key.
        key: &'static str,
        /// Its number of elements.
        len: usize,
        /// The number of tokens (`tokenizer.ggml.tokens`).
        n_tokens: usize,
    },
    /// A metadata array has an element type this key does not allow.
    #[error("{key} is an array of {found}, expected {expected}")]
    WrongElementType {
        /// The metadata key.
        key: &'static str,
        /// What the key must hold.
        expected: &'static str,
        /// The element type found (gguf-py's spelling).
        found: &'static str,
    },
    /// `tokenizer.ggml.model` names a tokenizer family that is not implemented.
    #[error(
        "unsupported tokenizer model '{model}' in tokenizer.ggml.model (supported: llama, gpt2)"
    )]
    UnsupportedModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer that is not implemented.
    ///
    /// A missing or empty key, or `default`, selects llama.cpp's default pre-tokenizer.
    #[error("unknown pre-tokenizer '{pre}' in tokenizer.ggml.pre")]
    UnknownPreTokenizer {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
    },
    /// The vocabulary has no tokens, or more than fit in an `i32` token id.
    #[error("vocabulary size {n_tokens} is out of range (1 ..= {max})")]
    VocabSize {
        /// The number of tokens found.
        n_tokens: usize,
        /// The largest vocabulary accepted.
        max: usize,
    },
    /// The vocabulary lists the same text twice (llama.cpp refuses such a file too).
    #[error("token {id} duplicates the text of token {first}")]
    DuplicateToken {
        /// The later token.
        id: u32,
        /// The earlier token with the same text.
        first: u32,
    },
    /// The token texts together are larger than this build can index.
    #[error("token texts take more than {max} bytes")]
    TextTooLarge {
        /// The largest total accepted.
        max: u64,
    },
    /// A token id is not in the vocabulary.
    #[error("token id {id} is out of range (vocabulary has {vocab_size} tokens)")]
    InvalidToken {
        /// The id.
        id: u32,
        /// The number of tokens.
        vocab_size: u32,
    },
    /// The metadata asks for a special token (BOS/EOS) that the vocabulary does not define.
    #[error("the tokenizer is asked to add a {which} token but the vocabulary has none")]
    MissingSpecialToken {
        /// `"BOS"` or `"EOS"`.
        which: &'static str,
    },
    /// SentencePiece byte fallback needs a `<0xNN>` (or one-byte) token that the vocabulary lacks.
    #[error("no byte-fallback token for byte 0x{byte:02X} in the vocabulary")]
    MissingByteToken {
        /// The byte that could not be encoded.
        byte: u8,
    },
    /// One piece of text to tokenize is longer than this build can index.
    #[error("text is longer than {max} bytes")]
    TextTooLong {
        /// The longest accepted.
        max: u64,
    },
    /// More tokens than an `i32` count can hold (llama.cpp's limit).
    #[error("the text gives more than {max} tokens")]
    TooManyTokens {
        /// The limit.
        max: usize,
    },
}
