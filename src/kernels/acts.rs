//! Activations, quantized once per matmul to the weights' partner type.

use alloc::vec;
use alloc::vec::Vec;

use core::sync::atomic::{AtomicBool, Ordering};

use super::{KernelError, Kernels, Threads};
use crate::gguf::GgmlType;
use crate::quant::{self, BlockQ8K, BlockQ8_0, BlockQ8_1};

/// Up to `max_vecs` activation vectors of up to `max_cols` values, quantized to one of
/// the activation types (Q8_0, Q8_1, Q8_K, F16, BF16, F32).
///
/// The buffer is allocated in [`Acts::new`] (4 bytes per value, enough for every
/// type); [`Acts::quantize`] never allocates. Vector `v` occupies bytes
/// `v·row_bytes .. (v+1)·row_bytes`.
#[derive(Clone, Debug)]
pub struct Acts {
    /// Storage; `u32` only to give the byte view an alignment of 4.
    buf: Vec<u32>,
    max_cols: usize,
    max_vecs: usize,
    ty: GgmlType,
    cols: usize,
    n_vecs: usize,
    row_bytes: usize,
}

impl Acts {
    /// Room for `max_vecs` vectors of up to `max_cols` values of any activation type.
    ///
    /// # Panics
    ///
    /// Like any `Vec` allocation, if `max_cols · max_vecs · 4` bytes overflow or cannot
    /// be allocated; callers size this from validated model dimensions.
    pub fn new(max_cols: usize, max_vecs: usize) -> Self {
        let words = max_cols.saturating_mul(max_vecs);
        Acts {
            buf: vec![0u32; words],
            max_cols,
            max_vecs,
            ty: GgmlType::F32,
            cols: 0,
            n_vecs: 0,
            row_bytes: 0,
        }
    }

    /// Quantize `x`, `n_vecs` vectors of `cols` values one after the other
    /// (`x.len() = n_vecs · cols`), to `ty` with ggml's reference rounding.
    ///
    /// `ty` must be an activation type and `cols` a multiple of its block size.
    pub fn quantize(&mut self, ty: GgmlType, x: &[f32], cols: usize) -> Result<(), KernelError> {
        let table = super::kernels(super::cpu_features())?;
        self.quantize_on(ty, x, cols, &Threads::single(), table)
    }

    /// [`Acts::quantize`] with the rows split across `threads` (each row is quantized
    /// alone, so the bytes are the same for any split) by `table`'s level (the same
    /// bytes at every level).
    pub(crate) fn quantize_on(
        &mut self,
        ty: GgmlType,
        x: &[f32],
        cols: usize,
        threads: &Threads,
        table: &Kernels,
    ) -> Result<(), KernelError> {
        let row_bytes = act_row_bytes(ty, cols)?;
        if cols > self.max_cols {
            return Err(KernelError::Capacity {
                what: "activation columns",
                needed: cols,
                capacity: self.max_cols,
            });
        }
        let n_vecs = if cols == 0 {
            if !x.is_empty() {
                return Err(KernelError::Length {
                    what: "activations for 0 columns",
                    expected: 0,
                    got: x.len(),
                });
            }
            0
        } else {
            if !x.len().is_multiple_of(cols) {
                return Err(KernelError::Length {
                    what: "activation values (a multiple of cols)",
                    expected: x.len() - x.len() % cols,
                    got: x.len(),
                });
            }
            x.len() / cols
        };
        if n_vecs > self.max_vecs {
            return Err(KernelError::Capacity {
                what: "activation vectors",
                needed: n_vecs,
                capacity: self.max_vecs,
            });
        }
        // Both ≤ the capacity, so this fits: row_bytes ≤ 4·cols.
        let total = row_bytes * n_vecs;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buf);
        let bytes = bytes.get_mut(..total).ok_or(KernelError::Capacity {
            what: "activation bytes",
            needed: total,
            capacity: self
                .max_cols
                .saturating_mul(self.max_vecs)
                .saturating_mul(4),
        })?;
        if cols > 0 && row_bytes > 0 {
            // Whole rows per task, about four tasks per thread; one task (one row, one
            // thread) runs inline.
            let rows = n_vecs.div_ceil(4 * threads.count()).max(1);
            let failed = AtomicBool::new(false);
            threads.for_chunks(bytes, rows * row_bytes, |start, piece| {
                let x = x.get(start / row_bytes * cols..).unwrap_or(&[]);
                for (x, dst) in x.chunks_exact(cols).zip(piece.chunks_exact_mut(row_bytes)) {
                    if table.quantize_acts(ty, x, dst).is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            });
            if failed.load(Ordering::Relaxed) {
                // The first failing row again, on this thread, for its error.
                for (x, dst) in x.chunks_exact(cols).zip(bytes.chunks_exact_mut(row_bytes)) {
                    quantize_into(ty, x, dst)?;
                }
            }
        }
        self.ty = ty;
        self.cols = cols;
        self.n_vecs = n_vecs;
        self.row_bytes = row_bytes;
        Ok(())
    }

    /// Vectors held since the last [`Acts::quantize`].
    pub fn n_vecs(&self) -> usize {
        self.n_vecs
    }

    /// Their type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Values per vector.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes per quantized vector.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The quantized bytes of vector `v`, if it exists.
    pub fn vec_bytes(&self, v: usize) -> Option<&[u8]> {
        if v >= self.n_vecs {
            return None;
        }
        let bytes: &[u8] = bytemuck::cast_slice(&self.buf);
        bytes.get(v * self.row_bytes..(v + 1) * self.row_bytes)
    }

    /// All quantized vectors, back to back.
    pub fn bytes(&self) -> &[u8] {
        let bytes: &[u8] = bytemuck::cast_slice(&self.buf);
        bytes.get(..self.n_vecs * self.row_bytes).unwrap_or(&[])
    }
}

/// Bytes of one activation row of `cols` values of `ty`, checking the type and blocks.
pub(crate) fn act_row_bytes(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
    use GgmlType as T;
    if !matches!(ty, T::Q8_0 | T::Q8_1 | T::Q8_K | T::F16 | T::BF16 | T::F32) {
        return Err(KernelError::UnsupportedType { ty });
    }
    row_bytes(ty, cols)
}

/// Bytes of a row of `cols` values of any type.
pub(crate) fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
    let bs = ty.block_size() as usize;
    if !cols.is_multiple_of(bs) {
        return Err(KernelError::NotWholeBlocks {
            ty,
            cols,
            block_size: bs,
        });
    }
    (cols / bs)
        .checked_mul(ty.block_bytes() as usize)
        .ok_or(KernelError::Overflow { what: "row bytes" })
}

/// Quantize one row into exactly `row_bytes(ty, x.len())` bytes (the portable entry
/// of [`Kernels::quantize_acts`](super::Kernels::quantize_acts)).
#[inline]
pub(crate) fn quantize_into(ty: GgmlType, x: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    use GgmlType as T;
    let (expected, got) = (x.len(), dst.len());
    let bad = |_| KernelError::Length {
        what: "activation row bytes",
        expected,
        got,
    };
    match ty {
        T::Q8_0 => {
            let y = quant::blocks_mut::<BlockQ8_0>(dst).map_err(bad)?;
            quant::quantize_acts_q8_0(x, y).map_err(|_| KernelError::UnsupportedType { ty })
        }
        T::Q8_1 => {
            let y = quant::blocks_mut::<BlockQ8_1>(dst).map_err(bad)?;
            quant::quantize_acts_q8_1(x, y).map_err(|_| KernelError::UnsupportedType { ty })
        }
        T::Q8_K => {
            let y = quant::blocks_mut::<BlockQ8K>(dst).map_err(bad)?;
            quant::quantize_row_q8_k(x, y).map_err(|_| KernelError::UnsupportedType { ty })
        }
        T::F32 => {
            for (v, d) in x.iter().zip(dst.chunks_exact_mut(4)) {
                d.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        }
        T::F16 => {
            super::ops::f32_to_f16_row(x, dst);
            Ok(())
        }
        T::BF16 => {
            super::ops::f32_to_bf16_row(x, dst);
            Ok(())
        }
        _ => Err(KernelError::UnsupportedType { ty }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{kernels, KernelLevel};

    /// Every level's activation quantization writes the portable bytes: random rows,
    /// rows of zeros, rows with ties of `a` and `−a`, for Q8_0, Q8_1 and Q8_K.
    #[test]
    fn quantize_acts_same_bytes_at_every_level() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let levels: Vec<_> = KernelLevel::ALL
            .into_iter()
            .filter_map(|l| kernels(l).ok())
            .collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
            for cols in [256usize, 512, 2048] {
                for case in 0..12 {
                    let x: Vec<f32> = (0..cols)
                        .map(|i| match case % 4 {
                            0 => 0.0,
                            1 => {
                                if next() % 2 == 0 {
                                    2.5
                                } else {
                                    -2.5
                                }
                            }
                            2 => ((next() % 255) as f32 - 127.0) * 0.5,
                            _ => ((next() % 100_001) as f32 - 50_000.0) * 1e-3 * (i % 7) as f32,
                        })
                        .collect();
                    let n = act_row_bytes(ty, cols).unwrap();
                    let mut want = vec![0u8; n];
                    quantize_into(ty, &x, &mut want).unwrap();
                    for t in &levels {
                        let mut got = vec![0xa5u8; n];
                        t.quantize_acts(ty, &x, &mut got).unwrap();
                        assert_eq!(got, want, "{:?} {ty:?} cols {cols} case {case}", t.level());
                    }
                }
            }
        }
    }
}
