//! Decode matvec entries (`DotRowsFn`) of Q4_K for the VNNI levels.
//!
//! Each row is computed exactly as the single dot of [`super::avx2`] (ggml's repacked
//! x86 `gemv` arithmetic): per super-block the exact i32 sums `isum = Σ scale·q·y` and
//! `msum = Σ min·bsum`, then `sum = fma(isum, d·dy, sum)` and `summ = fma(msum,
//! dmin·dy, summ)`, result `sum − summ`. Only the way the exact `isum` is obtained
//! differs: `vpdpwssd` multiplies the `maddubs` pairs by the sub-block's scale and
//! accumulates in one instruction (the AVX2 code spends a `madd` and an `add` per 32
//! values), into two accumulators (low and high nibbles) so that the chain of
//! dependent instructions per super-block is half as long.

use core::arch::x86_64::*;

use super::avx2::{f16, hsum_i32, k4_msum, k4_scales, load32, prefetch_ahead, prefetch_far};
use crate::kernels::scalar::{self, blk};
use crate::quant::{BlockQ4K, BlockQ8K};

/// AVX-VNNI: `acc + Σ2 a·b` per i32 lane (i16 pairs).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn dpw_vnni(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpwssd_avx_epi32(acc, a, b)
}

/// AVX-512 VNNI (VL): the same.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dpw_zmm(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpwssd_epi32(acc, a, b)
}

/// The high nibbles of 32 bytes, by a shift and a mask.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn high_nibbles(q: __m256i) -> __m256i {
    _mm256_and_si256(_mm256_srli_epi16::<4>(q), _mm256_set1_epi8(0x0f))
}

/// The high nibbles of 32 bytes, by one GF(2) affine transform per byte.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,gfni")]
#[inline]
fn high_nibbles_g(q: __m256i) -> __m256i {
    _mm256_gf2p8affine_epi64_epi8::<0>(q, _mm256_set1_epi64x(super::rows::GF_HIGH_NIBBLE))
}

/// Generates one `DotRowsFn` entry for Q4_K with the pair multiply-add `$dpw` and the
/// high-nibble extraction `$high`.
macro_rules! rows_q4_k {
    ($feat:literal, $(#[$doc:meta])* fn $name:ident, $dpw:ident, $high:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub(super) fn $name(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
            let ys = blk::<BlockQ8K>(y);
            let nb = n / 256;
            let wrow = nb * core::mem::size_of::<BlockQ4K>();
            for (r, o) in out.iter_mut().enumerate() {
                let row = x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
                *o = row_q4_k(blk::<BlockQ4K>(row), ys);
            }

            /// One row (`xs`) against the vector (`ys`); blocks past the shorter are
            /// ignored (the callers pass equal lengths).
            #[target_feature(enable = $feat)]
            #[inline]
            fn row_q4_k(xs: &[BlockQ4K], ys: &[BlockQ8K]) -> f32 {
                let m4 = _mm256_set1_epi8(0x0f);
                let mut sum = 0.0f32;
                let mut summ = 0.0f32;
                for (x, y) in xs.iter().zip(ys) {
                    prefetch_ahead(x);
                    prefetch_far(x);
                    let sm = k4_scales(&x.scales);
                    let sc: [i16; 8] = core::array::from_fn(|k| i16::from(sm[k]));
                    let (mut alo, mut ahi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for j in 0..4 {
                        let q4 = load32(&x.qs, 32 * j);
                        let lo = _mm256_and_si256(q4, m4);
                        let hi = $high(q4);
                        let plo = _mm256_maddubs_epi16(lo, load32(&y.qs, 64 * j));
                        let phi = _mm256_maddubs_epi16(hi, load32(&y.qs, 64 * j + 32));
                        alo = $dpw(alo, plo, _mm256_set1_epi16(sc[2 * j]));
                        ahi = $dpw(ahi, phi, _mm256_set1_epi16(sc[2 * j + 1]));
                    }
                    let isum = hsum_i32(_mm256_add_epi32(alo, ahi));
                    let (dx, dmx) = (f16(x.d), f16(x.dmin));
                    sum = scalar::fma(isum as f32, dx * y.d(), sum);
                    summ = scalar::fma(k4_msum(y, &sm) as f32, dmx * y.d(), summ);
                }
                sum - summ
            }
        }
    };
}

rows_q4_k!(
    "avx2,fma,f16c,avxvnni",
    /// q4_K · q8_K rows, AVX-VNNI.
    fn rows_q4_k_vnni, dpw_vnni, high_nibbles
);
rows_q4_k!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q4_K · q8_K rows, AVX-512 VNNI.
    fn rows_q4_k_zmm, dpw_zmm, high_nibbles
);
rows_q4_k!(
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni",
    /// q4_K · q8_K rows, AVX-512 VNNI + GFNI.
    fn rows_q4_k_gfni, dpw_zmm, high_nibbles_g
);
