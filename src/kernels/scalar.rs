//! Portable scalar kernels: the reference every SIMD kernel is tested against, and the
//! fallback on every target.
//!
//! The integer arithmetic is ggml's (`ggml_vec_dot_*_generic` in `ggml-cpu/quants.c`);
//! the float accumulation order is this crate's (see the [module docs](super)), the one
//! every SIMD level reproduces exactly.
//!
//! Each `dot_*` takes a row of weight blocks and a row of activation blocks as bytes and
//! the number of values `n`. The caller ([`super::Kernels`]) has checked that both
//! slices hold exactly `n` values; given shorter or ragged slices these functions still
//! do not panic, they use the whole blocks present.

// Index loops mirror ggml's reference code, which makes them easy to compare.
#![allow(clippy::needless_range_loop)]

use bytemuck::Pod;

use super::{reduce32, reduce8, Kernels};
use crate::quant::{
    self, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// The scalar table.
pub(crate) static SCALAR: Kernels = Kernels::scalar();

/// View bytes as blocks; a ragged tail is ignored (never happens after validation).
#[inline(always)]
pub(crate) fn blk<B: Pod>(b: &[u8]) -> &[B] {
    let whole = b.len() - b.len() % core::mem::size_of::<B>().max(1);
    quant::blocks(&b[..whole]).unwrap_or(&[])
}

#[inline(always)]
fn f16(b: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(b).to_f32()
}

/// `a·b + c` with one rounding, as `_mm256_fmadd_ps` / `vfmaq_f32`.
#[inline(always)]
pub(crate) fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(feature = "std"))]
    {
        libm::fmaf(a, b, c)
    }
}

/// The 8 lane sums of one 32-value block: lane `k` = Σ_{i=4k}^{4k+3} `q_i·y_i`
/// (exact; the grouping of `maddubs` + `madd`, or of `sdot`).
#[inline(always)]
pub(crate) fn lane_sums(q: &[i8; 32], y: &[i8; 32]) -> [i32; 8] {
    let mut l = [0i32; 8];
    for (k, s) in l.iter_mut().enumerate() {
        for i in 4 * k..4 * k + 4 {
            *s += i32::from(q[i]) * i32::from(y[i]);
        }
    }
    l
}

/// ggml's x86 accumulation of 32-value blocks: for each block, lane `k` of the f32
/// accumulator becomes `fma(dx·dy, lane_k, acc_k)`; then [`reduce8`].
#[inline(always)]
fn lanes_fma(terms: impl Iterator<Item = (f32, [i32; 8])>) -> f32 {
    let mut acc = [0.0f32; 8];
    for (d, l) in terms {
        for (a, &v) in acc.iter_mut().zip(&l) {
            *a = fma(d, v as f32, *a);
        }
    }
    reduce8(acc)
}

/// The 32 quants of a Q4_0 block (−8..=7).
#[inline(always)]
pub(crate) fn unpack_q4_0(x: &BlockQ4_0) -> [i8; 32] {
    let mut q = [0i8; 32];
    for j in 0..16 {
        q[j] = (x.qs[j] & 0x0f) as i8 - 8;
        q[j + 16] = (x.qs[j] >> 4) as i8 - 8;
    }
    q
}

/// The 32 quants of a Q4_1 block (0..=15).
#[inline(always)]
fn unpack_q4_1(x: &BlockQ4_1) -> [i8; 32] {
    let mut q = [0i8; 32];
    for j in 0..16 {
        q[j] = (x.qs[j] & 0x0f) as i8;
        q[j + 16] = (x.qs[j] >> 4) as i8;
    }
    q
}

/// The 32 quants of a Q5_0 block (−16..=15).
#[inline(always)]
pub(crate) fn unpack_q5_0(x: &BlockQ5_0) -> [i8; 32] {
    let qh = x.qh();
    let mut q = [0i8; 32];
    for j in 0..16 {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        q[j] = ((x.qs[j] & 0x0f) | h0) as i8 - 16;
        q[j + 16] = ((x.qs[j] >> 4) | h1) as i8 - 16;
    }
    q
}

/// The 32 quants of a Q5_1 block (0..=31).
#[inline(always)]
fn unpack_q5_1(x: &BlockQ5_1) -> [i8; 32] {
    let qh = x.qh();
    let mut q = [0i8; 32];
    for j in 0..16 {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        q[j] = ((x.qs[j] & 0x0f) | h0) as i8;
        q[j + 16] = ((x.qs[j] >> 4) | h1) as i8;
    }
    q
}

/// The 32 values of an IQ4_NL block.
#[inline(always)]
fn unpack_iq4_nl(x: &BlockIQ4NL) -> [i8; 32] {
    let mut q = [0i8; 32];
    for j in 0..16 {
        q[j] = KVALUES_IQ4NL[usize::from(x.qs[j] & 0x0f)];
        q[j + 16] = KVALUES_IQ4NL[usize::from(x.qs[j] >> 4)];
    }
    q
}

// ---------------------------------------------------------------- 32-value blocks

/// q4_0 · q8_0.
pub(crate) fn dot_q4_0(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ4_0>(x), blk::<BlockQ8_0>(y));
    lanes_fma(
        x.iter()
            .zip(y)
            .map(|(x, y)| (x.d() * y.d(), lane_sums(&unpack_q4_0(x), &y.qs))),
    )
}

/// ggml's x86 q4_1 / q5_1: the lanes as for Q4_0, and `Σ mx·sy` summed apart (in
/// order), added last.
#[inline(always)]
fn lanes_fma_min(terms: impl Iterator<Item = (f32, [i32; 8], f32)>) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (d, l, m) in terms {
        summs += m;
        for (a, &v) in acc.iter_mut().zip(&l) {
            *a = fma(d, v as f32, *a);
        }
    }
    reduce8(acc) + summs
}

/// q4_1 · q8_1.
pub(crate) fn dot_q4_1(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ4_1>(x), blk::<BlockQ8_1>(y));
    lanes_fma_min(x.iter().zip(y).map(|(x, y)| {
        (
            x.d() * y.d(),
            lane_sums(&unpack_q4_1(x), &y.qs),
            x.m() * y.s(),
        )
    }))
}

/// q5_0 · q8_0.
pub(crate) fn dot_q5_0(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ5_0>(x), blk::<BlockQ8_0>(y));
    lanes_fma(
        x.iter()
            .zip(y)
            .map(|(x, y)| (x.d() * y.d(), lane_sums(&unpack_q5_0(x), &y.qs))),
    )
}

/// q5_0 · q8_0 for a row in the [`crate::kernels::WeightLayout::Q5_0x4`] layout: the
/// blocks unpacked back, then exactly [`dot_q5_0`].
pub(crate) fn dot_q5_0x4(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let y = blk::<BlockQ8_0>(y);
    lanes_fma(
        crate::quant::q5_0x4_blocks(x)
            .zip(y)
            .map(|(x, y)| (x.d() * y.d(), lane_sums(&unpack_q5_0(&x), &y.qs))),
    )
}

/// q5_1 · q8_1.
pub(crate) fn dot_q5_1(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ5_1>(x), blk::<BlockQ8_1>(y));
    lanes_fma_min(x.iter().zip(y).map(|(x, y)| {
        (
            x.d() * y.d(),
            lane_sums(&unpack_q5_1(x), &y.qs),
            x.m() * y.s(),
        )
    }))
}

/// q8_0 · q8_0.
pub(crate) fn dot_q8_0(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ8_0>(x), blk::<BlockQ8_0>(y));
    lanes_fma(
        x.iter()
            .zip(y)
            .map(|(x, y)| (x.d() * y.d(), lane_sums(&x.qs, &y.qs))),
    )
}

/// iq4_nl · q8_0.
pub(crate) fn dot_iq4_nl(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockIQ4NL>(x), blk::<BlockQ8_0>(y));
    lanes_fma(
        x.iter()
            .zip(y)
            .map(|(x, y)| (x.d() * y.d(), lane_sums(&unpack_iq4_nl(x), &y.qs))),
    )
}

// ---------------------------------------------------------------- super-blocks

/// Accumulate super-block terms sequentially.
#[inline(always)]
fn sequential(terms: impl Iterator<Item = f32>) -> f32 {
    let mut sum = 0.0f32;
    for t in terms {
        sum += t;
    }
    sum
}

/// The super-block term `d·isum − dmin·msum` in the fixed order of every level.
#[inline(always)]
pub(crate) fn k_term(d: f32, isum: i32, dmin: f32, msum: i32) -> f32 {
    let a = d * isum as f32;
    let b = dmin * msum as f32;
    a - b
}

#[inline(always)]
fn dot16(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| i32::from(*a) * i32::from(*b))
        .sum()
}

/// `Σ_j bsum_j · m_{j/2}` for the 8 mins of Q4_K / Q5_K.
#[inline(always)]
fn msum8(y: &BlockQ8K, mins: &[u8; 8]) -> i32 {
    (0..16)
        .map(|j| i32::from(y.bsum(j)) * i32::from(mins[j / 2]))
        .sum()
}

/// Scales and mins of the 8 sub-blocks of a Q4_K / Q5_K block.
#[inline(always)]
pub(crate) fn scales_mins_k4(scales: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        let (a, b) = quant_scale_min_k4(j, scales);
        sc[j] = a;
        m[j] = b;
    }
    (sc, m)
}

#[inline(always)]
fn quant_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// q2_K · q8_K.
pub(crate) fn dot_q2_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ2K>(x), blk::<BlockQ8K>(y));
    sequential(x.iter().zip(y).map(|(x, y)| {
        let msum: i32 = (0..16)
            .map(|j| i32::from(y.bsum(j)) * i32::from(x.scales[j] >> 4))
            .sum();
        let mut isum = 0i32;
        for h in 0..2 {
            let q2 = &x.qs[32 * h..32 * h + 32];
            for s in 0..4 {
                let base = 128 * h + 32 * s;
                let is = 8 * h + 2 * s;
                let mut lo = 0i32;
                let mut hi = 0i32;
                for l in 0..16 {
                    lo += i32::from(y.qs[base + l]) * i32::from((q2[l] >> (2 * s)) & 3);
                    hi += i32::from(y.qs[base + 16 + l]) * i32::from((q2[l + 16] >> (2 * s)) & 3);
                }
                isum +=
                    i32::from(x.scales[is] & 0x0f) * lo + i32::from(x.scales[is + 1] & 0x0f) * hi;
            }
        }
        k_term(y.d() * x.d(), isum, y.d() * x.dmin(), msum)
    }))
}

/// The 256 values of a Q3_K block (−4..=3).
#[inline(always)]
pub(crate) fn unpack_q3_k(x: &BlockQ3K) -> [i8; 256] {
    let mut a = [0i8; 256];
    for h in 0..2 {
        let q3 = &x.qs[32 * h..32 * h + 32];
        for s in 0..4 {
            let m = 1u8 << (4 * h + s);
            for l in 0..32 {
                let low = ((q3[l] >> (2 * s)) & 3) as i8;
                a[128 * h + 32 * s + l] = low - if x.hmask[l] & m != 0 { 0 } else { 4 };
            }
        }
    }
    a
}

/// q3_K · q8_K.
pub(crate) fn dot_q3_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ3K>(x), blk::<BlockQ8K>(y));
    sequential(x.iter().zip(y).map(|(x, y)| {
        let a = unpack_q3_k(x);
        let mut isum = 0i32;
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            isum += i32::from(x.scale(j)) * dot16(&a[r.clone()], &y.qs[r]);
        }
        k_term(x.d() * y.d(), isum, 0.0, 0)
    }))
}

/// q4_K · q8_K in the arithmetic of ggml's x86 repacked kernels
/// (`gemv/gemm_q4_K_8x8_q8_K`): exact i32 sums per pair of sub-blocks (64 values),
/// `isum` with the scales and `msum` of the block sums with the mins; two f32 sums
/// `acc = fma(isum, d·dy, acc)` and `accm = fma(msum, dmin·dy, accm)`, taken once per
/// super-block (`gemv`), or once per pair of sub-blocks with `PER_PAIR` (`gemm`); the
/// result `acc − accm`.
fn q4_k_by<const PER_PAIR: bool>(x: &[u8], y: &[u8]) -> f32 {
    let (x, y) = (blk::<BlockQ4K>(x), blk::<BlockQ8K>(y));
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in x.iter().zip(y) {
        let (sc, m) = scales_mins_k4(&x.scales);
        let (d, dmin) = (x.d() * y.d(), x.dmin() * y.d());
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..4 {
            let q4 = &x.qs[32 * j..32 * j + 32];
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += i32::from(q4[l] & 0x0f) * i32::from(y.qs[64 * j + l]);
                hi += i32::from(q4[l] >> 4) * i32::from(y.qs[64 * j + 32 + l]);
            }
            let b = |k: usize| i32::from(y.bsum(k));
            isum += i32::from(sc[2 * j]) * lo + i32::from(sc[2 * j + 1]) * hi;
            msum += i32::from(m[2 * j]) * (b(4 * j) + b(4 * j + 1))
                + i32::from(m[2 * j + 1]) * (b(4 * j + 2) + b(4 * j + 3));
            if PER_PAIR {
                acc = fma(isum as f32, d, acc);
                accm = fma(msum as f32, dmin, accm);
                (isum, msum) = (0, 0);
            }
        }
        if !PER_PAIR {
            acc = fma(isum as f32, d, acc);
            accm = fma(msum as f32, dmin, accm);
        }
    }
    acc - accm
}

/// q4_K · q8_K for one vector (ggml's repacked `gemv`), see `q4_k_by`.
pub(crate) fn dot_q4_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    q4_k_by::<false>(x, y)
}

/// q4_K · q8_K for the vectors llama.cpp's x86 repacked kernel takes 4 at a time
/// (`gemm_q4_K_8x8_q8_K`, all but the last `n mod 4` of a batch of 4 or more): one
/// fused multiply-add per pair of sub-blocks, see `q4_k_by`.
pub(crate) fn dot_q4_k_batch(x: &[u8], y: &[u8], _n: usize) -> f32 {
    q4_k_by::<true>(x, y)
}

/// [`dot_q4_k_batch`] for up to 4 vectors (the `Dot4Fn` shape of the batch kernels).
pub(crate) fn dot4_q4_k_batch(x: &[u8], ys: [&[u8]; 4], nv: usize, n: usize, out: &mut [f32; 4]) {
    for (o, y) in out.iter_mut().zip(ys).take(nv) {
        *o = dot_q4_k_batch(x, y, n);
    }
}

/// q5_K · q8_K.
pub(crate) fn dot_q5_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ5K>(x), blk::<BlockQ8K>(y));
    sequential(x.iter().zip(y).map(|(x, y)| {
        let (sc, m) = scales_mins_k4(&x.scales);
        let mut isum = 0i32;
        for j in 0..4 {
            let q4 = &x.qs[32 * j..32 * j + 32];
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                let h = x.qh[l];
                let v0 = (q4[l] & 0x0f) | (((h >> (2 * j)) & 1) << 4);
                let v1 = (q4[l] >> 4) | (((h >> (2 * j + 1)) & 1) << 4);
                lo += i32::from(v0) * i32::from(y.qs[64 * j + l]);
                hi += i32::from(v1) * i32::from(y.qs[64 * j + 32 + l]);
            }
            isum += i32::from(sc[2 * j]) * lo + i32::from(sc[2 * j + 1]) * hi;
        }
        k_term(x.d() * y.d(), isum, x.dmin() * y.d(), msum8(y, &m))
    }))
}

/// The 256 values of a Q6_K block (−32..=31).
#[inline(always)]
pub(crate) fn unpack_q6_k(x: &BlockQ6K) -> [i8; 256] {
    let mut a = [0i8; 256];
    for h in 0..2 {
        let ql = &x.ql[64 * h..64 * h + 64];
        let qh = &x.qh[32 * h..32 * h + 32];
        let a = &mut a[128 * h..128 * h + 128];
        for l in 0..32 {
            a[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// The 8 lane sums of ggml's x86 q6_K kernel for one super-block: lane `k` =
/// Σ over the 8 groups of 32 values of `scale · Σ_{i=4k}^{4k+3} q_i·y_i` (with the
/// unsigned quants `q = 0..=63` and the scale of the 16 values holding `i`), minus
/// `32·(sc[2k]·bsum[2k] + sc[2k+1]·bsum[2k+1])`.
#[inline(always)]
pub(crate) fn q6_k_lanes(x: &BlockQ6K, y: &BlockQ8K) -> [i32; 8] {
    let a = unpack_q6_k(x);
    let mut l = [0i32; 8];
    for g in 0..8 {
        for (k, s) in l.iter_mut().enumerate() {
            let sc = i32::from(x.scales[2 * g + k / 4]);
            let mut t = 0i32;
            for i in 32 * g + 4 * k..32 * g + 4 * k + 4 {
                t += (i32::from(a[i]) + 32) * i32::from(y.qs[i]);
            }
            *s += sc * t;
        }
    }
    for (k, s) in l.iter_mut().enumerate() {
        let b = i32::from(y.bsum(2 * k)) * i32::from(x.scales[2 * k])
            + i32::from(y.bsum(2 * k + 1)) * i32::from(x.scales[2 * k + 1]);
        *s -= 32 * b;
    }
    l
}

/// q6_K · q8_K, as ggml's x86 kernel: per super-block, `acc_k = fma(d·dy, lane_k,
/// acc_k)` over [`q6_k_lanes`]; then [`reduce8`].
pub(crate) fn dot_q6_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ6K>(x), blk::<BlockQ8K>(y));
    lanes_fma(
        x.iter()
            .zip(y)
            .map(|(x, y)| (x.d() * y.d(), q6_k_lanes(x, y))),
    )
}

/// q6_K · q8_K for batches of 8 or more vectors, as llama.cpp's x86 tiled K-quant
/// matmul (`ggml-cpu/tiled`) computes them: per super-block the exact i32 `isum`, then
/// `acc = fma(d·isum, dy, acc)`.
pub(crate) fn dot_q6_k_batch(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockQ6K>(x), blk::<BlockQ8K>(y));
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let a = unpack_q6_k(x);
        let mut isum = 0i32;
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            isum += i32::from(x.scales[j]) * dot16(&a[r.clone()], &y.qs[r]);
        }
        acc = fma(x.d() * isum as f32, y.d(), acc);
    }
    acc
}

/// [`dot_q6_k_batch`] for up to 4 vectors.
pub(crate) fn dot4_q6_k_batch(x: &[u8], ys: [&[u8]; 4], nv: usize, n: usize, out: &mut [f32; 4]) {
    for (o, y) in out.iter_mut().zip(ys).take(nv) {
        *o = dot_q6_k_batch(x, y, n);
    }
}

/// iq4_xs · q8_K.
pub(crate) fn dot_iq4_xs(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (x, y) = (blk::<BlockIQ4XS>(x), blk::<BlockQ8K>(y));
    sequential(x.iter().zip(y).map(|(x, y)| {
        let mut isum = 0i32;
        for ib in 0..8 {
            let qs = &x.qs[16 * ib..16 * ib + 16];
            let q8 = &y.qs[32 * ib..32 * ib + 32];
            let mut s = 0i32;
            for j in 0..16 {
                s += i32::from(KVALUES_IQ4NL[usize::from(qs[j] & 0x0f)]) * i32::from(q8[j]);
                s += i32::from(KVALUES_IQ4NL[usize::from(qs[j] >> 4)]) * i32::from(q8[j + 16]);
            }
            isum += x.scale(ib) * s;
        }
        k_term(x.d() * y.d(), isum, 0.0, 0)
    }))
}

// ---------------------------------------------------------------- float rows

/// 32-lane dot product of two rows of `N`-byte values decoded by `f`.
#[inline(always)]
fn lanes32<const N: usize>(x: &[u8], y: &[u8], f: impl Fn([u8; N]) -> f32) -> f32 {
    let mut acc = [0.0f32; 32];
    for (i, (a, b)) in x.chunks_exact(N).zip(y.chunks_exact(N)).enumerate() {
        if let (Ok(a), Ok(b)) = (<[u8; N]>::try_from(a), <[u8; N]>::try_from(b)) {
            acc[i % 32] += f(a) * f(b);
        }
    }
    reduce32(acc)
}

/// f32 · f32.
pub(crate) fn dot_f32(x: &[u8], y: &[u8], _n: usize) -> f32 {
    lanes32::<4>(x, y, f32::from_le_bytes)
}

/// f16 · f16.
pub(crate) fn dot_f16(x: &[u8], y: &[u8], _n: usize) -> f32 {
    lanes32::<2>(x, y, f16)
}

/// bf16 · bf16.
pub(crate) fn dot_bf16(x: &[u8], y: &[u8], _n: usize) -> f32 {
    lanes32::<2>(x, y, |b| {
        f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
    })
}

// ---------------------------------------------------------------- f16 rows

/// f16 → f32 for `min(src.len() / 2, dst.len())` values, exactly.
pub(crate) fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = half::f16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}

/// f32 → f16 (round to nearest even) for `min(src.len(), dst.len() / 2)` values.
pub(crate) fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(2)) {
        d.copy_from_slice(&half::f16::from_f32(*s).to_le_bytes());
    }
}

/// SwiGLU of one row, portable (see [`crate::model::ops::swiglu_row`]).
pub(crate) fn swiglu_row(gate: &mut [f32], up: &[f32]) {
    crate::model::ops::swiglu_row(gate, up);
}
