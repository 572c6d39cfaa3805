//! The attention kernel of [`crate::kernels::attn`] compiled with AVX2/FMA/F16C: the
//! same body as the portable entry (so the same operations in the same order, hence
//! the same bits), which the compiler vectorises with 256-bit registers here, and one
//! hand-written step, the 16-lane dot products of one key row with 4 heads' queries.
//! Reached only through the AVX2 table, which only [`super::Avx2`] hands out.
//!
//! One difference in form, none in result: the sums of exact products (f16 × f16
//! widened to f32) use the fused multiply-add instruction (`FUSE`), which gives the
//! same bits as the portable multiply-then-add because the product needs no rounding.

use core::arch::x86_64::*;

use crate::kernels::attn::{self, AttnKernels, AttnShape, Dot4x16};
use crate::kernels::scalar::fma;

/// The AVX2 entries.
pub(super) const AVX2_ATTN: AttnKernels = AttnKernels { heads };

#[target_feature(enable = "avx2,fma,f16c")]
fn heads(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]) {
    attn::heads::<true, _>(&Avx2Dot4 { _private: () }, s, k, v, ws);
}

/// [`Dot4x16`] with AVX2 registers; made only inside [`heads`], an AVX2 entry.
struct Avx2Dot4 {
    _private: (),
}

impl Dot4x16 for Avx2Dot4 {
    #[inline(always)]
    fn dot4(&self, _exact: bool, x: &[f32], y: [&[f32]; 4]) -> [f32; 4] {
        // Exact or not, every step is a fused multiply-add here (see the module docs).
        // SAFETY: an `Avx2Dot4` exists only inside `heads`, which runs only on a CPU
        // with AVX2, FMA and F16C (it is reached through the AVX2 table alone).
        unsafe { dot4x16(x, y) }
    }
}

/// 8 f32 at `a[at..at + 8]` (the caller checked `at + 8 ≤ a.len()`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8(a: &[f32], at: usize) -> __m256 {
    match a.get(at..at + 8) {
        // SAFETY: 8 readable f32; `loadu` has no alignment requirement.
        Some(s) => unsafe { _mm256_loadu_ps(s.as_ptr()) },
        None => _mm256_setzero_ps(),
    }
}

/// `Σ x_i·y_{j,i}` for the 4 rows `y_j` in 16 lanes (`lane = i mod 16`, a fused
/// multiply-add per value in index order), each reduced by `attn::reduce_lanes`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot4x16(x: &[f32], y: [&[f32]; 4]) -> [f32; 4] {
    let n = x.len();
    if y.iter().any(|r| r.len() < n) {
        return [0.0; 4];
    }
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    let full = n - n % 16;
    let mut i = 0;
    while i < full {
        let (x0, x1) = (load8(x, i), load8(x, i + 8));
        for j in 0..4 {
            lo[j] = _mm256_fmadd_ps(x0, load8(y[j], i), lo[j]);
            hi[j] = _mm256_fmadd_ps(x1, load8(y[j], i + 8), hi[j]);
        }
        i += 16;
    }
    core::array::from_fn(|j| {
        let mut acc = [0.0f32; 16];
        if let Some(a) = acc.get_mut(..8) {
            // SAFETY: `a` has room for 8 f32; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_ps(a.as_mut_ptr(), lo[j]) };
        }
        if let Some(a) = acc.get_mut(8..) {
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(a.as_mut_ptr(), hi[j]) };
        }
        for (t, a) in acc.iter_mut().enumerate().take(n - full) {
            let (p, q) = (x.get(full + t), y[j].get(full + t));
            if let (Some(&p), Some(&q)) = (p, q) {
                *a = fma(p, q, *a);
            }
        }
        attn::reduce_lanes(&acc)
    })
}
