//! Sessions: one sequence (KV cache, position, token history) on a shared [`Model`].
//!
//! A [`Session`] owns everything a sequence needs, allocated once when it is created: the
//! KV cache for [`SessionOptions::context_len`] positions, the activation scratch, the
//! logits and the token history. After that, feeding tokens, decoding and generating
//! allocate nothing per token. Many sessions can share one model (`Model` is
//! `Send + Sync`); each session is used by one thread at a time.
//!
//! The low-level calls are [`Session::feed`] (prefill a prompt in batches),
//! [`Session::logits`], [`Session::decode_one`] and [`Session::sample`]; the streaming
//! API ([`Session::generate`], [`crate::TokenStream`]) is built on them.
//!
//! ```
//! use tramontane::{Model, SamplerChain, SessionOptions};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/llama-gqa-f16.gguf");
//! # let model = Model::from_vec(std::fs::read(path).unwrap())?;
//! let mut session = model.session(SessionOptions { context_len: 64, ..Default::default() })?;
//! let prompt = session.tokenize("hello", true)?;          // BOS + the text's tokens
//! session.feed(&prompt)?;                                 // prefill
//! let mut sampler = SamplerChain::greedy();
//! sampler.bind(model.config().n_vocab);
//! for _ in 0..8 {
//!     let next = session.sample(&mut sampler)?;           // from the last logits
//!     session.decode_one(next.id)?;                        // run it, new logits
//! }
//! assert_eq!(session.position(), prompt.len() + 8);
//! # Ok::<(), tramontane::Error>(())
//! ```
//!
//! # Context limit
//!
//! When a call would need more positions than the context holds, it fails with
//! [`ModelError::ContextFull`] before evaluating anything, unless
//! [`SessionOptions::context_shift`] is on: then, whenever the cache is full, the
//! positions after the first [`SessionOptions::keep`] are halved — the oldest half is
//! dropped, the rest moves down and its cached keys are rotated to their new positions
//! (llama.cpp's context shift) — and evaluation goes on.
//!
//! # Saved state
//!
//! [`Session::save_state`] returns a self-checking blob (header with format version,
//! model fingerprint and position; the KV cache of the used positions; the token
//! history; the last logits; a checksum) that [`Session::load_state`] restores into a
//! session of the same model, with typed errors ([`StateError`](crate::StateError)) for anything else.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::model::{KvType, Model, ModelError, State, StateOptions};
use crate::sampling::{Sampled, SamplerChain};
use crate::Result;

/// How a [`Session`] is sized. Build it with struct syntax and `..Default::default()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Positions the KV cache holds: prompt and generated tokens together (default 2048).
    pub context_len: usize,
    /// Kernel threads (default 1; 0 is taken as 1). Results do not depend on it.
    pub threads: usize,
    /// Most tokens evaluated at once while prefilling (default 64). Scratch memory grows
    /// with it; cancellation is checked between batches.
    pub batch_size: usize,
    /// KV cache element type (default f16, as llama.cpp).
    pub kv_type: KvType,
    /// When the context is full, drop the oldest half of the positions after
    /// [`keep`](Self::keep) instead of failing with [`ModelError::ContextFull`] (default off).
    pub context_shift: bool,
    /// Positions at the start never dropped by a context shift (default 1: the BOS token).
    pub keep: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            context_len: 2048,
            threads: 1,
            batch_size: 64,
            kv_type: KvType::F16,
            context_shift: false,
            keep: 1,
        }
    }
}

impl SessionOptions {
    /// The options of the session's [`State`].
    pub(crate) fn state_options(&self) -> StateOptions {
        let mut so = StateOptions::new(self.context_len);
        so.threads = self.threads;
        so.kv_type = self.kv_type;
        so.max_batch = self.batch_size;
        so
    }
}

/// Lengths (elements) of the buffers a [`Session`] allocates besides its [`State`]; used
/// by [`Session::new`] and by [`crate::memory_plan`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionLens {
    /// Logits, f32: `n_vocab`.
    pub(crate) logits: usize,
    /// Token history, u32: `context_len`.
    pub(crate) history: usize,
    /// One prefill batch, u32: `min(batch_size, context_len)`.
    pub(crate) batch: usize,
    /// Context shift: one cached row, f32: `kv_dim`.
    pub(crate) shift_row: usize,
    /// Context shift: one position's RoPE `(cos, sin)`: `n_rot / 2`.
    pub(crate) shift_rope: usize,
}

impl SessionLens {
    pub(crate) fn new(c: &crate::ModelConfig, o: &SessionOptions) -> SessionLens {
        SessionLens {
            logits: c.n_vocab,
            history: o.context_len,
            batch: o.batch_size.min(o.context_len),
            shift_row: c.kv_dim(),
            shift_rope: c.n_rot / 2,
        }
    }
}

/// Stops a session's work from anywhere: another thread, a signal handler's flag
/// watcher, a watchdog. Clones share one flag.
///
/// The session checks it between prefill batches and between generated tokens. A
/// request stays pending until a session operation sees it; that operation stops
/// (prefill with [`SessionError::Cancelled`], a token stream with
/// [`crate::StopReason::Cancelled`]) and clears it.
///
/// ```
/// use tramontane::{GenerateOptions, Model, SessionOptions, StopReason};
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/qwen2-q4_0.gguf");
/// # let model = Model::open(path)?;
/// let mut session = model.session(SessionOptions { context_len: 128, ..Default::default() })?;
/// let cancel = session.cancel_handle(); // Clone + Send + Sync
/// std::thread::spawn(move || cancel.cancel()).join().unwrap(); // a watchdog, say
/// // Seen at the first check: here before the prompt's first batch.
/// let err = session.generate("hello", GenerateOptions::default()).err().unwrap();
/// assert!(matches!(err, tramontane::Error::Session(tramontane::SessionError::Cancelled)));
/// // A request that was seen is cleared: the session goes on.
/// let mut stream = session.generate("hello", GenerateOptions::default().max_tokens(4))?;
/// while let Some(piece) = stream.next() {
///     piece?;
/// }
/// # Ok::<(), tramontane::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A new handle, not cancelled.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Ask the session to stop at the next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True if a cancellation is requested and not yet seen.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Withdraw a pending request.
    pub fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Consume a pending request: true if there was one.
    pub(crate) fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::AcqRel)
    }
}

/// Why a session call was refused or interrupted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The [`CancelHandle`] stopped the call (the tokens of the batches already
    /// evaluated stay in the cache).
    #[error("cancelled")]
    Cancelled,
    /// Nothing to generate from: the prompt has no tokens and nothing was evaluated before.
    #[error("empty prompt: nothing to generate from")]
    EmptyPrompt,
    /// Sampling was asked for before any token was evaluated (or after a reset).
    #[error("no logits: evaluate a token first")]
    NoLogits,
}

/// One sequence on a shared [`Model`]: KV cache, position, token history, logits.
///
/// See the [module documentation](self) for an example.
#[derive(Debug)]
pub struct Session<'m> {
    pub(crate) model: &'m Model,
    pub(crate) opts: SessionOptions,
    state: State,
    /// Logits after the last evaluated token (`n_vocab`).
    logits: Vec<f32>,
    /// `logits` belong to the last token in the cache.
    logits_ok: bool,
    /// The token at each cached position (capacity `context_len`).
    history: Vec<u32>,
    /// A sampled token not yet evaluated: the next evaluation runs it first.
    pub(crate) pending: Option<u32>,
    pub(crate) cancel: CancelHandle,
    /// One prefill batch (capacity `batch_size`).
    batch: Vec<u32>,
    /// Context shift scratch: one cached row, one position's RoPE angles.
    shift_row: Vec<f32>,
    shift_rope: Vec<(f32, f32)>,
    shifts: usize,
}

// A session (and a stream over it) can move to another thread.
const _: () = {
    const fn send<T: Send>() {}
    send::<Session<'static>>();
    send::<crate::TokenStream<'static, 'static>>();
};

impl Model {
    /// A new session on this model, with its own KV cache (see [`SessionOptions`]).
    pub fn session(&self, options: SessionOptions) -> Result<Session<'_>> {
        Session::new(self, options)
    }
}

impl<'m> Session<'m> {
    /// Allocate a session: KV cache, scratch, logits, history.
    ///
    /// [`crate::memory_plan`] tells beforehand how many bytes this allocates.
    pub fn new(model: &'m Model, options: SessionOptions) -> Result<Session<'m>> {
        let state = model.new_state_with(options.state_options())?;
        let n = SessionLens::new(model.config(), &options);
        Ok(Session {
            model,
            state,
            logits: vec![0.0; n.logits],
            logits_ok: false,
            history: Vec::with_capacity(n.history),
            pending: None,
            cancel: CancelHandle::new(),
            batch: Vec::with_capacity(n.batch),
            shift_row: vec![0.0; n.shift_row],
            shift_rope: vec![(0.0, 0.0); n.shift_rope],
            shifts: 0,
            opts: options,
        })
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// The options the session was created with.
    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }

    /// A handle that cancels this session's prefill and generation (see [`CancelHandle`]).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Use `handle` (shared with other sessions, say) instead of the session's own.
    pub fn set_cancel_handle(&mut self, handle: CancelHandle) {
        self.cancel = handle;
    }

    /// Tokenize `text` with the model's tokenizer: `add_special` adds BOS (and EOS) as
    /// the model's metadata asks. Special-token text (`<start_of_turn>`) is not parsed:
    /// use [`Model::tokenizer`] for that.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        Ok(self.model.tokenizer().encode(text, add_special, false)?)
    }

    /// Positions in the KV cache: the position the next token goes to.
    pub fn position(&self) -> usize {
        self.state.n_past()
    }

    /// Positions the KV cache holds.
    pub fn context_len(&self) -> usize {
        self.state.n_ctx()
    }

    /// The tokens in the KV cache, one per position.
    pub fn tokens(&self) -> &[u32] {
        &self.history
    }

    /// A token sampled by a [`crate::TokenStream`] that ended before running it through
    /// the model; the next [`feed`](Self::feed), [`decode_one`](Self::decode_one) or
    /// `generate` runs it first.
    pub fn pending_token(&self) -> Option<u32> {
        self.pending
    }

    /// How many context shifts have happened since the session was created.
    pub fn context_shifts(&self) -> usize {
        self.shifts
    }

    /// Forget the sequence (the KV cache is reused; nothing is freed or allocated).
    pub fn reset(&mut self) {
        self.state.clear();
        self.history.clear();
        self.pending = None;
        self.logits_ok = false;
    }

    /// Evaluate `tokens` at the next positions, in batches of
    /// [`SessionOptions::batch_size`], checking the [`CancelHandle`] before each batch.
    /// Afterwards [`logits`](Self::logits) holds the logits after the last token.
    ///
    /// Errors: a token outside the vocabulary (nothing evaluated),
    /// [`ModelError::ContextFull`] when the tokens do not fit and context shift is off
    /// (nothing evaluated), [`SessionError::Cancelled`] (the batches already evaluated
    /// stay in the cache).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        self.run(tokens)
    }

    /// Evaluate one token; returns the logits after it.
    pub fn decode_one(&mut self, token: u32) -> Result<&[f32]> {
        self.run(core::slice::from_ref(&token))?;
        Ok(&self.logits)
    }

    /// The logits after the last evaluated token (`n_vocab` floats), or `None` when
    /// there are none: nothing evaluated yet, or a [`pending`](Self::pending_token)
    /// token not yet run.
    pub fn logits(&self) -> Option<&[f32]> {
        (self.logits_ok && self.pending.is_none()).then_some(&self.logits[..])
    }

    /// Sample the next token from [`logits`](Self::logits) with `sampler` (bound to the
    /// vocabulary with [`SamplerChain::bind`]) and record it in the sampler's history.
    /// The token is not evaluated: pass it to [`decode_one`](Self::decode_one).
    pub fn sample(&mut self, sampler: &mut SamplerChain) -> Result<Sampled> {
        let logits = self.logits().ok_or(SessionError::NoLogits)?;
        let s = sampler.sample(logits)?;
        sampler.accept(s.id);
        Ok(s)
    }

    /// Save the state: KV cache of the used positions, token history, last logits and
    /// pending token, behind a header (format version, model fingerprint, position)
    /// and a checksum. See `model/state_io.rs` for the layout.
    ///
    /// ```
    /// use tramontane::{GenerateOptions, Model, SamplerChain, SessionOptions};
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/llama-gqa-f16.gguf");
    /// # let model = Model::open(path)?;
    /// let opts = || SessionOptions { context_len: 128, ..Default::default() };
    /// let greedy = || GenerateOptions::default().max_tokens(8).sampler(SamplerChain::greedy());
    /// let mut a = model.session(opts())?;
    /// a.feed(&a.tokenize("A long system prompt, evaluated once.", true)?)?;
    /// let saved = a.save_state()?;                      // e.g. to flash
    /// let first = a.complete("", greedy())?;           // "" continues from the state
    ///
    /// let mut b = model.session(opts())?;
    /// b.load_state(&saved)?;                            // no prompt evaluation
    /// assert_eq!(b.complete("", greedy())?, first);
    /// # Ok::<(), tramontane::Error>(())
    /// ```
    pub fn save_state(&self) -> Result<Vec<u8>> {
        let logits = self.logits_ok.then_some(&self.logits[..]);
        let mut out = Vec::new();
        out.reserve_exact(self.model.state_len(&self.state, logits.is_some()));
        self.model
            .save_state_to(&self.state, &self.history, logits, self.pending, &mut out)?;
        Ok(out)
    }

    /// Write the state (as [`save_state`](Self::save_state)) to `writer`, without
    /// building it in memory first.
    #[cfg(feature = "std")]
    pub fn save_state_to<W: std::io::Write>(&self, writer: W) -> Result<()> {
        let logits = self.logits_ok.then_some(&self.logits[..]);
        let mut sink = crate::model::WriteSink(writer);
        self.model
            .save_state_to(&self.state, &self.history, logits, self.pending, &mut sink)
    }

    /// Restore a state saved by [`save_state`](Self::save_state) from a session of the
    /// same model file with the same KV type and at most this context length. Every
    /// check is made before anything changes: on error the session is as it was.
    ///
    /// Errors ([`StateError`](crate::StateError)): not a state, unsupported version, wrong length,
    /// checksum mismatch (corrupted), another model, another KV type, too many positions.
    pub fn load_state(&mut self, blob: &[u8]) -> Result<()> {
        let loaded = self.model.load_state_from(
            &mut self.state,
            blob,
            &mut self.history,
            &mut self.logits,
        )?;
        debug_assert_eq!(loaded.n_pos, self.history.len());
        self.pending = loaded.pending;
        self.logits_ok = loaded.has_logits;
        Ok(())
    }

    /// Run the pending token (if any) and `tokens`; logits after the last one.
    pub(crate) fn run(&mut self, tokens: &[u32]) -> Result<()> {
        let nv = self.model.config().n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= nv) {
            return Err(ModelError::TokenOutOfRange {
                token: bad,
                n_vocab: nv,
            }
            .into());
        }
        let total = tokens.len() + usize::from(self.pending.is_some());
        if total == 0 {
            return Ok(());
        }
        let n_ctx = self.state.n_ctx();
        if !self.opts.context_shift && self.state.n_past().saturating_add(total) > n_ctx {
            return Err(ModelError::ContextFull {
                used: self.state.n_past(),
                capacity: n_ctx,
                requested: total,
            }
            .into());
        }
        let batch_cap = self.batch.capacity().max(1);
        let mut rest = tokens;
        while self.pending.is_some() || !rest.is_empty() {
            if self.cancel.take() {
                return Err(SessionError::Cancelled.into());
            }
            if self.state.n_past() >= n_ctx {
                self.shift()?;
            }
            let room = batch_cap.min(n_ctx - self.state.n_past());
            self.batch.clear();
            self.batch.extend(self.pending);
            let n_rest = rest.len().min(room - self.batch.len());
            let (now, later) = rest.split_at(n_rest);
            self.batch.extend_from_slice(now);
            let last = later.is_empty();
            self.logits_ok = false;
            if last {
                self.model
                    .eval(&mut self.state, &self.batch, &mut self.logits)?;
            } else {
                self.model.eval_no_logits(&mut self.state, &self.batch)?;
            }
            self.logits_ok = last;
            self.history.extend_from_slice(&self.batch);
            self.pending = None;
            rest = later;
        }
        Ok(())
    }

    /// Make room: drop the oldest half of the positions after `keep`.
    fn shift(&mut self) -> Result<()> {
        let n_past = self.state.n_past();
        let keep = self.opts.keep.min(n_past);
        let discard = (n_past - keep) / 2;
        if !self.opts.context_shift || discard == 0 || keep + discard > self.history.len() {
            return Err(ModelError::ContextFull {
                used: n_past,
                capacity: self.state.n_ctx(),
                requested: 1,
            }
            .into());
        }
        self.model.shift_kv(
            &mut self.state,
            keep,
            discard,
            &mut self.shift_row,
            &mut self.shift_rope,
        );
        self.history.drain(keep..keep + discard);
        self.shifts += 1;
        Ok(())
    }
}
