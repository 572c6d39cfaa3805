//! Decode matvec entries (`DotRowsFn`: consecutive weight rows against one vector) of
//! the 32-value block types for AVX2 and the VNNI levels.
//!
//! Each output is computed exactly as the single dot product of [`super::avx2`]: per
//! block, 8 exact i32 lane sums (lane `k` = products `4k..4k+3`), converted to f32,
//! `acc_k = fma(dx·dy, lane_k, acc_k)` block after block, then `reduce8`. Only the way
//! the integer lane sums are obtained differs, as in the prefill tiles
//! ([`super::tiles`]): the weight quants are taken as unsigned bytes `q + B` and one
//! `vpdpbusd` adds `Σ4 (q + B)·y` onto the lanes `−B·Σ4 y`, exactly `Σ4 q·y`. The
//! vector's corrections and block scales are computed once per call for all rows,
//! which leaves per weight block an unpack, one `vpdpbusd`, one conversion and one
//! multiply-add.
//!
//! AVX2 has no `vpdpbusd`: Q4_0 and Q5_0 take `maddubs` + `madd` + the correction
//! (their unsigned quants stay below 32, so `maddubs` cannot saturate), Q8_0 and IQ4_NL
//! the sign trick (`maddubs` would saturate on their quants + 128). The AVX2 entries go
//! one row at a time (see `rows:` in `rows32!`).
//!
//! At the AVX-512 levels the Q5_0 fifth bits go through a mask register (one masked
//! byte add or move). The nibbles come from a broadcast load and one variable shift
//! and mask, which keeps the shuffle port free, or with GFNI from the broadcast load
//! and one affine transform (one instruction fewer per block and row: Q5_0 streamed
//! 4-8% faster, cold and hot, 1 and 2 threads).

use core::arch::x86_64::*;

use super::avx2::{bytes_from_bits, d_x4, d_x8, f16, load16, load32};
use super::tiles::{lanes_offset_avx2, lanes_signed_avx2, neg_offset, s_iq4_nl, s_q8_0, u_q8_0};
use crate::kernels::reduce8;
use crate::kernels::scalar::blk;
use crate::quant::{BlockIQ4NL, BlockQ4_0, BlockQ5_0, BlockQ5_0x4, BlockQ8_0, KVALUES_IQ4NL};

/// The most blocks per row these entries take (16384 values); longer rows go to the
/// AVX2 entry. The per-vector tables (block scales and corrections, 36 bytes per
/// block) live on the stack, sized [`SMALL_BLOCKS`] for rows of up to 2048 values
/// (every 32-value-block matrix of the real models in view) and `MAX_BLOCKS` above.
const MAX_BLOCKS: usize = 512;

/// See [`MAX_BLOCKS`].
const SMALL_BLOCKS: usize = 64;

/// How far ahead each row prefetches its own bytes, in groups of the rows an entry
/// computes together (`rows:` in `rows32!`): into
/// L1 one group ahead, and into L2 six groups ahead (the far requests bring the lines
/// close; the near ones then hit L2 and hold an L1 miss buffer only briefly). On the
/// real models' output heads (cold, 1 thread) this streamed 3-11% faster than a single
/// L1 prefetch 2 groups ahead.
const PREFETCH_NEAR: usize = 1;
const PREFETCH_FAR: usize = 6;

/// Cache lines a row prefetches per 8-block group of blocks of `size` bytes, at each
/// distance: one more than the group's own bytes take, so that the groups also cover
/// the row's tail blocks (`Prefetch::span` spreads the row over its whole groups) for
/// the shapes in view. A count fixed per type compiles to straight-line code; a loop
/// over `span` cost more than the prefetches themselves with the matrix in cache.
const fn prefetch_lines(size: usize) -> usize {
    (8 * size).div_ceil(64) + 1
}

/// Prefetch into L1 (`L2 == false`) or L2 the `LINES` lines from `base + off` (a hint:
/// any address is fine).
#[inline(always)]
fn prefetch_group<const L2: bool, const LINES: usize>(base: *const u8, off: usize) {
    super::avx2::prefetch_lines::<L2>(base.cast::<i8>().wrapping_add(off), LINES * 64);
}

/// Where the rows prefetch: `span` bytes per 8-block group, `near` bytes ahead into
/// L1 and `far` bytes ahead into L2.
#[derive(Clone, Copy)]
struct Prefetch {
    near: usize,
    far: usize,
    span: usize,
}

/// Elements `g..g + G` of `s` as an array (no closure: closures inside the
/// target-feature entries are not inlined into the generic `Option` helpers).
#[inline(always)]
fn group_of<T, const G: usize>(s: &[T], g: usize) -> Option<&[T; G]> {
    s.get(g..g.checked_add(G)?)?.try_into().ok()
}

/// `out[i] = d_i · dy[i]` for the f16 scale `d_i` (first field) of each of the `G`
/// blocks, converted together, exactly as one by one. `G` is 8 or 4 (checked when
/// compiled).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scales_times<B: bytemuck::Pod, const G: usize>(
    blocks: &[B; G],
    dy: &[f32; G],
    out: &mut [f32; G],
) {
    const { assert!(G == 8 || G == 4) };
    if let (Ok(x8), Ok(d8), Ok(o8)) = (
        <&[B; 8]>::try_from(&blocks[..]),
        <&[f32; 8]>::try_from(&dy[..]),
        <&mut [f32; 8]>::try_from(&mut out[..]),
    ) {
        // SAFETY: `d8` and `o8` hold 8 f32; `loadu`/`storeu` have no alignment
        // requirement.
        unsafe {
            _mm256_storeu_ps(
                o8.as_mut_ptr(),
                _mm256_mul_ps(d_x8(x8), _mm256_loadu_ps(d8.as_ptr())),
            )
        };
    } else if let (Ok(x4), Ok(d4), Ok(o4)) = (
        <&[B; 4]>::try_from(&blocks[..]),
        <&[f32; 4]>::try_from(&dy[..]),
        <&mut [f32; 4]>::try_from(&mut out[..]),
    ) {
        // SAFETY: as above, with 4 f32.
        unsafe {
            _mm_storeu_ps(
                o4.as_mut_ptr(),
                _mm_mul_ps(d_x4(x4), _mm_loadu_ps(d4.as_ptr())),
            )
        };
    }
}

/// The 32 nibbles of 16 bytes (low nibbles in bytes 0..16, high in 16..32) without a
/// shuffle-port instruction: a broadcast load and one variable shift.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibbles_b(qs: &[u8; 16]) -> __m256i {
    let both = _mm256_broadcastsi128_si256(load16(qs, 0));
    let shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))
}

/// Q4_0 without a shift: bytes 0..16 the low nibbles `n` (offset 8), bytes 16..32 the
/// high nibbles in place, `16·n` (offset 128): one broadcast load and one `and`. See
/// `high:` in `rows32!` for why the high lanes may come out 16 times too large.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_q4_0_x16(x: &BlockQ4_0) -> __m256i {
    let both = _mm256_broadcastsi128_si256(load16(&x.qs, 0));
    _mm256_and_si256(
        both,
        _mm256_setr_m128i(_mm_set1_epi8(0x0f), _mm_set1_epi8(0xf0_u8 as i8)),
    )
}

/// Q5_0 as unsigned quants `0..32` (offset 16), fifth bits as bytes (AVX2, AVX-VNNI).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn u_q5_0(x: &BlockQ5_0) -> __m256i {
    let hi = _mm256_and_si256(bytes_from_bits(x.qh()), _mm256_set1_epi8(0x10));
    _mm256_or_si256(nibbles_b(&x.qs), hi)
}

/// Q5_0 as unsigned quants `0..32` (offset 16), fifth bits through a mask register.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
pub(super) fn u_q5_0_k(x: &BlockQ5_0) -> __m256i {
    let both = _mm256_broadcastsi128_si256(load16(&x.qs, 0));
    let shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    let fifth = _mm256_maskz_mov_epi8(x.qh(), _mm256_set1_epi8(0x10));
    // (shifted & 0x0f) | fifth in one instruction (0xEA: (a & b) | c).
    _mm256_ternarylogic_epi32::<0xEA>(shifted, _mm256_set1_epi8(0x0f), fifth)
}

/// IQ4_NL as unsigned values + 128 (offset 128).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_iq4_nl(x: &BlockIQ4NL) -> __m256i {
    let table = _mm256_broadcastsi128_si256(load16(&KVALUES_IQ4NL, 0));
    let v = _mm256_shuffle_epi8(table, nibbles_b(&x.qs));
    _mm256_xor_si256(v, _mm256_set1_epi8(i8::MIN))
}

/// The 32 nibbles of 16 bytes (low nibbles in bytes 0..16, high in 16..32) by one GF(2)
/// affine transform per byte of a broadcast load: in the low 128-bit lane the matrix
/// keeps bits 0..4, in the high one it moves bits 4..8 down (output bit `i` is the
/// parity of the input masked by byte `7 − i` of the lane's 64-bit matrix).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,gfni")]
#[inline]
fn nibbles_g(qs: &[u8; 16]) -> __m256i {
    let (low, high) = (GF_LOW_NIBBLE, GF_HIGH_NIBBLE);
    let both = _mm256_broadcastsi128_si256(load16(qs, 0));
    _mm256_gf2p8affine_epi64_epi8::<0>(both, _mm256_setr_epi64x(low, low, high, high))
}

/// The GF(2) matrix (for `vgf2p8affineqb`) that keeps a byte's low nibble: output bit
/// `i < 4` is input bit `i`, selected by the matrix's byte `7 − i`.
pub(super) const GF_LOW_NIBBLE: i64 = 0x01_02_04_08_00_00_00_00;

/// The GF(2) matrix that moves a byte's high nibble down: output bit `i < 4` is input
/// bit `i + 4`.
pub(super) const GF_HIGH_NIBBLE: i64 = 0x10_20_40_80_00_00_00_00;

/// Q5_0 as unsigned quants `0..32` (offset 16): the nibbles by [`nibbles_g`], the fifth
/// bits by one byte add masked by them.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,gfni")]
#[inline]
pub(super) fn u_q5_0_g(x: &BlockQ5_0) -> __m256i {
    let nib = nibbles_g(&x.qs);
    _mm256_mask_add_epi8(nib, x.qh(), nib, _mm256_set1_epi8(0x10))
}

/// IQ4_NL as unsigned values + 128 (offset 128), the nibbles by [`nibbles_g`] and the
/// table shifted by 128 beforehand.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,gfni")]
#[inline]
fn u_iq4_nl_g(x: &BlockIQ4NL) -> __m256i {
    let table = _mm256_xor_si256(
        _mm256_broadcastsi128_si256(load16(&KVALUES_IQ4NL, 0)),
        _mm256_set1_epi8(i8::MIN),
    );
    _mm256_shuffle_epi8(table, nibbles_g(&x.qs))
}

/// AVX-VNNI: `corr + Σ4 q·y` per lane (unsigned `q`, signed `y`).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn dp_vnni(q: __m256i, y: __m256i, corr: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(corr, q, y)
}

/// AVX-512 VNNI (VL): the same on 256-bit registers.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dp_zmm(q: __m256i, y: __m256i, corr: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(corr, q, y)
}

/// Q4_0 as unsigned quants `0..16` (offset 8) by [`nibbles_b`] (AVX2: `maddubs` takes
/// them as they are, where the ×16 high half of [`u_q4_0_x16`] would saturate it).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_q4_0(x: &BlockQ4_0) -> __m256i {
    nibbles_b(&x.qs)
}

/// The per-vector tables of the row entries, made once per call for all rows: each
/// block's scale `dy` (f32), and with `offset ≠ 0` its lanes' offset correction
/// `−B·Σ4 y` (`bvec`: the offset B of each lane's quants as bytes; signed quants, offset
/// 0, have none and `corr` is left as it is). Blocks past the shorter table are left out.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn vector_tables(
    ys: &[BlockQ8_0],
    offset: u8,
    bvec: __m256i,
    dy: &mut [f32],
    corr: &mut [__m256i],
) {
    let mut g = 0;
    while g + 8 <= ys.len() {
        let yg = group_of::<_, 8>(ys, g);
        if let (Some(yg), Some(d)) = (yg, dy.get_mut(g..g + 8)) {
            // SAFETY: `d` has room for 8 f32; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_ps(d.as_mut_ptr(), d_x8(yg)) };
        }
        g += 8;
    }
    for (d, yb) in dy.iter_mut().zip(ys).skip(g) {
        *d = f16(yb.d);
    }
    if offset != 0 {
        for (c, yb) in corr.iter_mut().zip(ys) {
            *c = neg_offset(bvec, load32(&yb.qs, 0));
        }
    }
}

/// Generates one `DotRowsFn` entry: `$unpack` gives a weight block's quants + `$offset`
/// as unsigned bytes (or, with `$offset` 0, as signed bytes), `$dp(q, y, corr)` the
/// lanes, `$fallback` takes rows longer than [`MAX_BLOCKS`] (or malformed lengths).
///
/// `$high` is 1, or 16 where `$unpack` leaves the high half's quants (bytes 16..32,
/// lanes 4..8) multiplied by 16 (Q4_0's high nibbles in place, which saves the shift).
/// The offset correction of those lanes is then 16 times larger too, so each of lanes
/// 4..8 holds exactly 16·L, and its accumulator is kept as exactly 16 times the
/// reference one: `fma(d, 16·L, 16·acc) = 16·fma(d, L, acc)`, because rounding commutes
/// with scaling by a power of two while no value leaves the normal range. None does:
/// `d` is the f32 product of two f16 scales, so it is 0 or at least 2⁻⁴⁸ (or not
/// finite, which scales alike); `|16·L| ≤ 16·4·15·128 < 2²⁴` converts exactly; every
/// product and sum is then a multiple of 2⁻⁷¹ (0 or far above 2⁻¹²⁶), and at most
/// [`MAX_BLOCKS`] blocks of `|d·L| < 2³²·2¹² = 2⁴⁴` stay far below overflow even
/// ×16. The lanes are scaled back by 1/16 (exact) before the final `reduce8`.
///
/// `$rows` rows go through together, each with its own chain of multiply-adds, so that
/// the chains hide each other's latency: 4 at the VNNI levels (measured on Intel), 1 for
/// AVX2. On AMD's Zen 3 (AVX2 only), one row at a time streamed faster from memory than
/// 2 or 4 interleaved rows: Gemma 3's Q8_0 output head (262144 × 640, 178 MB), 1
/// thread, 3 alternated rounds: 9.0-10.4 GB/s with 1 row, 8.1-8.6 with 2, 6.2-7.5 with
/// 4, against 8.9-9.5 for the previous AVX2 code (one row, block scales gathered), with
/// a 10.3 GB/s read probe. With the matrix in cache, 4 rows are faster (a 512 × 640
/// Q8_0 matrix: 21-22 GB/s against 10-17 for the previous code).
macro_rules! rows32 {
    (
        $feat:literal,
        $(#[$doc:meta])*
        fn $name:ident($X:ty) {
            unpack: $unpack:ident,
            dp: $dp:ident,
            offset: $offset:expr,
            high: $high:expr,
            rows: $rows:expr,
            fallback: $fallback:path,
        }
    ) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub(super) fn $name(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
            /// The factor of the high half's quants (see `high:` above).
            const HIGH: u8 = $high;
            /// Rows computed together (see `rows:` above).
            const ROWS: usize = $rows;

            // The per-vector tables sized for the row: small ones for the common rows.
            if n / 32 <= SMALL_BLOCKS {
                body::<SMALL_BLOCKS>(x, y, n, out);
            } else {
                body::<MAX_BLOCKS>(x, y, n, out);
            }

            /// The entry for rows of at most `CAP` blocks.
            #[target_feature(enable = $feat)]
            fn body<const CAP: usize>(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
                let ys = blk::<BlockQ8_0>(y);
                let nb = n / 32;
                let wrow = nb * core::mem::size_of::<$X>();
                if nb > CAP || ys.len() != nb || x.len() < out.len() * wrow {
                    // (This function's features include the fallback's, so the call is safe.)
                    $fallback(x, y, n, out);
                    return;
                }
                let offset: u8 = $offset;
                let bvec = _mm256_setr_m128i(
                    _mm_set1_epi8(offset as i8),
                    _mm_set1_epi8(offset.wrapping_mul(HIGH) as i8),
                );
                // Per vector, once for all rows: block scales and offset corrections.
                let mut dy = [0.0f32; CAP];
                let mut corr = [_mm256_setzero_si256(); CAP];
                vector_tables(ys, offset, bvec, &mut dy, &mut corr);
                let whole = nb / 8 * 8;
                let dy = &dy[..nb];
                let corr = &corr[..nb];
                // Each 8-block group of a row prefetches its share of the same row
                // PREFETCH_NEAR and PREFETCH_FAR row groups later, the tail blocks included
                // (a fixed distance per group left the tail lines of every row to demand
                // misses).
                let span = if whole >= 8 { wrow.div_ceil(whole / 8).next_multiple_of(64) } else { 0 };
                let pf = Prefetch {
                    near: PREFETCH_NEAR * ROWS * wrow,
                    far: PREFETCH_FAR * ROWS * wrow,
                    span,
                };
                // Rows go through in groups of ROWS: each row keeps its own accumulator and
                // its own order of blocks, and the independent chains of multiply-adds
                // hide each other's latency (one chain alone waits on every `fma`).
                let r0 = out.len() / ROWS * ROWS;
                let mut quads = out.chunks_exact_mut(ROWS);
                for (q, o) in (&mut quads).enumerate() {
                    let r = q * ROWS;
                    let xs = blk::<$X>(x.get(r * wrow..(r + ROWS) * wrow).unwrap_or(&[]));
                    let mut rows: [&[$X]; ROWS] = [&[]; ROWS];
                    for (j, d) in rows.iter_mut().enumerate() {
                        *d = xs.get(j * nb..(j + 1) * nb).unwrap_or(&[]);
                    }
                    let xs = rows;
                    let res = rows_n::<ROWS>(&xs, ys, dy, corr, whole, pf);
                    o.copy_from_slice(&res);
                }
                for (r, o) in out.iter_mut().enumerate().skip(r0) {
                    let xs = [blk::<$X>(x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]))];
                    *o = rows_n::<1>(&xs, ys, dy, corr, whole, pf)[0];
                }
            }

            /// `R` rows (each `nb` blocks, else its result is 0) against the vector.
            #[target_feature(enable = $feat)]
            #[inline]
            fn rows_n<const R: usize>(
                xs: &[&[$X]; R],
                ys: &[BlockQ8_0],
                dy: &[f32],
                corr: &[__m256i],
                whole: usize,
                pf: Prefetch,
            ) -> [f32; R] {
                let nb = dy.len();
                let mut res = [0.0f32; R];
                if ys.len() != nb || corr.len() != nb {
                    return res;
                }
                for x in xs {
                    if x.len() != nb {
                        return res;
                    }
                }
                let mut acc = [_mm256_setzero_ps(); R];
                let mut g = 0;
                while g + 8 <= whole {
                    if group::<R, 8, true>(xs, ys, dy, corr, g, pf, &mut acc).is_none() {
                        return res;
                    }
                    g += 8;
                }
                // A row's last 4 blocks of 8 (20 and 28 blocks: the rows of 640 and 896
                // values of the real models) as a group too, their scales converted
                // together; the rest one by one.
                if g + 4 <= nb {
                    if group::<R, 4, false>(xs, ys, dy, corr, g, pf, &mut acc).is_none() {
                        return res;
                    }
                    g += 4;
                }
                for b in g..nb {
                    let (Some(yb), Some(&dyb), Some(&c)) = (ys.get(b), dy.get(b), corr.get(b)) else {
                        break;
                    };
                    let y = load32(&yb.qs, 0);
                    for j in 0..R {
                        let Some(xb) = xs[j].get(b) else { return res };
                        let l = $dp($unpack(xb), y, c);
                        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(f16(xb.d) * dyb), _mm256_cvtepi32_ps(l), acc[j]);
                    }
                }
                let back = 1.0 / f32::from(HIGH);
                let back = _mm256_setr_ps(1.0, 1.0, 1.0, 1.0, back, back, back, back);
                for (o, a) in res.iter_mut().zip(&acc) {
                    let mut lanes = [0.0f32; 8];
                    // SAFETY: `lanes` has room for 8 f32; `storeu` has no alignment
                    // requirement.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_mul_ps(*a, back)) };
                    *o = reduce8(lanes);
                }
                res
            }

            /// Blocks `g..g + G` of the `R` rows (each `nb` blocks) onto their
            /// accumulators, block by block in order; with `PF`, each row prefetches its
            /// share ahead (see `Prefetch`). `None` if a slice is not all there.
            #[target_feature(enable = $feat)]
            #[inline]
            fn group<const R: usize, const G: usize, const PF: bool>(
                xs: &[&[$X]; R],
                ys: &[BlockQ8_0],
                dy: &[f32],
                corr: &[__m256i],
                g: usize,
                pf: Prefetch,
                acc: &mut [__m256; R],
            ) -> Option<()> {
                const LINES: usize = prefetch_lines(core::mem::size_of::<$X>());
                let yg = group_of::<_, G>(ys, g)?;
                let dyg = group_of::<_, G>(dy, g)?;
                let cg = group_of::<_, G>(corr, g)?;
                let first = group_of::<_, G>(xs[0], g)?;
                let mut xgs: [&[$X; G]; R] = [first; R];
                let mut dd = [[0.0f32; G]; R];
                for j in 0..R {
                    let xg = group_of::<_, G>(xs[j], g)?;
                    if PF {
                        let (row, at) = (xs[j].as_ptr().cast(), g / 8 * pf.span);
                        prefetch_group::<false, LINES>(row, pf.near + at);
                        prefetch_group::<true, LINES>(row, pf.far + at);
                    }
                    xgs[j] = xg;
                    scales_times(xg, dyg, &mut dd[j]);
                }
                // Through memory: each block's scale then broadcasts from its slot
                // (a load, no shuffle), where the compiler would extract it from the
                // register with two shuffles.
                let dd = core::hint::black_box(&mut dd);
                for i in 0..G {
                    let y = load32(&yg[i].qs, 0);
                    for j in 0..R {
                        let l = $dp($unpack(&xgs[j][i]), y, cg[i]);
                        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dd[j][i]), _mm256_cvtepi32_ps(l), acc[j]);
                    }
                }
                Some(())
            }
        }
    };
}

rows32! {
    "avx2,fma,f16c",
    /// q4_0 · q8_0 rows, AVX2.
    fn rows_q4_0_avx2(BlockQ4_0) { unpack: u_q4_0, dp: lanes_offset_avx2, offset: 8, high: 1, rows: 1, fallback: super::avx2::rows_q4_0, }
}
rows32! {
    "avx2,fma,f16c",
    /// q5_0 · q8_0 rows, AVX2.
    fn rows_q5_0_avx2(BlockQ5_0) { unpack: u_q5_0, dp: lanes_offset_avx2, offset: 16, high: 1, rows: 1, fallback: super::avx2::rows_q5_0, }
}
rows32! {
    "avx2,fma,f16c",
    /// q8_0 · q8_0 rows, AVX2 (signed quants, the sign trick).
    fn rows_q8_0_avx2(BlockQ8_0) { unpack: s_q8_0, dp: lanes_signed_avx2, offset: 0, high: 1, rows: 1, fallback: super::avx2::rows_q8_0, }
}
rows32! {
    "avx2,fma,f16c",
    /// iq4_nl · q8_0 rows, AVX2 (signed values, the sign trick).
    fn rows_iq4_nl_avx2(BlockIQ4NL) { unpack: s_iq4_nl, dp: lanes_signed_avx2, offset: 0, high: 1, rows: 1, fallback: super::avx2::rows_iq4_nl, }
}
rows32! {
    "avx2,fma,f16c,avxvnni",
    /// q4_0 · q8_0 rows, AVX-VNNI.
    fn rows_q4_0_vnni(BlockQ4_0) { unpack: u_q4_0_x16, dp: dp_vnni, offset: 8, high: 16, rows: 4, fallback: super::avx2::rows_q4_0, }
}
rows32! {
    "avx2,fma,f16c,avxvnni",
    /// q5_0 · q8_0 rows, AVX-VNNI.
    fn rows_q5_0_vnni(BlockQ5_0) { unpack: u_q5_0, dp: dp_vnni, offset: 16, high: 1, rows: 4, fallback: super::avx2::rows_q5_0, }
}
rows32! {
    "avx2,fma,f16c,avxvnni",
    /// q8_0 · q8_0 rows, AVX-VNNI (quants + 128).
    fn rows_q8_0_vnni(BlockQ8_0) { unpack: u_q8_0, dp: dp_vnni, offset: 128, high: 1, rows: 4, fallback: super::avx2::rows_q8_0, }
}
rows32! {
    "avx2,fma,f16c,avxvnni",
    /// iq4_nl · q8_0 rows, AVX-VNNI (values + 128).
    fn rows_iq4_nl_vnni(BlockIQ4NL) { unpack: u_iq4_nl, dp: dp_vnni, offset: 128, high: 1, rows: 4, fallback: super::avx2::rows_iq4_nl, }
}
rows32! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q4_0 · q8_0 rows, AVX-512 VNNI.
    fn rows_q4_0_zmm(BlockQ4_0) { unpack: u_q4_0_x16, dp: dp_zmm, offset: 8, high: 16, rows: 4, fallback: super::avx2::rows_q4_0, }
}
rows32! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q5_0 · q8_0 rows, AVX-512 VNNI (fifth bits through a mask register).
    fn rows_q5_0_zmm(BlockQ5_0) { unpack: u_q5_0_k, dp: dp_zmm, offset: 16, high: 1, rows: 4, fallback: super::avx2::rows_q5_0, }
}
rows32! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// q8_0 · q8_0 rows, AVX-512 VNNI (quants + 128).
    fn rows_q8_0_zmm(BlockQ8_0) { unpack: u_q8_0, dp: dp_zmm, offset: 128, high: 1, rows: 4, fallback: super::avx2::rows_q8_0, }
}
rows32! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// iq4_nl · q8_0 rows, AVX-512 VNNI (values + 128).
    fn rows_iq4_nl_zmm(BlockIQ4NL) { unpack: u_iq4_nl, dp: dp_zmm, offset: 128, high: 1, rows: 4, fallback: super::avx2::rows_iq4_nl, }
}
rows32! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni",
    /// q5_0 · q8_0 rows, AVX-512 VNNI + GFNI.
    fn rows_q5_0_gfni(BlockQ5_0) { unpack: u_q5_0_g, dp: dp_zmm, offset: 16, high: 1, rows: 4, fallback: super::avx2::rows_q5_0, }
}
rows32! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni",
    /// iq4_nl · q8_0 rows, AVX-512 VNNI + GFNI (values + 128).
    fn rows_iq4_nl_gfni(BlockIQ4NL) { unpack: u_iq4_nl_g, dp: dp_zmm, offset: 128, high: 1, rows: 4, fallback: super::avx2::rows_iq4_nl, }
}

/// The quants of block `B` (< 4) of a repacked group as unsigned bytes `0..32` (offset
/// 16): the nibbles from `p` (blocks `B & !1` and `B | 1` of the group, low and high
/// nibbles), the fifth bits from `f` (the group's `qh` in both 128-bit lanes, the high
/// lane shifted down 4 bits, so that bit `B` of every byte is the block's fifth bit of
/// that byte's value). A 16-bit shift brings bit `B` to bit 4 of each byte: the bits it
/// moves across the byte boundary land below bit 4 and are masked off.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_q5_0x4<const B: usize>(p: __m256i, f: __m256i) -> __m256i {
    let low = _mm256_set1_epi8(0x0f);
    let nib = if B.is_multiple_of(2) {
        _mm256_and_si256(p, low)
    } else {
        _mm256_and_si256(_mm256_srli_epi16::<4>(p), low)
    };
    let fifth = match B {
        0 => _mm256_slli_epi16::<4>(f),
        1 => _mm256_slli_epi16::<3>(f),
        2 => _mm256_slli_epi16::<2>(f),
        _ => _mm256_slli_epi16::<1>(f),
    };
    _mm256_or_si256(nib, _mm256_and_si256(fifth, _mm256_set1_epi8(0x10)))
}

/// The 4 blocks of a repacked group as unsigned quants `0..32` (offset 16): one
/// broadcast and one shift for the fifth bits of all four, then [`u_q5_0x4`] per block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn unpack_q5_0x4(g: &BlockQ5_0x4) -> [__m256i; 4] {
    let f = _mm256_srlv_epi64(
        _mm256_broadcastsi128_si256(load16(&g.qh, 0)),
        _mm256_setr_epi64x(0, 0, 4, 4),
    );
    let (p01, p23) = (load32(&g.qs[0], 0), load32(&g.qs[1], 0));
    [
        u_q5_0x4::<0>(p01, f),
        u_q5_0x4::<1>(p01, f),
        u_q5_0x4::<2>(p23, f),
        u_q5_0x4::<3>(p23, f),
    ]
}

/// q5_0 · q8_0 rows in the [`crate::kernels::WeightLayout::Q5_0x4`] layout, AVX2: each
/// output exactly as the Q5_0 row's single dot product (`dot_q5_0`; the same lanes,
/// block after block), with a group's 4 blocks unpacked from its shared fields (see
/// [`crate::quant::BlockQ5_0x4`]): 4 or 5 vector instructions per block for its quants
/// (and 2 per group) instead of 9. Rows longer than [`MAX_BLOCKS`] blocks (or malformed lengths) go to
/// the portable code.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_q5_0x4_avx2(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
    if n / 32 <= SMALL_BLOCKS {
        q5_0x4_body::<SMALL_BLOCKS>(x, y, n, out);
    } else {
        q5_0x4_body::<MAX_BLOCKS>(x, y, n, out);
    }
}

/// The dot product of one repacked Q5_0 row with one vector, AVX2 (see
/// [`rows_q5_0x4_avx2`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_0x4_avx2(x: &[u8], y: &[u8], n: usize) -> f32 {
    let mut out = [0.0f32];
    rows_q5_0x4_avx2(x, y, n, &mut out);
    out[0]
}

/// [`rows_q5_0x4_avx2`] for rows of at most `CAP` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0x4_body<const CAP: usize>(x: &[u8], y: &[u8], n: usize, out: &mut [f32]) {
    const GROUP: usize = core::mem::size_of::<BlockQ5_0x4>();
    let ys = blk::<BlockQ8_0>(y);
    let nb = n / 32;
    let wrow = nb * core::mem::size_of::<BlockQ5_0>();
    if nb > CAP || ys.len() != nb || x.len() < out.len() * wrow {
        for (r, o) in out.iter_mut().enumerate() {
            let row = x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
            *o = crate::kernels::scalar::dot_q5_0x4(row, y, n);
        }
        return;
    }
    let bvec = _mm256_set1_epi8(16);
    let mut dy = [0.0f32; CAP];
    let mut corr = [_mm256_setzero_si256(); CAP];
    vector_tables(ys, 16, bvec, &mut dy, &mut corr);
    let (dy, corr) = (&dy[..nb], &corr[..nb]);
    let ng = nb / 4;
    // Each group prefetches its share of the same row 1 row later into L1 and 6 rows
    // later into L2, as the other row entries do (see `PREFETCH_NEAR`): 2 lines per
    // 88-byte group, which cover its share of the row (`span`: the row's bytes over its
    // groups, tail blocks included) for every row of at least 2 groups.
    const LINES: usize = 2;
    let span = if ng > 0 {
        wrow.div_ceil(ng).next_multiple_of(64)
    } else {
        0
    };
    let (near, far) = (PREFETCH_NEAR * wrow, PREFETCH_FAR * wrow);
    for (r, o) in out.iter_mut().enumerate() {
        let row = x.get(r * wrow..(r + 1) * wrow).unwrap_or(&[]);
        let Some((groups, tail)) = row.split_at_checked(ng * GROUP) else {
            *o = 0.0;
            continue;
        };
        let groups = blk::<BlockQ5_0x4>(groups);
        let base = row.as_ptr();
        let mut acc = _mm256_setzero_ps();
        for (gi, g) in groups.iter().enumerate() {
            let at = gi * span;
            prefetch_group::<false, LINES>(base, near + at);
            prefetch_group::<true, LINES>(base, far + at);
            let b0 = 4 * gi;
            let (Some(yg), Some(dyg), Some(cg)) = (
                ys.get(b0..b0 + 4)
                    .and_then(|s| <&[BlockQ8_0; 4]>::try_from(s).ok()),
                dy.get(b0..b0 + 4)
                    .and_then(|s| <&[f32; 4]>::try_from(s).ok()),
                corr.get(b0..b0 + 4)
                    .and_then(|s| <&[__m256i; 4]>::try_from(s).ok()),
            ) else {
                break;
            };
            // dx·dy of the 4 blocks, one f32 product each (as the single dot); through
            // memory, so that each multiply-add broadcasts its scale with a load.
            let mut dd = [0.0f32; 4];
            // SAFETY: `g.d` is 8 readable bytes, `dyg` 4 f32 and `dd` room for 4 f32;
            // the unaligned loads and the store have no alignment requirement.
            unsafe {
                let dx = _mm_cvtph_ps(_mm_loadl_epi64(g.d.as_ptr().cast()));
                _mm_storeu_ps(dd.as_mut_ptr(), _mm_mul_ps(dx, _mm_loadu_ps(dyg.as_ptr())));
            }
            let dd = core::hint::black_box(&mut dd);
            for (i, q) in unpack_q5_0x4(g).into_iter().enumerate() {
                let l = lanes_offset_avx2(q, load32(&yg[i].qs, 0), cg[i]);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dd[i]), _mm256_cvtepi32_ps(l), acc);
            }
        }
        // The row's last blocks, as Q5_0 blocks.
        for (i, xb) in blk::<BlockQ5_0>(tail).iter().enumerate() {
            let b = 4 * ng + i;
            let (Some(yb), Some(&dyb), Some(&c)) = (ys.get(b), dy.get(b), corr.get(b)) else {
                break;
            };
            let l = lanes_offset_avx2(u_q5_0(xb), load32(&yb.qs, 0), c);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(xb.d) * dyb), _mm256_cvtepi32_ps(l), acc);
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` has room for 8 f32; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        *o = reduce8(lanes);
    }
}
