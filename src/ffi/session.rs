//! `tra_session`: one sequence on a shared model, and the generation calls.
//!
//! A handle is one allocation holding the session's [`CancelHandle`] (read by
//! `tra_session_cancel` from any thread through a shared reference) and, in an
//! `UnsafeCell`, everything else; a `busy` flag gives one call at a time exclusive
//! access to the latter. The streaming state is a [`TokenStream`] that borrows the
//! [`Session`], which borrows the [`Model`]: the session lives in its own heap
//! allocation and the model in an `Arc` stored next to it, and [`Inner`]'s `Drop`
//! releases them in the right order (stream, session, model).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use super::error::{guard, guard_void, Fail, TraStatus};
use super::model::{checked_ids, TraModel};
use super::{c_token, input, non_null, put, utf8, write_text};
use crate::generate::{GenerateOptions, StopReason, TokenStream};
use crate::sampling::SamplerChain;
use crate::session::{CancelHandle, Session, SessionOptions};
use crate::Model;

use TraStatus::*;

/// The most kernel threads a session may ask for.
pub const TRA_MAX_THREADS: u32 = 256;

/// How a session is sized and how it samples. Start from
/// `tra_session_params_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraSessionParams {
    /// Positions the KV cache holds, prompt and generated tokens together (default
    /// 2048; 0 is refused). The cache is allocated when the session is created.
    pub context_len: u32,
    /// Kernel threads (default 1; 0 is taken as 1; at most `TRA_MAX_THREADS`). Results
    /// do not depend on it.
    pub threads: u32,
    /// Sampling temperature (default 0.8); 0 is greedy (always the most likely token).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (default 40); 0 or negative: all.
    pub top_k: i32,
    /// Nucleus sampling threshold, 0..1 (default 0.95; 1 disables it).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one, 0..1 (default
    /// 0.05; 0 disables it).
    pub min_p: f32,
    /// Penalty for the last 64 tokens, > 0 (default 1: none).
    pub repeat_penalty: f32,
    /// Seed of the random draws (default 0): same seed, same text.
    pub seed: u64,
    /// Most tokens one prompt generates, counting an end-of-generation token (default
    /// 256); 0: no limit (until an end-of-generation token or the context is full).
    pub max_tokens: u32,
}

impl Default for TraSessionParams {
    fn default() -> Self {
        let so = SessionOptions::default();
        TraSessionParams {
            context_len: u32::try_from(so.context_len).unwrap_or(2048),
            threads: 1,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            seed: 0,
            max_tokens: 256,
        }
    }
}

/// Called by `tra_session_generate` with each generated piece: `text` holds `len`
/// bytes of complete UTF-8 and a NUL (valid only during the call; possibly empty),
/// `token` the token id. Return 0 to go on, anything else to stop. The callback must
/// return normally: no C++ exception or `longjmp` may leave it.
pub type TraPieceCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        text: *const c_char,
        len: usize,
        token: i32,
    ) -> c_int,
>;

/// A session (opaque): KV cache, position, generation state. Used by one thread at a
/// time; `tra_session_cancel` may be called from any thread.
pub struct TraSession {
    /// A clone of the session's handle, usable without access to `inner`.
    cancel: CancelHandle,
    /// A call has exclusive access to `inner`.
    busy: AtomicBool,
    /// A panic happened inside a call: `inner` may be inconsistent.
    poisoned: AtomicBool,
    inner: UnsafeCell<Inner>,
}

impl fmt::Debug for TraSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraSession")
            .field("cancel", &self.cancel)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

/// Everything a call may change.
struct Inner {
    /// The running generation. Borrows `*session` mutably: while it exists the session
    /// is reached only through it.
    stream: Option<TokenStream<'static, 'static>>,
    /// From `Box::into_raw`; freed in `Drop`, after `stream`.
    session: NonNull<Session<'static>>,
    /// What `*session` borrows; dropped after it (fields drop after `Drop::drop`).
    #[allow(dead_code)] // held for its lifetime, read through `session`
    model: Arc<Model>,
    max_tokens: usize,
    sampler: SamplerChain,
    /// A piece taken from the stream and not yet delivered: its text and a NUL.
    piece: Vec<u8>,
    piece_token: Option<u32>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stream = None;
        // SAFETY: `session` comes from Box::into_raw in tra_session_new and is freed only
        // here; the stream that borrowed it is gone, and nothing else refers to it.
        drop(unsafe { Box::from_raw(self.session.as_ptr()) });
    }
}

impl Inner {
    /// The session, ending a running generation (its last token stays pending in the
    /// session and is run first by the next evaluation).
    fn session_mut(&mut self) -> &mut Session<'static> {
        self.stream = None;
        self.piece_token = None;
        // SAFETY: the pointer is valid until `self` drops (see Drop), and with the
        // stream gone no other reference to the session exists; the borrow is tied to
        // `&mut self`.
        unsafe { self.session.as_mut() }
    }

    /// The session, for reading, without ending a generation.
    fn session_ref(&self) -> &Session<'static> {
        match &self.stream {
            Some(stream) => stream.session(),
            // SAFETY: valid until `self` drops; no mutable reference exists without a
            // stream, and the borrow is tied to `&self`.
            None => unsafe { self.session.as_ref() },
        }
    }

    fn options(&self) -> GenerateOptions {
        GenerateOptions::default()
            .max_tokens(self.max_tokens)
            .sampler(self.sampler.clone())
    }

    /// Prefill `prompt` (text or tokens) and start a generation.
    fn start(&mut self, prompt: Prompt<'_>) -> Result<(), Fail> {
        let opts = self.options();
        self.session_mut();
        // SAFETY: `session_mut` dropped any stream, so this is the only reference to
        // the session. It lives until `self` drops, and the stream that keeps it is
        // dropped first (Drop, session_mut), so the unbounded lifetime never outlives it.
        let session: &'static mut Session<'static> = unsafe { &mut *self.session.as_ptr() };
        let stream = match prompt {
            Prompt::Text(t) => session.generate(t, opts)?,
            Prompt::Tokens(ids) => session.generate_tokens(ids, opts)?,
        };
        self.stream = Some(stream);
        Ok(())
    }

    /// Make sure a piece is waiting in `self.piece`: `Ok(false)` when generation has
    /// ended (or none runs).
    fn fill(&mut self) -> Result<bool, Fail> {
        if self.piece_token.is_some() {
            return Ok(true);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(false);
        };
        let outcome = match stream.next() {
            Some(Ok(p)) => {
                self.piece.clear();
                self.piece.extend_from_slice(p.text.as_bytes());
                self.piece.push(0);
                Ok(Some(p.token))
            }
            Some(Err(e)) => Err(Fail::from(e)),
            None => match stream.stop_reason() {
                Some(StopReason::Cancelled) => Err(Fail::new(
                    TRA_ERR_CANCELLED,
                    "generation cancelled by tra_session_cancel",
                )),
                _ => Ok(None),
            },
        };
        match outcome {
            Ok(Some(token)) => {
                self.piece_token = Some(token);
                Ok(true)
            }
            Ok(None) => {
                self.stream = None;
                Ok(false)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    /// The waiting piece's text without its NUL.
    fn piece_text(&self) -> &[u8] {
        self.piece.split_last().map_or(&[], |(_, text)| text)
    }
}

enum Prompt<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

/// Marks the session free again when a call ends, and poisoned if it ends by a panic.
struct Busy<'a>(&'a TraSession);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Release);
        }
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Borrow a session handle (shared: `tra_session_cancel` may hold one at the same time).
///
/// # Safety
/// `s` is NULL or a live handle from `tra_session_new`, not freed while the borrow lasts.
unsafe fn handle<'a>(s: *mut TraSession) -> Result<&'a TraSession, Fail> {
    // SAFETY: the caller's contract: NULL (refused) or a live handle. Only shared
    // references to the handle are made; `inner` is reached through its UnsafeCell.
    unsafe { s.cast_const().as_ref() }.ok_or_else(|| Fail::null("session"))
}

impl TraSession {
    /// Run `f` with exclusive access to the session's state.
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> Result<R, Fail>) -> Result<R, Fail> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Fail::new(
                TRA_ERR_INTERNAL,
                "the session is unusable after an internal error; free it",
            ));
        }
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(Fail::arg(
                "the session is in use by another call (used from two threads at once, or from its own callback)",
            ));
        }
        let _busy = Busy(self);
        // SAFETY: the busy flag, set above and cleared when `_busy` drops, makes this
        // the only reference to `inner` (tra_session_cancel touches only `cancel`).
        let inner = unsafe { &mut *self.inner.get() };
        f(inner)
    }
}

/// The default parameters (see `tra_session_params`): context 2048, 1 thread,
/// llama.cpp's default sampler (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05),
/// seed 0, 256 tokens per prompt.
#[no_mangle]
pub extern "C" fn tra_session_params_default() -> TraSessionParams {
    std::panic::catch_unwind(TraSessionParams::default).unwrap_or(TraSessionParams {
        context_len: 2048,
        threads: 1,
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
        seed: 0,
        max_tokens: 256,
    })
}

/// Check the parameters: session options, sampler, max tokens.
fn convert(p: &TraSessionParams) -> Result<(SessionOptions, SamplerChain, usize), Fail> {
    let usize_of = |v: u32| usize::try_from(v).map_err(|_| Fail::arg("value too large"));
    if p.context_len == 0 {
        return Err(Fail::arg("params.context_len is 0"));
    }
    if p.threads > TRA_MAX_THREADS {
        return Err(Fail::arg(alloc::format!(
            "params.threads = {} is more than {TRA_MAX_THREADS}",
            p.threads
        )));
    }
    if !(p.temperature >= 0.0 && p.temperature.is_finite()) {
        return Err(Fail::arg(alloc::format!(
            "params.temperature = {} must be finite and >= 0",
            p.temperature
        )));
    }
    let opts = SessionOptions {
        context_len: usize_of(p.context_len)?,
        threads: usize_of(p.threads)?,
        ..SessionOptions::default()
    };
    let top_k = usize::try_from(p.top_k).unwrap_or(0);
    let sampler = if p.temperature == 0.0 {
        SamplerChain::greedy()
    } else {
        SamplerChain::default()
            .temperature(p.temperature)
            .top_k(top_k)
            .top_p(p.top_p)
            .min_p(p.min_p)
    }
    .repeat_penalty(p.repeat_penalty)
    .seed(p.seed);
    sampler
        .validate()
        .map_err(|e| Fail::arg(alloc::format!("params: {e}")))?;
    let max_tokens = match p.max_tokens {
        0 => usize::MAX,
        n => usize_of(n)?,
    };
    Ok((opts, sampler, max_tokens))
}

/// What `tra_session_memory_plan` reports: the heap bytes a session will allocate, by
/// part. Every field is in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraMemoryPlan {
    /// Keys and values of every layer for `context_len` positions (f16).
    pub kv_cache: usize,
    /// Activation scratch: residual stream, Q/K/V, FFN buffers, quantized activations,
    /// attention scores.
    pub scratch: usize,
    /// The last token's logits (`n_vocab` floats).
    pub logits: usize,
    /// Token history, one prefill batch, the context-shift scratch, the cancel flag.
    pub tokens: usize,
    /// The sampler's buffers (12 bytes per vocabulary entry and the penalty history),
    /// allocated when a prompt starts a generation.
    pub sampler: usize,
    /// The text buffers of a running generation.
    pub stream: usize,
    /// The C handle itself: the session and handle structs and the piece buffer.
    pub handle: usize,
    /// Everything above.
    pub total: usize,
}

/// Capacity of a handle's piece buffer: one token's text (with replacements) and a NUL.
fn piece_capacity(model: &Model) -> usize {
    model
        .tokenizer()
        .max_piece_len()
        .saturating_add(4)
        .saturating_mul(3)
        .saturating_add(8)
}

/// The plan of a C session: the Rust plan for its options and sampler, and the handle.
fn plan_of(model: &Model, p: &TraSessionParams) -> Result<TraMemoryPlan, Fail> {
    let (opts, sampler, max_tokens) = convert(p)?;
    let gen = GenerateOptions::default()
        .max_tokens(max_tokens)
        .sampler(sampler);
    let plan = crate::memory_plan_for(model, &opts, &gen)?;
    let handle = core::mem::size_of::<Session<'static>>()
        .saturating_add(core::mem::size_of::<TraSession>())
        .saturating_add(piece_capacity(model));
    Ok(TraMemoryPlan {
        kv_cache: plan.kv_cache,
        scratch: plan.scratch,
        logits: plan.logits,
        tokens: plan.tokens,
        sampler: plan.sampler,
        stream: plan.stream,
        handle,
        total: plan
            .total
            .checked_add(handle)
            .ok_or_else(|| Fail::arg("params.context_len: the session is too large"))?,
    })
}

/// Write to `*out` how many heap bytes `tra_session_new(model, params, …)` and a
/// generation on that session will allocate, before anything is allocated (firmware
/// sizes its heap with it, or picks the largest context that fits). The plan is exact
/// for one thread; each extra worker thread adds a little bookkeeping (its stack is
/// mapped by the system, not counted). The model's own memory, a prompt's tokens while
/// it is tokenized, and saved states are not counted.
///
/// Errors: `TRA_ERR_INVALID_ARGUMENT` for NULL `model`/`out` and for the parameters
/// `tra_session_new` refuses (except the check that the memory is available).
#[no_mangle]
pub unsafe extern "C" fn tra_session_memory_plan(
    model: *const TraModel,
    params: *const TraSessionParams,
    out: *mut TraMemoryPlan,
) -> TraStatus {
    guard("tra_session_memory_plan", || {
        non_null(out, "out")?;
        // SAFETY: the caller's contract: NULL or a live model handle.
        let h = unsafe { model.as_ref() }.ok_or_else(|| Fail::null("model"))?;
        // SAFETY: the caller's contract: NULL (defaults) or a readable parameter struct.
        let p = unsafe { params.as_ref() }.copied().unwrap_or_default();
        let plan = plan_of(&h.model, &p)?;
        // SAFETY: out is non-NULL; the caller guarantees it is writable.
        unsafe { put(out, plan) };
        Ok(TRA_OK)
    })
}

/// Refuse a session whose buffers the system cannot give, rather than aborting on a
/// failed allocation: try to reserve (and at once release, untouched) as many bytes as
/// the memory plan says the session will allocate.
fn probe_memory(model: &Model, p: &TraSessionParams) -> Result<(), Fail> {
    let bytes = plan_of(model, p).map(|plan| plan.total).ok();
    let mut probe: Vec<u8> = Vec::new();
    match bytes {
        Some(b) if probe.try_reserve_exact(b).is_ok() => Ok(()),
        _ => Err(Fail::arg(alloc::format!(
            "params.context_len = {}: the session's buffers ({} MiB) cannot be allocated",
            p.context_len,
            bytes.map_or(u64::MAX, |b| (b as u64) >> 20)
        ))),
    }
}

/// Create a session on `model` with `params` (NULL: the defaults). Its KV cache and
/// scratch are allocated here, once. The session keeps the model alive (the model
/// handle may be freed first). `*out` is a new handle to free with
/// `tra_session_free`, or NULL on failure.
///
/// Errors: `TRA_ERR_INVALID_ARGUMENT` for NULL `model`/`out` and parameters out of
/// range (context_len 0 or too large to allocate, threads > `TRA_MAX_THREADS`,
/// temperature < 0, top_p/min_p outside 0..1, repeat_penalty <= 0, NaN).
#[no_mangle]
pub unsafe extern "C" fn tra_session_new(
    model: *const TraModel,
    params: *const TraSessionParams,
    out: *mut *mut TraSession,
) -> TraStatus {
    guard("tra_session_new", || {
        non_null(out, "out")?;
        // SAFETY: out is non-NULL; the caller guarantees it is writable.
        unsafe { put(out, core::ptr::null_mut()) };
        // SAFETY: the caller's contract: NULL or a live model handle.
        let h = unsafe { model.as_ref() }.ok_or_else(|| Fail::null("model"))?;
        // SAFETY: the caller's contract: NULL (defaults) or a readable parameter struct.
        let p = unsafe { params.as_ref() }.copied().unwrap_or_default();
        let (opts, sampler, max_tokens) = convert(&p)?;
        probe_memory(&h.model, &p)?;
        let arc = Arc::clone(&h.model);
        // SAFETY: the Arc is stored in the same Inner as the session and dropped after
        // it (see Inner's Drop), so the model outlives every use of this reference.
        let model_ref: &'static Model = unsafe { &*Arc::as_ptr(&arc) };
        let session = Session::new(model_ref, opts)?;
        let cancel = session.cancel_handle();
        let piece_cap = piece_capacity(model_ref);
        let session = NonNull::from(Box::leak(Box::new(session)));
        let handle = Box::new(TraSession {
            cancel,
            busy: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            inner: UnsafeCell::new(Inner {
                stream: None,
                session,
                model: arc,
                max_tokens,
                sampler,
                piece: Vec::with_capacity(piece_cap),
                piece_token: None,
            }),
        });
        // SAFETY: out checked above.
        unsafe { put(out, Box::into_raw(handle)) };
        Ok(TRA_OK)
    })
}

/// Free a session. NULL is a no-op. No other call on it (`tra_session_cancel`
/// included) may be running or follow.
#[no_mangle]
pub unsafe extern "C" fn tra_session_free(session: *mut TraSession) {
    guard_void("tra_session_free", || {
        if !session.is_null() {
            // SAFETY: a non-NULL handle comes from Box::into_raw in tra_session_new and
            // is freed once, with no call running on it (the caller's contract).
            drop(unsafe { Box::from_raw(session) });
        }
    })
}

/// Tokenize `utf8_text` (BOS added when the session is empty and the model asks for
/// one; special-token text stays text), evaluate it after what the session already
/// holds, and start generating: then call `tra_session_next`. An empty text continues
/// from the session's state. Ends a running generation first.
///
/// Errors: `TRA_ERR_CONTEXT_FULL` (the prompt does not fit; nothing evaluated),
/// `TRA_ERR_CANCELLED` (cancelled during prefill; the batches already evaluated stay),
/// `TRA_ERR_INVALID_ARGUMENT` (NULL, not UTF-8, nothing to generate from).
#[no_mangle]
pub unsafe extern "C" fn tra_session_prompt(
    s: *mut TraSession,
    utf8_text: *const c_char,
) -> TraStatus {
    guard("tra_session_prompt", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            // SAFETY: the caller's contract: NULL or a NUL-terminated string.
            let text = unsafe { utf8(utf8_text, "utf8_text")? };
            inner.start(Prompt::Text(text))?;
            Ok(TRA_OK)
        })
    })
}

/// Like `tra_session_prompt` with tokens (from `tra_tokenize_ex`, say): nothing is
/// added. `n` may be 0 to continue from the session's state (`ids` non-NULL still).
#[no_mangle]
pub unsafe extern "C" fn tra_session_prompt_tokens(
    s: *mut TraSession,
    ids: *const i32,
    n: usize,
) -> TraStatus {
    guard("tra_session_prompt_tokens", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            // SAFETY: the caller's contract: `n` readable ids.
            let ids = unsafe { input(ids, n, "ids")? };
            inner.start(Prompt::Tokens(checked_ids(ids)?))?;
            Ok(TRA_OK)
        })
    })
}

/// The next generated piece.
///
/// - `TRA_OK`: `buf` holds the piece, complete UTF-8 (possibly empty: an incomplete
///   character, a control token) and a NUL; `*len_out` is its length without the NUL,
///   `*token_out` its token id.
/// - `TRA_END`: generation ended (end-of-generation token, `max_tokens`), or none is
///   running; it stays ended until the next prompt.
/// - `TRA_ERR_BUFFER_TOO_SMALL`: nothing is consumed: `*len_out` is the bytes needed
///   including the NUL (and `*token_out` the token); call again with a bigger buffer.
///   256 bytes are enough for the pieces of nearly every model; handle this status anyway.
/// - `TRA_ERR_CANCELLED` (`tra_session_cancel`), `TRA_ERR_CONTEXT_FULL` (the context
///   filled up): generation ended, the next call returns `TRA_END`.
///
/// Allocates nothing per token.
#[no_mangle]
pub unsafe extern "C" fn tra_session_next(
    s: *mut TraSession,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
    token_out: *mut i32,
) -> TraStatus {
    guard("tra_session_next", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            non_null(buf, "buf")?;
            non_null(len_out, "len_out")?;
            non_null(token_out, "token_out")?;
            if !inner.fill()? {
                return Ok(TRA_END);
            }
            let token = c_token(inner.piece_token.unwrap_or(0));
            // SAFETY: token_out non-NULL and writable (caller's contract).
            unsafe { put(token_out, token) };
            // SAFETY: buf valid for `cap` bytes, len_out writable (caller's contract).
            unsafe { write_text(inner.piece_text(), buf, cap, len_out, "the piece")? };
            inner.piece_token = None;
            Ok(TRA_OK)
        })
    })
}

/// Prompt and generate to the end, calling `callback(user_data, text, len, token)`
/// with each piece (see `tra_piece_callback`; `user_data` may be NULL). Returns
/// `TRA_OK` when generation ended (end-of-generation token, `max_tokens`, or the
/// callback returned nonzero), or the error of `tra_session_prompt` /
/// `tra_session_next`. The callback must not call functions on this session other
/// than `tra_session_cancel` (they are refused as busy).
#[no_mangle]
pub unsafe extern "C" fn tra_session_generate(
    s: *mut TraSession,
    utf8_text: *const c_char,
    callback: TraPieceCallback,
    user_data: *mut c_void,
) -> TraStatus {
    guard("tra_session_generate", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            // SAFETY: the caller's contract: NULL or a NUL-terminated string.
            let text = unsafe { utf8(utf8_text, "utf8_text")? };
            let cb = callback.ok_or_else(|| Fail::null("callback"))?;
            inner.start(Prompt::Text(text))?;
            while inner.fill()? {
                let token = c_token(inner.piece_token.take().unwrap_or(0));
                let len = inner.piece_text().len();
                // SAFETY: a C function pointer given by the caller, called with
                // its user_data and a NUL-terminated buffer of len + 1 bytes that
                // stays valid during the call.
                let stop =
                    unsafe { cb(user_data, inner.piece.as_ptr().cast::<c_char>(), len, token) };
                if stop != 0 {
                    inner.stream = None;
                    break;
                }
            }
            Ok(TRA_OK)
        })
    })
}

/// Ask the session to stop: a running or next `tra_session_prompt` (between prefill
/// batches), `tra_session_next` or `tra_session_generate` (between tokens) returns
/// `TRA_ERR_CANCELLED`. Callable from any thread, at any time while the session
/// exists (not after or during `tra_session_free`). A request stays pending until a
/// call sees it, then it is cleared.
#[no_mangle]
pub unsafe extern "C" fn tra_session_cancel(s: *mut TraSession) -> TraStatus {
    guard("tra_session_cancel", || {
        // SAFETY: the caller's contract: NULL or a live handle. Only `cancel` (an atomic
        // flag) is used: another thread may be inside a call holding `inner`.
        let h = unsafe { handle(s)? };
        h.cancel.cancel();
        Ok(TRA_OK)
    })
}

/// Forget the sequence (ends a running generation; the KV cache is reused, nothing is
/// freed or allocated). A pending cancellation request is kept.
#[no_mangle]
pub unsafe extern "C" fn tra_session_reset(s: *mut TraSession) -> TraStatus {
    guard("tra_session_reset", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            inner.session_mut().reset();
            Ok(TRA_OK)
        })
    })
}

/// Evaluate `n` tokens at the next positions without generating (ends a running
/// generation; its last sampled token is evaluated first). Then `tra_session_logits`
/// gives the logits after the last one. Errors: a token outside the vocabulary
/// (`TRA_ERR_INVALID_ARGUMENT`, nothing evaluated), `TRA_ERR_CONTEXT_FULL`,
/// `TRA_ERR_CANCELLED`.
#[no_mangle]
pub unsafe extern "C" fn tra_session_feed(
    s: *mut TraSession,
    ids: *const i32,
    n: usize,
) -> TraStatus {
    guard("tra_session_feed", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            // SAFETY: the caller's contract: `n` readable ids.
            let ids = checked_ids(unsafe { input(ids, n, "ids")? })?;
            inner.session_mut().feed(ids)?;
            Ok(TRA_OK)
        })
    })
}

/// The logits after the last evaluated token: `*n_out` (= the vocabulary size)
/// floats at `*logits_out`, owned by the session and valid until the next call on it
/// other than `tra_session_position` / `tra_session_save_state`. If generation left a
/// sampled token not yet evaluated (after `tra_session_next`), it is evaluated first,
/// which ends the generation. Error `TRA_ERR_INVALID_ARGUMENT` when nothing has been
/// evaluated.
#[no_mangle]
pub unsafe extern "C" fn tra_session_logits(
    s: *mut TraSession,
    logits_out: *mut *const f32,
    n_out: *mut usize,
) -> TraStatus {
    guard("tra_session_logits", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            non_null(logits_out, "logits_out")?;
            non_null(n_out, "n_out")?;
            if inner.session_ref().logits().is_none()
                && inner.session_ref().pending_token().is_some()
            {
                inner.session_mut().feed(&[])?;
            }
            let logits = inner
                .session_ref()
                .logits()
                .ok_or_else(|| Fail::arg("no logits: evaluate a token first"))?;
            // SAFETY: both outputs non-NULL and writable (caller's contract).
            unsafe {
                put(logits_out, logits.as_ptr());
                put(n_out, logits.len());
            }
            Ok(TRA_OK)
        })
    })
}

/// `*out` = positions in the KV cache (the position the next token goes to).
#[no_mangle]
pub unsafe extern "C" fn tra_session_position(s: *mut TraSession, out: *mut usize) -> TraStatus {
    guard("tra_session_position", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            non_null(out, "out")?;
            // SAFETY: out non-NULL and writable (caller's contract).
            unsafe { put(out, inner.session_ref().position()) };
            Ok(TRA_OK)
        })
    })
}

/// Save the session's state (KV cache of the used positions, tokens, last logits, a
/// token generated but not yet evaluated) as a self-checking blob, for
/// `tra_session_load_state` on a session of the same model. Does not end a running
/// generation. If `cap` is too small, nothing is written, `*len_out` is the size
/// needed and the status `TRA_ERR_BUFFER_TOO_SMALL` (`cap` 0 asks for the size;
/// `buf` must still be non-NULL). Otherwise `*len_out` is the blob's length.
#[no_mangle]
pub unsafe extern "C" fn tra_session_save_state(
    s: *mut TraSession,
    buf: *mut u8,
    cap: usize,
    len_out: *mut usize,
) -> TraStatus {
    guard("tra_session_save_state", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            non_null(buf, "buf")?;
            non_null(len_out, "len_out")?;
            let blob = inner.session_ref().save_state()?;
            // SAFETY: len_out non-NULL and writable (caller's contract).
            unsafe { put(len_out, blob.len()) };
            if blob.len() > cap {
                return Err(Fail::new(
                    TRA_ERR_BUFFER_TOO_SMALL,
                    alloc::format!("the state needs {} bytes, the buffer has {cap}", blob.len()),
                ));
            }
            // SAFETY: buf valid for `cap >= blob.len()` bytes (caller's contract);
            // blob is a fresh allocation, so they do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(blob.as_ptr(), buf, blob.len()) };
            Ok(TRA_OK)
        })
    })
}

/// Restore a state saved by `tra_session_save_state` from a session of the same model
/// file with at most this context length (ends a running generation). Every check is
/// made before anything changes: on error the session is as it was. Errors:
/// `TRA_ERR_FORMAT` (not a state, corrupted, another model or version),
/// `TRA_ERR_CONTEXT_FULL` (more positions than this context holds).
#[no_mangle]
pub unsafe extern "C" fn tra_session_load_state(
    s: *mut TraSession,
    data: *const u8,
    len: usize,
) -> TraStatus {
    guard("tra_session_load_state", || {
        // SAFETY: the caller's contract: NULL or a live handle.
        let h = unsafe { handle(s)? };
        h.with(|inner| {
            // SAFETY: the caller's contract: `len` readable bytes.
            let blob = unsafe { input(data, len, "data")? };
            inner.session_mut().load_state(blob)?;
            Ok(TRA_OK)
        })
    })
}
