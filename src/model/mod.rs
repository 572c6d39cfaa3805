//! The transformer: configuration from GGUF metadata, weights used in place, and one
//! forward pass for every supported architecture.
//!
//! Supported architectures (`general.architecture`): `llama` (Llama 2/3, TinyLlama,
//! SmolLM, Mistral/Ministral converted to `llama`), `qwen2`, `qwen3`, `gemma3`. What
//! differs between them is data in an [`ArchSpec`]; the forward pass is written once.
//!
//! This is the low-level API (the streaming [`Session`](crate) API is built on it):
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use tramontane::model::Model;
//! let model = Model::open("model.gguf")?;
//! let mut state = model.new_state(512, 2)?;   // 512 positions, 2 threads
//! let mut logits = vec![0.0f32; model.config().n_vocab];
//! model.eval(&mut state, &[1, 15043, 3186], &mut logits)?; // prefill → last position
//! let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
//! model.eval(&mut state, &[next.unwrap_or(0) as u32], &mut logits)?; // decode one token
//! # }
//! # Ok::<(), tramontane::Error>(())
//! ```
//!
//! # Fidelity
//!
//! The arithmetic follows llama.cpp's CPU graph (without flash attention), see
//! `forward.rs`; `tests/parity.rs` compares the logits with llama.cpp's on tiny
//! synthetic models of every architecture and type, and greedy continuations on real
//! models.

mod arch;
mod config;
mod error;
mod forward;
mod kv;
mod load;
pub(crate) mod ops;
mod shift;
pub(crate) mod sizes;
mod state_io;
mod weights;

pub use arch::{
    ArchSpec, AttnScale, FfnActivation, RopeStyle, SwaRule, ARCHS, GEMMA3, LLAMA, QWEN2, QWEN3,
};
pub use config::{ModelConfig, RopeScaling};
pub use error::{ModelError, Shape};
pub use forward::{State, StateOptions, TraceFn};
pub use kv::KvType;
#[cfg(feature = "std")]
pub(crate) use state_io::WriteSink;
pub use state_io::{StateError, STATE_VERSION};
pub use weights::{LayerWeights, TensorRef, VectorRef, Weights};

use crate::backing::Backing;
use crate::gguf::Gguf;
use crate::kernels::KernelLevel;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// A loaded model: the file's bytes (mapped, static or owned), its configuration, and
/// where each tensor is. Weights are read in place; nothing is copied but the small
/// norm and bias vectors.
#[derive(Debug)]
pub struct Model {
    /// The read-ahead thread of [`Prefetch::Background`], stopped when the model is
    /// dropped. Declared first, so that it is dropped first: its thread reads the map
    /// that `gguf` owns (a `MapView`), and dropping it waits for the thread.
    #[cfg(feature = "std")]
    prefetch: Option<crate::backing::Prefetcher>,
    gguf: Gguf<Backing>,
    config: ModelConfig,
    weights: Weights,
    /// The tokenizer from `tokenizer.ggml.*`, built once at load time.
    tokenizer: Tokenizer,
    /// ggml's f16 GELU table (GELU architectures only; empty otherwise).
    gelu: ops::GeluTable,
    /// Opened with [`Prefetch::Background`]: ask for a prompt's embedding rows too.
    #[cfg(feature = "std")]
    advise_rows: bool,
}

/// [`weights::TensorRef::repack_q5_0`] for each of `part`, then the file's pages of
/// each copied matrix out of the process (see [`Backing::release`]): the bytes
/// allocated.
fn repack_all(part: &mut [&mut weights::TensorRef], backing: &Backing) -> Result<usize> {
    let mut total = 0usize;
    for m in part.iter_mut() {
        let made = m.repack_q5_0(backing)?;
        #[cfg(feature = "std")]
        if made > 0 {
            backing.release(m.range.start, m.range.len());
        }
        total = total.saturating_add(made);
    }
    Ok(total)
}

/// What [`Model`] loads from a parsed file besides keeping it.
struct Parts {
    config: ModelConfig,
    weights: Weights,
    tokenizer: Tokenizer,
    gelu: ops::GeluTable,
}

impl Parts {
    /// Read the configuration, find and check every tensor.
    fn load(gguf: &Gguf<Backing>) -> Result<Parts> {
        let n_vocab = Weights::vocab_size(gguf)?;
        let config = ModelConfig::from_gguf(gguf, n_vocab)?;
        // The tokenizer (from the header, already read) before the tensors: loading
        // copies the norm and bias vectors that are not F32, which
        // [`Prefetch::Background`] asks the disk for first when they lie outside the
        // blocks; they arrive while the tokenizer is built.
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        let weights = Weights::load(gguf, &config)?;
        let gelu = match config.arch.ffn_act {
            FfnActivation::GeluTanh => ops::GeluTable::new(),
            FfnActivation::Silu => ops::GeluTable::empty(),
        };
        Ok(Parts {
            config,
            weights,
            tokenizer,
            gelu,
        })
    }
}

/// Bytes at the start of a file asked for before it is parsed ([`Prefetch::Background`]):
/// the header of a model with a vocabulary of 262,144 tokens takes 6.5 MB.
#[cfg(feature = "std")]
const HEADER_PREFETCH: usize = 8 << 20;

/// How [`Model::open_with`] brings a mapped file into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prefetch {
    /// Nothing ahead of use: each page is read from storage when the forward pass first
    /// touches it (a page fault, which waits for the disk; the kernel reads some pages
    /// around it). The least I/O when part of the file is never used.
    None,
    /// The default. The kernel is asked (`madvise(MADV_WILLNEED)`, 128 KiB per call, no
    /// copy) for the first 8 MiB before the header is parsed; then a background thread
    /// reads the tensors in the order the first forward pass needs them: the small
    /// tensors outside the blocks, the blocks in order (each with its norms and
    /// biases), then the output head. The disk works
    /// while the tokenizer is built and the first blocks compute, instead of one page
    /// fault after the other. The same thread maps what it has read into the model's
    /// map (it reads one byte of each page), so that the forward pass does not stop for
    /// those page faults either (Qwen2.5-Coder 0.5B, open to first token with 1 thread,
    /// file in the page cache: 572 → 520 ms).
    ///
    /// How the thread reads depends on the map. Where it takes transparent huge pages
    /// (Linux, see [`Backing::map_file`]), the thread's page faults do the reading, in
    /// 2 MiB folios, which the decode then streams with one page-table entry each (a
    /// read-ahead request would fill the page cache with small folios). Otherwise it
    /// asks for the tensors with `madvise(MADV_WILLNEED)`, keeping at most 32 MiB
    /// queued so that a read the model needs at once never waits long. Either way,
    /// before a batch of several tokens, the batch's embedding rows are asked for all
    /// at once, except on huge pages when the embeddings are also the output head
    /// (asking would break up its 2 MiB folios).
    ///
    /// Costs: the whole file is read into the page cache at open, even if the model is
    /// never run (`token_embd.weight` is skipped when the output head is a separate
    /// tensor, since only the prompt's rows of it are read); one thread that ends when
    /// it has gone through the file (dropping the model stops it, waiting for at most
    /// one read). The resident set counts the file's pages as the thread maps them,
    /// before the forward pass gets to them. A no-op outside Unix, and for
    /// [`Model::from_static`] / [`Model::from_vec`].
    #[default]
    Background,
}

/// Options of [`Model::open_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Read-ahead of the mapped file (default [`Prefetch::Background`]).
    pub prefetch: Prefetch,
    /// Call [`Model::repack_weights`] once loaded (default `false`: see its memory
    /// cost).
    pub repack: bool,
}

impl LoadOptions {
    /// The defaults: [`Prefetch::Background`].
    pub fn new() -> LoadOptions {
        LoadOptions::default()
    }

    /// These options with `prefetch`.
    pub fn prefetch(mut self, prefetch: Prefetch) -> LoadOptions {
        self.prefetch = prefetch;
        self
    }

    /// These options with [`LoadOptions::repack`] set to `repack`.
    pub fn repack(mut self, repack: bool) -> LoadOptions {
        self.repack = repack;
        self
    }
}

// Many sessions on many threads share one model.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Model>();
};

impl Model {
    /// Map a GGUF file and load it, reading the tensors ahead in the background
    /// ([`Prefetch::Background`]; [`Model::open_with`] chooses).
    #[cfg(feature = "std")]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Model> {
        Model::open_with(path, LoadOptions::default())
    }

    /// Map a GGUF file and load it with `options`.
    #[cfg(feature = "std")]
    pub fn open_with(path: impl AsRef<std::path::Path>, options: LoadOptions) -> Result<Model> {
        let (bytes, file, huge) = Backing::map_file_keep(path)?;
        let background = options.prefetch == Prefetch::Background;
        if background {
            // The header (metadata with the vocabulary, tensor table) is parsed first:
            // ask for it in large reads rather than one page fault after the other.
            let head = bytes.len().min(HEADER_PREFETCH);
            let mut at = 0;
            while at < head {
                let len = crate::backing::PREFETCH_CHUNK.min(head - at);
                bytes.advise_willneed(at, len);
                at += len;
            }
        }
        let gguf = Gguf::parse(bytes)?;
        // The matrices to be repacked are read by the repack itself, then released:
        // the thread leaves them out, so that it does not map them again.
        let repack = options.repack && crate::kernels::cpu_features() == KernelLevel::Avx2;
        // Started before the tensors are looked up: loading copies the norm and bias
        // vectors that are not F32.
        // (A file no larger than the part asked for above needs no thread.)
        let prefetch = match file {
            Some(file) if background && gguf.bytes().len() > HEADER_PREFETCH => {
                // SAFETY: the map is `gguf`'s, which nothing writes. Its thread is
                // stopped and waited for before the map is dropped: `prefetch` is
                // declared after `gguf`, so it is dropped first if loading fails below;
                // afterwards the model holds both, `prefetch` in its first field.
                let view = unsafe { crate::backing::MapView::new(gguf.bytes()) };
                let order = load::read_order(&gguf, repack);
                crate::backing::Prefetcher::start(file, order, view, huge)
            }
            _ => None,
        };
        let parts = Parts::load(&gguf)?;
        let mut model = Model::assemble(gguf, parts);
        model.prefetch = prefetch;
        // Asking for the embedding rows reads them in small folios: with huge pages,
        // only where they are not also the output head, which is read whole.
        let tied = model.weights.output.range == model.weights.token_embd.range;
        model.advise_rows = background && !(huge && tied);
        if repack {
            model.repack_matrices()?;
        }
        Ok(model)
    }

    /// Load a model from bytes already in memory (a map, flash, a `Vec`).
    pub fn from_backing(bytes: Backing) -> Result<Model> {
        Model::from_gguf(Gguf::parse(bytes)?)
    }

    /// Load a model from a parsed file: read the configuration, find and check every
    /// tensor.
    pub fn from_gguf(gguf: Gguf<Backing>) -> Result<Model> {
        let parts = Parts::load(&gguf)?;
        Ok(Model::assemble(gguf, parts))
    }

    /// The model of `gguf` and the parts loaded from it.
    fn assemble(gguf: Gguf<Backing>, parts: Parts) -> Model {
        let Parts {
            config,
            weights,
            tokenizer,
            gelu,
        } = parts;
        Model {
            #[cfg(feature = "std")]
            prefetch: None,
            gguf,
            config,
            weights,
            tokenizer,
            gelu,
            #[cfg(feature = "std")]
            advise_rows: false,
        }
    }

    /// Load a model from bytes that live for the whole program (flash,
    /// `include_bytes!`); they are read in place and may be unaligned.
    pub fn from_static(bytes: &'static [u8]) -> Result<Model> {
        Model::from_backing(Backing::Static(bytes))
    }

    /// Load a model from bytes on the heap (read in place, not copied).
    pub fn from_vec(bytes: alloc::vec::Vec<u8>) -> Result<Model> {
        Model::from_backing(Backing::Owned(bytes))
    }

    /// Like [`Model::open`], reporting progress: after the file is mapped and its
    /// header and tensor table are validated, every page of the file is touched (read
    /// into memory, so the first tokens do not wait for the disk) and
    /// `progress(bytes_done, bytes_total)` is called after each 4 MiB and once at the
    /// end with `done == total`.
    #[cfg(feature = "std")]
    pub fn open_with_progress(
        path: impl AsRef<std::path::Path>,
        progress: impl FnMut(u64, u64),
    ) -> Result<Model> {
        let gguf = Gguf::parse(Backing::map_file(path)?)?;
        load::touch_pages(gguf.bytes(), progress);
        Model::from_gguf(gguf)
    }

    /// The tokenizer read from the file's `tokenizer.ggml.*` metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// A 64-bit fingerprint of the file: FNV-1a over the GGUF header, metadata and
    /// tensor table bytes, and the file size. Saved session states carry it so that a
    /// state is never loaded into another model. Costs one pass over the header
    /// (a few MB for large vocabularies).
    pub fn fingerprint(&self) -> u64 {
        load::fingerprint(&self.gguf)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tensors (positions in the file, small vectors).
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Opt-in: copy the Q5_0 matrices into a layout that the x86-64 AVX2 kernels
    /// unpack with fewer instructions ([`crate::quant::BlockQ5_0x4`]), and read the
    /// copies instead of the file in every step, decode and prefill. The outputs are
    /// the same, bit for bit. Returns the bytes allocated.
    ///
    /// Only where the kernel level in use ([`crate::kernels::cpu_features`]) is
    /// `avx2`: the Q5_0 decode matvec is bound by its instruction count there (on AMD
    /// Zen 3 it reads 60–65% of the memory bandwidth with 2 threads). Elsewhere it
    /// does nothing and returns 0, as it does for a model without Q5_0 matrices (or
    /// whose Q5_0 rows are shorter than 128 values), and when called a second time.
    ///
    /// **Memory cost:** the copies take as many bytes of memory as the Q5_0 matrices
    /// take in the file (Gemma 3 270M Q4_K_M: 42.6 MB; Qwen2.5-Coder 0.5B Q4_K_M: 172
    /// MB). For a model opened from a file on Linux, each matrix's pages of the file's
    /// map are released once it is copied (`madvise(MADV_DONTNEED)`; they stay in the
    /// page cache, shared, and are not read again), so the copies replace them in the
    /// resident set, which then grows by at most the largest matrix while this runs.
    /// Elsewhere ([`Model::from_static`], [`Model::from_vec`], other systems) the file's
    /// bytes stay and the copies come on top. It also costs one pass over those
    /// matrices now (read from storage if they are not in the page cache; Qwen's 172 MB
    /// take about 150 ms on 2 threads). A failed allocation is
    /// [`ModelError::OutOfMemory`], leaving the matrices not yet copied as they were.
    ///
    /// With [`Prefetch::Background`], the read-ahead thread is stopped first (it would
    /// map the released pages again); [`LoadOptions::repack`] repacks while it runs
    /// instead, with the repacked matrices left out of its list.
    pub fn repack_weights(&mut self) -> Result<usize> {
        if crate::kernels::cpu_features() != KernelLevel::Avx2 {
            return Ok(0);
        }
        #[cfg(feature = "std")]
        {
            self.prefetch = None;
        }
        self.repack_matrices()
    }

    /// [`Model::repack_weights`] at the `avx2` level, the read-ahead thread left as it is.
    fn repack_matrices(&mut self) -> Result<usize> {
        let bytes: &Backing = self.gguf.backing();
        let mut matrices: alloc::vec::Vec<&mut weights::TensorRef> = self
            .weights
            .matrices_mut()
            .filter(|m| m.wants_repack())
            .collect();
        // With std, the matrices are shared out over up to 4 threads (each copy is
        // written by one; the first touch of the new pages costs as much as the repack).
        // Only when there is work: a scoped thread makes std register the calling
        // thread (a 48-byte handle that a C program's main thread keeps to its end).
        #[cfg(feature = "std")]
        if matrices.len() > 1 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            let per = matrices.len().div_ceil(n.max(1)).max(1);
            let mut parts = matrices.chunks_mut(per);
            let first = parts.next();
            let results: alloc::vec::Vec<Result<usize>> = std::thread::scope(|s| {
                // The other parts on threads of their own (a thread the system refuses is
                // an error, not a panic), the first on this one meanwhile.
                let spawned: alloc::vec::Vec<_> = parts
                    .map(|part| {
                        std::thread::Builder::new()
                            .name("tramontane-repack".into())
                            .spawn_scoped(s, move || repack_all(part, bytes))
                    })
                    .collect();
                let mut out = alloc::vec![first.map_or(Ok(0), |p| repack_all(p, bytes))];
                for h in spawned {
                    out.push(match h {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            Err(ModelError::Unsupported {
                                what: alloc::string::String::from("a repacking thread panicked"),
                            }
                            .into())
                        }),
                        Err(e) => Err(crate::kernels::KernelError::ThreadPool {
                            threads: n,
                            reason: alloc::string::ToString::to_string(&e),
                        }
                        .into()),
                    });
                }
                out
            });
            let mut total = 0usize;
            for r in results {
                total = total.saturating_add(r?);
            }
            return Ok(total);
        }
        repack_all(&mut matrices, bytes)
    }

    /// The parsed file (metadata for the tokenizer, etc.).
    pub fn gguf(&self) -> &Gguf<Backing> {
        &self.gguf
    }

    /// A state for one sequence of up to `n_ctx` positions, with `threads` kernel threads
    /// and an f16 KV cache. Everything it needs is allocated here.
    pub fn new_state(&self, n_ctx: usize, threads: usize) -> Result<State> {
        let mut o = StateOptions::new(n_ctx);
        o.threads = threads;
        self.new_state_with(o)
    }

    /// A state sized by `options`.
    pub fn new_state_with(&self, options: StateOptions) -> Result<State> {
        forward::new_state(self, options)
    }

    /// Run `tokens` at the state's next positions and write logits.
    ///
    /// `logits` holds either `n_vocab` floats (the last position's logits) or
    /// `tokens.len() · n_vocab` (every position's, row after row). A prompt longer than
    /// the state's batch size is split; several calls in a row continue the sequence.
    /// Errors: no tokens, a token outside the vocabulary, a logits buffer of another
    /// length, or [`ModelError::ContextFull`] when the cache has no room (nothing is
    /// evaluated then). Allocates nothing.
    pub fn eval(&self, state: &mut State, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        self.prefetch_rows(tokens);
        forward::eval(self, state, tokens, logits)
    }

    /// With [`Prefetch::Background`], ask the kernel for the embedding rows of a batch
    /// of several tokens all at once, before the forward pass reads them one after the
    /// other (each row not yet in memory would otherwise be a page fault that waits for
    /// the disk alone). No allocation; ids outside the vocabulary are skipped (the
    /// forward pass rejects them).
    fn prefetch_rows(&self, tokens: &[u32]) {
        #[cfg(feature = "std")]
        if tokens.len() > 1 && self.advise_rows {
            let e = &self.weights.token_embd;
            for &t in tokens {
                let start = (t as usize)
                    .checked_mul(e.row_bytes)
                    .and_then(|o| o.checked_add(e.range.start));
                if let Some(start) = start.filter(|s| s.saturating_add(e.row_bytes) <= e.range.end)
                {
                    self.gguf.backing().advise_willneed(start, e.row_bytes);
                }
            }
        }
        #[cfg(not(feature = "std"))]
        let _ = tokens;
    }

    /// Run `tokens` into the KV cache without computing logits (every batch of a prompt
    /// but the last): the checks of [`Model::eval`], without the output head.
    pub fn eval_no_logits(&self, state: &mut State, tokens: &[u32]) -> Result<()> {
        self.prefetch_rows(tokens);
        forward::eval_no_logits(self, state, tokens)
    }
}
