//! The memory plan: how many heap bytes a session will allocate, known before anything
//! is allocated, so that firmware can size its heap (or refuse a context length) up
//! front.
//!
//! A [`Session`](crate::Session) allocates everything it needs when it is created (the
//! KV cache, the activation scratch, the logits, the token history) and a generation
//! allocates its sampler and text buffers when it starts; after that, producing a token
//! allocates nothing. [`memory_plan`] adds up those allocations from the same size
//! functions the constructors allocate with, so the plan is exact, not an estimate
//! (`tests/memory_plan.rs` checks it with a counting allocator).
//!
//! ```
//! use tramontane::{memory_plan, Model, SessionOptions};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/qwen2-q4_0.gguf");
//! # let model = Model::open(path)?;
//! let options = SessionOptions { context_len: 256, batch_size: 16, ..Default::default() };
//! let plan = memory_plan(&model, &options)?;
//! assert_eq!(plan.total, plan.session() + plan.sampler + plan.stream);
//! println!("KV cache {} B, scratch {} B, total {} B", plan.kv_cache, plan.scratch, plan.total);
//! if plan.total <= 8 << 20 {
//!     let session = model.session(options)?; // allocates `plan.session()` bytes
//! #   drop(session);
//! }
//! # Ok::<(), tramontane::Error>(())
//! ```
//!
//! What the plan does not count: the model itself (its tokenizer tables and small
//! vectors are allocated when it is loaded, before you can ask for a plan; the weights
//! are read in place), the prompt's tokens and the tokenizer's temporary buffers while
//! a prompt is tokenized (they grow with the prompt and are freed before the first
//! token), a saved state, and — with `threads > 1` — the worker threads (their stacks
//! are mapped by the operating system, plus a few hundred bytes of bookkeeping each).

use core::mem::{align_of, size_of};
use core::sync::atomic::AtomicBool;

use crate::generate::{hold_capacity, GenerateOptions};
use crate::model::sizes::{bytes_of, sum, StateSizes};
use crate::model::{Model, ModelError};
use crate::session::{SessionLens, SessionOptions};
use crate::tokenizer::Detokenizer;
use crate::Result;

/// Heap bytes a session and one generation on it allocate (see the
/// [module documentation](self)). Every field is in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryPlan {
    /// Keys and values of every layer for `context_len` positions
    /// (`2 · n_layer · context_len · kv_dim` values of the [`KvType`](crate::model::KvType)).
    pub kv_cache: usize,
    /// Activation scratch: the residual stream, Q/K/V, FFN buffers and the quantized
    /// activations for `min(batch_size, context_len)` tokens, the attention scores and
    /// (f16 cache) one layer's values as f32.
    pub scratch: usize,
    /// The last token's logits (`n_vocab` f32).
    pub logits: usize,
    /// Token history (`context_len` ids), one prefill batch, the context-shift scratch
    /// and the cancel flag.
    pub tokens: usize,
    /// The sampler chain's buffers once bound to the vocabulary (a candidate of 12 bytes
    /// per token, the penalty history), allocated when a generation starts.
    pub sampler: usize,
    /// The token stream's text buffers (detokenizer and held-back text for the stop
    /// strings), allocated when a generation starts.
    pub stream: usize,
    /// Everything above.
    pub total: usize,
}

impl MemoryPlan {
    /// What [`Session::new`](crate::Session::new) allocates: `kv_cache + scratch +
    /// logits + tokens`.
    pub fn session(&self) -> usize {
        self.kv_cache
            .saturating_add(self.scratch)
            .saturating_add(self.logits)
            .saturating_add(self.tokens)
    }
}

/// The bytes a [`Session`](crate::Session) created with `options` on `model` will
/// allocate, and a generation with [`GenerateOptions::default()`] on it (see the
/// [module documentation](self) for an example and for what is not counted).
///
/// Errors as [`Session::new`](crate::Session::new) would give them: a zero context or
/// batch, or sizes that overflow ([`ModelError::SessionSize`]). Allocates nothing.
pub fn memory_plan(model: &Model, options: &SessionOptions) -> Result<MemoryPlan> {
    plan(model, options, &crate::SamplerChain::default(), &[])
}

/// [`memory_plan`] for a generation with `generate` (its sampler chain's penalty window
/// and its stop strings change [`MemoryPlan::sampler`] and [`MemoryPlan::stream`]).
pub fn memory_plan_for(
    model: &Model,
    options: &SessionOptions,
    generate: &GenerateOptions,
) -> Result<MemoryPlan> {
    let (sampler, stops) = generate.parts();
    plan(model, options, sampler, stops)
}

impl Model {
    /// The same as [`memory_plan(self, options)`](memory_plan).
    pub fn memory_plan(&self, options: &SessionOptions) -> Result<MemoryPlan> {
        memory_plan(self, options)
    }
}

/// Bytes of the heap block of an `Arc<AtomicBool>` (two counters and the flag).
fn arc_flag_bytes() -> usize {
    let raw = 2 * size_of::<usize>() + size_of::<AtomicBool>();
    raw.div_ceil(align_of::<usize>()) * align_of::<usize>()
}

fn plan(
    model: &Model,
    options: &SessionOptions,
    sampler: &crate::SamplerChain,
    stops: &[alloc::string::String],
) -> Result<MemoryPlan> {
    let c = model.config();
    let s = StateSizes::new(c, &options.state_options())?;
    let n = SessionLens::new(c, options);
    let kv_cache = s.kv_bytes()?;
    let scratch = s.scratch_bytes()?;
    let logits = bytes_of::<f32>(n.logits, "logits")?;
    let tokens = sum(
        &[
            bytes_of::<u32>(n.history, "token history")?,
            bytes_of::<u32>(n.batch, "prefill batch")?,
            bytes_of::<f32>(n.shift_row, "context shift scratch")?,
            bytes_of::<(f32, f32)>(n.shift_rope, "context shift scratch")?,
            arc_flag_bytes(),
        ],
        "session buffers",
    )?;
    let sampler = sampler
        .bound_bytes(c.n_vocab)
        .ok_or(ModelError::SessionSize {
            what: "sampler buffers",
        })?;
    let tok = model.tokenizer();
    let (detok_out, detok_work) = Detokenizer::buffer_lens(tok);
    let stream = sum(
        &[detok_out, detok_work, hold_capacity(tok, stops)],
        "stream buffers",
    )?;
    let total = sum(
        &[kv_cache, scratch, logits, tokens, sampler, stream],
        "memory plan",
    )?;
    Ok(MemoryPlan {
        kv_cache,
        scratch,
        logits,
        tokens,
        sampler,
        stream,
        total,
    })
}
