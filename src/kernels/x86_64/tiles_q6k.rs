//! Prefill tile for Q6_K against Q8_K, in blocks of 8 weight rows × up to 8 activation
//! vectors, with one weight **row per 32-bit lane** (as the Q4_K tile in
//! [`super::tiles_k`]).
//!
//! The arithmetic is that of llama.cpp's tiled x86 K-quant matmul, as
//! [`crate::kernels::scalar::dot_q6_k_batch`] writes it: per super-block an exact i32
//! `isum = Σ_j sc_j · Σ_{16 values of sub-block j} q·y` (`q` the 6-bit value − 32), then
//! `acc = fma(d·isum, dy, acc)`. That is the arithmetic of *every* vector of a batch of
//! 8 or more ([`crate::kernels::table::BatchRule::AllFrom8`]) and of no vector of a
//! smaller one, so the table marks this tile as batch-only and the matmul takes it for
//! batches of 8 or more alone.
//!
//! Only how the integers are formed changes. Per call and super-block, the 8 rows'
//! `ql` and `qh` bytes are transposed in registers (8 × 8 transposes of 32-bit words, so
//! lane `r` holds 4 bytes of row `r`) and then unpacked to unsigned quants `q + 32`
//! (0..=63), which keeps the byte positions of `ql` and `qh` aligned as in one row.
//! One multiply of such a register against 4 activation bytes broadcast to all lanes
//! gives 8 rows' 4-product sums at once; the `−32` comes back exactly through the
//! activation block sums (`Σ q·y = Σ (q + 32)·y − 32·bsum`). Scales and `d` are per-row
//! vectors, so the float tail runs 8 rows wide. The weights stay memory-mapped: the
//! repacking lives in registers and a small stack block, amortised over the vectors.

use core::arch::x86_64::*;

use super::avx2::{f16, load16, load32};
use super::tiles::{HALF, ROWS, TILE};
use super::tiles_k::{by_8_rows, k_blocks, transpose8, y4};
use crate::quant::{BlockQ6K, BlockQ8K};

/// Super-block `i` of 8 rows, one row per 32-bit lane.
struct Group {
    /// `q[t]`, lane `r`: the unsigned quants (0..=63) of values `4t..4t + 4` of row `r`;
    /// sub-block `j` is `q[4j..4j + 4]`.
    q: [__m256i; 64],
    /// `sc[j]`, lane `r`: row `r`'s scale of sub-block `j` (i32).
    sc: [__m256i; 16],
    /// `sc2[j]`, lane `r`: the same scale twice, as an i16 pair (for `madd`).
    sc2: [__m256i; 16],
    /// `scb[m]`, lane `r`: row `r`'s scales of sub-blocks `2m` and `2m + 1` as an i16
    /// pair (for `madd` against the matching pair of activation block sums).
    scb: [__m256i; 8],
    /// Lane `r`: row `r`'s `d` as f32 (exact).
    d: __m256,
}

/// An all-zero super-block, for rows shorter than the tile (never read by callers, who
/// pass rows of equal length).
const ZERO_Q6K: BlockQ6K = BlockQ6K {
    ql: [0; 128],
    qh: [0; 64],
    scales: [0; 16],
    d: [0; 2],
};

/// Interleave and unpack super-block `i` of the 8 rows into `gr`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn build(xs: &[&[BlockQ6K]; HALF], i: usize, gr: &mut Group) {
    let mut d = [0.0f32; HALF];
    let mut rows = [&ZERO_Q6K; HALF];
    for (r, x) in xs.iter().enumerate() {
        let x = x.get(i).unwrap_or(&ZERO_Q6K);
        rows[r] = x;
        d[r] = f16(x.d);
    }
    gr.d = _mm256_castsi256_ps(load32(&d, 0));
    // Scales: `st[g]`, lane `r`: scales `4g..4g + 4` of row `r` (g < 4), each byte then
    // sign-extended to its own i32 (shift left, arithmetic shift right).
    let st = transpose8(core::array::from_fn(|r| {
        _mm256_zextsi128_si256(load16(&rows[r].scales, 0))
    }));
    for (g, &w) in st.iter().enumerate().take(4) {
        let sc = [
            _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(w)),
            _mm256_srai_epi32::<24>(_mm256_slli_epi32::<16>(w)),
            _mm256_srai_epi32::<24>(_mm256_slli_epi32::<8>(w)),
            _mm256_srai_epi32::<24>(w),
        ];
        // i16 pairs: the low half of `lo`, the low half of `hi` above it.
        let pair =
            |lo: __m256i, hi: __m256i| _mm256_blend_epi16::<0xaa>(lo, _mm256_slli_epi32::<16>(hi));
        for (b, s) in sc.into_iter().enumerate() {
            gr.sc[(4 * g + b) & 15] = s;
            gr.sc2[(4 * g + b) & 15] = pair(s, s);
        }
        gr.scb[(2 * g) & 7] = pair(sc[0], sc[1]);
        gr.scb[(2 * g + 1) & 7] = pair(sc[2], sc[3]);
    }
    let m4 = _mm256_set1_epi8(0x0f);
    let m30 = _mm256_set1_epi8(0x30);
    for h in 0..2 {
        let qa = transpose8(core::array::from_fn(|r| load32(&rows[r].ql, 64 * h)));
        let qb = transpose8(core::array::from_fn(|r| load32(&rows[r].ql, 64 * h + 32)));
        let qh = transpose8(core::array::from_fn(|r| load32(&rows[r].qh, 32 * h)));
        for g in 0..8 {
            let (a, b, hb) = (qa[g], qb[g], qh[g]);
            // Values 128h + 32k + 4g.. (k = 0..3): low nibbles of `ql[l]`,
            // `ql[l + 32]`, then high nibbles; high bits `2k..2k + 2` of `qh[l]`, as
            // `unpack_q6_k` (16-bit shifts, then per-byte masks).
            let v = [
                _mm256_or_si256(
                    _mm256_and_si256(a, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(hb), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(b, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(hb), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(a), m4),
                    _mm256_and_si256(hb, m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(b), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(hb), m30),
                ),
            ];
            for (k, v) in v.into_iter().enumerate() {
                gr.q[(32 * h + 8 * k + g) & 63] = v;
            }
        }
    }
}

/// Pair `m` of a Q8_K block's 16 block sums, `(bsum_2m, bsum_2m+1)` as one i32.
#[inline(always)]
fn bsum_pair(y: &BlockQ8K, m: usize) -> i32 {
    let w: &[[u8; 4]; 8] = bytemuck::cast_ref(&y.bsums);
    i32::from_le_bytes(w[m & 7])
}

/// AVX2: `isum` of 8 rows for each vector. `maddubs` of unsigned quants (≤ 63) and i8
/// gives pairs of at most 2·63·128 = 16128 in magnitude, so two of them add in i16
/// without wrapping; one `madd` by the row's scale as an i16 pair per two words. The
/// `−32·Σ sc_j·bsum_j` is a `madd` of the scale pairs against the block-sum pairs.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn isums_avx2<const NV: usize>(gr: &Group, ys: &[&BlockQ8K; NV]) -> [__m256i; NV] {
    let mut acc = [_mm256_setzero_si256(); NV];
    for j in 0..16 {
        let s2 = gr.sc2[j & 15];
        for u in 0..2 {
            let t = 4 * j + 2 * u;
            let (q0, q1) = (gr.q[t & 63], gr.q[(t + 1) & 63]);
            for (a, y) in acc.iter_mut().zip(ys) {
                let p0 = _mm256_maddubs_epi16(q0, _mm256_set1_epi32(y4(y, t)));
                let p1 = _mm256_maddubs_epi16(q1, _mm256_set1_epi32(y4(y, t + 1)));
                let p = _mm256_madd_epi16(_mm256_add_epi16(p0, p1), s2);
                *a = _mm256_add_epi32(*a, p);
            }
        }
    }
    core::array::from_fn(|v| {
        let mut c = _mm256_setzero_si256();
        for m in 0..8 {
            let b = _mm256_set1_epi32(bsum_pair(ys[v], m));
            c = _mm256_add_epi32(c, _mm256_madd_epi16(gr.scb[m & 7], b));
        }
        _mm256_sub_epi32(acc[v], _mm256_slli_epi32::<5>(c))
    })
}

/// Generates the `isum` of a VNNI level: per sub-block `vpdpbusd` sums the unsigned
/// quants against the activations onto `−32·bsum_j` (so the sum is `Σ q·y`, exact),
/// then one multiply by each row's scale.
macro_rules! isums_vnni {
    ($feat:literal, $name:ident, $dp:ident) => {
        #[target_feature(enable = $feat)]
        #[inline]
        fn $name<const NV: usize>(gr: &Group, ys: &[&BlockQ8K; NV]) -> [__m256i; NV] {
            // −32·bsum_j of each vector (|bsum_j| ≤ 16·128: exact).
            let nb: [[i32; 16]; NV] =
                core::array::from_fn(|v| core::array::from_fn(|j| -32 * i32::from(ys[v].bsum(j))));
            let mut acc = [_mm256_setzero_si256(); NV];
            for j in 0..16 {
                let mut a: [__m256i; NV] =
                    core::array::from_fn(|v| _mm256_set1_epi32(nb[v][j & 15]));
                for u in 0..4 {
                    let t = 4 * j + u;
                    let q = gr.q[t & 63];
                    for (a, y) in a.iter_mut().zip(ys) {
                        *a = $dp(*a, q, _mm256_set1_epi32(y4(y, t)));
                    }
                }
                let s = gr.sc[j & 15];
                for (acc, a) in acc.iter_mut().zip(a) {
                    *acc = _mm256_add_epi32(*acc, _mm256_mullo_epi32(a, s));
                }
            }
            acc
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

/// Generates the tile of one level and its `GemmFn` entry `$name`; up to `$ch` vectors
/// go through one pass over the unpacked super-block (measured: 4 with 16 registers,
/// 8 with AVX-512's 32).
macro_rules! gemm_q6_k {
    ($feat:literal, $(#[$doc:meta])* fn $name:ident, $tile8:ident, $step:ident, $isums:ident, $ch:literal) => {
        /// One super-block (`gr`) against `NV` vectors: `acc = fma(d·isum, dy, acc)`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn $step<const NV: usize>(gr: &Group, ys: &[&BlockQ8K; NV], acc: &mut [__m256]) {
            let is = $isums::<NV>(gr, ys);
            for (v, (a, y)) in acc.iter_mut().zip(ys).enumerate() {
                if let Some(is) = is.get(v) {
                    let dx = _mm256_mul_ps(gr.d, _mm256_cvtepi32_ps(*is));
                    *a = _mm256_fmadd_ps(dx, _mm256_set1_ps(y.d()), *a);
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
            let (xss, yss, nb) = k_blocks::<BlockQ6K>(xs, nr, ys, nv);
            let mut acc = [_mm256_setzero_ps(); TILE];
            let mut gr = Group {
                q: [_mm256_setzero_si256(); 64],
                sc: [_mm256_setzero_si256(); 16],
                sc2: [_mm256_setzero_si256(); 16],
                scb: [_mm256_setzero_si256(); 8],
                d: _mm256_setzero_ps(),
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
                    let a = &mut acc[v0..];
                    let take = match nv - v0 {
                        8.. if $ch >= 8 => {
                            $step::<8>(&gr, &core::array::from_fn(|k| y(v0 + k)), a);
                            8
                        }
                        4.. => {
                            $step::<4>(&gr, &[y(v0), y(v0 + 1), y(v0 + 2), y(v0 + 3)], a);
                            4
                        }
                        3 => {
                            $step::<3>(&gr, &[y(v0), y(v0 + 1), y(v0 + 2)], a);
                            3
                        }
                        2 => {
                            $step::<2>(&gr, &[y(v0), y(v0 + 1)], a);
                            2
                        }
                        _ => {
                            $step::<1>(&gr, &[y(v0)], a);
                            1
                        }
                    };
                    v0 += take;
                }
            }
            for v in 0..nv {
                let mut lanes = [0.0f32; HALF];
                // SAFETY: `lanes` has room for 8 f32; `storeu` needs no alignment.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[v]) };
                if let Some(o) = out.get_mut(v).and_then(|o| o.get_mut(r0..r0 + nr)) {
                    o.copy_from_slice(&lanes[..nr]);
                }
            }
        }
    };
}

gemm_q6_k!(
    "avx2,fma,f16c",
    /// q6_K · q8_K tile (batches of 8 or more only), AVX2.
    fn gemm_q6_k, tile8_avx2, step_avx2, isums_avx2, 4
);
gemm_q6_k!(
    "avx2,fma,f16c,avxvnni",
    /// q6_K · q8_K tile (batches of 8 or more only), AVX-VNNI.
    fn gemm_q6_k_vnni, tile8_avxvnni, step_avxvnni, isums_avxvnni, 4
);
gemm_q6_k!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q6_K · q8_K tile (batches of 8 or more only), AVX-512 VNNI (256-bit registers,
    /// EVEX: 32 of them and broadcast operands).
    fn gemm_q6_k_zmm, tile8_avx512, step_avx512, isums_avx512, 8
);
