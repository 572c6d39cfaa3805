//! The forward pass, written once for every architecture, and the per-session [`State`].
//!
//! One call of [`Model::eval`] runs a batch of tokens through every block: the
//! matrices are multiplied with [`crate::kernels::matmul`] (one vector per token: a
//! batch is a matmul, one token a matvec), attention is causal with grouped KV heads
//! and, on the layers the [`super::ArchSpec`] marks, a sliding window.
//!
//! Precision follows llama.cpp's CPU graph without flash attention, operation for
//! operation, so that the logits equal its own to the last bit: activations quantized
//! to the weight type's partner before each matmul (its rounding), Q rounded to the KV
//! cache type for `K·Q`, the softmax with ggml's vectorised `expf` and an f64 sum, the
//! probabilities rounded to the cache type for `KQ·V`, and every sum in llama.cpp's
//! order. llama.cpp sums a batch of tokens in other orders than a single token (its
//! tinyBLAS and repacked kernels), and so does this pass: the batch size may change the
//! last bits, the thread count never does.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::config::ModelConfig;
use super::kv::{KvCache, KvStore, KvType};
use super::ops;
use super::sizes::StateSizes;
use super::weights::{opt_values, LayerWeights, TensorRef};
use super::{FfnActivation, Model, ModelError, RopeStyle};
use crate::gguf::GgmlType;
use crate::kernels::{act_type, ops as kops, Acts, Kernels, Threads};
use crate::Result;

/// How a [`State`] is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOptions {
    /// Positions the KV cache holds (prompt + generated tokens).
    pub n_ctx: usize,
    /// Kernel threads (1 = the caller's thread only).
    pub threads: usize,
    /// KV cache element type (default f16, as llama.cpp).
    pub kv_type: KvType,
    /// Most tokens run through the network at once; longer inputs are split. Scratch
    /// memory grows linearly with it.
    pub max_batch: usize,
}

impl StateOptions {
    /// `n_ctx` positions, one thread, f16 cache, batches of up to 64 tokens.
    pub fn new(n_ctx: usize) -> StateOptions {
        StateOptions {
            n_ctx,
            threads: 1,
            kv_type: KvType::F16,
            max_batch: 64,
        }
    }
}

/// Everything one sequence needs while it runs: the KV cache, the position, and every
/// scratch buffer. Allocated once by [`Model::new_state`]; [`Model::eval`] allocates
/// nothing.
#[derive(Debug)]
pub struct State {
    n_past: usize,
    max_batch: usize,
    kv: KvCache,
    threads: Threads,
    acts: Acts,
    /// Residual stream `[max_batch][d]`.
    x: Vec<f32>,
    /// Normalized input of a matmul `[max_batch][d]`.
    xn: Vec<f32>,
    /// Queries `[max_batch][n_head·hd]`.
    q: Vec<f32>,
    /// Keys `[max_batch][n_head_kv·hd]`.
    k: Vec<f32>,
    /// Values `[max_batch][n_head_kv·hd]`.
    v: Vec<f32>,
    /// Attention output `[max_batch][n_head·hd]`.
    att: Vec<f32>,
    /// Output of `attn_output` / `ffn_down` `[max_batch][d]`.
    proj: Vec<f32>,
    /// FFN gate `[max_batch][ff]`.
    gate: Vec<f32>,
    /// FFN up `[max_batch][ff]`.
    up: Vec<f32>,
    /// One token's queries as f16 bytes `[n_head·hd·2]` (f16 cache only).
    q16: Vec<u8>,
    /// Attention scratch: `[n_head][ws_chunk(hd, n_ctx)]` for one token (output, scores,
    /// lanes per head), and for a batch one slot of `ws_batch` per thread.
    ws: Vec<f32>,
    /// The layer's cached keys over the attention span, as f32 `[n_ctx][kv]`
    /// (f16 cache only: each row is converted once per layer call, not once per query
    /// position and head; unused for one token at a level whose attention reads the
    /// f16 rows, `Kernels::attn_reads_f16`).
    kf: Vec<f32>,
    /// The same for the values; for a batch (more than one query) transposed,
    /// `[kv][t_len]` with the positions of [`v_cols`], so that `KQ·V` reads one value of
    /// consecutive positions as a contiguous row.
    vf: Vec<f32>,
    /// RoPE `(cos, sin)` of the batch's positions `[max_batch][n_rot/2]`.
    rope: Vec<(f32, f32)>,
    /// The RoPE parameters (`base`, `scale` bits) `rope` holds angles for in the current
    /// [`Model::eval`] batch, if any.
    rope_for: Option<(u32, u32)>,
    /// Shape fingerprint of the model the state was made for.
    shape: [usize; 6],
    /// Intermediate-tensor probe (debugging parity with llama.cpp), see [`State::set_trace`].
    trace: Option<TraceFn>,
}

/// A probe called with intermediate tensors of the forward pass: `(name, layer, data)`,
/// where `name` is llama.cpp's graph name (`attn_norm`, `Qcur_normed`, `kqv_out`,
/// `l_out`, …), `layer` is −1 outside the blocks, and `data` holds the batch's rows
/// (`[n_tokens][width]`, the layout of llama.cpp's tensor of that name).
pub type TraceFn = fn(&str, i32, &[f32]);

impl State {
    /// Positions already in the KV cache (the position of the next token).
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Positions the KV cache holds.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    /// Forget the sequence: the next token goes to position 0.
    pub fn clear(&mut self) {
        self.n_past = 0;
    }

    /// Drop positions `n..`: the next token goes to position `n` (no-op if `n ≥ n_past`).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// KV cache element type.
    pub fn kv_type(&self) -> KvType {
        self.kv.ty()
    }

    /// Bytes held by the KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Kernel threads.
    pub fn threads(&self) -> usize {
        self.threads.count()
    }

    /// Install (or remove) a probe that sees the intermediate tensors of every
    /// [`Model::eval`], under llama.cpp's names, to compare with llama.cpp's own
    /// (`cb_eval`) tensors when a model's outputs differ. It costs one branch per
    /// operation when unset.
    #[doc(hidden)]
    pub fn set_trace(&mut self, f: Option<TraceFn>) {
        self.trace = f;
    }
}

#[inline]
fn trace(st: &State, name: &str, il: usize, rows: usize, width: usize, buf: &[f32]) {
    if let Some(f) = st.trace {
        f(name, il as i32, buf.get(..rows * width).unwrap_or(buf));
    }
}

/// What the session layer needs (`model/state_io.rs`, `model/shift.rs`).
impl State {
    /// The KV cache.
    pub(crate) fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// The KV cache, writable (state load, context shift).
    pub(crate) fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }

    /// Set the next position (state load, context shift); at most `n_ctx`.
    pub(crate) fn set_n_past(&mut self, n: usize) {
        self.n_past = n.min(self.kv.n_ctx);
    }
}

/// [`eval`] without logits: the tokens only go into the KV cache and the output head is
/// not computed (inner chunks of a long prompt). The same checks as `eval`.
pub(crate) fn eval_no_logits(m: &Model, st: &mut State, tokens: &[u32]) -> Result<()> {
    let c = &m.config;
    if tokens.is_empty() {
        return Err(ModelError::EmptyInput.into());
    }
    if st.shape != shape_of(c) {
        return Err(ModelError::ForeignState.into());
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
        return Err(ModelError::TokenOutOfRange {
            token: bad,
            n_vocab: c.n_vocab,
        }
        .into());
    }
    if st.n_past.saturating_add(tokens.len()) > st.kv.n_ctx {
        return Err(ModelError::ContextFull {
            used: st.n_past,
            capacity: st.kv.n_ctx,
            requested: tokens.len(),
        }
        .into());
    }
    for chunk in tokens.chunks(st.max_batch) {
        forward(m, st, chunk, Out::None)?;
    }
    Ok(())
}

fn shape_of(c: &ModelConfig) -> [usize; 6] {
    [
        c.n_layer,
        c.n_embd,
        c.n_ff,
        c.q_dim(),
        c.kv_dim(),
        c.n_vocab,
    ]
}

pub(crate) fn new_state(m: &Model, o: StateOptions) -> Result<State> {
    let c = &m.config;
    // Every length below comes from `StateSizes`, which `memory_plan` adds up too.
    let s = StateSizes::new(c, &o)?;
    let kv = KvCache::new(o.kv_type, o.n_ctx, c.kv_dim(), &s);
    let threads = Threads::new(o.threads)?;
    Ok(State {
        n_past: 0,
        max_batch: s.batch,
        kv,
        threads,
        acts: Acts::new(s.act_cols, s.batch),
        x: vec![0.0; s.embd],
        xn: vec![0.0; s.embd],
        q: vec![0.0; s.q],
        k: vec![0.0; s.kv_batch],
        v: vec![0.0; s.kv_batch],
        att: vec![0.0; s.q],
        proj: vec![0.0; s.embd],
        gate: vec![0.0; s.ff],
        up: vec![0.0; s.ff],
        q16: vec![0u8; s.q16_bytes],
        ws: vec![0.0; s.ws],
        kf: vec![0.0; s.kf],
        vf: vec![0.0; s.vf],
        rope: vec![(0.0, 0.0); s.rope],
        rope_for: None,
        shape: shape_of(c),
        trace: None,
    })
}

/// Fewest logits per task of the final soft-capping (smaller pieces are not worth a
/// parallel section).
const SOFTCAP_MIN: usize = 16 * 1024;

/// Where the logits of a batch go.
enum Out<'a> {
    /// Not wanted (an inner chunk of a long prompt when only the last position is).
    None,
    /// The last position only: `n_vocab` floats.
    Last(&'a mut [f32]),
    /// Every position: `n_tokens · n_vocab` floats.
    All(&'a mut [f32]),
}

pub(crate) fn eval(m: &Model, st: &mut State, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
    let c = &m.config;
    let n = tokens.len();
    if n == 0 {
        return Err(ModelError::EmptyInput.into());
    }
    if st.shape != shape_of(c) {
        return Err(ModelError::ForeignState.into());
    }
    let nv = c.n_vocab;
    let all_len = n.saturating_mul(nv);
    let want_all = if logits.len() == all_len {
        true
    } else if logits.len() == nv {
        false
    } else {
        return Err(ModelError::LogitsBuffer {
            found: logits.len(),
            last: nv,
            all: all_len,
        }
        .into());
    };
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= nv) {
        return Err(ModelError::TokenOutOfRange {
            token: bad,
            n_vocab: nv,
        }
        .into());
    }
    if st.n_past.saturating_add(n) > st.kv.n_ctx {
        return Err(ModelError::ContextFull {
            used: st.n_past,
            capacity: st.kv.n_ctx,
            requested: n,
        }
        .into());
    }
    let mb = st.max_batch;
    let mut start = 0;
    let mut rest: &mut [f32] = logits;
    for chunk in tokens.chunks(mb) {
        let end = start + chunk.len();
        let out = if want_all {
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(chunk.len() * nv);
            rest = tail;
            Out::All(head)
        } else if end == n {
            Out::Last(core::mem::take(&mut rest))
        } else {
            Out::None
        };
        forward(m, st, chunk, out)?;
        start = end;
    }
    Ok(())
}

/// Multiply the first `n_vecs` rows of `x` by `w` into `out`, quantizing `x` unless
/// `key` says it already holds `x` in the right type.
#[allow(clippy::too_many_arguments)]
fn project(
    acts: &mut Acts,
    key: &mut Option<GgmlType>,
    x: &[f32],
    n_vecs: usize,
    w: &TensorRef,
    bytes: &[u8],
    out: &mut [f32],
    threads: &Threads,
    table: &Kernels,
) -> Result<()> {
    let ty = act_type(w.ty).ok_or(ModelError::UnsupportedTensorType {
        name: alloc::string::String::new(),
        ty: w.ty,
        reason: "no kernel",
    })?;
    let x = x.get(..n_vecs * w.cols).unwrap_or(x);
    if *key != Some(ty) {
        acts.quantize_on(ty, x, w.cols, threads, table)?;
        *key = Some(ty);
    }
    let n_out = (n_vecs * w.rows).min(out.len());
    let out = &mut out[..n_out];
    table.matmul(&w.kernel_view(bytes), acts, out, threads)?;
    Ok(())
}

/// [`project`] for matrices that share their input (`x`, quantized once): q/k/v, or
/// up/gate. One token goes through [`Kernels::matvec_multi`], one parallel section for
/// all of them; batches, or matrices with different activation types, through
/// `project` one after the other. The same results either way.
#[allow(clippy::too_many_arguments)]
fn project_multi<const N: usize>(
    acts: &mut Acts,
    key: &mut Option<GgmlType>,
    x: &[f32],
    n_vecs: usize,
    ws: [&TensorRef; N],
    bytes: &[u8],
    mut outs: [&mut [f32]; N],
    threads: &Threads,
    table: &Kernels,
) -> Result<()> {
    let ty = act_type(ws[0].ty);
    if n_vecs != 1 || N > crate::kernels::MULTI_MAX || ws.iter().any(|w| act_type(w.ty) != ty) {
        for (w, out) in ws.into_iter().zip(outs) {
            project(acts, key, x, n_vecs, w, bytes, out, threads, table)?;
        }
        return Ok(());
    }
    let ty = ty.ok_or(ModelError::UnsupportedTensorType {
        name: alloc::string::String::new(),
        ty: ws[0].ty,
        reason: "no kernel",
    })?;
    let cols = ws[0].cols;
    if *key != Some(ty) {
        acts.quantize_on(ty, x.get(..cols).unwrap_or(x), cols, threads, table)?;
        *key = Some(ty);
    }
    let views = ws.map(|w| w.kernel_view(bytes));
    for (o, w) in outs.iter_mut().zip(ws) {
        let n = w.rows.min(o.len());
        *o = &mut core::mem::take(o)[..n];
    }
    table.matvec_multi(&views, acts, &mut outs, threads)?;
    Ok(())
}

/// Fewest rows for which a per-row step of a batch is split across threads; fewer (one
/// decoded token) run on the caller's thread, without a parallel section.
const PAR_MIN_ROWS: usize = 4;

/// Rows per task of a per-row step over `n` rows: about four tasks per thread, or all
/// rows in one task (run inline) below [`PAR_MIN_ROWS`].
fn rows_per_task(threads: &Threads, n: usize) -> usize {
    if n < PAR_MIN_ROWS {
        n.max(1)
    } else {
        n.div_ceil(4 * threads.count()).max(1)
    }
}

/// `f(row index, row)` for the first `n` rows of `width` values of `buf`, the rows split
/// across the threads (every row is computed alone, so any split gives the same bits).
fn par_rows(
    threads: &Threads,
    buf: &mut [f32],
    n: usize,
    width: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if width == 0 {
        return;
    }
    let len = n.saturating_mul(width).min(buf.len());
    let per = rows_per_task(threads, n);
    threads.for_rows(&mut buf[..len], per * width, |first, piece| {
        for (i, row) in piece.chunks_exact_mut(width).enumerate() {
            f(first / width + i, row);
        }
    });
}

/// Values of a feed-forward activation's run that must stay together: the vector
/// width of [`Kernels::swiglu_row`] (whole groups of 16, then the row's tail) and the
/// batch of [`super::ops::GeluTable::geglu_with`] (64).
const FFN_ACT_ALIGN: usize = 64;

/// One token's feed-forward `gate ← act(gate · x + b_gate) · (up · x + b_up)` with the
/// normalized input in `st.xn`, through [`Kernels::matvec_pair_then`]: each task runs its
/// rows' biases and activation right after their two dot products, so the activation
/// is spread over the threads and needs no pass of its own. The same results as the
/// matmuls, the biases and the activation one after the other (everything after the dot
/// products is element-wise, and the runs keep each row's tail where it is). Returns
/// `false`, having done nothing, where `up` and `gate` take different activation types.
fn ffn_fused(m: &Model, st: &mut State, table: &Kernels, lw: &LayerWeights) -> Result<bool> {
    let (up, gate) = (&lw.ffn_up, &lw.ffn_gate);
    let Some(ty) = act_type(up.ty).filter(|&t| act_type(gate.ty) == Some(t)) else {
        return Ok(false);
    };
    if up.rows != gate.rows || up.cols != gate.cols {
        return Ok(false);
    }
    let cols = up.cols;
    let bytes = m.gguf.bytes();
    st.acts.quantize_on(
        ty,
        st.xn.get(..cols).unwrap_or(&st.xn),
        cols,
        &st.threads,
        table,
    )?;
    let n = up.rows;
    let (up_b, gate_b) = (
        opt_values(&lw.ffn_up_b, bytes),
        opt_values(&lw.ffn_gate_b, bytes),
    );
    let bias = |b: Option<&[f32]>, first: usize, x: &mut [f32]| {
        if let Some(b) = b.and_then(|b| b.get(first..first + x.len())) {
            ops::add(x, b);
        }
    };
    // (A buffer shorter than the rows fails the kernel's length check.)
    let (nu, ng) = (n.min(st.up.len()), n.min(st.gate.len()));
    let (up_out, gate_out) = (&mut st.up[..nu], &mut st.gate[..ng]);
    table.matvec_pair_then(
        [&up.kernel_view(bytes), &gate.kernel_view(bytes)],
        &st.acts,
        [up_out, gate_out],
        FFN_ACT_ALIGN,
        &st.threads,
        |first, u, g| {
            bias(up_b, first, u);
            bias(gate_b, first, g);
            ffn_activation(m, table, g, u);
        },
    )?;
    Ok(true)
}

/// `gate ← act(gate) · up` for the model's feed-forward activation (SwiGLU or GeGLU),
/// element by element over a row or a run of it (see [`FFN_ACT_ALIGN`]).
fn ffn_activation(m: &Model, table: &Kernels, gate: &mut [f32], up: &[f32]) {
    match m.config.arch.ffn_act {
        FfnActivation::Silu => table.swiglu_row(gate, up),
        FfnActivation::GeluTanh => m.gelu.geglu_with(
            |x, h| table.f32_to_f16_row(x, h),
            |h, x| table.f16_to_f32_row(h, x),
            gate,
            up,
        ),
    }
}

fn add_bias(threads: &Threads, x: &mut [f32], n_vecs: usize, width: usize, b: Option<&[f32]>) {
    if let Some(b) = b {
        par_rows(threads, x, n_vecs, width, |_, row| ops::add(row, b));
    }
}

fn norm_rows(threads: &Threads, x: &mut [f32], n_vecs: usize, width: usize, w: &[f32], eps: f32) {
    par_rows(threads, x, n_vecs, width, |_, row| {
        ops::rms_norm(row, Some(w), eps)
    });
}

/// `out` row `i` ← RMSNorm of `x` row `i` times `w`, for `n` rows of `width`.
fn norm_rows_to(
    threads: &Threads,
    out: &mut [f32],
    x: &[f32],
    n: usize,
    width: usize,
    w: &[f32],
    eps: f32,
) {
    par_rows(threads, out, n, width, |i, row| {
        if let Some(src) = x.get(i * width..(i + 1) * width) {
            ops::rms_norm_to(row, src, w, eps);
        }
    });
}

/// The residual connection of the first `n` rows: `proj ← rms_norm(proj) · w` (Gemma's
/// post-norms, if `w` is given), then `x += proj`, in one parallel section.
fn norm_add_rows(st: &mut State, w: Option<&[f32]>, n: usize, width: usize, eps: f32) {
    if width == 0 {
        return;
    }
    let per = rows_per_task(&st.threads, n);
    let len = n.saturating_mul(width);
    let (Some(x), Some(proj)) = (st.x.get_mut(..len), st.proj.get_mut(..len)) else {
        return;
    };
    st.threads.for_chunks2(
        n.div_ceil(per),
        (x, per * width),
        (proj, per * width),
        |_, x, proj| {
            for (x, p) in x.chunks_exact_mut(width).zip(proj.chunks_exact_mut(width)) {
                if let Some(w) = w {
                    ops::rms_norm(p, Some(w), eps);
                }
                ops::add(x, p);
            }
        },
    );
}

fn forward(m: &Model, st: &mut State, tokens: &[u32], out: Out<'_>) -> Result<()> {
    let c = &m.config;
    let w = &m.weights;
    let bytes = m.gguf.bytes();
    let b = tokens.len();
    let d = c.n_embd;
    let ff = c.n_ff;
    let eps = c.rms_eps;
    let n_past = st.n_past;
    st.rope_for = None;
    // The kernel table of the level in use, looked up once per call.
    let table = crate::kernels::kernels(crate::kernels::cpu_features())
        .or_else(|_| crate::kernels::kernels(crate::kernels::KernelLevel::Scalar))?;

    // Token embeddings (ggml get_rows), scaled for Gemma, rows split across threads.
    let embed = |t: usize, row: &mut [f32]| -> Result<()> {
        let tok = tokens.get(t).copied().unwrap_or(0);
        w.token_embd.dequantize_row(bytes, tok as usize, row)?;
        if let Some(s) = c.embed_scale {
            row.iter_mut().for_each(|v| *v *= s);
        }
        Ok(())
    };
    let failed = AtomicBool::new(false);
    par_rows(&st.threads, &mut st.x, b, d, |t, row| {
        if embed(t, row).is_err() {
            failed.store(true, Ordering::Relaxed);
        }
    });
    if failed.load(Ordering::Relaxed) {
        // Again on this thread, for the error.
        for (t, row) in st.x.chunks_exact_mut(d).take(b).enumerate() {
            embed(t, row)?;
        }
    }

    if st.trace.is_some() {
        trace(st, "inp_scaled", usize::MAX, b, d, &st.x);
    }
    let n_layer = w.layers.len();
    // The rows whose outputs are wanted: like llama.cpp (`inp_out_ids`), the last block
    // runs its feed-forward part on those rows only (its matmuls then sum as for that
    // many vectors), and not at all when no logits are wanted.
    let n_outputs = match out {
        Out::None => 0,
        Out::Last(_) => 1,
        Out::All(_) => b,
    };
    let mut rows_at_zero = false;
    for (il, lw) in w.layers.iter().enumerate() {
        attention_block(m, st, table, il, lw, b, n_past)?;
        let b = if il + 1 == n_layer && n_outputs < b {
            if n_outputs == 0 {
                break;
            }
            // Out::Last: the last row moves to row 0.
            st.x.copy_within((b - 1) * d..b * d, 0);
            rows_at_zero = true;
            n_outputs
        } else {
            b
        };
        trace(st, "sa_out", il, b, d, &st.x);

        // Feed-forward.
        norm_rows_to(
            &st.threads,
            &mut st.xn,
            &st.x,
            b,
            d,
            lw.ffn_norm.get(bytes),
            eps,
        );
        trace(st, "ffn_norm", il, b, d, &st.xn);
        // One token: up, gate and the activation in one parallel section.
        let fused = b == 1 && st.trace.is_none() && ffn_fused(m, st, table, lw)?;
        if !fused {
            let mut key = None;
            project_multi(
                &mut st.acts,
                &mut key,
                &st.xn,
                b,
                [&lw.ffn_up, &lw.ffn_gate],
                bytes,
                [&mut st.up, &mut st.gate],
                &st.threads,
                table,
            )?;
            add_bias(
                &st.threads,
                &mut st.up,
                b,
                ff,
                opt_values(&lw.ffn_up_b, bytes),
            );
            add_bias(
                &st.threads,
                &mut st.gate,
                b,
                ff,
                opt_values(&lw.ffn_gate_b, bytes),
            );
            trace(st, "ffn_up", il, b, ff, &st.up);
            trace(st, "ffn_gate", il, b, ff, &st.gate);
            // Row by row (ggml's tail rule is per row), rows split across threads.
            let u = &st.up[..b * ff];
            let up = |t: usize| u.get(t * ff..(t + 1) * ff).unwrap_or(&[]);
            par_rows(&st.threads, &mut st.gate, b, ff, |t, row| {
                ffn_activation(m, table, row, up(t))
            });
        }
        trace(st, "ffn_gate_par", il, b, ff, &st.gate);
        let mut key = None;
        project(
            &mut st.acts,
            &mut key,
            &st.gate,
            b,
            &lw.ffn_down,
            bytes,
            &mut st.proj,
            &st.threads,
            table,
        )?;
        add_bias(
            &st.threads,
            &mut st.proj,
            b,
            d,
            opt_values(&lw.ffn_down_b, bytes),
        );
        trace(st, "ffn_out", il, b, d, &st.proj);
        norm_add_rows(st, opt_values(&lw.post_ffn_norm, bytes), b, d, eps);
        if lw.post_ffn_norm.is_some() {
            trace(st, "ffn_post_norm", il, b, d, &st.proj);
        }
        trace(st, "l_out", il, b, d, &st.x);
    }

    // Output head: final norm and logits for the rows wanted.
    let (rows, dst) = match out {
        Out::None => {
            st.n_past += b;
            return Ok(());
        }
        Out::Last(l) if rows_at_zero => (0..1, l),
        Out::Last(l) => (b - 1..b, l),
        Out::All(l) => (0..b, l),
    };
    let n_out = rows.len();
    let x_rows = st.x.get(rows.start * d..).unwrap_or(&[]);
    norm_rows_to(
        &st.threads,
        &mut st.xn,
        x_rows,
        n_out,
        d,
        w.output_norm.get(bytes),
        eps,
    );
    trace(st, "result_norm", usize::MAX, n_out, d, &st.xn);
    let mut key = None;
    project(
        &mut st.acts,
        &mut key,
        &st.xn,
        n_out,
        &w.output,
        bytes,
        dst,
        &st.threads,
        table,
    )?;
    add_bias(
        &st.threads,
        dst,
        n_out,
        c.n_vocab,
        opt_values(&w.output_b, bytes),
    );
    if let Some(cap) = c.final_logit_softcap {
        // Element-wise, in pieces across the threads (a vocabulary of 262,144 values
        // takes a millisecond on one thread).
        let inv = 1.0 / cap;
        let piece = dst.len().div_ceil(4 * st.threads.count()).max(SOFTCAP_MIN);
        st.threads.for_rows(dst, piece, |_, part| {
            for v in part.iter_mut() {
                *v = ops::tanhf(*v * inv) * cap;
            }
        });
    }
    st.n_past += b;
    Ok(())
}

fn attention_block(
    m: &Model,
    st: &mut State,
    table: &Kernels,
    il: usize,
    lw: &LayerWeights,
    b: usize,
    n_past: usize,
) -> Result<()> {
    let c = &m.config;
    let bytes = m.gguf.bytes();
    let d = c.n_embd;
    let (qd, kvd, hd) = (c.q_dim(), c.kv_dim(), c.head_dim);
    let eps = c.rms_eps;

    norm_rows_to(
        &st.threads,
        &mut st.xn,
        &st.x,
        b,
        d,
        lw.attn_norm.get(bytes),
        eps,
    );
    trace(st, "attn_norm", il, b, d, &st.xn);
    let mut key = None;
    project_multi(
        &mut st.acts,
        &mut key,
        &st.xn,
        b,
        [&lw.wq, &lw.wk, &lw.wv],
        bytes,
        [&mut st.q, &mut st.k, &mut st.v],
        &st.threads,
        table,
    )?;
    add_bias(&st.threads, &mut st.q, b, qd, opt_values(&lw.bq, bytes));
    add_bias(&st.threads, &mut st.k, b, kvd, opt_values(&lw.bk, bytes));
    add_bias(&st.threads, &mut st.v, b, kvd, opt_values(&lw.bv, bytes));

    trace(st, "Vcur", il, b, kvd, &st.v);
    trace(st, "Qmm", il, b, qd, &st.q);
    trace(st, "Kmm", il, b, kvd, &st.k);
    // QK-norm (per head, before RoPE).
    if let Some(qn) = opt_values(&lw.q_norm, bytes) {
        norm_rows(&st.threads, &mut st.q, b * c.n_head, hd, qn, eps);
        trace(st, "Qcur_normed", il, b, qd, &st.q);
    }
    if let Some(kn) = opt_values(&lw.k_norm, bytes) {
        norm_rows(&st.threads, &mut st.k, b * c.n_head_kv, hd, kn, eps);
        trace(st, "Kcur_normed", il, b, kvd, &st.k);
    }

    // RoPE, then Gemma's query scale, then into the cache; tokens split across threads.
    let (base, scale) = c.rope_params(il);
    let neox = c.arch.rope == RopeStyle::Neox;
    let freqs = opt_values(&m.weights.rope_freqs, bytes);
    let nr = c.n_rot / 2;
    // The angles of the batch's positions, `[b][n_rot/2]`, computed once per call for
    // each set of RoPE parameters (Gemma's local and global layers have two).
    let params = (base.to_bits(), scale.to_bits());
    if nr > 0 && st.rope_for != Some(params) {
        let per = rows_per_task(&st.threads, b);
        let rope = st.rope.get_mut(..b * nr).unwrap_or(&mut []);
        st.threads.for_chunks(rope, per * nr, |first, piece| {
            for (i, cs) in piece.chunks_exact_mut(nr).enumerate() {
                let pos = n_past + first / nr + i;
                ops::rope_cache(cs, pos, c.n_rot, base, scale, freqs);
            }
        });
        st.rope_for = Some(params);
    }
    // The query scale goes with RoPE unless the probe wants the queries before it.
    let q_scale = c.q_scale.filter(|_| st.trace.is_none());
    let per = rows_per_task(&st.threads, b);
    let rope = &st.rope;
    st.threads.for_chunks2(
        b.div_ceil(per),
        (st.q.get_mut(..b * qd).unwrap_or(&mut []), per * qd),
        (st.k.get_mut(..b * kvd).unwrap_or(&mut []), per * kvd),
        |task, q, k| {
            let rows = q.chunks_exact_mut(qd).zip(k.chunks_exact_mut(kvd));
            for (i, (q, k)) in rows.enumerate() {
                let t = task * per + i;
                let cs = rope.get(t * nr..(t + 1) * nr).unwrap_or(&[]);
                for head in q.chunks_exact_mut(hd) {
                    table.rope_head(head, cs, neox);
                }
                for head in k.chunks_exact_mut(hd) {
                    table.rope_head(head, cs, neox);
                }
                if let Some(s) = q_scale {
                    q.iter_mut().for_each(|v| *v *= s);
                }
            }
        },
    );
    // Into the cache: positions n_past.. of the layer are one run of rows.
    let (from, to) = (st.kv.row(il, n_past), st.kv.row(il, n_past + b));
    let (k_rows, v_rows) = (&st.k[..b * kvd], &st.v[..b * kvd]);
    let n_tasks = b.div_ceil(per);
    fn rows_from(rows: &[f32], at: usize) -> &[f32] {
        rows.get(at..).unwrap_or(&[])
    }
    let src = |rows, task: usize| rows_from(rows, task * per * kvd);
    match (&mut st.kv.k, &mut st.kv.v) {
        (KvStore::F16(kc), KvStore::F16(vc)) => st.threads.for_chunks2(
            n_tasks,
            (
                kc.get_mut(2 * from..2 * to).unwrap_or(&mut []),
                2 * per * kvd,
            ),
            (
                vc.get_mut(2 * from..2 * to).unwrap_or(&mut []),
                2 * per * kvd,
            ),
            |task, kd, vd| {
                kops::f32_to_f16_row(src(k_rows, task), kd);
                kops::f32_to_f16_row(src(v_rows, task), vd);
            },
        ),
        (KvStore::F32(kc), KvStore::F32(vc)) => st.threads.for_chunks2(
            n_tasks,
            (kc.get_mut(from..to).unwrap_or(&mut []), per * kvd),
            (vc.get_mut(from..to).unwrap_or(&mut []), per * kvd),
            |task, kd, vd| {
                for (d, s) in kd.iter_mut().zip(src(k_rows, task)) {
                    *d = *s;
                }
                for (d, s) in vd.iter_mut().zip(src(v_rows, task)) {
                    *d = *s;
                }
            },
        ),
        (k, v) => {
            for t in 0..b {
                let at = from + t * kvd;
                k.store(at, &k_rows[t * kvd..(t + 1) * kvd]);
                v.store(at, &v_rows[t * kvd..(t + 1) * kvd]);
            }
        }
    }

    trace(st, "Qcur", il, b, qd, &st.q);
    trace(st, "Kcur", il, b, kvd, &st.k);
    // Gemma's query scale, after RoPE (llama.cpp's `ggml_scale` of Qcur), here if the
    // probe kept it apart.
    if let (Some(s), true) = (c.q_scale, q_scale.is_none()) {
        par_rows(&st.threads, &mut st.q, b, qd, |_, row| {
            row.iter_mut().for_each(|v| *v *= s)
        });
    }

    // Causal attention. With an f16 cache the keys and values of the whole span the
    // batch attends to are converted to f32 once per layer call (not once per query
    // position and head), except for one token at a level whose kernel reads the f16
    // rows directly (`Kernels::attn_reads_f16`).
    let window = if c.is_swa(il) { c.sliding_window } else { None };
    let span_lo = window.map_or(0, |w| (n_past + 1).saturating_sub(w));
    let span_hi = n_past + b; // exclusive
    let (from, to) = (st.kv.row(il, span_lo), st.kv.row(il, span_hi));
    if let (KvStore::F16(kc), KvStore::F16(vc)) = (&st.kv.k, &st.kv.v) {
        let (ks, vs) = (
            kc.get(2 * from..2 * to).unwrap_or(&[]),
            vc.get(2 * from..2 * to).unwrap_or(&[]),
        );
        let (kd, vd) = (
            st.kf.get_mut(..to - from).unwrap_or(&mut []),
            st.vf.get_mut(..to - from).unwrap_or(&mut []),
        );
        let piece = kvd * 64;
        if b > 1 {
            // The keys as rows, the values transposed (one task per group of value
            // columns).
            st.threads.for_rows(kd, piece, |at, kd| {
                let len = 2 * kd.len();
                kops::f16_to_f32_row(ks.get(2 * at..2 * at + len).unwrap_or(&[]), kd);
            });
            let (base, t_len) = v_cols(span_lo, span_hi);
            let vt = st.vf.get_mut(..kvd * t_len).unwrap_or(&mut []);
            let cols = kvd.div_ceil(4 * st.threads.count()).max(8);
            let vs = (vs, kvd, span_lo, span_hi);
            st.threads.for_rows(vt, cols * t_len, |at, vt| {
                transpose_values(vs, base, t_len, at, vt)
            });
        } else if !table.attn_reads_f16() {
            st.threads.for_chunks2(
                (to - from).div_ceil(piece.max(1)),
                (kd, piece),
                (vd, piece),
                |task, kd, vd| {
                    let at = 2 * task * piece;
                    let len = 2 * kd.len();
                    kops::f16_to_f32_row(ks.get(at..at + len).unwrap_or(&[]), kd);
                    kops::f16_to_f32_row(vs.get(at..at + len).unwrap_or(&[]), vd);
                },
            );
        }
    }
    if b > 1 {
        // One parallel section for the batch: tasks of consecutive queries.
        let span = Span {
            il,
            pos: n_past,
            window,
            span_lo,
        };
        let att = st.att.get_mut(..b * qd).unwrap_or(&mut []);
        attend_batch(
            c,
            &st.kv,
            (&st.kf, &st.vf),
            span,
            &st.q[..b * qd],
            att,
            &mut st.ws,
            &st.threads,
            table,
        );
    } else {
        // One token: its heads in parallel.
        let chunk = ws_chunk(hd, st.kv.n_ctx).unwrap_or(0);
        let q_tok = &st.q[..qd];
        if let KvStore::F16(_) = st.kv.k {
            kops::f32_to_f16_row(q_tok, &mut st.q16);
        }
        let span = Span {
            il,
            pos: n_past,
            window,
            span_lo,
        };
        attend(
            c,
            &st.kv,
            (&st.kf, &st.vf),
            span,
            q_tok,
            &st.q16,
            &mut st.ws,
            &st.threads,
            table,
        );
        for (h, dst) in st.att[..qd].chunks_exact_mut(hd).enumerate() {
            dst.copy_from_slice(&st.ws[h * chunk..h * chunk + hd]);
        }
    }

    trace(st, "kqv_out", il, b, qd, &st.att);
    let mut key = None;
    project(
        &mut st.acts,
        &mut key,
        &st.att,
        b,
        &lw.wo,
        bytes,
        &mut st.proj,
        &st.threads,
        table,
    )?;
    add_bias(&st.threads, &mut st.proj, b, d, opt_values(&lw.bo, bytes));
    trace(st, "attn_out", il, b, d, &st.proj);
    norm_add_rows(st, opt_values(&lw.post_attn_norm, bytes), b, d, eps);
    if lw.post_attn_norm.is_some() {
        trace(st, "attn_post_norm", il, b, d, &st.proj);
    }
    Ok(())
}

/// The positions of a batch's transposed values ([`State::vf`]) for the span
/// `lo..hi`: `(base, t_len)`, the span rounded out to whole blocks of 16 positions
/// (`base` a multiple of 16, what the fast `KQ·V` paths want; `t_len ≤ hi − lo +`
/// [`VT_PAD`](super::sizes::VT_PAD)). Value `c` of position `P` is at
/// `c · t_len + P − base`.
fn v_cols(lo: usize, hi: usize) -> (usize, usize) {
    let base = lo - lo % 16;
    (base, hi.div_ceil(16) * 16 - base)
}

/// Values `at / t_len ..` of the f16 cache rows `vs.0` (`vs.1` values each, positions
/// `vs.2 .. vs.3` of the layer from its first row) converted into `vt` transposed: row `c`
/// of `vt` holds value `c` of positions `base .. base + t_len`, zeros outside the span.
fn transpose_values(
    (vs, kvd, lo, hi): (&[u8], usize, usize, usize),
    base: usize,
    t_len: usize,
    at: usize,
    vt: &mut [f32],
) {
    const TILE: usize = 16;
    const COLS: usize = 64;
    let Some(c0) = at.checked_div(t_len) else {
        return;
    };
    let nc = vt.len() / t_len.max(1);
    // Tiles of 16 positions × 64 columns: each position's columns converted as one
    // piece of its row, then written down the columns.
    let mut c = 0;
    while c < nc {
        let cn = (nc - c).min(COLS);
        let mut p0 = 0;
        while p0 < t_len {
            let mut tile = [[0.0f32; COLS]; TILE];
            for (k, t) in tile.iter_mut().enumerate() {
                let pos = base + p0 + k;
                if pos < lo || pos >= hi {
                    continue;
                }
                let at = 2 * ((pos - lo) * kvd + c0 + c);
                kops::f16_to_f32_row(vs.get(at..at + 2 * cn).unwrap_or(&[]), &mut t[..cn]);
            }
            for j in 0..cn {
                let Some(dst) = vt.get_mut((c + j) * t_len + p0..) else {
                    return;
                };
                for (d, t) in dst.iter_mut().zip(&tile) {
                    *d = t[j];
                }
            }
            p0 += TILE;
        }
        c += cn;
    }
}

/// Which keys one query attends to.
#[derive(Clone, Copy)]
struct Span {
    /// Layer.
    il: usize,
    /// Position of the query.
    pos: usize,
    /// Sliding window of the layer, if any.
    window: Option<usize>,
    /// First position converted into the f32 key and value buffers.
    span_lo: usize,
}

/// Per-head attention scratch ([`crate::kernels::attn::block_len`]): output `hd`, query
/// as f32 `hd`, scores `n_ctx`, `KQ·V` lanes `64·hd`.
pub(crate) fn ws_chunk(hd: usize, n_ctx: usize) -> Option<usize> {
    crate::kernels::attn::block_len(hd, n_ctx)
}

/// Attention of one query position over the cached keys `lo..=pos` of a layer
/// (`lo = pos + 1 - window` for sliding-window layers), in llama.cpp's arithmetic
/// without flash attention: `K·Q` with Q rounded to the cache type, the scaled scores,
/// a softmax with ggml's vectorised `expf` summed in chunks of 16 (aligned on cache
/// positions) into an f64, the probabilities rounded to the cache type, and `KQ·V` as
/// one dot product per output value over the cache positions, summed in 64 lanes as
/// llama.cpp does for one token ([`attend_batch`] for a batch; the kernels are in
/// [`crate::kernels::attn`]). `kvf` holds the span's keys and
/// values as f32 (f16 cache only). Head `h` writes its output to
/// `ws[h·chunk .. h·chunk + hd]`.
#[allow(clippy::too_many_arguments)]
fn attend(
    c: &ModelConfig,
    kv: &KvCache,
    kvf: (&[f32], &[f32]),
    span: Span,
    q_tok: &[f32],
    q16: &[u8],
    ws: &mut [f32],
    threads: &Threads,
    table: &Kernels,
) {
    use crate::kernels::attn::{AttnShape, Lanes, VLayout};
    let Span {
        il,
        pos,
        window,
        span_lo,
    } = span;
    let hd = c.head_dim;
    let kvd = c.kv_dim();
    let group = c.n_head / c.n_head_kv;
    let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let n_keys = pos + 1 - lo;
    let n_ctx = kv.n_ctx;
    let Some(chunk) = ws_chunk(hd, n_ctx).filter(|&c| c > 0) else {
        return;
    };
    let kq_scale = c.kq_scale;
    let f16_cache = matches!(kv.v, KvStore::F16(_));
    let lanes = Lanes::L64;
    // Tasks of whole heads, about one per thread: the heads of a task that share a KV
    // head go through the kernel together (each key and value row is read once for
    // them). Any split gives the same result.
    let per_task = c.n_head.div_ceil(threads.count().max(1)).max(1);
    let ws = ws.get_mut(..c.n_head * chunk).unwrap_or(&mut []);
    threads.for_rows(ws, per_task * chunk, |start, piece| {
        let h_first = start / chunk;
        let n_here = piece.len() / chunk;
        // Each head's query as f32 into its block. With an f16 cache, Q was rounded to
        // f16 by the caller and is widened here.
        for (j, blk) in piece.chunks_exact_mut(chunk).enumerate() {
            let h = h_first + j;
            let dst = blk.get_mut(hd..2 * hd).unwrap_or(&mut []);
            match kv.k {
                KvStore::F16(_) => {
                    table.f16_to_f32_row(q16.get(2 * h * hd..2 * (h + 1) * hd).unwrap_or(&[]), dst)
                }
                KvStore::F32(_) => {
                    if let Some(src) = q_tok.get(h * hd..(h + 1) * hd) {
                        dst.copy_from_slice(src);
                    }
                }
            }
        }
        // Runs of heads with the same KV head.
        let mut j0 = 0;
        while j0 < n_here {
            let kvh = (h_first + j0) / group;
            let j1 = ((kvh + 1) * group - h_first).min(n_here);
            let at_conv = (lo - span_lo) * kvd + kvh * hd;
            let at_cache = kv.row(il, lo) + kvh * hd;
            let shape = AttnShape {
                heads: j1 - j0,
                hd,
                n_ctx,
                n_keys,
                first: lo,
                stride: kvd,
                lanes,
                exact: f16_cache,
                scale: kq_scale,
                values: VLayout::Rows,
            };
            let blocks = piece.get_mut(j0 * chunk..j1 * chunk).unwrap_or(&mut []);
            match (&kv.k, &kv.v) {
                (KvStore::F16(kc), KvStore::F16(vc)) if table.attn_reads_f16() => {
                    let at = 2 * at_cache;
                    let (k, v) = (kc.get(at..).unwrap_or(&[]), vc.get(at..).unwrap_or(&[]));
                    table.attn_heads_f16(&shape, k, v, blocks);
                }
                _ => {
                    let k = head_rows(&kv.k, kvf.0, at_conv, at_cache);
                    let v = head_rows(&kv.v, kvf.1, at_conv, at_cache);
                    table.attn_heads(&shape, k, v, blocks);
                }
            }
            j0 = j1;
        }
    });
}

/// Attention of the `b` queries of a batch (positions `span.pos ..`, the rows of `q`)
/// into `att`, as [`attend`] does for each (the same kernel, with the dot products
/// summed in 16 lanes as llama.cpp does for a batch). One parallel section: tasks of
/// consecutive queries, the costliest (latest, attending to the most keys) first, each
/// running all its heads, the heads that share a KV head through the kernel together.
/// A task holds one slot of `ws` (`group` scratch blocks, [`ws_batch`]) while it runs.
/// Each (query, head) is computed alone, so any split gives the same bits.
#[allow(clippy::too_many_arguments)]
fn attend_batch(
    c: &ModelConfig,
    kv: &KvCache,
    kvf: (&[f32], &[f32]),
    span: Span,
    q: &[f32],
    att: &mut [f32],
    ws: &mut [f32],
    threads: &Threads,
    table: &Kernels,
) {
    use crate::kernels::attn::{AttnShape, Lanes, VLayout};
    let Span {
        il,
        pos: pos0,
        window,
        span_lo,
    } = span;
    let (hd, qd, kvd) = (c.head_dim, c.q_dim(), c.kv_dim());
    let n_ctx = kv.n_ctx;
    let (Some(chunk), Some(group)) = (
        ws_chunk(hd, n_ctx).filter(|&c| c > 0),
        c.n_head.checked_div(c.n_head_kv),
    ) else {
        return;
    };
    if qd == 0 || group == 0 {
        return;
    }
    let f16_cache = matches!(kv.v, KvStore::F16(_));
    let b = att.len() / qd;
    // With an f16 cache the values are transposed ([`v_cols`]).
    let (base, t_len) = v_cols(span_lo, pos0 + b);
    // About sixteen tasks per thread: claimed costliest first, they even out the causal
    // work (the last query attends to b times as many keys as the first).
    let per = b.div_ceil(16 * threads.count()).max(1);
    threads.for_chunks_scratch(att, per * qd, (ws, group * chunk), |first, out, slot| {
        let t0 = first / qd;
        for (i, out) in out.chunks_exact_mut(qd).enumerate() {
            let t = t0 + i;
            let pos = pos0 + t;
            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let Some(q_tok) = q.get(t * qd..(t + 1) * qd) else {
                return;
            };
            for kvh in 0..c.n_head_kv {
                let h0 = kvh * group;
                // Each head's query as f32 into its block; with an f16 cache rounded to
                // f16 first (through the block's lane area), as for one token.
                for (j, blk) in slot.chunks_exact_mut(chunk).enumerate() {
                    let h = h0 + j;
                    let src = q_tok.get(h * hd..(h + 1) * hd).unwrap_or(&[]);
                    let Some((head, rest)) = blk.split_at_mut_checked(2 * hd) else {
                        return;
                    };
                    let dst = head.get_mut(hd..).unwrap_or(&mut []);
                    if let KvStore::F16(_) = kv.k {
                        let tmp: &mut [u8] =
                            bytemuck::cast_slice_mut(rest.get_mut(..hd).unwrap_or(&mut []));
                        table.f32_to_f16_row(src, tmp);
                        table.f16_to_f32_row(tmp.get(..2 * hd).unwrap_or(&[]), dst);
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
                let at_conv = (lo - span_lo) * kvd + kvh * hd;
                let at_cache = kv.row(il, lo) + kvh * hd;
                let shape = AttnShape {
                    heads: group,
                    hd,
                    n_ctx,
                    n_keys: pos + 1 - lo,
                    first: lo,
                    stride: kvd,
                    lanes: Lanes::L16,
                    exact: f16_cache,
                    scale: c.kq_scale,
                    values: if f16_cache {
                        VLayout::Cols {
                            stride: t_len,
                            base,
                        }
                    } else {
                        VLayout::Rows
                    },
                };
                let k = head_rows(&kv.k, kvf.0, at_conv, at_cache);
                let v = if f16_cache {
                    kvf.1.get(kvh * hd * t_len..).unwrap_or(&[])
                } else {
                    head_rows(&kv.v, kvf.1, at_conv, at_cache)
                };
                table.attn_heads(&shape, k, v, slot);
                let dst = out.get_mut(h0 * hd..(h0 + group) * hd).unwrap_or(&mut []);
                for (d, blk) in dst.chunks_exact_mut(hd).zip(slot.chunks_exact(chunk)) {
                    d.copy_from_slice(blk.get(..hd).unwrap_or(&[]));
                }
            }
        }
    });
}

/// Values of one slot of [`attend_batch`]'s scratch: a scratch block for each query head
/// of a KV head.
pub(crate) fn ws_batch(c: &ModelConfig, n_ctx: usize) -> Option<usize> {
    ws_chunk(c.head_dim, n_ctx)?.checked_mul(c.n_head.checked_div(c.n_head_kv)?)
}

/// A head's first cached row, and all after it: from `conv` (the span converted to f32)
/// at `at_conv` for an f16 cache, from the cache itself at `at_cache` for f32.
fn head_rows<'a>(
    store: &'a KvStore,
    conv: &'a [f32],
    at_conv: usize,
    at_cache: usize,
) -> &'a [f32] {
    match store {
        KvStore::F16(_) => conv.get(at_conv..).unwrap_or(&[]),
        KvStore::F32(full) => full.get(at_cache..).unwrap_or(&[]),
    }
}
