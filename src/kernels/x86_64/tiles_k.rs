//! Prefill tile for Q4_K against Q8_K: 8 weight rows × up to 8 activation vectors per
//! call, with one weight **row per 32-bit lane**.
//!
//! The arithmetic is that of ggml's repacked x86 Q4_K kernels, as
//! [`crate::kernels::scalar::dot_q4_k_batch`] (vectors of whole groups of 4) and
//! [`crate::kernels::scalar::dot_q4_k`] (the last `nv mod 4` vectors) write it: per pair
//! `j` of sub-blocks an exact i32 `isum_j = sc_2j·Σlo + sc_2j+1·Σhi` and `msum_j`, then
//! `acc = fma(isum, d·dy, acc)`, `accm = fma(msum, dmin·dy, accm)` (per pair in the batch
//! arithmetic, per super-block of summed pairs for the rest), result `acc − accm`.
//!
//! What changes is only how the integers are formed. Each super-block of the 8 rows is
//! interleaved once per call into registers where lane `r` holds 4 quant bytes of row
//! `r` (an 8 × 8 transpose of 32-bit words), so one multiply of those against 4
//! activation bytes broadcast to all lanes gives 8 rows' 4-product sums at once. The
//! scales, mins, `d` and `dmin` are per-row vectors too, so the whole float tail
//! (conversion, `d·dy`, the fused multiply-adds) runs 8 rows wide, where the 1-row
//! kernel reduced each row's lanes horizontally and did the multiply-adds one by one.
//! ggml gets the same layout by repacking the weights at load time; here the repacking
//! is done in registers per tile and amortised over the vectors, so the weights stay
//! memory-mapped and nothing is copied.

use core::arch::x86_64::*;

use super::avx2::{f16, k4_scales, load16, load32};
use super::tiles::{HALF, ROWS, TILE};
use crate::kernels::scalar::blk;
use crate::quant::{BlockQ4K, BlockQ8K};

/// Super-block `i` of 8 rows, one row per 32-bit lane.
struct Group {
    /// `q[8j + g]`, lane `r`: bytes `4g..4g+4` of pair `j` of row `r` (low nibbles:
    /// sub-block `2j`, high nibbles: sub-block `2j + 1`).
    q: [__m256i; 32],
    /// `sc[k]`, lane `r`: row `r`'s scale of sub-block `k` (i32).
    sc: [__m256i; 8],
    /// `mins[j]`, lane `r`: row `r`'s mins of sub-blocks `2j` and `2j + 1` as an i16
    /// pair (for `madd` against the matching pair of activation block sums).
    mins: [__m256i; 4],
    /// Lane `r`: row `r`'s `d` and `dmin` as f32 (exact).
    d: __m256,
    dmin: __m256,
}

/// An all-zero super-block, for rows shorter than the tile (never read by callers, who
/// pass rows of equal length).
const ZERO_Q4K: BlockQ4K = BlockQ4K {
    d: [0; 2],
    dmin: [0; 2],
    scales: [0; 12],
    qs: [0; 128],
};

/// 8 × 8 transpose of 32-bit words: `out[g]` lane `r` = `rows[r]` lane `g`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn transpose8(rows: [__m256i; 8]) -> [__m256i; 8] {
    let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
    // [r0g0 r1g0 r0g1 r1g1 | r0g4 r1g4 r0g5 r1g5], [.. g2 g3 | .. g6 g7]
    let t0 = _mm256_unpacklo_epi32(r0, r1);
    let t1 = _mm256_unpackhi_epi32(r0, r1);
    let t2 = _mm256_unpacklo_epi32(r2, r3);
    let t3 = _mm256_unpackhi_epi32(r2, r3);
    let t4 = _mm256_unpacklo_epi32(r4, r5);
    let t5 = _mm256_unpackhi_epi32(r4, r5);
    let t6 = _mm256_unpacklo_epi32(r6, r7);
    let t7 = _mm256_unpackhi_epi32(r6, r7);
    // [r0..r3 g0 | r0..r3 g4], g1|g5, g2|g6, g3|g7 (and rows 4..7)
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// Interleave super-block `i` of the 8 rows into `gr`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn build(xs: &[&[BlockQ4K]; HALF], i: usize, gr: &mut Group) {
    let mut sc = [[0i32; HALF]; 8];
    let mut mins = [[0i32; HALF]; 4];
    let mut d = [0.0f32; HALF];
    let mut dmin = [0.0f32; HALF];
    let mut rows = [&ZERO_Q4K; HALF];
    for (r, x) in xs.iter().enumerate() {
        let x = x.get(i).unwrap_or(&ZERO_Q4K);
        rows[r] = x;
        let sm = k4_scales(&x.scales);
        for k in 0..8 {
            sc[k][r] = i32::from(sm[k]);
        }
        for j in 0..4 {
            mins[j][r] = i32::from(sm[8 + 2 * j]) | (i32::from(sm[8 + 2 * j + 1]) << 16);
        }
        d[r] = f16(x.d);
        dmin[r] = f16(x.dmin);
    }
    for j in 0..4 {
        let t = transpose8(core::array::from_fn(|r| load32(&rows[r].qs, 32 * j)));
        gr.q[8 * j..8 * j + 8].copy_from_slice(&t);
    }
    for (dst, src) in gr.sc.iter_mut().zip(&sc) {
        *dst = load32(src, 0);
    }
    for (dst, src) in gr.mins.iter_mut().zip(&mins) {
        *dst = load32(src, 0);
    }
    gr.d = _mm256_castsi256_ps(load32(&d, 0));
    gr.dmin = _mm256_castsi256_ps(load32(&dmin, 0));
}

/// Activation bytes `4k..4k+4` of a Q8_K block as one i32 (to broadcast).
#[inline(always)]
pub(super) fn y4(y: &BlockQ8K, k: usize) -> i32 {
    let w: &[[u8; 4]; 64] = bytemuck::cast_ref(&y.qs);
    i32::from_le_bytes(w[k & 63])
}

/// The pair sums of a Q8_K block's 16 block sums, as i16 pairs: i32 `j` holds
/// `(bsum_4j + bsum_4j+1, bsum_4j+2 + bsum_4j+3)` (|each| ≤ 2·16·128, no wrap).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bsum_pairs(y: &BlockQ8K) -> [i32; 4] {
    let h = _mm_hadd_epi16(load16(&y.bsums, 0), load16(&y.bsums, 16));
    let mut out = [0i32; 4];
    // SAFETY: `out` has room for 16 bytes; `storeu` needs no alignment.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), h) };
    out
}

/// AVX2: `isum_j` of 8 rows for each vector, with `maddubs` (nibble × i8 pairs, at most
/// 2·15·128: no saturation) and a `madd` by the row's scale as an i16 pair.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn isums_avx2<const NV: usize>(gr: &Group, j: usize, ys: &[&BlockQ8K; NV]) -> [__m256i; NV] {
    let m4 = _mm256_set1_epi8(0x0f);
    let pair16 = |s: __m256i| _mm256_or_si256(s, _mm256_slli_epi32::<16>(s));
    let (slo, shi) = (pair16(gr.sc[(2 * j) & 7]), pair16(gr.sc[(2 * j + 1) & 7]));
    let mut acc = [_mm256_setzero_si256(); NV];
    for g in 0..8 {
        let p = gr.q[(8 * j + g) & 31];
        let lo = _mm256_and_si256(p, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(p), m4);
        for (a, y) in acc.iter_mut().zip(ys) {
            let ylo = _mm256_set1_epi32(y4(y, 16 * j + g));
            let yhi = _mm256_set1_epi32(y4(y, 16 * j + 8 + g));
            let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), slo);
            let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), shi);
            *a = _mm256_add_epi32(*a, _mm256_add_epi32(plo, phi));
        }
    }
    acc
}

/// Generates the `isum_j` of a VNNI level: `vpdpbusd` sums the low and the high
/// sub-block separately (unscaled), then one multiply by each row's scale.
macro_rules! isums_vnni {
    ($feat:literal, $name:ident, $dp:ident) => {
        #[target_feature(enable = $feat)]
        #[inline]
        fn $name<const NV: usize>(gr: &Group, j: usize, ys: &[&BlockQ8K; NV]) -> [__m256i; NV] {
            let m4 = _mm256_set1_epi8(0x0f);
            let mut alo = [_mm256_setzero_si256(); NV];
            let mut ahi = [_mm256_setzero_si256(); NV];
            for g in 0..8 {
                let p = gr.q[(8 * j + g) & 31];
                let lo = _mm256_and_si256(p, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(p), m4);
                for v in 0..NV {
                    let ylo = _mm256_set1_epi32(y4(ys[v], 16 * j + g));
                    let yhi = _mm256_set1_epi32(y4(ys[v], 16 * j + 8 + g));
                    alo[v] = $dp(alo[v], lo, ylo);
                    ahi[v] = $dp(ahi[v], hi, yhi);
                }
            }
            let (slo, shi) = (gr.sc[(2 * j) & 7], gr.sc[(2 * j + 1) & 7]);
            core::array::from_fn(|v| {
                _mm256_add_epi32(
                    _mm256_mullo_epi32(alo[v], slo),
                    _mm256_mullo_epi32(ahi[v], shi),
                )
            })
        }
    };
}

isums_vnni!(
    "avx2,fma,f16c,avxvnni",
    isums_avxvnni,
    _mm256_dpbusd_avx_epi32
);
isums_vnni!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    isums_avx512,
    _mm256_dpbusd_epi32
);

/// The rows of a call (`xs[..nr]`) in groups of 8 (the last repeated to fill a group):
/// `f(rows, how many of them are wanted, index of the first)`.
#[inline(always)]
pub(super) fn by_8_rows(
    xs: &[&[u8]; ROWS],
    nr: usize,
    mut f: impl FnMut(&[&[u8]; HALF], usize, usize),
) {
    let xs = xs.get(..nr).unwrap_or(xs);
    for (c, xc) in xs.chunks(HALF).enumerate() {
        let last = xc.len().saturating_sub(1);
        let x8: [&[u8]; HALF] =
            core::array::from_fn(|i| xc.get(i.min(last)).copied().unwrap_or(&[]));
        f(&x8, xc.len(), c * HALF);
    }
}

/// The super-blocks of 8 weight rows (of type `X`) and of the vectors, and how many
/// super-blocks all of the wanted ones have (`nr` rows, `nv` vectors).
#[inline(always)]
pub(super) fn k_blocks<'a, X: bytemuck::Pod>(
    xs: &[&'a [u8]; HALF],
    nr: usize,
    ys: &[&'a [u8]; TILE],
    nv: usize,
) -> ([&'a [X]; HALF], [&'a [BlockQ8K]; TILE], usize) {
    let mut xss: [&[X]; HALF] = [&[]; HALF];
    for (d, s) in xss.iter_mut().zip(xs) {
        *d = blk::<X>(s);
    }
    let mut yss: [&[BlockQ8K]; TILE] = [&[]; TILE];
    for (d, s) in yss.iter_mut().zip(ys) {
        *d = blk::<BlockQ8K>(s);
    }
    let nb = xss[..nr.clamp(1, HALF)]
        .iter()
        .map(|x| x.len())
        .chain(yss[..nv.min(TILE)].iter().map(|y| y.len()))
        .min()
        .unwrap_or(0);
    (xss, yss, nb)
}

/// Generates the tile of one level and its `GemmFn` entry `$name`.
macro_rules! gemm_q4_k {
    ($feat:literal, $(#[$doc:meta])* fn $name:ident, $tile8:ident, $step:ident, $isums:ident) => {
        /// One super-block (`gr`) against `NV` vectors: `PER_PAIR` takes the fused
        /// multiply-adds per pair of sub-blocks (ggml's `gemm`), else per super-block
        /// (`gemv`).
        #[target_feature(enable = $feat)]
        #[inline]
        fn $step<const NV: usize, const PER_PAIR: bool>(
            gr: &Group,
            ys: &[&BlockQ8K; NV],
            acc: &mut [__m256],
            accm: &mut [__m256],
        ) {
            let dy: [__m256; NV] = core::array::from_fn(|v| _mm256_set1_ps(ys[v].d()));
            let dxy: [__m256; NV] = core::array::from_fn(|v| _mm256_mul_ps(gr.d, dy[v]));
            let dmy: [__m256; NV] = core::array::from_fn(|v| _mm256_mul_ps(gr.dmin, dy[v]));
            let bs: [[i32; 4]; NV] = core::array::from_fn(|v| bsum_pairs(ys[v]));
            let mut it = [_mm256_setzero_si256(); NV];
            let mut mt = [_mm256_setzero_si256(); NV];
            for j in 0..4 {
                let is = $isums::<NV>(gr, j, ys);
                for v in 0..NV {
                    let ms = _mm256_madd_epi16(gr.mins[j], _mm256_set1_epi32(bs[v][j]));
                    if PER_PAIR {
                        if let (Some(a), Some(m)) = (acc.get_mut(v), accm.get_mut(v)) {
                            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[v]), dxy[v], *a);
                            *m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), dmy[v], *m);
                        }
                    } else {
                        it[v] = _mm256_add_epi32(it[v], is[v]);
                        mt[v] = _mm256_add_epi32(mt[v], ms);
                    }
                }
            }
            if !PER_PAIR {
                for v in 0..NV {
                    if let (Some(a), Some(m)) = (acc.get_mut(v), accm.get_mut(v)) {
                        *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(it[v]), dxy[v], *a);
                        *m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mt[v]), dmy[v], *m);
                    }
                }
            }
        }

        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub(super) fn $name(
            xs: &[&[u8]; ROWS],
            nr: usize,
            ys: &[&[u8]; TILE],
            nv: usize,
            _n: usize,
            out: &mut [[f32; ROWS]; TILE],
        ) {
            let nv = nv.min(TILE);
            by_8_rows(xs, nr, |x8, n8, r0| $tile8(x8, n8, ys, nv, out, r0));
        }

        /// 8 rows (`nr` of them wanted) of the tile against all its vectors (one
        /// interleaving of the rows per super-block), into `out[v][r0..r0 + nr]`.
        #[target_feature(enable = $feat)]
        fn $tile8(
            xs: &[&[u8]; HALF],
            nr: usize,
            ys: &[&[u8]; TILE],
            nv: usize,
            out: &mut [[f32; ROWS]; TILE],
            r0: usize,
        ) {
            let nr = nr.min(HALF);
            let nv = nv.min(TILE);
            let (xss, yss, nb) = k_blocks::<BlockQ4K>(xs, nr, ys, nv);
            // Vectors in whole groups of 4 take the batch arithmetic (the caller's
            // tiles start at multiples of 8, so these are the batch's own groups of 4).
            let n_batch = nv - nv % 4;
            let mut acc = [_mm256_setzero_ps(); TILE];
            let mut accm = [_mm256_setzero_ps(); TILE];
            let mut gr = Group {
                q: [_mm256_setzero_si256(); 32],
                sc: [_mm256_setzero_si256(); 8],
                mins: [_mm256_setzero_si256(); 4],
                d: _mm256_setzero_ps(),
                dmin: _mm256_setzero_ps(),
            };
            let zero = BlockQ8K {
                d: [0; 4],
                qs: [0; 256],
                bsums: [0; 32],
            };
            for i in 0..nb {
                build(&xss, i, &mut gr);
                let y = |v: usize| yss.get(v).and_then(|s| s.get(i)).unwrap_or(&zero);
                let mut v0 = 0;
                while v0 < nv {
                    let (a, m) = (&mut acc[v0..], &mut accm[v0..]);
                    match nv - v0 {
                        1 => $step::<1, false>(&gr, &[y(v0)], a, m),
                        2 => $step::<2, false>(&gr, &[y(v0), y(v0 + 1)], a, m),
                        3 => $step::<3, false>(&gr, &[y(v0), y(v0 + 1), y(v0 + 2)], a, m),
                        _ => {
                            let ys4 = [y(v0), y(v0 + 1), y(v0 + 2), y(v0 + 3)];
                            if v0 < n_batch {
                                $step::<4, true>(&gr, &ys4, a, m)
                            } else {
                                $step::<4, false>(&gr, &ys4, a, m)
                            }
                        }
                    }
                    v0 += 4;
                }
            }
            for v in 0..nv {
                let mut lanes = [0.0f32; HALF];
                let r = _mm256_sub_ps(acc[v], accm[v]);
                // SAFETY: `lanes` has room for 8 f32; `storeu` needs no alignment.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), r) };
                if let Some(o) = out.get_mut(v).and_then(|o| o.get_mut(r0..r0 + nr)) {
                    o.copy_from_slice(&lanes[..nr]);
                }
            }
        }
    };
}

gemm_q4_k!(
    "avx2,fma,f16c",
    /// q4_K · q8_K tile, AVX2.
    fn gemm_q4_k, tile8_avx2, step_avx2, isums_avx2
);
gemm_q4_k!(
    "avx2,fma,f16c,avxvnni",
    /// q4_K · q8_K tile, AVX-VNNI.
    fn gemm_q4_k_vnni, tile8_avxvnni, step_avxvnni, isums_avxvnni
);
gemm_q4_k!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q4_K · q8_K tile, AVX-512 VNNI (256-bit registers, EVEX: 32 of them and
    /// broadcast operands).
    fn gemm_q4_k_zmm, tile8_avx512, step_avx512, isums_avx512
);
