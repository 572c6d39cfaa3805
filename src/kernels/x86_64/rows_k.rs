//! Decode matvec entries (`DotRowsFn`) of Q4_K for AVX2 and the VNNI levels.
//!
//! Each row is computed exactly as the single dot of [`super::avx2`] (ggml's repacked
//! x86 `gemv` arithmetic): per super-block the exact i32 sums `isum = Σ scale·q·y` and
//! `msum = Σ min·bsum`, then `sum = fma(isum, d·dy, sum)` and `summ = fma(msum,
//! dmin·dy, summ)`, result `sum − summ`. Only the way the exact `isum` and `msum` are
//! obtained differs:
//! - AVX-VNNI: `vpdpwssd` multiplies the `maddubs` pairs by the sub-block's scale and
//!   accumulates in one instruction (the AVX2 code spends a `madd` and an `add` per 32
//!   values), into two accumulators (low and high nibbles) so that the chain of
//!   dependent instructions per super-block is half as long.
//! - AVX-512: see `rows_q4_k_512`. Against the AVX-512 entries of the previous
//!   kind, it streamed 12-20% faster with the matrix in cache and 10-13% faster cold
//!   (1 thread, 2048- to 8192-value rows).

use core::arch::x86_64::*;

use super::avx2::{
    f16, hsum_i32, k4_msum, k4_scales, load16, load32, prefetch_ahead, prefetch_far,
};
use crate::kernels::scalar::{self, blk};
use crate::quant::{BlockQ4K, BlockQ8K};

/// q4_K · q8_K rows, AVX-VNNI.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn rows_q4_k_vnni(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
    let ys = blk::<BlockQ8K>(y);
    let nb = n / 256;
    let wrow = nb * core::mem::size_of::<BlockQ4K>();
    for (r, o) in out.iter_mut().enumerate() {
        let row = x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
        *o = row_q4_k_vnni(blk::<BlockQ4K>(row), ys);
    }
}

/// One row (`xs`) against the vector (`ys`), AVX-VNNI; blocks past the shorter are
/// ignored (the callers pass equal lengths).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn row_q4_k_vnni(xs: &[BlockQ4K], ys: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    let mut summ = 0.0f32;
    for (x, y) in xs.iter().zip(ys) {
        prefetch_ahead(x);
        prefetch_far(x);
        let sm = k4_scales(&x.scales);
        let sc: [i16; 8] = core::array::from_fn(|k| i16::from(sm[k]));
        let (mut alo, mut ahi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for j in 0..4 {
            let (plo, phi) = pair_products(x, y, j);
            alo = _mm256_dpwssd_avx_epi32(alo, plo, _mm256_set1_epi16(sc[2 * j]));
            ahi = _mm256_dpwssd_avx_epi32(ahi, phi, _mm256_set1_epi16(sc[2 * j + 1]));
        }
        let isum = hsum_i32(_mm256_add_epi32(alo, ahi));
        let (dx, dmx) = (f16(x.d), f16(x.dmin));
        sum = scalar::fma(isum as f32, dx * y.d(), sum);
        summ = scalar::fma(k4_msum(y, &sm) as f32, dmx * y.d(), summ);
    }
    sum - summ
}

/// The 64 quants of the 32 bytes at `off` in `qs`, by shifts: the low nibbles in bytes
/// 0..32, the high ones in 32..64.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn nibbles_zmm(qs: &[u8], off: usize) -> __m512i {
    let both = _mm512_broadcast_i64x4(load32(qs, off));
    let shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    _mm512_and_si512(_mm512_srlv_epi64(both, shift), _mm512_set1_epi8(0x0f))
}

/// The same by one GF(2) affine transform per byte: the identity on the low nibble in
/// the low half, the high nibble moved down in the high half.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
#[inline]
fn nibbles_gfni(qs: &[u8], off: usize) -> __m512i {
    let (low, high) = (super::rows::GF_LOW_NIBBLE, super::rows::GF_HIGH_NIBBLE);
    let both = _mm512_broadcast_i64x4(load32(qs, off));
    let m = _mm512_setr_epi64(low, low, low, low, high, high, high, high);
    _mm512_gf2p8affine_epi64_epi8::<0>(both, m)
}

/// Chunk `j` (quants `64j..64j + 64`) of a super-block against the vector: the pair sums
/// (`maddubs`, `|·| ≤ 2·15·127`) of its low nibbles (sub-block `2j`) and of its high
/// nibbles (sub-block `2j + 1`), for the AVX2 and AVX-VNNI rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair_products(x: &BlockQ4K, y: &BlockQ8K, j: usize) -> (__m256i, __m256i) {
    let m4 = _mm256_set1_epi8(0x0f);
    let q4 = load32(&x.qs, 32 * j);
    let lo = _mm256_and_si256(q4, m4);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4);
    (
        _mm256_maddubs_epi16(lo, load32(&y.qs, 64 * j)),
        _mm256_maddubs_epi16(hi, load32(&y.qs, 64 * j + 32)),
    )
}

/// The most super-blocks per row whose vector pair sums `rows_q4_k_512` keeps on the
/// stack (16384 values, 1 KiB); longer rows compute them per row.
const PAIR_CAP: usize = 64;

/// The 8 sums of two consecutive `bsums` of `y` (the vector's sum over each 32-value
/// sub-block, `|·| ≤ 32·128`) as i16 (a signed pack, which never saturates here).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pair_sums(y: &BlockQ8K) -> __m128i {
    let m = _mm256_madd_epi16(load32(&y.bsums, 0), _mm256_set1_epi16(1));
    _mm_packs_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m))
}

/// A block's 8 mins (i16 lanes 0..8) and 8 scales (lanes 8..16), out of its 12 scale
/// bytes (see `k4_scales`) by byte shuffles and shifts in one 128-bit register.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mins_scales(x: &BlockQ4K) -> __m256i {
    // Bytes 4..16 of a block (its 12 scale bytes u0, u1, u2) as the dwords
    // [u1, u2, u0, u2] and [0, u1, 0, u0], from which the mins then the scales.
    let pick = _mm_setr_epi8(8, 9, 10, 11, 12, 13, 14, 15, 4, 5, 6, 7, 12, 13, 14, 15);
    let pick_hi = _mm_setr_epi8(-1, -1, -1, -1, 8, 9, 10, 11, -1, -1, -1, -1, 4, 5, 6, 7);
    let shift = _mm_setr_epi32(0, 4, 0, 0);
    let keep = _mm_setr_epi32(0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f, 0x0f0f_0f0f);
    let keep_hi = _mm_set1_epi8(0x30);
    let head = load16(core::slice::from_ref(x), 0);
    let lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi8(head, pick), shift), keep);
    let hi = _mm_and_si128(
        _mm_srli_epi32::<2>(_mm_shuffle_epi8(head, pick_hi)),
        keep_hi,
    );
    _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi))
}

/// One super-block's end: `isum` (the 4 i32 lanes of `i`) and `msum` (the mins `ms`
/// against the vector's sub-block sums `pair`) summed exactly, then `fma(isum, d·dy,
/// acc₀)` and `fma(msum, dmin·dy, acc₁)` in lanes 0 and 1 of `acc`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn block_end(
    i: __m128i,
    ms: __m256i,
    pair: __m128i,
    x: &BlockQ4K,
    y: &BlockQ8K,
    acc: __m128,
) -> __m128 {
    let m = _mm_madd_epi16(_mm256_castsi256_si128(ms), pair);
    // Lanes 0 and 1: isum and msum.
    let t = _mm_add_epi32(_mm_unpacklo_epi32(i, m), _mm_unpackhi_epi32(i, m));
    let im = _mm_cvtepi32_ps(_mm_add_epi32(t, _mm_unpackhi_epi64(t, t)));
    // Lanes 0 and 1: d and dmin (2 and 3: zero).
    let dd = [x.d[0], x.d[1], x.dmin[0], x.dmin[1]];
    let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(dd)));
    _mm_fmadd_ps(im, _mm_mul_ps(dd, _mm_set1_ps(y.d())), acc)
}

/// `lanes[0] − lanes[1]` of the accumulator of [`block_end`]: `sum − summ`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sum_minus_summ(acc: __m128) -> f32 {
    let mut lanes = [0.0f32; 4];
    // SAFETY: `lanes` has room for 4 f32; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), acc) };
    lanes[0] - lanes[1]
}

/// The body of the AVX2 and AVX-512 Q4_K `DotRowsFn` entries, around their one-row
/// function `$row::<KEPT>(row, ys, pairs)` (with `$extra` as a last argument if one
/// is given: the AVX2 entry's scale splats): the vector's sub-block sums once per call
/// when the row has at most [`PAIR_CAP`] super-blocks (`KEPT`; else each row makes its
/// own), then the rows one by one. A macro, not a function, so that it expands inside
/// each entry's target features.
macro_rules! q4_k_rows {
    ($x:ident, $y:ident, $n:ident, $out:ident, $row:ident $(, $extra:expr)?) => {
        let ys = blk::<BlockQ8K>($y);
        let wrow = $n / 256 * core::mem::size_of::<BlockQ4K>();
        let mut pairs = [_mm_setzero_si128(); PAIR_CAP];
        let kept = ys.len() <= PAIR_CAP;
        if kept {
            for (p, y) in pairs.iter_mut().zip(ys) {
                *p = pair_sums(y);
            }
        }
        for (r, o) in $out.iter_mut().enumerate() {
            let row = blk::<BlockQ4K>($x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]));
            *o = if kept {
                $row::<true>(row, ys, &pairs $(, $extra)?)
            } else {
                $row::<false>(row, ys, &[] $(, $extra)?)
            };
        }
    };
}

/// q4_K · q8_K rows, AVX2: per 64 quants, the two sub-blocks' nibbles by a mask and a
/// shift, one `maddubs` each against the vector (pairs `|·| ≤ 2·15·127`), and one
/// `madd` each by the sub-block's scale (splat from the block's scales by one byte
/// shuffle); the scales and mins by [`mins_scales`], the vector's sub-block sums once
/// per call (rows of up to [`PAIR_CAP`] super-blocks), and the two sums' ends shared
/// ([`block_end`]). The same exact `isum` and `msum` as the single dot, so the same bits.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q4_k_avx2(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
    let splat = splat_scales();
    q4_k_rows!(x, y, n, out, row_q4_k_avx2, &splat);
}

/// The byte shuffles that splat scale `k` (i16 lane `k` of the upper half of a block's
/// [`mins_scales`], moved to both 128-bit lanes) over 16 i16 lanes, for
/// [`row_q4_k_avx2`]. Passed through `black_box`: with the constants in view, the
/// compiler turned each one-instruction shuffle into two (a shuffle of 16-bit words
/// within 64 bits, then a cross-lane permutation). Made once per call, outside the rows:
/// in cache, 1 thread, 3 alternated rounds, the AVX2 rows streamed 14.2-14.8 GB/s
/// against 12.9-13.6 for 1024- to 8192-value rows (8-11% faster).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn splat_scales() -> [__m256i; 8] {
    let splat: [__m256i; 8] = core::array::from_fn(|k| {
        let b = 2 * k as i16;
        _mm256_set1_epi16(b | ((b + 1) << 8))
    });
    core::hint::black_box(splat)
}

/// One row (`xs`) against the vector (`ys`), with the vector's sub-block sums from
/// `pairs` if `KEPT`, and `splat` from [`splat_scales`]; blocks past the shorter are
/// ignored (the callers pass equal lengths).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn row_q4_k_avx2<const KEPT: bool>(
    xs: &[BlockQ4K],
    ys: &[BlockQ8K],
    pairs: &[__m128i],
    splat: &[__m256i; 8],
) -> f32 {
    let mut acc = _mm_setzero_ps();
    for (b, (x, y)) in xs.iter().zip(ys).enumerate() {
        prefetch_ahead(x);
        prefetch_far(x);
        let ms = mins_scales(x);
        let sc = _mm256_permute4x64_epi64::<0b1110_1110>(ms);
        let mut i = _mm256_setzero_si256();
        for j in 0..4 {
            let (plo, phi) = pair_products(x, y, j);
            let slo = _mm256_shuffle_epi8(sc, splat[2 * j]);
            let shi = _mm256_shuffle_epi8(sc, splat[2 * j + 1]);
            let p = _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi));
            i = _mm256_add_epi32(i, p);
        }
        let i = _mm_add_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
        let pair = if KEPT {
            pairs.get(b).copied().unwrap_or(_mm_setzero_si128())
        } else {
            pair_sums(y)
        };
        acc = block_end(i, ms, pair, x, y, acc);
    }
    sum_minus_summ(acc)
}

/// Generates one AVX-512 `DotRowsFn` entry for Q4_K with the nibble split `$nib`.
///
/// Per super-block and row, the exact `isum` takes fourteen 512-bit operations instead of
/// the 256-bit entry's thirty-odd: for each 64-quant chunk `j`, one split puts sub-block `2j`
/// in the low half and `2j + 1` in the high half, which lines up with the vector's 64
/// bytes, and one `vpdpbusd` gives per i32 lane the sum of four products (`|·| ≤
/// 4·15·128 < 2¹⁵`). Two saturating packs (which never saturate) put those lanes of
/// four sub-blocks into i16, and one `vpmaddwd`/`vpdpwssd` per pack multiplies them by
/// their sub-block's scale (laid out by one `vpermw` per pack) and adds. `msum` is one 128-bit `vpmaddwd` of the mins
/// against the vector's sub-block sums, which are computed once per call for all rows.
/// The scales and mins come out of their 12 bytes by byte shuffles and shifts in one
/// 128-bit register, the two sums share their last horizontal adds, and `sum` and
/// `summ` sit in the two low lanes of one register and take their multiply-adds
/// together, lane by lane as before.
macro_rules! rows_q4_k_512 {
    ($feat:literal, $(#[$doc:meta])* fn $name:ident, $nib:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub(super) fn $name(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
            q4_k_rows!(x, y, n, out, row_q4_k);

            /// One row (`xs`) against the vector (`ys`), with the vector's sub-block
            /// sums from `pairs` if `KEPT`; blocks past the shorter are ignored (the
            /// callers pass equal lengths).
            #[target_feature(enable = $feat)]
            #[inline]
            fn row_q4_k<const KEPT: bool>(xs: &[BlockQ4K], ys: &[BlockQ8K], pairs: &[__m128i]) -> f32 {
                // The i16 scales (lanes 8..16 of `ms`) of the packed lanes (see the
                // macro's doc): in each 128-bit lane, four lanes of one sub-block then
                // four of another.
                let s01 = _mm512_setr_epi64(
                    0x0008_0008_0008_0008, 0x000a_000a_000a_000a,
                    0x0008_0008_0008_0008, 0x000a_000a_000a_000a,
                    0x0009_0009_0009_0009, 0x000b_000b_000b_000b,
                    0x0009_0009_0009_0009, 0x000b_000b_000b_000b,
                );
                let s23 = _mm512_add_epi16(s01, _mm512_set1_epi16(4));
                let mut acc = _mm_setzero_ps();
                for (b, (x, y)) in xs.iter().zip(ys).enumerate() {
                    prefetch_ahead(x);
                    prefetch_far(x);
                    // i16 lanes: the 8 mins, then the 8 scales.
                    let ms = mins_scales(x);
                    let ms512 = _mm512_zextsi256_si512(ms);
                    let mut d = [_mm512_setzero_si512(); 4];
                    for (j, dj) in d.iter_mut().enumerate() {
                        let yq = load64(&y.qs, 64 * j);
                        *dj = _mm512_dpbusd_epi32(_mm512_setzero_si512(), $nib(&x.qs, 32 * j), yq);
                    }
                    let p01 = _mm512_packs_epi32(d[0], d[1]);
                    let p23 = _mm512_packs_epi32(d[2], d[3]);
                    let i = _mm512_dpwssd_epi32(
                        _mm512_madd_epi16(p01, _mm512_permutexvar_epi16(s01, ms512)),
                        p23,
                        _mm512_permutexvar_epi16(s23, ms512),
                    );
                    let i = _mm256_add_epi32(_mm512_castsi512_si256(i), _mm512_extracti64x4_epi64::<1>(i));
                    let i = _mm_add_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
                    let pair = if KEPT { pairs.get(b).copied().unwrap_or(_mm_setzero_si128()) } else { pair_sums(y) };
                    acc = block_end(i, ms, pair, x, y, acc);
                }
                sum_minus_summ(acc)
            }
        }
    };
}

/// 64 bytes of `a` from `off`, or zeros (as `load32`).
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[inline]
fn load64<T: bytemuck::Pod>(a: &[T], off: usize) -> __m512i {
    let bytes: &[u8] = bytemuck::cast_slice(a);
    match bytes.get(off..off + 64) {
        // SAFETY: the slice has 64 readable bytes; `loadu` has no alignment requirement.
        Some(s) => unsafe { _mm512_loadu_si512(s.as_ptr().cast()) },
        None => _mm512_setzero_si512(),
    }
}

rows_q4_k_512!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q4_K · q8_K rows, AVX-512 VNNI.
    fn rows_q4_k_zmm, nibbles_zmm
);
rows_q4_k_512!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni",
    /// q4_K · q8_K rows, AVX-512 VNNI + GFNI.
    fn rows_q4_k_gfni, nibbles_gfni
);
