//! The KV cache: keys and values of every layer for `n_ctx` positions, allocated once.

use alloc::vec;
use alloc::vec::Vec;

use super::sizes::StateSizes;

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// IEEE half precision, as llama.cpp stores it by default (`type_k = type_v = f16`).
    #[default]
    F16,
    /// Single precision (twice the memory; llama.cpp's `--cache-type-k f32`).
    F32,
}

/// Storage of one of K or V for all layers: `[layer][pos][n_head_kv · head_dim]`.
#[derive(Clone, Debug)]
pub(crate) enum KvStore {
    /// f16 as little-endian bytes (2 per value).
    F16(Vec<u8>),
    /// f32 values.
    F32(Vec<f32>),
}

/// Keys and values.
#[derive(Clone, Debug)]
pub(crate) struct KvCache {
    pub(crate) k: KvStore,
    pub(crate) v: KvStore,
    /// Positions per layer.
    pub(crate) n_ctx: usize,
    /// Values per position (`n_head_kv · head_dim`).
    pub(crate) kv_dim: usize,
}

impl KvCache {
    /// A zeroed cache of the sizes [`StateSizes`] computed (and checked): `n_ctx`
    /// positions of `kv_dim` values in every layer, `s.kv_values` values in each of K
    /// and V.
    pub(crate) fn new(ty: KvType, n_ctx: usize, kv_dim: usize, s: &StateSizes) -> KvCache {
        let store = || match ty {
            KvType::F16 => KvStore::F16(vec![0u8; s.kv_store_bytes]),
            KvType::F32 => KvStore::F32(vec![0.0f32; s.kv_values]),
        };
        KvCache {
            k: store(),
            v: store(),
            n_ctx,
            kv_dim,
        }
    }

    /// Bytes held by the cache.
    pub(crate) fn bytes(&self) -> usize {
        let one = |s: &KvStore| match s {
            KvStore::F16(b) => b.len(),
            KvStore::F32(v) => v.len() * 4,
        };
        one(&self.k) + one(&self.v)
    }

    pub(crate) fn ty(&self) -> KvType {
        match self.k {
            KvStore::F16(_) => KvType::F16,
            KvStore::F32(_) => KvType::F32,
        }
    }

    /// Index of the first value of `(layer, pos)`.
    #[inline]
    pub(crate) fn row(&self, layer: usize, pos: usize) -> usize {
        (layer * self.n_ctx + pos) * self.kv_dim
    }
}

impl KvStore {
    /// Write `x` (one position, `kv_dim` values) at value index `at`.
    pub(crate) fn store(&mut self, at: usize, x: &[f32]) {
        match self {
            KvStore::F16(b) => {
                if let Some(dst) = b.get_mut(2 * at..2 * (at + x.len())) {
                    crate::kernels::ops::f32_to_f16_row(x, dst);
                }
            }
            KvStore::F32(v) => {
                if let Some(dst) = v.get_mut(at..at + x.len()) {
                    dst.copy_from_slice(x);
                }
            }
        }
    }
}
