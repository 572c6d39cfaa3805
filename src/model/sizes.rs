//! The size of every buffer a [`State`](super::State) allocates, computed once from the
//! configuration and the [`StateOptions`]: `forward::new_state` allocates exactly these
//! lengths, and [`crate::memory_plan`] adds up the same numbers, so the plan and the
//! allocation cannot drift apart.
//!
//! Every product and sum is checked, and so is every buffer's byte size against
//! `isize::MAX` (the most a `Vec` can hold): an impossible size is a typed error here,
//! never a capacity-overflow panic in `vec!`.

use core::mem::size_of;

use super::config::ModelConfig;
use super::kv::KvType;
use super::{ModelError, StateOptions};

/// Element counts of a state's buffers (not bytes, except where named).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateSizes {
    /// Vectors per batch: `min(max_batch, n_ctx)`.
    pub(crate) batch: usize,
    /// Values in each of K and V: `n_layer · n_ctx · kv_dim`.
    pub(crate) kv_values: usize,
    /// Bytes of each of K and V.
    pub(crate) kv_store_bytes: usize,
    /// Widest activation row quantized before a matmul: `max(d, q_dim, n_ff)`.
    pub(crate) act_cols: usize,
    /// `[batch][d]`: x, xn and proj each.
    pub(crate) embd: usize,
    /// `[batch][q_dim]`: q and att each.
    pub(crate) q: usize,
    /// `[batch][kv_dim]`: k and v each.
    pub(crate) kv_batch: usize,
    /// `[batch][n_ff]`: gate and up each.
    pub(crate) ff: usize,
    /// Bytes of one token's queries as f16: `q_dim · 2`.
    pub(crate) q16_bytes: usize,
    /// Attention scratch: the larger of `[n_head][ws_chunk(head_dim, n_ctx)]` (one
    /// token) and, for batches, `[threads][ws_batch]` (a slot per thread).
    pub(crate) ws: usize,
    /// Cached keys of one layer as f32 `[n_ctx][kv_dim]` (f16 cache only, else 0).
    pub(crate) kf: usize,
    /// Cached values of one layer as f32, as rows `[n_ctx][kv_dim]` or transposed
    /// `[kv_dim][n_ctx + VT_PAD]` (f16 cache only, else 0).
    pub(crate) vf: usize,
    /// RoPE `(cos, sin)` pairs of a batch's positions: `batch · n_rot / 2`.
    pub(crate) rope: usize,
}

/// Extra positions of a transposed value row: the span rounded out to whole blocks of
/// 16 positions at both ends (see `forward::v_cols`).
pub(crate) const VT_PAD: usize = 32;

/// `a · b`, or the error naming `what`.
fn mul(a: usize, b: usize, what: &'static str) -> Result<usize, ModelError> {
    a.checked_mul(b).ok_or(ModelError::SessionSize { what })
}

/// Bytes of `n` values of `T`, if a `Vec<T>` can hold them.
pub(crate) fn bytes_of<T>(n: usize, what: &'static str) -> Result<usize, ModelError> {
    let bytes = mul(n, size_of::<T>(), what)?;
    if bytes > isize::MAX as usize {
        return Err(ModelError::SessionSize { what });
    }
    Ok(bytes)
}

/// Sum of byte counts, checked.
pub(crate) fn sum(parts: &[usize], what: &'static str) -> Result<usize, ModelError> {
    parts
        .iter()
        .try_fold(0usize, |acc, &p| acc.checked_add(p))
        .ok_or(ModelError::SessionSize { what })
}

impl StateSizes {
    /// The sizes for `c` and `o`; errors for a zero context or batch and for sizes that
    /// overflow.
    pub(crate) fn new(c: &ModelConfig, o: &StateOptions) -> Result<StateSizes, ModelError> {
        if o.n_ctx == 0 {
            return Err(ModelError::SessionSize { what: "n_ctx is 0" });
        }
        if o.max_batch == 0 {
            return Err(ModelError::SessionSize {
                what: "max_batch is 0",
            });
        }
        let b = o.max_batch.min(o.n_ctx);
        let q_dim = mul(c.n_head, c.head_dim, "query width")?;
        let kv_dim = mul(c.n_head_kv, c.head_dim, "key/value width")?;
        let kv_values = mul(mul(c.n_layer, o.n_ctx, "KV cache")?, kv_dim, "KV cache")?;
        let kv_store_bytes = match o.kv_type {
            KvType::F16 => bytes_of::<u16>(kv_values, "KV cache")?,
            KvType::F32 => bytes_of::<f32>(kv_values, "KV cache")?,
        };
        let act_cols = c.n_embd.max(q_dim).max(c.n_ff);
        let ws_row =
            super::forward::ws_chunk(c.head_dim, o.n_ctx).ok_or(ModelError::SessionSize {
                what: "attention scratch",
            })?;
        // A batch's attention runs one task per thread at a time, each in its own slot.
        let ws_batch = if b > 1 {
            let slot = super::forward::ws_batch(c, o.n_ctx).ok_or(ModelError::SessionSize {
                what: "attention scratch",
            })?;
            let threads = if cfg!(feature = "parallel") {
                o.threads.max(1)
            } else {
                1
            };
            mul(threads, slot, "attention scratch")?
        } else {
            0
        };
        let s = StateSizes {
            batch: b,
            kv_values,
            kv_store_bytes,
            act_cols,
            embd: mul(b, c.n_embd, "scratch buffer")?,
            q: mul(b, q_dim, "scratch buffer")?,
            kv_batch: mul(b, kv_dim, "scratch buffer")?,
            ff: mul(b, c.n_ff, "scratch buffer")?,
            q16_bytes: mul(q_dim, 2, "scratch buffer")?,
            ws: mul(c.n_head, ws_row, "attention scratch")?.max(ws_batch),
            kf: match o.kv_type {
                KvType::F16 => mul(o.n_ctx, kv_dim, "attention scratch")?,
                KvType::F32 => 0,
            },
            vf: match o.kv_type {
                KvType::F16 => mul(o.n_ctx.saturating_add(VT_PAD), kv_dim, "attention scratch")?,
                KvType::F32 => 0,
            },
            rope: mul(b, c.n_rot / 2, "scratch buffer")?,
        };
        // Every buffer's byte size must fit a Vec, and so must their sum.
        s.kv_bytes()?;
        s.scratch_bytes()?;
        Ok(s)
    }

    /// Bytes of the activation buffer the matmuls quantize into (`kernels::Acts`:
    /// `act_cols · batch` words of 4 bytes, room for any activation type).
    pub(crate) fn acts_bytes(&self) -> Result<usize, ModelError> {
        bytes_of::<u32>(
            mul(self.act_cols, self.batch, "activation buffer")?,
            "activation buffer",
        )
    }

    /// Bytes of the KV cache (K and V).
    pub(crate) fn kv_bytes(&self) -> Result<usize, ModelError> {
        sum(&[self.kv_store_bytes, self.kv_store_bytes], "KV cache")
    }

    /// Bytes of every scratch buffer (everything in the state but the KV cache).
    pub(crate) fn scratch_bytes(&self) -> Result<usize, ModelError> {
        let f = |n: usize| bytes_of::<f32>(n, "scratch buffer");
        sum(
            &[
                self.acts_bytes()?,
                f(self.embd)?, // x
                f(self.embd)?, // xn
                f(self.q)?,    // q
                f(self.kv_batch)?,
                f(self.kv_batch)?,
                f(self.q)?,    // att
                f(self.embd)?, // proj
                f(self.ff)?,   // gate
                f(self.ff)?,   // up
                bytes_of::<u8>(self.q16_bytes, "scratch buffer")?,
                f(self.ws)?,
                f(self.kf)?,
                f(self.vf)?,
                bytes_of::<(f32, f32)>(self.rope, "scratch buffer")?,
            ],
            "scratch buffers",
        )
    }
}
