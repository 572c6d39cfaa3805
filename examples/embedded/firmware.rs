//! The firmware path, with no `std`: the model is a `&'static [u8]` in flash
//! (`include_bytes!` of a 78 KB synthetic model here), the session has a fixed context
//! and runs on the caller's thread, the text goes into a fixed-size buffer, and there is
//! no file system. The heap is a fixed arena ([`Bump`]) sized at build time; the
//! [memory plan](tramontane::memory_plan) says, before the session allocates, whether
//! the session fits in what is left of it.
//!
//! This file is shared, through `#[path]`, by:
//! - `examples/embedded.rs`: runs it on the host and prints the result;
//! - `tests/embedded.rs`: checks its tokens against the std `Session` API;
//! - `cross/nostd-firmware/`: a `#![no_std]` static library with a panic handler and
//!   [`Bump`] as its global allocator, built for `thumbv7em-none-eabihf` and
//!   `aarch64-unknown-none` by `cross/check-nostd.sh`.
//!
//! It uses `core` and `alloc` only, and prints nothing.

#![allow(dead_code)] // each includer uses its own part

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

use tramontane::{GenerateOptions, MemoryPlan, Model, SamplerChain, SessionOptions, StopReason};

/// The model, in flash: Qwen2-shaped, Q4_0, vocabulary of 320 tokens (random weights).
pub static MODEL: &[u8] = include_bytes!("../../fixtures/models-synth/qwen2-q4_0.gguf");

/// Positions of the KV cache: prompt and generated tokens together.
pub const CONTEXT: usize = 64;
/// Most tokens evaluated at once while prefilling (scratch memory grows with it).
pub const BATCH: usize = 8;
/// Most tokens generated for one prompt.
pub const MAX_TOKENS: usize = 24;
/// Bytes of generated text kept (the rest is dropped, at a character boundary).
pub const TEXT_CAP: usize = 256;

/// The session's options: fixed context, one thread (the caller's), small batches.
pub fn session_options() -> SessionOptions {
    SessionOptions {
        context_len: CONTEXT,
        threads: 1,
        batch_size: BATCH,
        ..SessionOptions::default()
    }
}

/// What one generation produced, in fixed-size storage.
#[derive(Debug)]
pub struct Output {
    /// Generated text, UTF-8, `text[..text_len]`.
    pub text: [u8; TEXT_CAP],
    pub text_len: usize,
    /// Generated token ids, `tokens[..n_tokens]`.
    pub tokens: [u32; MAX_TOKENS],
    pub n_tokens: usize,
    /// Text was dropped because `text` was full.
    pub truncated: bool,
    /// Why generation stopped.
    pub stop: Option<StopReason>,
    /// What the session and the generation allocated, known before they did.
    pub plan: MemoryPlan,
}

impl Output {
    pub fn new() -> Output {
        Output {
            text: [0; TEXT_CAP],
            text_len: 0,
            tokens: [0; MAX_TOKENS],
            n_tokens: 0,
            truncated: false,
            stop: None,
            plan: MemoryPlan::default(),
        }
    }

    /// The text generated so far.
    pub fn text(&self) -> &str {
        let bytes = self.text.get(..self.text_len).unwrap_or(&[]);
        // Only whole characters are ever appended, so this never fails.
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// The token ids generated so far.
    pub fn tokens(&self) -> &[u32] {
        self.tokens.get(..self.n_tokens).unwrap_or(&[])
    }

    /// Append whole characters of `s` while they fit.
    fn push_text(&mut self, s: &str) {
        for ch in s.chars() {
            let mut utf8 = [0u8; 4];
            let piece = ch.encode_utf8(&mut utf8).as_bytes();
            let end = self.text_len + piece.len();
            match self.text.get_mut(self.text_len..end) {
                Some(dst) => {
                    dst.copy_from_slice(piece);
                    self.text_len = end;
                }
                None => {
                    self.truncated = true;
                    return;
                }
            }
        }
    }
}

/// Why the firmware did not generate.
#[derive(Debug)]
pub enum FirmwareError {
    /// The model, the session or the generation failed.
    Model(tramontane::Error),
    /// The heap has `free` bytes left and the session would need `needed`.
    HeapTooSmall { needed: usize, free: usize },
}

impl From<tramontane::Error> for FirmwareError {
    fn from(e: tramontane::Error) -> Self {
        FirmwareError::Model(e)
    }
}

/// Load the model from flash and generate greedily from `prompt` into `out`.
/// `heap_free` tells how many heap bytes are left (`None`: do not check): the memory
/// plan is compared with it before the session is created.
pub fn generate(
    model_bytes: &'static [u8],
    prompt: &str,
    heap_free: impl Fn() -> Option<usize>,
    out: &mut Output,
) -> Result<(), FirmwareError> {
    let model = Model::from_static(model_bytes)?;
    let options = session_options();
    let generate = GenerateOptions::default()
        .max_tokens(MAX_TOKENS)
        .sampler(SamplerChain::greedy());
    out.plan = tramontane::memory_plan_for(&model, &options, &generate)?;
    if let Some(free) = heap_free() {
        if out.plan.total > free {
            return Err(FirmwareError::HeapTooSmall {
                needed: out.plan.total,
                free,
            });
        }
    }
    let mut session = model.session(options)?;
    let mut stream = session.generate(prompt, generate)?;
    while let Some(piece) = stream.next() {
        let piece = piece?;
        if let Some(slot) = out.tokens.get_mut(out.n_tokens) {
            *slot = piece.token;
            out.n_tokens += 1;
        }
        out.push_text(piece.text);
    }
    out.stop = stream.stop_reason();
    Ok(())
}

/// A bump allocator over a fixed arena of `N` bytes: allocation moves a cursor, freeing
/// gives memory back only when it is the last block (enough for a firmware that creates
/// its session once). Out of memory is a null pointer, as `GlobalAlloc` asks.
pub struct Bump<const N: usize> {
    arena: UnsafeCell<[u8; N]>,
    /// Offset of the first free byte.
    next: AtomicUsize,
    /// Highest value of `next`.
    peak: AtomicUsize,
}

// SAFETY: the arena is only reached through pointers to disjoint blocks handed out by
// `alloc`, whose ranges are claimed with an atomic compare-exchange on `next`.
unsafe impl<const N: usize> Sync for Bump<N> {}

impl<const N: usize> Bump<N> {
    pub const fn new() -> Self {
        Bump {
            arena: UnsafeCell::new([0; N]),
            next: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Bytes in use (the cursor).
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// The most bytes ever in use.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes still free.
    pub fn free(&self) -> usize {
        N - self.used()
    }
}

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Default for Bump<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `alloc` hands out blocks inside the arena that never overlap (each is claimed
// by moving `next` past it atomically), aligned as `layout` asks, or null; `dealloc`
// only moves `next` back over a block that is the last one handed out.
unsafe impl<const N: usize> GlobalAlloc for Bump<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get() as *mut u8;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            // Align the address, not just the offset: the arena itself is byte-aligned.
            let addr = (base as usize).wrapping_add(cur);
            let pad = addr.wrapping_neg() & (layout.align() - 1);
            let Some(end) = cur
                .checked_add(pad)
                .and_then(|start| start.checked_add(layout.size()))
            else {
                return null_mut();
            };
            if end > N {
                return null_mut();
            }
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(end, Ordering::Relaxed);
                    // SAFETY: cur + pad <= end <= N: the pointer stays inside the arena.
                    return unsafe { base.add(cur + pad) };
                }
                Err(now) => cur = now,
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let base = self.arena.get() as *mut u8 as usize;
        let start = (ptr as usize).wrapping_sub(base);
        // The last block: give it back (its padding stays used).
        let _ = self.next.compare_exchange(
            start.wrapping_add(layout.size()),
            start,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}
