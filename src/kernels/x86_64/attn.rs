//! The attention kernel of [`crate::kernels::attn`] compiled with AVX2/FMA/F16C and with
//! AVX-512: the same body as the portable entry (so the same operations in the same
//! order, hence the same bits), which the compiler vectorises here, and hand-written
//! steps. AVX2: the 16-lane dot products of one key row with 4 heads' queries.
//! AVX-512: also those of 4 key rows at once, one register per (key, head), with their
//! reductions done 16 at a time; and one lane of `KQ·V` for 64 values of up to 4 heads
//! in 16 registers. Reached only through the AVX2 and AVX-512 tables, which only
//! [`super::Avx2`] hands out.
//!
//! One difference in form, none in result: the sums of exact products (f16 × f16
//! widened to f32) use the fused multiply-add instruction (`FUSE`), which gives the
//! same bits as the portable multiply-then-add because the product needs no rounding.

use core::arch::x86_64::*;

use crate::kernels::attn::{self, AttnKernels, AttnShape, Dot4x16, LaneRows};
use crate::kernels::scalar::fma;

/// The AVX2 entries.
pub(super) const AVX2_ATTN: AttnKernels = AttnKernels { heads };

/// The AVX-512 entries: [`AVX2_ATTN`] with the `K·Q` of 4 keys × 4 heads in 512-bit
/// registers ([`dot4x4_zmm`]); same bits.
pub(super) const ZMM_ATTN: AttnKernels = AttnKernels { heads: heads_zmm };

#[target_feature(enable = "avx2,fma,f16c")]
fn heads(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]) {
    attn::heads::<true, _>(&Avx2Dot4 { _private: () }, s, k, v, ws);
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
fn heads_zmm(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]) {
    attn::heads::<true, _>(&ZmmDot4 { _private: () }, s, k, v, ws);
}

/// [`Dot4x16`] with AVX-512 registers for 4 keys at once; made only inside
/// [`heads_zmm`], an AVX-512 entry.
struct ZmmDot4 {
    _private: (),
}

impl Dot4x16 for ZmmDot4 {
    const WIDE: bool = true;

    #[inline(always)]
    fn dot4(&self, _exact: bool, x: &[f32], y: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: a `ZmmDot4` exists only inside `heads_zmm`, which runs only on a CPU
        // with AVX-512 F/VL, AVX2, FMA and F16C (the AVX-512 table alone reaches it).
        unsafe { dot4x16(x, y) }
    }

    #[inline(always)]
    fn dot4x4(&self, _exact: bool, x: [&[f32]; 4], y: [&[f32]; 4]) -> [[f32; 4]; 4] {
        // SAFETY: as for `dot4`.
        unsafe { dot4x4_zmm(x, y) }
    }

    #[inline(always)]
    fn lane_sums<const H: usize, const W: usize, const EXACT: bool, const FUSE: bool>(
        &self,
        p: [&[f32]; H],
        rows: LaneRows<'_>,
    ) -> Option<[[f32; W]; H]> {
        // Every step here is a fused multiply-add (`FUSE`: the AVX2 body's form too).
        if FUSE && (W == 16 || W == 64) {
            // SAFETY: as for `dot4`.
            unsafe { lane_sums_zmm::<H, W>(p, rows) }
        } else {
            attn::lane_sums::<H, W, EXACT, FUSE>(p, rows)
        }
    }
}

/// [`Dot4x16::lane_sums`] for `W` = 16 or 64 (one or four registers per head), every
/// step a fused multiply-add: `acc = fma(p, v, acc)` per row, in row order.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
#[inline]
fn lane_sums_zmm<const H: usize, const W: usize>(
    p: [&[f32]; H],
    rows: LaneRows<'_>,
) -> Option<[[f32; W]; H]> {
    let n = p.first().map_or(0, |p| p.len());
    let mut ps: [&[f32]; H] = [&[]; H];
    for (d, p) in ps.iter_mut().zip(p) {
        *d = p.get(..n)?;
    }
    let nc = W / 16;
    let mut acc = [[_mm512_setzero_ps(); 4]; H];
    let mut i = rows.first;
    while i < n {
        let r: &[f32; W] = rows.row(i)?;
        let x: [__m512; 4] = core::array::from_fn(|c| {
            if c < nc {
                load16(r, 16 * c)
            } else {
                _mm512_setzero_ps()
            }
        });
        for (a, p) in acc.iter_mut().zip(&ps) {
            let pv = _mm512_set1_ps(p.get(i).copied().unwrap_or(0.0));
            for c in 0..nc {
                a[c] = _mm512_fmadd_ps(pv, x[c], a[c]);
            }
        }
        i += rows.step;
    }
    let mut out = [[0.0f32; W]; H];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (c, a) in a.iter().enumerate().take(nc) {
            if let Some(d) = o.get_mut(16 * c..16 * c + 16) {
                // SAFETY: `d` has room for 16 f32; `storeu` has no alignment requirement.
                unsafe { _mm512_storeu_ps(d.as_mut_ptr(), *a) };
            }
        }
    }
    Some(out)
}

/// 16 f32 of `a` from `at`; fewer if the slice ends first, the rest zeros.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
#[inline]
fn load16(a: &[f32], at: usize) -> __m512 {
    match a.get(at..at + 16) {
        // SAFETY: 16 readable f32; `loadu` has no alignment requirement.
        Some(s) => unsafe { _mm512_loadu_ps(s.as_ptr()) },
        None => {
            let mut t = [0.0f32; 16];
            let rest = a.get(at..).unwrap_or(&[]);
            for (d, s) in t.iter_mut().zip(rest) {
                *d = *s;
            }
            // SAFETY: `t` holds 16 f32.
            unsafe { _mm512_loadu_ps(t.as_ptr()) }
        }
    }
}

/// `Σ x_{k,i}·y_{j,i}` for 4 rows `x_k` (keys) and 4 rows `y_j` (heads' queries) in 16
/// lanes, `[k][j]`: each sum exactly as [`dot4x16`] gives it (a fused multiply-add per
/// value in index order in lane `i mod 16`, then `attn::reduce_lanes`). The 16 lane
/// sets are one register each; their reductions run together, 16 at a time: `lo + hi`
/// (reduce16), then reduce8 ([`super::tiles::reduce8_sets`]).
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
#[inline]
fn dot4x4_zmm(x: [&[f32]; 4], y: [&[f32]; 4]) -> [[f32; 4]; 4] {
    let n = y[0].len();
    if x.iter().chain(&y).any(|r| r.len() < n) {
        return [[0.0; 4]; 4];
    }
    // acc[4j + k]: head j, key k.
    let mut acc = [_mm512_setzero_ps(); 16];
    let full = n - n % 16;
    let mut i = 0;
    while i < full {
        let kx: [__m512; 4] = core::array::from_fn(|k| load16(x[k], i));
        for j in 0..4 {
            let q = load16(y[j], i);
            for k in 0..4 {
                acc[4 * j + k] = _mm512_fmadd_ps(kx[k], q, acc[4 * j + k]);
            }
        }
        i += 16;
    }
    if full < n {
        // The tail: lanes past it keep their sums (`mask3` leaves them as they are).
        let m: __mmask16 = (1u16 << (n - full)) - 1;
        let kx: [__m512; 4] = core::array::from_fn(|k| load16(x[k].get(..n).unwrap_or(&[]), full));
        for j in 0..4 {
            let q = load16(y[j].get(..n).unwrap_or(&[]), full);
            for k in 0..4 {
                acc[4 * j + k] = _mm512_mask3_fmadd_ps(kx[k], q, acc[4 * j + k], m);
            }
        }
    }
    // reduce16: lanes 0..8 + lanes 8..16, two sets per register.
    let c: [__m512; 8] = core::array::from_fn(|p| {
        let (a, b) = (acc[2 * p], acc[2 * p + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xee>(a, b),
        )
    });
    // reduce8 of the 16 sets: set `h` of `c[p]` (acc[2p + h], key `k`, head `j` with
    // 2p + h = 4j + k) ends in lane 8·(p mod 2) + 4h + p/2 = 4k + j.
    let r = super::tiles::reduce8_sets(c);
    // So 128-bit lane `k` of `r` holds key `k`'s sums for heads 0..4: the `[key][head]`
    // array.
    let mut out = [[0.0f32; 4]; 4];
    // SAFETY: `out` is 16 contiguous f32; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr().cast(), r) };
    out
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
