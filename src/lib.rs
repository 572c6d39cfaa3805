//! # tramontane
//!
//! Run GGUF language models on the CPU of edge devices, with no server: the model is
//! memory-mapped (or read from a `&'static [u8]` in flash) and never copied, text
//! streams out token by token, and the hot loops are SIMD kernels chosen at run time.
//!
//! ## Generating text
//!
//! Open a [`Model`] (shared by any number of sessions and threads), create a [`Session`]
//! (one sequence: its KV cache and scratch are allocated here, once), and pull
//! [`Piece`]s from the [`TokenStream`]: each has the token id, the text that became
//! complete UTF-8 with it, and its log-probability. Producing a token allocates nothing.
//!
//! ```
//! use tramontane::{GenerateOptions, Model, SamplerChain, SessionOptions, StopReason};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/gemma3-q4_k.gguf");
//! # let path = path.to_string();
//! // Reads the tensors ahead in the background (Prefetch::Background); also
//! // Model::open_with(path, LoadOptions), Model::from_static(bytes), Model::from_vec(v).
//! let model = Model::open(&path)?;
//! let mut session = model.session(SessionOptions { context_len: 256, threads: 2, ..Default::default() })?;
//! let opts = GenerateOptions::default()
//!     .max_tokens(32)
//!     .sampler(SamplerChain::greedy())
//!     .stop("\n\n");
//! let mut stream = session.generate("Diagnostic :", opts)?;
//! while let Some(piece) = stream.next() {
//!     let piece = piece?;
//!     print!("{}", piece.text);
//! }
//! assert!(matches!(
//!     stream.stop_reason(),
//!     Some(StopReason::MaxTokens | StopReason::EndOfGeneration { .. } | StopReason::StopString { .. })
//! ));
//! # Ok::<(), tramontane::Error>(())
//! ```
//!
//! See [`session`] for the lower-level calls (`feed`, `decode_one`, `logits`, `sample`),
//! cancellation, the context limit and saved states, and [`generate`] for stopping rules
//! and callbacks.
//!
//! ## Features
//!
//! | feature    | default | what it adds |
//! |------------|---------|--------------|
//! | `std`      | yes     | file loading through `memmap2`, `std::error::Error`, threads |
//! | `parallel` | yes     | matvec rows split across the crate's own worker threads (implies `std`) |
//!
//! Without default features the crate is `#![no_std]` + `alloc`: the GGUF parser,
//! quantized formats, kernels, model, tokenizer, sampler and generation build for
//! `thumbv7em-none-eabihf` and `aarch64-unknown-none` (math through `libm`). A firmware
//! loads its model with [`Model::from_static`] and sizes its heap with
//! [`memory_plan`] before creating the session; `examples/embedded.rs` shows the whole
//! path.
//!
//! ## Targets and kernels
//!
//! The SIMD level is chosen at run time (see [`kernels`]); which levels exist depends on
//! the target:
//!
//! | target | kernel levels |
//! |--------|---------------|
//! | x86-64 | AVX2 (with FMA and F16C), scalar |
//! | aarch64 (Linux, or bare metal without `std`) | NEON, dotprod (detected with `std`, from the compile-time target features without; an i8mm CPU runs the dotprod kernels), scalar |
//! | armv7 (`armv7-unknown-linux-gnueabihf`), thumbv7em, others | scalar only |
//!
//! On 32-bit ARM the kernels are the scalar ones, picked cleanly (no SIMD level is
//! reported available, and asking for one is [`kernels::KernelError::Unavailable`]):
//! the aarch64 NEON kernels use A64-only instructions (`addv`, 128-bit `addp`,
//! `fcvtl2`, `sdot`), and Rust's 32-bit NEON intrinsics (`core::arch::arm`)
//! are unstable (`stdarch_arm_neon_intrinsics`). Every SIMD level gives the same bits as
//! the scalar kernels. `cross/README.md` has the full table of targets, how each is
//! built and what runs where.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_debug_implementations)]
// The core is `core` + `alloc`: `std::` only where `core`/`alloc` have no equivalent
// (files, threads, io). CI denies both lints (run-tests.sh).
#![warn(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod backing;
pub mod error;
#[cfg(feature = "ffi")]
pub mod ffi;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod tokenizer;

pub use backing::Backing;
pub use error::{Error, Result};
pub use generate::{Completion, GenerateOptions, Piece, StopReason, TokenStream};
pub use gguf::{GgmlType, Gguf, GgufError};
pub use kernels::cpu_features;
pub use memory::{memory_plan, memory_plan_for, MemoryPlan};
pub use model::StateError;
pub use model::{LoadOptions, Model, ModelConfig, ModelError, Prefetch, State, StateOptions};
pub use sampling::{Sampled, SamplerChain};
pub use session::{CancelHandle, Session, SessionError, SessionOptions};
pub use tokenizer::{Detokenizer, Tokenizer, TokenizerError};
