//! AVX2 + FMA + F16C kernels.
//!
//! Every function here is `#[target_feature(enable = "avx2,fma,f16c")]`; they are
//! reached only through [`TABLE`], which only [`super::Avx2`] (a proof that the CPU has
//! those features) hands out. Helpers are `#[inline]` target-feature functions (Rust
//! does not allow `#[inline(always)]` together with `#[target_feature]`); being small
//! and of the same features, they are inlined into the entry functions.
//!
//! The arithmetic reproduces the scalar twins in [`crate::kernels::scalar`] exactly:
//! integer sums are exact, and the float steps are the same operations in the same
//! order (8 lanes of block terms for the 32-value blocks, one sequential sum for the
//! super-blocks, 32 lanes for float rows). Only loads are `unsafe`; each reads from a
//! slice whose length was checked just before.

use core::arch::x86_64::*;

use super::{rows, rows_k, tiles, tiles_k, tiles_q6k};
use crate::kernels::scalar::{self, blk, k_term};
use crate::kernels::table::{BatchRule, DotRowsFn, GemmFn, Kernels, TypeKernels};
use crate::kernels::{reduce32, reduce8, KernelLevel};
use crate::quant::{
    BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
};

/// The AVX2 table.
pub(super) static TABLE: Kernels = table(
    KernelLevel::Avx2,
    [
        tiles::gemm_q4_0,
        tiles::gemm_q5_0,
        tiles::gemm_q8_0,
        tiles::gemm_iq4_nl,
        tiles_k::gemm_q4_k,
        tiles_q6k::gemm_q6_k,
    ],
    [
        rows::rows_q4_0_avx2,
        rows::rows_q5_0_avx2,
        rows::rows_q8_0_avx2,
        rows::rows_iq4_nl_avx2,
    ],
    Some(rows_k::rows_q4_k_avx2),
);

/// The AVX-VNNI table: the AVX2 one with the VNNI prefill tiles.
pub(super) static TABLE_VNNI: Kernels = table(
    KernelLevel::AvxVnni,
    [
        tiles::gemm_q4_0_vnni,
        tiles::gemm_q5_0_vnni,
        tiles::gemm_q8_0_vnni,
        tiles::gemm_iq4_nl_vnni,
        tiles_k::gemm_q4_k_vnni,
        tiles_q6k::gemm_q6_k_vnni,
    ],
    [
        rows::rows_q4_0_vnni,
        rows::rows_q5_0_vnni,
        rows::rows_q8_0_vnni,
        rows::rows_iq4_nl_vnni,
    ],
    Some(rows_k::rows_q4_k_vnni),
);

/// The AVX-512 VNNI table: the AVX2 one with 512-bit VNNI prefill tiles, VNNI decode
/// rows and the AVX-512 attention entry.
pub(super) static TABLE_ZMM: Kernels = table_zmm(
    KernelLevel::Avx512Vnni,
    tiles::gemm_q5_0_zmm,
    [
        rows::rows_q5_0_zmm,
        rows::rows_iq4_nl_zmm,
        rows_k::rows_q4_k_zmm,
    ],
);

/// The AVX-512 VNNI + GFNI table: the AVX-512 VNNI one with the GFNI Q5_0 prefill tile
/// and the GFNI decode rows of Q5_0, IQ4_NL and Q4_K.
pub(super) static TABLE_GFNI: Kernels = table_zmm(
    KernelLevel::Avx512Gfni,
    tiles::gemm_q5_0_gfni,
    [
        rows::rows_q5_0_gfni,
        rows::rows_iq4_nl_gfni,
        rows_k::rows_q4_k_gfni,
    ],
);

/// The AVX-512 tables: [`table`] with the 512-bit tiles, the VNNI rows and the AVX-512
/// attention entry; the entries that differ between the AVX-512 levels are the Q5_0
/// tile `gemm_q5_0` and the decode rows `rows` of Q5_0, IQ4_NL and Q4_K.
const fn table_zmm(level: KernelLevel, gemm_q5_0: GemmFn, rows: [DotRowsFn; 3]) -> Kernels {
    let [rows_q5_0, rows_iq4_nl, rows_q4_k] = rows;
    Kernels {
        attn: super::attn::ZMM_ATTN,
        ..table(
            level,
            [
                tiles::gemm_q4_0_zmm,
                gemm_q5_0,
                tiles::gemm_q8_0_zmm,
                tiles::gemm_iq4_nl_zmm,
                tiles_k::gemm_q4_k_zmm,
                tiles_q6k::gemm_q6_k_zmm,
            ],
            [
                rows::rows_q4_0_zmm,
                rows_q5_0,
                rows::rows_q8_0_zmm,
                rows_iq4_nl,
            ],
            Some(rows_q4_k),
        )
    }
}

/// The AVX2 kernels with the prefill tiles `gemm` of Q4_0, Q5_0, Q8_0, IQ4_NL, Q4_K and
/// Q6_K (batches of 8 or more), and the decode entries `rows` of Q4_0, Q5_0, Q8_0 and
/// IQ4_NL, and `rows_q4_k` of Q4_K if the level has one.
const fn table(
    level: KernelLevel,
    gemm: [GemmFn; 6],
    rows: [DotRowsFn; 4],
    rows_q4_k: Option<DotRowsFn>,
) -> Kernels {
    Kernels {
        level,
        q4_0: TypeKernels::single(dot_q4_0)
            .with_rows(rows[0])
            .with_gemm(gemm[0]),
        q4_1: TypeKernels::tiled(dot_q4_1, dot4_q4_1).with_rows(rows_q4_1),
        q5_0: TypeKernels::single(dot_q5_0)
            .with_rows(rows[1])
            .with_gemm(gemm[1]),
        // (Every x86 level runs the AVX2 entries of the repacked layout.)
        q5_0x4: TypeKernels::single(rows::dot_q5_0x4_avx2)
            .with_rows(rows::rows_q5_0x4_avx2)
            .with_gemm(tiles::gemm_q5_0x4),
        q5_1: TypeKernels::tiled(dot_q5_1, dot4_q5_1).with_rows(rows_q5_1),
        q8_0: TypeKernels::single(dot_q8_0)
            .with_rows(rows[2])
            .with_gemm(gemm[2]),
        q2_k: TypeKernels::single(dot_q2_k),
        q3_k: TypeKernels::single(dot_q3_k),
        q4_k: TypeKernels {
            dot_rows: rows_q4_k,
            ..TypeKernels::tiled(dot_q4_k, dot4_q4_k)
                .with_batch(dot4_q4_k_batch, BatchRule::Groups4)
                .with_gemm(gemm[4])
        },
        q5_k: TypeKernels::single(dot_q5_k),
        q6_k: TypeKernels::tiled(dot_q6_k, dot4_q6_k)
            .with_batch(dot4_q6_k_batch, BatchRule::AllFrom8)
            .with_batch_gemm(gemm[5]),
        iq4_nl: TypeKernels::single(dot_iq4_nl)
            .with_rows(rows[3])
            .with_gemm(gemm[3]),
        iq4_xs: TypeKernels::single(dot_iq4_xs),
        f32: TypeKernels::single(dot_f32),
        f16: TypeKernels::single(dot_f16),
        bf16: TypeKernels::single(dot_bf16),
        f16_to_f32: f16_to_f32_row,
        f32_to_f16: f32_to_f16_row,
        swiglu: swiglu_row,
        quantize_acts,
        rope: rope_head,
        // Attention (kept in x86_64/attn.rs).
        attn: super::attn::AVX2_ATTN,
        max_logit,
        log_softmax_at,
    }
}

/// The largest logit: the portable body compiled with AVX2 (the same value).
#[target_feature(enable = "avx2,fma,f16c")]
fn max_logit(logits: &[f32]) -> f32 {
    crate::kernels::logits::max_logit_body(logits)
}

/// One token's log-probability: the portable body compiled with AVX2 (the same bits:
/// Rust contracts no multiply and add into a fused one). Gemma 3's 262,144 logits,
/// maximum included, took 373 µs here against 548 µs for the portable code.
#[target_feature(enable = "avx2,fma,f16c")]
fn log_softmax_at(logits: &[f32], l: f32, max: f32) -> f32 {
    crate::kernels::logits::log_softmax_body(logits, l, max)
}

/// Activation quantization of one row: the portable code compiled with AVX2 (same
/// bytes: no float operation is contracted or reordered).
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_acts(
    ty: crate::gguf::GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), crate::kernels::KernelError> {
    crate::kernels::acts::quantize_into(ty, src, dst)
}

/// RoPE of one head: the portable code compiled with FMA (same bits, no calls).
#[target_feature(enable = "avx2,fma,f16c")]
fn rope_head(x: &mut [f32], cs: &[(f32, f32)], neox: bool) {
    crate::model::ops::rope_head(x, cs, neox);
}

/// SwiGLU of one row: the portable code compiled with FMA (same bits, no calls).
#[target_feature(enable = "avx2,fma,f16c")]
fn swiglu_row(gate: &mut [f32], up: &[f32]) {
    crate::model::ops::swiglu_row(gate, up);
}

// ---------------------------------------------------------------- loads

/// 32 bytes of `a` from `off`, or zeros if they are not all there (never the case for
/// the constant offsets used here; the check keeps the load sound regardless).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load32<T: bytemuck::Pod>(a: &[T], off: usize) -> __m256i {
    let bytes: &[u8] = bytemuck::cast_slice(a);
    match bytes.get(off..off + 32) {
        // SAFETY: the slice has 32 readable bytes; `loadu` has no alignment requirement.
        Some(s) => unsafe { _mm256_loadu_si256(s.as_ptr().cast()) },
        None => _mm256_setzero_si256(),
    }
}

/// 16 bytes of `a` from `off`, or zeros (as [`load32`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load16<T: bytemuck::Pod>(a: &[T], off: usize) -> __m128i {
    let bytes: &[u8] = bytemuck::cast_slice(a);
    match bytes.get(off..off + 16) {
        // SAFETY: the slice has 16 readable bytes; `loadu` has no alignment requirement.
        Some(s) => unsafe { _mm_loadu_si128(s.as_ptr().cast()) },
        None => _mm_setzero_si128(),
    }
}

/// 8 bytes of `a` from `off` into the low half, or zeros (as [`load32`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8<T: bytemuck::Pod>(a: &[T], off: usize) -> __m128i {
    let bytes: &[u8] = bytemuck::cast_slice(a);
    match bytes.get(off..off + 8) {
        // SAFETY: the slice has 8 readable bytes; `loadl` has no alignment requirement.
        Some(s) => unsafe { _mm_loadl_epi64(s.as_ptr().cast()) },
        None => _mm_setzero_si128(),
    }
}

/// How far ahead the K-quant decode kernels also prefetch into L2, in bytes.
const PREFETCH_FAR: usize = 8192;

/// Prefetch into L2 the cache lines `PREFETCH_FAR` bytes past `v`: with the L1
/// prefetch of [`prefetch_ahead`] nearer, the K-quant matvec on the real models' shapes
/// streamed 7-17% faster (cold, 1 thread).
#[inline(always)]
pub(super) fn prefetch_far<T>(v: *const T) {
    prefetch_lines::<true>(
        v.cast::<i8>().wrapping_add(PREFETCH_FAR),
        core::mem::size_of::<T>(),
    );
}

/// Prefetch into L1 (`L2 == false`) or L2 the cache lines of the `span` bytes from `p`
/// (a hint: any address is fine).
#[inline(always)]
pub(super) fn prefetch_lines<const L2: bool>(p: *const i8, span: usize) {
    for line in (0..span).step_by(64) {
        let l = p.wrapping_add(line);
        // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and
        // does not read memory as far as the program is concerned. The pointer is made
        // with `wrapping_add`, so computing it is defined even past the allocation.
        unsafe {
            if L2 {
                _mm_prefetch::<_MM_HINT_T1>(l)
            } else {
                _mm_prefetch::<_MM_HINT_T0>(l)
            }
        };
    }
}

/// How far ahead of the weights being read to prefetch, in bytes (0: never).
const PREFETCH_AHEAD: usize = 2048;

/// Prefetch the cache lines `PREFETCH_AHEAD` bytes past `v` (usually the next row of
/// the matrix: rows are contiguous).
#[inline(always)]
pub(super) fn prefetch_ahead<T>(v: *const T) {
    if PREFETCH_AHEAD == 0 {
        return;
    }
    prefetch_lines::<false>(
        v.cast::<i8>().wrapping_add(PREFETCH_AHEAD),
        core::mem::size_of::<T>(),
    );
}

/// Wrapping sum of `data` as little-endian u64 (a ragged tail is ignored), read with
/// 32-byte loads and the same prefetching as the kernels: the read-bandwidth probe.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn read_sum(data: &[u8]) -> u64 {
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut chunks = data.chunks_exact(128);
    for c in &mut chunks {
        prefetch_ahead::<[u8; 128]>(c.as_ptr().cast());
        for (k, a) in acc.iter_mut().enumerate() {
            *a = _mm256_add_epi64(*a, load32(c, 32 * k));
        }
    }
    let mut lanes = [0u64; 16];
    for (k, a) in acc.iter().enumerate() {
        // SAFETY: `lanes[4k..4k+4]` is in bounds (k < 4); `storeu` has no alignment need.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().add(4 * k).cast(), *a) };
    }
    let tail = chunks.remainder().chunks_exact(8);
    let t = tail.map(|b| b.try_into().map_or(0, u64::from_le_bytes));
    lanes.into_iter().chain(t).fold(0, u64::wrapping_add)
}

// ---------------------------------------------------------------- integer helpers

/// Horizontal sum of 8 i32 (exact, wrapping like the scalar code never needs to).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// Σ over pairs of signed bytes `x·y` into 8 i32 (`y` must not contain −128).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn mul_sum_i8_pairs(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

/// Σ over pairs of unsigned bytes `x` times signed bytes `y` into 8 i32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mul_sum_us8_pairs(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// The 32 nibbles of 16 bytes: low nibbles in bytes 0..16, high nibbles in 16..32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn nibbles(qs: __m128i) -> __m256i {
    let m4 = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(qs, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), m4);
    _mm256_set_m128i(hi, lo)
}

/// 32 bytes, byte `i` = 0xff if bit `i` of `bits` is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn bytes_from_bits(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// One f16 (little-endian) → f32 with F16C, exactly.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
        u16::from_le_bytes(b),
    ))))
}

/// The f16 `d` (first field) of each of 8 consecutive blocks (of at least 2 bytes
/// each), as 8 f32, exactly.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn d_x8<B: bytemuck::Pod>(blocks: &[B; 8]) -> __m256 {
    // The 8 f16 bit patterns packed into two u64 by scalar loads, shifts and ors, which
    // run on the integer units beside the vector work. A `vpgatherdd` did it in one
    // instruction, but on AMD's Zen 3 the gather and the wait for it took 13% of the
    // AVX2 Q5_0 prefill tile's time (perf, Qwen's 481-token prompt); on Intel (session
    // 9) this form was as fast from memory and 4-11% faster in cache.
    let bytes: &[u8] = bytemuck::cast_slice(blocks.as_slice());
    let (lo, hi) = (d_bits4::<B>(bytes, 0), d_bits4::<B>(bytes, 4));
    _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
}

/// [`d_x8`] for 4 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn d_x4<B: bytemuck::Pod>(blocks: &[B; 4]) -> __m128 {
    let bytes: &[u8] = bytemuck::cast_slice(blocks.as_slice());
    _mm_cvtph_ps(_mm_set_epi64x(0, d_bits4::<B>(bytes, 0) as i64))
}

/// The f16 bit patterns of the `d` (first field) of blocks `first..first + 4` of
/// `bytes` (blocks of `B`), packed into a u64, the first in the low 16 bits; 0 for a
/// block that is not all there.
#[inline(always)]
fn d_bits4<B>(bytes: &[u8], first: usize) -> u64 {
    let size = core::mem::size_of::<B>();
    let h = |i: usize| match bytes.get(i * size..i * size + 2) {
        Some(&[a, b]) => u64::from(u16::from_le_bytes([a, b])),
        _ => 0,
    };
    h(first) | h(first + 1) << 16 | h(first + 2) << 32 | h(first + 3) << 48
}

// ---------------------------------------------------------------- 32-value blocks

/// The most blocks per row the multi-row entries convert the vector's scales for at
/// once (16384 values); longer rows go through the single dot row by row.
const ROWS_MAX_BLOCKS: usize = 512;

/// The 4-vector entry (`Dot4Fn`) of a tile kernel `$tile::<N>`.
macro_rules! dot4_entry {
    ($(#[$doc:meta])* fn $name4:ident, $tile:ident) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name4(x: &[u8], ys: [&[u8]; 4], nv: usize, _n: usize, out: &mut [f32; 4]) {
            match nv {
                0 => {}
                1 => out[0] = $tile::<1>(x, &[ys[0]])[0],
                2 => out[..2].copy_from_slice(&$tile::<2>(x, &[ys[0], ys[1]])),
                3 => out[..3].copy_from_slice(&$tile::<3>(x, &[ys[0], ys[1], ys[2]])),
                _ => *out = $tile::<4>(x, &ys),
            }
        }
    };
}

/// The kernels of one 32-value block type against its activation blocks:
/// `$unpack(x)` gives the block's 32 quants as bytes, `$mul(q, y)` the 8 partial i32
/// of their products with 32 activation bytes. Generates the tile kernel for `N`
/// vectors (each weight block unpacked once), the single dot and the multi-row entry;
/// types without a prefill tile (`super::tiles`) also take `dot4_entry!`.
macro_rules! dot32 {
    (
        $(#[$doc:meta])*
        fn $name:ident, $rows:ident, $tile:ident($X:ty, $Y:ty) {
            unpack: $unpack:ident,
            mul: $mul:ident,
            min: $min:tt,
        }
    ) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $tile<const N: usize>(x: &[u8], ys: &[&[u8]; N]) -> [f32; N] {
            let xs = blk::<$X>(x);
            let mut yss: [&[$Y]; N] = [&[]; N];
            for (d, s) in yss.iter_mut().zip(ys) {
                *d = blk::<$Y>(s);
            }
            let nb = yss.iter().fold(xs.len(), |m, y| m.min(y.len()));
            let mut acc = [_mm256_setzero_ps(); N];
            let mut summs = [0.0f32; N];
            // ggml: per block, lane k of Σ (4 products) to f32, and one fused
            // multiply-add with the f32 product of the two scales, blocks in order.
            // Groups of 8 blocks convert their 8 scales at once.
            let mut g = 0;
            while g + 8 <= nb {
                let Some(xg) = xs.get(g..g + 8).and_then(|s| <&[$X; 8]>::try_from(s).ok()) else {
                    break;
                };
                prefetch_ahead(xg);
                let dx = d_x8(xg);
                let mut q = [_mm256_setzero_si256(); 8];
                for (d, b) in q.iter_mut().zip(xg) {
                    *d = $unpack(b);
                }
                for v in 0..N {
                    let Some(yg) = yss[v].get(g..g + 8).and_then(|s| <&[$Y; 8]>::try_from(s).ok()) else {
                        continue;
                    };
                    let dd = _mm256_mul_ps(dx, d_x8(yg));
                    let mut a = acc[v];
                    for i in 0..8 {
                        let p = _mm256_cvtepi32_ps($mul(q[i], load32(&yg[i].qs, 0)));
                        let d = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(i as i32));
                        a = _mm256_fmadd_ps(d, p, a);
                        if $min {
                            // Q4_1 / Q5_1: `m` and `s` are the second f16 of their blocks.
                            summs[v] += f16_second(&xg[i]) * f16_second(&yg[i]);
                        }
                    }
                    acc[v] = a;
                }
                g += 8;
            }
            for b in g..nb {
                let Some(xb) = xs.get(b) else { break };
                let q = $unpack(xb);
                let dx = f16(xb.d);
                for v in 0..N {
                    let Some(yb) = yss[v].get(b) else { continue };
                    let p = _mm256_cvtepi32_ps($mul(q, load32(&yb.qs, 0)));
                    acc[v] = _mm256_fmadd_ps(_mm256_set1_ps(dx * f16(yb.d)), p, acc[v]);
                    if $min {
                        summs[v] += f16_second(xb) * f16_second(yb);
                    }
                }
            }
            let mut out = [0.0f32; N];
            for v in 0..N {
                let mut lanes = [0.0f32; 8];
                // SAFETY: `lanes` has room for 8 f32; `storeu` has no alignment requirement.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[v]) };
                out[v] = if $min { reduce8(lanes) + summs[v] } else { reduce8(lanes) };
            }
            out
        }

        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let [r] = $tile::<1>(x, &[y]);
            r
        }

        /// Consecutive rows against one vector (see `DotRowsFn`): each row exactly as
        /// the single dot, with the vector's block scales converted once for all rows
        /// and no call per row.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) fn $rows(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
            let ys = blk::<$Y>(y);
            let nb = n / 32;
            let wrow = nb * core::mem::size_of::<$X>();
            let row = |r: usize| x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
            if nb > ROWS_MAX_BLOCKS || ys.len() != nb {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = $tile::<1>(row(r), &[y])[0];
                }
                return;
            }
            let mut dy = [0.0f32; ROWS_MAX_BLOCKS];
            let mut g = 0;
            while g + 8 <= nb {
                let yg = ys.get(g..g + 8).and_then(|s| <&[$Y; 8]>::try_from(s).ok());
                if let (Some(yg), Some(d)) = (yg, dy.get_mut(g..g + 8)) {
                    // SAFETY: `d` has room for 8 f32; `storeu` has no alignment requirement.
                    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), d_x8(yg)) };
                }
                g += 8;
            }
            let whole = g;
            for (d, yb) in dy.iter_mut().zip(ys).skip(whole) {
                *d = f16(yb.d);
            }
            for (r, o) in out.iter_mut().enumerate() {
                let xs = blk::<$X>(row(r));
                if xs.len() != nb {
                    *o = $tile::<1>(row(r), &[y])[0];
                    continue;
                }
                // The arithmetic of `$tile::<1>`, block for block.
                let mut acc = _mm256_setzero_ps();
                let mut summ = 0.0f32;
                let mut g = 0;
                while g + 8 <= nb {
                    let xg = xs.get(g..g + 8).and_then(|s| <&[$X; 8]>::try_from(s).ok());
                    let yg = ys.get(g..g + 8).and_then(|s| <&[$Y; 8]>::try_from(s).ok());
                    let dyg = dy.get(g..g + 8).and_then(|s| <&[f32; 8]>::try_from(s).ok());
                    let (Some(xg), Some(yg), Some(dyg)) = (xg, yg, dyg) else { break };
                    prefetch_ahead(xg);
                    // SAFETY: `dyg` holds 8 f32; `loadu` has no alignment requirement.
                    let dd = _mm256_mul_ps(d_x8(xg), unsafe { _mm256_loadu_ps(dyg.as_ptr()) });
                    for i in 0..8 {
                        let p = _mm256_cvtepi32_ps($mul($unpack(&xg[i]), load32(&yg[i].qs, 0)));
                        let d = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(i as i32));
                        acc = _mm256_fmadd_ps(d, p, acc);
                        if $min {
                            summ += f16_second(&xg[i]) * f16_second(&yg[i]);
                        }
                    }
                    g += 8;
                }
                for ((xb, yb), &dyb) in xs.iter().zip(ys).zip(&dy).skip(whole) {
                    let p = _mm256_cvtepi32_ps($mul($unpack(xb), load32(&yb.qs, 0)));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(xb.d) * dyb), p, acc);
                    if $min {
                        summ += f16_second(xb) * f16_second(yb);
                    }
                }
                let mut lanes = [0.0f32; 8];
                // SAFETY: `lanes` has room for 8 f32; `storeu` has no alignment requirement.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                *o = if $min { reduce8(lanes) + summ } else { reduce8(lanes) };
            }
        }
    };
}

/// The second f16 of a block (`m` of Q4_1/Q5_1, `s` of Q8_1) as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f16_second<B: bytemuck::Pod>(b: &B) -> f32 {
    let bytes: &[u8] = bytemuck::bytes_of(b);
    match bytes.get(2..4) {
        Some(&[a, c]) => f16([a, c]),
        _ => 0.0,
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_q4_0(x: &BlockQ4_0) -> __m256i {
    _mm256_sub_epi8(nibbles(load16(&x.qs, 0)), _mm256_set1_epi8(8))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_q4_1(x: &BlockQ4_1) -> __m256i {
    nibbles(load16(&x.qs, 0))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_q5_0(x: &BlockQ5_0) -> __m256i {
    // Bytes without their fifth bit get 0xf0 ORed in: (q | 0xf0) = q − 16 as i8.
    let hi = _mm256_andnot_si256(bytes_from_bits(x.qh()), _mm256_set1_epi8(0xf0u8 as i8));
    _mm256_or_si256(nibbles(load16(&x.qs, 0)), hi)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_q5_1(x: &BlockQ5_1) -> __m256i {
    let hi = _mm256_and_si256(bytes_from_bits(x.qh()), _mm256_set1_epi8(0x10));
    _mm256_or_si256(nibbles(load16(&x.qs, 0)), hi)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_q8_0(x: &BlockQ8_0) -> __m256i {
    load32(&x.qs, 0)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn iq4nl_table() -> __m256i {
    _mm256_broadcastsi128_si256(load16(&KVALUES_IQ4NL, 0))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_iq4_nl(x: &BlockIQ4NL) -> __m256i {
    _mm256_shuffle_epi8(iq4nl_table(), nibbles(load16(&x.qs, 0)))
}

dot32! {
    /// q4_0 · q8_0.
    fn dot_q4_0, rows_q4_0, tile_q4_0(BlockQ4_0, BlockQ8_0) {
        unpack: unpack_q4_0,
        mul: mul_sum_i8_pairs,
        min: false,
    }
}

dot32! {
    /// q4_1 · q8_1: `(dx·dy)·Σ + mx·sy`.
    fn dot_q4_1, rows_q4_1, tile_q4_1(BlockQ4_1, BlockQ8_1) {
        unpack: unpack_q4_1,
        mul: mul_sum_us8_pairs,
        min: true,
    }
}

dot4_entry!(
    /// Up to 4 vectors at once (see `Dot4Fn`).
    fn dot4_q4_1, tile_q4_1
);

dot32! {
    /// q5_0 · q8_0.
    fn dot_q5_0, rows_q5_0, tile_q5_0(BlockQ5_0, BlockQ8_0) {
        unpack: unpack_q5_0,
        mul: mul_sum_i8_pairs,
        min: false,
    }
}

dot32! {
    /// q5_1 · q8_1: `(dx·dy)·Σ + mx·sy`.
    fn dot_q5_1, rows_q5_1, tile_q5_1(BlockQ5_1, BlockQ8_1) {
        unpack: unpack_q5_1,
        mul: mul_sum_us8_pairs,
        min: true,
    }
}

dot4_entry!(
    /// Up to 4 vectors at once (see `Dot4Fn`).
    fn dot4_q5_1, tile_q5_1
);

dot32! {
    /// q8_0 · q8_0 (weights may hold −128, activations never do: see
    /// [`mul_sum_i8_pairs`]).
    fn dot_q8_0, rows_q8_0, tile_q8_0(BlockQ8_0, BlockQ8_0) {
        unpack: unpack_q8_0,
        mul: mul_sum_i8_pairs,
        min: false,
    }
}

dot32! {
    /// iq4_nl · q8_0.
    fn dot_iq4_nl, rows_iq4_nl, tile_iq4_nl(BlockIQ4NL, BlockQ8_0) {
        unpack: unpack_iq4_nl,
        mul: mul_sum_i8_pairs,
        min: false,
    }
}

// ---------------------------------------------------------------- super-blocks

/// Byte shuffles that spread scales `2m` and `2m + 1` over 8 bytes each.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scale_pair(scales: __m128i, m: usize) -> __m256i {
    let a = (2 * m) as i8;
    let b = a + 1;
    let mask = _mm_set_epi8(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, mask))
}

/// Sum the super-block terms in order.
macro_rules! sequential {
    ($xs:expr, $ys:expr, |$x:ident, $y:ident| $term:expr) => {{
        let mut sum = 0.0f32;
        for ($x, $y) in $xs.iter().zip($ys) {
            prefetch_ahead($x);
            sum += $term;
        }
        sum
    }};
}

/// q2_K · q8_K.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q2_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (xs, ys) = (blk::<BlockQ2K>(x), blk::<BlockQ8K>(y));
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0f);
    sequential!(xs, ys, |x, y| {
        let sc = load16(&x.scales, 0);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc), m4));
        let msum = hsum_i32(_mm256_madd_epi16(load32(&y.bsums, 0), mins));
        let scales = _mm_and_si128(sc, m4);
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let q2 = load32(&x.qs, 32 * h);
            for s in 0..4 {
                let q = _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * s as i32)), m3);
                let p = _mm256_maddubs_epi16(q, load32(&y.qs, 128 * h + 32 * s));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(scales, 4 * h + s)));
            }
        }
        k_term(y.d() * f16(x.d), hsum_i32(acc), y.d() * f16(x.dmin), msum)
    })
}

/// The 16 scales of a Q3_K block, minus 32, as i8 (ggml's kmask unpacking).
#[inline]
fn q3_k_scales(x: &BlockQ3K) -> [u8; 16] {
    let w = |i: usize| {
        u32::from_le_bytes([
            x.scales[4 * i],
            x.scales[4 * i + 1],
            x.scales[4 * i + 2],
            x.scales[4 * i + 3],
        ])
    };
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let s = [
        (a0 & k2) | ((tmp & k1) << 4),
        (a1 & k2) | (((tmp >> 2) & k1) << 4),
        ((a0 >> 4) & k2) | (((tmp >> 4) & k1) << 4),
        ((a1 >> 4) & k2) | (((tmp >> 6) & k1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, v) in out.chunks_exact_mut(4).zip(s) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    out.map(|b| b.wrapping_sub(32))
}

/// q3_K · q8_K.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q3_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (xs, ys) = (blk::<BlockQ3K>(x), blk::<BlockQ8K>(y));
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let zero = _mm256_setzero_si256();
    sequential!(xs, ys, |x, y| {
        let scales = load16(&q3_k_scales(x), 0);
        let hm = load32(&x.hmask, 0);
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let q3 = load32(&x.qs, 32 * h);
            for s in 0..4 {
                let low =
                    _mm256_and_si256(_mm256_srl_epi16(q3, _mm_cvtsi32_si128(2 * s as i32)), m3);
                let bit = _mm256_set1_epi8((1u8 << (4 * h + s)) as i8);
                let no_high = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), zero);
                let sub = _mm256_and_si256(no_high, four);
                let q8 = load32(&y.qs, 128 * h + 32 * s);
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(low, q8), _mm256_maddubs_epi16(sub, q8));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(scales, 4 * h + s)));
            }
        }
        k_term(f16(x.d) * y.d(), hsum_i32(acc), 0.0, 0)
    })
}

/// Scales and mins of a Q4_K / Q5_K block (ggml's kmask unpacking): bytes 0..8 are the
/// scales, 8..16 the mins.
#[inline]
pub(super) fn k4_scales(scales: &[u8; 12]) -> [u8; 16] {
    let w = |i: usize| {
        u32::from_le_bytes([
            scales[4 * i],
            scales[4 * i + 1],
            scales[4 * i + 2],
            scales[4 * i + 3],
        ])
    };
    let (k1, k2, k3) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let s = [
        u0 & k1,
        (u2 & k2) | (((u0 >> 6) & k3) << 4),
        u1 & k1,
        ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, v) in out.chunks_exact_mut(4).zip(s) {
        o.copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// `Σ_j bsum_j · min_{j/2}` for a Q4_K / Q5_K block, from the unpacked scales.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn k4_msum(y: &BlockQ8K, sm: &[u8; 16]) -> i32 {
    let mins = load8(sm, 8);
    let spread = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    let mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(mins, spread));
    hsum_i32(_mm256_madd_epi16(load32(&y.bsums, 0), mins))
}

/// Generate the single-vector and 4-vector entry points of a super-block tile kernel.
macro_rules! k_entries {
    ($(#[$doc:meta])* fn $name:ident, $name4:ident, $tile:ident) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let [r] = $tile::<1>(x, &[y]);
            r
        }

        dot4_entry!(
            /// Up to 4 vectors at once (see `Dot4Fn`).
            fn $name4, $tile
        );
    };
}

/// The activation blocks of `N` vectors and the number of blocks all rows have.
fn k_rows<'a, const N: usize>(nx: usize, ys: &[&'a [u8]; N]) -> ([&'a [BlockQ8K]; N], usize) {
    let mut yss: [&[BlockQ8K]; N] = [&[]; N];
    for (d, s) in yss.iter_mut().zip(ys) {
        *d = blk::<BlockQ8K>(s);
    }
    let nb = yss.iter().fold(nx, |m, y| m.min(y.len()));
    (yss, nb)
}

/// q4_K · q8_K for `N` vectors, each weight block unpacked once, in the arithmetic of
/// ggml's repacked x86 `gemv` (one vector): exact i32 sums, `acc = fma(isum, d·dy, acc)`
/// and `accm = fma(msum, dmin·dy, accm)` per super-block, result `acc − accm`.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4_k<const N: usize>(x: &[u8], ys: &[&[u8]; N]) -> [f32; N] {
    let xs = blk::<BlockQ4K>(x);
    let (yss, nb) = k_rows(xs.len(), ys);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut sum = [0.0f32; N];
    let mut summ = [0.0f32; N];
    for (i, x) in xs.iter().enumerate().take(nb) {
        prefetch_ahead(x);
        prefetch_far(x);
        let sm = k4_scales(&x.scales);
        let (dx, dmx) = (f16(x.d), f16(x.dmin));
        let mut acc = [_mm256_setzero_si256(); N];
        for j in 0..4 {
            let q4 = load32(&x.qs, 32 * j);
            let lo = _mm256_and_si256(q4, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4);
            let slo = _mm256_set1_epi16(i16::from(sm[2 * j]));
            let shi = _mm256_set1_epi16(i16::from(sm[2 * j + 1]));
            for v in 0..N {
                let Some(y) = yss[v].get(i) else { continue };
                let plo = _mm256_maddubs_epi16(lo, load32(&y.qs, 64 * j));
                let phi = _mm256_maddubs_epi16(hi, load32(&y.qs, 64 * j + 32));
                let p = _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi));
                acc[v] = _mm256_add_epi32(acc[v], p);
            }
        }
        for v in 0..N {
            let Some(y) = yss[v].get(i) else { continue };
            sum[v] = scalar::fma(hsum_i32(acc[v]) as f32, dx * y.d(), sum[v]);
            summ[v] = scalar::fma(k4_msum(y, &sm) as f32, dmx * y.d(), summ[v]);
        }
    }
    core::array::from_fn(|v| sum[v] - summ[v])
}

/// The lane sums of 4 vectors of 8 i32: `[Σa, Σb, Σc, Σd]` (exact).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum4_i32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    let abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    _mm_add_epi32(
        _mm256_castsi256_si128(abcd),
        _mm256_extracti128_si256::<1>(abcd),
    )
}

/// q4_K · q8_K for `N` vectors in the arithmetic of ggml's repacked x86 `gemm` (the
/// batch kernel; see `scalar::dot_q4_k_batch`): per pair of sub-blocks `j`, exact
/// `isum_j` and `msum_j`, then `acc = fma(isum_j, d·dy, acc)` and `accm = fma(msum_j,
/// dmin·dy, accm)` in order of `j`. The four `isum_j` and `msum_j` of a super-block are
/// reduced together in vector registers; only the fused multiply-adds are scalar.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q4_k_batch<const N: usize>(x: &[u8], ys: &[&[u8]; N]) -> [f32; N] {
    let xs = blk::<BlockQ4K>(x);
    let (yss, nb) = k_rows(xs.len(), ys);
    let m4 = _mm256_set1_epi8(0x0f);
    let spread = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    let mut sum = [0.0f32; N];
    let mut summ = [0.0f32; N];
    for (i, x) in xs.iter().enumerate().take(nb) {
        prefetch_ahead(x);
        let sm = k4_scales(&x.scales);
        let (dx, dmx) = (f16(x.d), f16(x.dmin));
        // Quants (low, high nibbles) and scales of the 8 sub-blocks, once per row block.
        let mut q = [_mm256_setzero_si256(); 8];
        let mut sc = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let q4 = load32(&x.qs, 32 * j);
            q[2 * j] = _mm256_and_si256(q4, m4);
            q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4);
            sc[2 * j] = _mm256_set1_epi16(i16::from(sm[2 * j]));
            sc[2 * j + 1] = _mm256_set1_epi16(i16::from(sm[2 * j + 1]));
        }
        // Mins m_k spread over the i16 pairs of the block sums: madd gives
        // m_k·(bsum_2k + bsum_2k+1), and msum_j = those of k = 2j and 2j + 1.
        let mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(load8(&sm, 8), spread));
        for v in 0..N {
            let Some(y) = yss[v].get(i) else { continue };
            let mut p = [_mm256_setzero_si256(); 4];
            for (j, pj) in p.iter_mut().enumerate() {
                let plo = _mm256_maddubs_epi16(q[2 * j], load32(&y.qs, 64 * j));
                let phi = _mm256_maddubs_epi16(q[2 * j + 1], load32(&y.qs, 64 * j + 32));
                *pj = _mm256_add_epi32(
                    _mm256_madd_epi16(plo, sc[2 * j]),
                    _mm256_madd_epi16(phi, sc[2 * j + 1]),
                );
            }
            let isum = _mm_cvtepi32_ps(hsum4_i32(p[0], p[1], p[2], p[3]));
            let e = _mm256_madd_epi16(load32(&y.bsums, 0), mins);
            let e = _mm256_hadd_epi32(e, e);
            let msum =
                _mm_unpacklo_epi64(_mm256_castsi256_si128(e), _mm256_extracti128_si256::<1>(e));
            let msum = _mm_cvtepi32_ps(msum);
            let (mut fi, mut fm) = ([0.0f32; 4], [0.0f32; 4]);
            // SAFETY: both arrays have room for 4 f32; `storeu` needs no alignment.
            unsafe {
                _mm_storeu_ps(fi.as_mut_ptr(), isum);
                _mm_storeu_ps(fm.as_mut_ptr(), msum);
            }
            let (d, dm) = (dx * y.d(), dmx * y.d());
            for j in 0..4 {
                sum[v] = scalar::fma(fi[j], d, sum[v]);
                summ[v] = scalar::fma(fm[j], dm, summ[v]);
            }
        }
    }
    core::array::from_fn(|v| sum[v] - summ[v])
}

dot4_entry!(
    /// q4_K · q8_K, llama.cpp's batch arithmetic.
    fn dot4_q4_k_batch, tile_q4_k_batch
);

k_entries!(
    /// q4_K · q8_K.
    fn dot_q4_k, dot4_q4_k, tile_q4_k
);

/// q5_K · q8_K.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q5_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (xs, ys) = (blk::<BlockQ5K>(x), blk::<BlockQ8K>(y));
    let m4 = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    sequential!(xs, ys, |x, y| {
        let sm = k4_scales(&x.scales);
        let qh = load32(&x.qh, 0);
        let mut acc = _mm256_setzero_si256();
        for j in 0..4 {
            let q4 = load32(&x.qs, 32 * j);
            let hlo = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32)), one);
            let hhi = _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32 + 1)),
                one,
            );
            let lo = _mm256_or_si256(_mm256_and_si256(q4, m4), _mm256_slli_epi16::<4>(hlo));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4),
                _mm256_slli_epi16::<4>(hhi),
            );
            let plo = _mm256_maddubs_epi16(lo, load32(&y.qs, 64 * j));
            let phi = _mm256_maddubs_epi16(hi, load32(&y.qs, 64 * j + 32));
            let plo = _mm256_madd_epi16(plo, _mm256_set1_epi16(i16::from(sm[2 * j])));
            let phi = _mm256_madd_epi16(phi, _mm256_set1_epi16(i16::from(sm[2 * j + 1])));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
        }
        k_term(
            f16(x.d) * y.d(),
            hsum_i32(acc),
            f16(x.dmin) * y.d(),
            k4_msum(y, &sm),
        )
    })
}

/// The 8 lanes of ggml's x86 q6_K kernel (see `scalar::q6_k_lanes`) of one weight
/// super-block against block `i` of `N` activation rows (zero where a row is short).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6_k_lanes<const N: usize>(x: &BlockQ6K, yss: &[&[BlockQ8K]; N], i: usize) -> [__m256i; N] {
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(3);
    let scales = load16(&x.scales, 0);
    let mut acc = [_mm256_setzero_si256(); N];
    for h in 0..2 {
        let ql0 = load32(&x.ql, 64 * h);
        let ql1 = load32(&x.ql, 64 * h + 32);
        let qh = load32(&x.qh, 32 * h);
        let hb = |k: i32| {
            _mm256_slli_epi16::<4>(_mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(k)),
                m3,
            ))
        };
        let v = [
            _mm256_or_si256(_mm256_and_si256(ql0, m4), hb(0)),
            _mm256_or_si256(_mm256_and_si256(ql1, m4), hb(2)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), hb(4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), hb(6)),
        ];
        for (k, v) in v.into_iter().enumerate() {
            let sc = scale_pair(scales, 4 * h + k);
            for (a, y) in acc.iter_mut().zip(yss) {
                let Some(y) = y.get(i) else { continue };
                // Unsigned quants (0..=63); the −32 comes from the block sums below.
                let p = _mm256_maddubs_epi16(v, load32(&y.qs, 128 * h + 32 * k));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, sc));
            }
        }
    }
    let scales16 = _mm256_cvtepi8_epi16(scales);
    for (a, y) in acc.iter_mut().zip(yss) {
        let Some(y) = y.get(i) else { continue };
        // ggml: lane k −= 32·(bsum[2k]·sc[2k] + bsum[2k+1]·sc[2k+1]).
        let bs = _mm256_madd_epi16(load32(&y.bsums, 0), scales16);
        *a = _mm256_sub_epi32(*a, _mm256_slli_epi32::<5>(bs));
    }
    acc
}

/// q6_K · q8_K for `N` vectors, each weight block unpacked once: per super-block
/// `acc_k = fma(d·dy, lane_k, acc_k)`, then `reduce8`.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q6_k<const N: usize>(x: &[u8], ys: &[&[u8]; N]) -> [f32; N] {
    let xs = blk::<BlockQ6K>(x);
    let (yss, nb) = k_rows(xs.len(), ys);
    let mut accf = [_mm256_setzero_ps(); N];
    for (i, x) in xs.iter().enumerate().take(nb) {
        prefetch_ahead(x);
        prefetch_far(x);
        let lanes = q6_k_lanes(x, &yss, i);
        let dx = f16(x.d);
        for ((f, l), y) in accf.iter_mut().zip(lanes).zip(&yss) {
            let Some(y) = y.get(i) else { continue };
            *f = _mm256_fmadd_ps(_mm256_set1_ps(dx * y.d()), _mm256_cvtepi32_ps(l), *f);
        }
    }
    core::array::from_fn(|v| {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` has room for 8 f32; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), accf[v]) };
        reduce8(lanes)
    })
}

k_entries!(
    /// q6_K · q8_K.
    fn dot_q6_k, dot4_q6_k, tile_q6_k
);

/// q6_K · q8_K as llama.cpp's tiled x86 matmul (see `scalar::dot_q6_k_batch`): per
/// super-block the exact i32 sum, `acc = fma(d·isum, dy, acc)`, for `N` vectors.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q6_k_batch<const N: usize>(x: &[u8], ys: &[&[u8]; N]) -> [f32; N] {
    let xs = blk::<BlockQ6K>(x);
    let (yss, nb) = k_rows(xs.len(), ys);
    let mut sum = [0.0f32; N];
    for (i, x) in xs.iter().enumerate().take(nb) {
        prefetch_ahead(x);
        let lanes = q6_k_lanes(x, &yss, i);
        let dx = f16(x.d);
        for ((s, l), y) in sum.iter_mut().zip(lanes).zip(&yss) {
            let Some(y) = y.get(i) else { continue };
            *s = scalar::fma(dx * hsum_i32(l) as f32, y.d(), *s);
        }
    }
    sum
}

dot4_entry!(
    /// q6_K · q8_K, llama.cpp's batch arithmetic.
    fn dot4_q6_k_batch, tile_q6_k_batch
);

/// iq4_xs · q8_K.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_iq4_xs(x: &[u8], y: &[u8], _n: usize) -> f32 {
    let (xs, ys) = (blk::<BlockIQ4XS>(x), blk::<BlockQ8K>(y));
    let table = iq4nl_table();
    sequential!(xs, ys, |x, y| {
        let mut acc = _mm256_setzero_si256();
        for ib in 0..8 {
            let q = _mm256_shuffle_epi8(table, nibbles(load16(&x.qs, 16 * ib)));
            let q8 = load32(&y.qs, 32 * ib);
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(q8, q));
            let ls = _mm256_set1_epi16(x.scale(ib) as i16);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ls));
        }
        k_term(f16(x.d) * y.d(), hsum_i32(acc), 0.0, 0)
    })
}

// ---------------------------------------------------------------- float rows

/// 32-lane float dot: `$load(bytes, offset)` gives 8 f32 from `$w`-byte values.
macro_rules! dot_float {
    ($(#[$doc:meta])* fn $name:ident, $w:expr, $load:ident, $scalar:path, fused: $fused:expr) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let n = (x.len() / $w).min(y.len() / $w);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                if let Some(chunk) = x.get($w * i..$w * (i + 32)) {
                    prefetch_ahead::<[u8; 32 * $w]>(chunk.as_ptr().cast::<[u8; 32 * $w]>());
                }
                for (k, a) in acc.iter_mut().enumerate() {
                    let off = $w * (i + 8 * k);
                    let (xv, yv) = ($load(x, off), $load(y, off));
                    *a = if $fused {
                        // Exact products: fusing the add changes nothing.
                        _mm256_fmadd_ps(xv, yv, *a)
                    } else {
                        _mm256_add_ps(*a, _mm256_mul_ps(xv, yv))
                    };
                }
                i += 32;
            }
            let mut lanes = [0.0f32; 32];
            for (k, a) in acc.iter().enumerate() {
                // SAFETY: `lanes[8k..8k+8]` is in bounds (k < 4); no alignment needed.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * k), *a) };
            }
            // The tail, lane by lane, exactly as the scalar twin.
            for j in i..n {
                let a = x.get($w * j..$w * j + $w).and_then(|s| s.try_into().ok());
                let b = y.get($w * j..$w * j + $w).and_then(|s| s.try_into().ok());
                if let (Some(a), Some(b)) = (a, b) {
                    lanes[j % 32] += $scalar(a) * $scalar(b);
                }
            }
            reduce32(lanes)
        }
    };
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_f32x8(b: &[u8], off: usize) -> __m256 {
    _mm256_castsi256_ps(load32(b, off))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_f16x8(b: &[u8], off: usize) -> __m256 {
    _mm256_cvtph_ps(load16(b, off))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_bf16x8(b: &[u8], off: usize) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load16(
        b, off,
    ))))
}

fn f32_le(b: [u8; 4]) -> f32 {
    f32::from_le_bytes(b)
}

fn bf16_le(b: [u8; 2]) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
}

dot_float!(
    /// f32 · f32 (multiply, then add: not fused, as the scalar twin).
    fn dot_f32, 4, load_f32x8, f32_le, fused: false
);
dot_float!(
    /// f16 · f16.
    fn dot_f16, 2, load_f16x8, f16, fused: true
);
dot_float!(
    /// bf16 · bf16.
    fn dot_bf16, 2, load_bf16x8, bf16_le, fused: true
);

// ---------------------------------------------------------------- f16 rows

/// f16 → f32 (`vcvtph2ps`, exact) for `min(src.len() / 2, dst.len())` values.
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_cvtph_ps(load16(src, 2 * i));
        if let Some(d) = dst.get_mut(i..i + 8) {
            // SAFETY: `d` has room for 8 f32; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) };
        }
        i += 8;
    }
    if let (Some(s), Some(d)) = (src.get(2 * i..2 * n), dst.get_mut(i..n)) {
        crate::kernels::scalar::f16_to_f32_row(s, d);
    }
}

/// f32 → f16 (`vcvtps2ph`, round to nearest even) for `min(src.len(), dst.len() / 2)`
/// values.
#[target_feature(enable = "avx2,fma,f16c")]
fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
    let n = src.len().min(dst.len() / 2);
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_castsi256_ps(load32(src, 4 * i));
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        if let Some(d) = dst.get_mut(2 * i..2 * i + 16) {
            // SAFETY: `d` has room for 16 bytes; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), h) };
        }
        i += 8;
    }
    if let (Some(s), Some(d)) = (src.get(i..n), dst.get_mut(2 * i..2 * n)) {
        crate::kernels::scalar::f32_to_f16_row(s, d);
    }
}
