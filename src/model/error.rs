//! Errors of the model layer: configuration, tensor shapes, sessions.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::gguf::GgmlType;

/// A tensor shape in GGUF order (`ne[0]` first), for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<u64>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// What went wrong while building or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `general.architecture` names an architecture this crate does not implement.
    #[error("unsupported architecture {arch:?} (supported: llama, qwen2, qwen3, gemma3)")]
    UnknownArch {
        /// The architecture string from the file.
        arch: String,
    },
    /// A hyper-parameter from the metadata is out of range or inconsistent.
    #[error("invalid hyper-parameter {key} = {value}: {reason}")]
    InvalidHparam {
        /// The metadata key (or derived quantity).
        key: String,
        /// Its value.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The number of KV heads does not divide the number of query heads.
    #[error(
        "attention.head_count_kv = {n_head_kv} does not divide attention.head_count = {n_head}"
    )]
    KvHeadsDontDivide {
        /// Query heads.
        n_head: u32,
        /// Key/value heads.
        n_head_kv: u32,
    },
    /// A tensor exists but does not have the shape the configuration implies.
    #[error("tensor {name}: expected shape {expected}, found {found}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// The shape the metadata implies (GGUF order).
        expected: Shape,
        /// The shape in the file.
        found: Shape,
    },
    /// A tensor has a type the model cannot use at that place.
    #[error("tensor {name}: type {ty} is not supported here ({reason})")]
    UnsupportedTensorType {
        /// Tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
        /// Where it was expected.
        reason: &'static str,
    },
    /// The metadata asks for something this implementation does not do.
    #[error("unsupported feature: {what}")]
    Unsupported {
        /// What it is.
        what: String,
    },
    /// The KV cache has no room for the tokens given.
    #[error("context full: {used} positions used of {capacity}, {requested} more requested")]
    ContextFull {
        /// Positions already in the cache.
        used: usize,
        /// Positions the cache holds.
        capacity: usize,
        /// Positions the call needed.
        requested: usize,
    },
    /// A token id is not in the vocabulary.
    #[error("token id {token} out of range (vocabulary size {n_vocab})")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// `eval` was given no tokens.
    #[error("no tokens to evaluate")]
    EmptyInput,
    /// The logits buffer has the wrong length.
    #[error("logits buffer has {found} floats; expected {last} (last position) or {all} (every position)")]
    LogitsBuffer {
        /// Length given.
        found: usize,
        /// `n_vocab`.
        last: usize,
        /// `n_tokens * n_vocab`.
        all: usize,
    },
    /// The requested session is too large (sizes overflow, or a zero context).
    #[error("invalid session size: {what}")]
    SessionSize {
        /// What overflowed or was zero.
        what: &'static str,
    },
    /// The system could not give memory that an opt-in asked for (a repacked copy of
    /// the weights, [`crate::Model::repack_weights`]).
    #[error("cannot allocate {bytes} bytes for {what}")]
    OutOfMemory {
        /// What the memory was for.
        what: &'static str,
        /// How much was asked for.
        bytes: usize,
    },
    /// A state created by another model was given to this one.
    #[error("state does not belong to this model (shape mismatch)")]
    ForeignState,
}
