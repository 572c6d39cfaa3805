//! The crate's error type.
//!
//! One `#[non_exhaustive]` [`Error`] at the top, with one nested enum per part of the
//! crate ([`GgufError`] for the file format, [`QuantError`] for block data, …). Every
//! variant says what went wrong and where: the key, the tensor name, the byte offset.

use crate::gguf::GgufError;
use crate::kernels::KernelError;
use crate::model::{ModelError, StateError};
use crate::quant::QuantError;
use crate::sampling::SamplingError;
use crate::session::SessionError;
use crate::tokenizer::TokenizerError;

/// Everything that can go wrong in tramontane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The GGUF file is malformed, or a metadata key or tensor is missing or of the wrong type.
    #[error("gguf: {0}")]
    Gguf(#[from] GgufError),
    /// Quantized block data does not fit the operation (length, type).
    #[error("quant: {0}")]
    Quant(#[from] QuantError),
    /// A kernel call did not fit (types, lengths), or a SIMD level is unavailable.
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    /// The model's configuration or tensors do not fit, or a session call was refused
    /// (context full, token out of range, …).
    #[error("model: {0}")]
    Model(#[from] ModelError),
    /// The tokenizer metadata is unusable, or a token id / text could not be handled.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    /// A sampler option is out of range, or the logits do not fit the sampler.
    #[error("sampling: {0}")]
    Sampling(#[from] SamplingError),
    /// A session call was refused or interrupted (cancelled, empty prompt, …).
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// A saved session state was refused (corrupted, another model, …) or could not be
    /// written.
    #[error("saved state: {0}")]
    State(#[from] StateError),
    /// Reading a file failed.
    #[cfg(feature = "std")]
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was being opened or read.
        path: alloc::string::String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// `Result<T, tramontane::Error>`.
pub type Result<T, E = Error> = core::result::Result<T, E>;
