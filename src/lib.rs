//! # tramontane
//!
//! Run GGUF language models on the CPU of edge devices, with no server: the model is
//! memory-mapped (or read from a `&'static [u8]` in flash) and never copied, text
//! streams out token by token, and the hot loops are SIMD kernels chosen at run time.
//!
//! ## Features
//!
//! | feature    | default | what it adds |
//! |------------|---------|--------------|
//! | `std`      | yes     | file loading through `memmap2`, `std::error::Error`, threads |
//! | `parallel` | yes     | matvec rows split across a rayon pool (implies `std`) |
//!
//! Without default features the crate is `#![no_std]` + `alloc`: the GGUF parser,
//! quantized formats and kernels build for `thumbv7em-none-eabihf` and
//! `aarch64-unknown-none`.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_debug_implementations)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod backing;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod tokenizer;

pub use backing::Backing;
pub use error::{Error, Result};
pub use gguf::{GgmlType, Gguf, GgufError};
pub use kernels::cpu_features;
pub use sampling::{SamplerChain, Sampled};
pub use model::{Model, ModelConfig, ModelError, State, StateOptions};
pub use tokenizer::{Detokenizer, Tokenizer, TokenizerError};
pub use generate::{Completion, GenerateOptions, Piece, StopReason, TokenStream};
pub use model::StateError;
pub use session::{CancelHandle, Session, SessionError, SessionOptions};
