//! Prefill tiles for the 32-value block types (Q4_0, Q5_0, Q8_0, IQ4_NL against Q8_0):
//! up to 32 weight rows × up to 16 activation vectors per call (the 256-bit tiles take
//! the vectors as two halves of up to 8, one after the other for each weight block
//! group, which is unpacked once for both).
//!
//! Each output is computed exactly as the single dot product of [`super::avx2`] (and the
//! scalar twin) computes it: per block, 8 exact i32 lane sums (lane `k` = products
//! `4k..4k+3`), converted to f32, `acc_k = fma(dx·dy, lane_k, acc_k)` block after block,
//! then `reduce8`. Only the way the integer lane sums are obtained changes, and integer
//! sums are exact, so the bits are the same.
//!
//! What the tile saves is work shared between rows and vectors:
//! - a weight block is unpacked once for all the vectors of the tile;
//! - an activation block's scale and its **offset correction** are computed once for all
//!   the rows. Q4_0 and Q5_0 quants are unsigned numbers minus an offset `B` (8, 16);
//!   instead of making them signed and multiplying with the sign trick (two `sign`s per
//!   product), the tile multiplies the unsigned quants directly and starts each lane at
//!   `−B·(y_4k + … + y_4k+3)`: `Σ (q − B)·y = Σ q·y − B·Σ y`, exactly.
//! - with AVX-VNNI, `vpdpbusd` does the unsigned × signed products, the 4-value sums and
//!   the add onto the correction in one instruction, for Q8_0 and IQ4_NL too (their signed
//!   quants + 128 are unsigned bytes; `vpdpbusd` does not saturate).
//!
//! Block scales `dx·dy` are computed per pair as one f32 product (as the single dot
//! does) and stored, so each multiply-add takes its scale by a broadcast load.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use super::avx2::{bytes_from_bits, d_x8, f16, load16, load32, mul_sum_i8_pairs, nibbles};
use crate::kernels::reduce8;
use crate::kernels::scalar::blk;
use crate::quant::{BlockIQ4NL, BlockQ4_0, BlockQ5_0, BlockQ5_0x4, BlockQ8_0, KVALUES_IQ4NL};

/// Vectors of one tile (the most [`super::super::table::GemmFn`] takes).
pub(crate) const TILE: usize = crate::kernels::table::GEMM_TILE;

/// Vectors the 256-bit tiles take at a time.
pub(crate) const HALF: usize = 8;

/// Rows of one call: the vectors' preparation is shared by this many rows.
pub(crate) const ROWS: usize = crate::kernels::table::GEMM_ROWS;

/// The lanes `−B·(y_4k + … + y_4k+3)` of one activation block (`b` = B as bytes),
/// with `maddubs` (B·y pairs: |B·y·2| ≤ 128·128·2, no saturation) and a `madd` by −1.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn neg_offset(b: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(b, y), _mm256_set1_epi16(-1))
}

/// AVX2: unsigned quants (≤ 31, so `maddubs` cannot saturate) times signed activations,
/// 4-value lane sums, plus the lanes' offset correction.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn lanes_offset_avx2(q: __m256i, y: __m256i, corr: __m256i) -> __m256i {
    let s = _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), _mm256_set1_epi16(1));
    _mm256_add_epi32(s, corr)
}

/// AVX2: signed quants with the sign trick (no correction).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn lanes_signed_avx2(q: __m256i, y: __m256i, _corr: __m256i) -> __m256i {
    mul_sum_i8_pairs(q, y)
}

/// AVX-VNNI: `corr + Σ4 q·y` per lane in one `vpdpbusd` (unsigned `q`, signed `y`).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn lanes_offset_vnni(q: __m256i, y: __m256i, corr: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(corr, q, y)
}

/// Q4_0 as unsigned quants `0..16` (offset 8).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_q4_0(x: &BlockQ4_0) -> __m256i {
    nibbles(load16(&x.qs, 0))
}

/// Q5_0 as unsigned quants `0..32` (offset 16).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_q5_0(x: &BlockQ5_0) -> __m256i {
    let hi = _mm256_and_si256(bytes_from_bits(x.qh()), _mm256_set1_epi8(0x10));
    _mm256_or_si256(nibbles(load16(&x.qs, 0)), hi)
}

/// Q8_0 as signed quants.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn s_q8_0(x: &BlockQ8_0) -> __m256i {
    load32(&x.qs, 0)
}

/// Q8_0 as unsigned quants + 128 (offset 128; for `vpdpbusd`, which does not saturate).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn u_q8_0(x: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load32(&x.qs, 0), _mm256_set1_epi8(i8::MIN))
}

/// IQ4_NL as signed values (table lookup).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn s_iq4_nl(x: &BlockIQ4NL) -> __m256i {
    let table = _mm256_broadcastsi128_si256(load16(&KVALUES_IQ4NL, 0));
    _mm256_shuffle_epi8(table, nibbles(load16(&x.qs, 0)))
}

/// IQ4_NL as unsigned values + 128 (offset 128; for `vpdpbusd`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn u_iq4_nl(x: &BlockIQ4NL) -> __m256i {
    _mm256_xor_si256(s_iq4_nl(x), _mm256_set1_epi8(i8::MIN))
}

/// The scales `dx` and quants `qs` (by `unpack`) of blocks `g..g + len` (`len ≤ 8`) of
/// a row in the file's layout; `false` if the row has no such blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn file_group<X: bytemuck::Pod>(
    row: &[X],
    g: usize,
    len: usize,
    dx: &mut [f32; 8],
    qs: &mut [__m256i; 8],
    unpack: impl Fn(&X) -> __m256i,
) -> bool {
    let Some(xg) = row.get(g..g + len) else {
        return false;
    };
    match <&[X; 8]>::try_from(xg) {
        // SAFETY: `dx` has room for 8 f32; `storeu` needs no alignment.
        Ok(x8) => unsafe { _mm256_storeu_ps(dx.as_mut_ptr(), d_x8(x8)) },
        Err(_) => {
            // The f16 `d`, every such block's first field.
            for (d, b) in dx.iter_mut().zip(xg) {
                if let Some(&[lo, hi]) = bytemuck::bytes_of(b).get(..2) {
                    *d = f16([lo, hi]);
                }
            }
        }
    }
    for (q, xb) in qs.iter_mut().zip(xg) {
        *q = unpack(xb);
    }
    true
}

/// [`file_group`] for a row in the [`crate::kernels::WeightLayout::Q5_0x4`] layout
/// (whole groups of 4 blocks, then the row's last `blocks mod 4` blocks as they are;
/// `row` is the row's bytes in 22-byte units): a group's 4 blocks unpacked together
/// ([`super::rows::unpack_q5_0x4`]). `g` is a multiple of 8, so a tile's 8 blocks are
/// 2 whole groups, or the row's end.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn group_q5_0x4(
    row: &[BlockQ5_0],
    g: usize,
    len: usize,
    dx: &mut [f32; 8],
    qs: &mut [__m256i; 8],
) -> bool {
    let Some(xg) = row.get(g..g + len) else {
        return false;
    };
    let whole = row.len() - row.len() % 4;
    let mut i = 0;
    while i < len {
        let four = xg
            .get(i..i + 4)
            .filter(|_| g + i + 4 <= whole)
            .and_then(|b| bytemuck::try_from_bytes::<BlockQ5_0x4>(bytemuck::cast_slice(b)).ok());
        match four {
            Some(x4) => {
                // SAFETY: `x4.d` is 8 readable bytes (4 f16); `dx[i..i + 4]` is in
                // bounds (`i + 4 ≤ len ≤ 8`) and `storeu` needs no alignment.
                unsafe {
                    let d = _mm_cvtph_ps(_mm_loadl_epi64(x4.d.as_ptr().cast()));
                    _mm_storeu_ps(dx.as_mut_ptr().add(i), d);
                }
                for (q, u) in qs.iter_mut().skip(i).zip(super::rows::unpack_q5_0x4(x4)) {
                    *q = u;
                }
                i += 4;
            }
            None => {
                // The row's last blocks, in the file's layout.
                if let (Some(xb), Some(d), Some(q)) = (xg.get(i), dx.get_mut(i), qs.get_mut(i)) {
                    *d = f16(xb.d);
                    *q = u_q5_0(xb);
                }
                i += 1;
            }
        }
    }
    true
}

/// Generates one tile kernel (`$tile::<N, M>`, N + M vectors in two halves, any rows up
/// to [`ROWS`]) and its [`super::super::table::GemmFn`] entry `$name`.
///
/// A half's 8 accumulators of one row fill most of the 16 registers, so a row's blocks
/// are unpacked once per group into a small array and read back by both halves: the
/// unpack (Q5_0: 11 instructions per block) is shared by up to 16 vectors instead of 8.
/// On AMD Zen 3 (AVX2), Qwen's 4864 × 896 Q5_0 matrix against 64 vectors, 1 thread,
/// 6 alternated rounds: medians 0.25 GB/s of weights against 0.22 (+16%; every pass
/// multiplies them by the 64 vectors).
///
/// `$unpack` gives a weight block's 32 quants in the form `$lanes` multiplies; `$offset`
/// is the offset B those quants carry (0: signed quants, no correction). A layout other
/// than the file's names instead a `$group` function, which gives the scales and quants
/// of a row's blocks `g..g + len` (see [`file_group`]).
macro_rules! gemm32 {
    (
        $feat:literal,
        $(#[$doc:meta])*
        fn $name:ident, $tile:ident($X:ty) {
            unpack: $unpack:ident,
            lanes: $lanes:ident,
            offset: $offset:expr,
        }
    ) => {
        gemm32! {
            $feat,
            $(#[$doc])*
            fn $name, $tile($X) {
                group: group,
                lanes: $lanes,
                offset: $offset,
                defs: {
                    /// [`file_group`] with this type's unpack.
                    #[target_feature(enable = $feat)]
                    #[inline]
                    fn group(
                        row: &[$X],
                        g: usize,
                        len: usize,
                        dx: &mut [f32; 8],
                        qs: &mut [__m256i; 8],
                    ) -> bool {
                        file_group(row, g, len, dx, qs, |x| $unpack(x))
                    }
                },
            }
        }
    };
    (
        $feat:literal,
        $(#[$doc:meta])*
        fn $name:ident, $tile:ident($X:ty) {
            group: $group:ident,
            lanes: $lanes:ident,
            offset: $offset:expr,
            defs: { $($defs:tt)* },
        }
    ) => {
        /// `N` vectors (`ys[..N]`) and `M` more (`ys[N..N + M]`), each half at most
        /// [`HALF`]; `out[v]` gets vector `v`'s outputs.
        #[target_feature(enable = $feat)]
        fn $tile<const N: usize, const M: usize>(
            xs: &[&[u8]],
            ys: &[&[u8]],
            out: &mut [[f32; ROWS]],
        ) {
            let xs = xs.get(..ROWS).unwrap_or(xs);
            let nr = xs.len();
            let mut xss: [&[$X]; ROWS] = [&[]; ROWS];
            for (d, s) in xss.iter_mut().zip(xs) {
                *d = blk::<$X>(s);
            }
            let xss = &xss[..nr];
            let mut yss: [[&[BlockQ8_0]; HALF]; 2] = [[&[]; HALF]; 2];
            for (v, s) in ys.iter().take(N + M).enumerate() {
                let (h, k) = if v < N { (0, v) } else { (1, v - N) };
                yss[h][k] = blk::<BlockQ8_0>(s);
            }
            let nb = xss
                .iter()
                .map(|x| x.len())
                .chain(yss[0][..N].iter().chain(&yss[1][..M]).map(|y| y.len()))
                .min()
                .unwrap_or(0);
            let offset: u8 = $offset;
            let bvec = _mm256_set1_epi8(offset as i8);
            let mut acc0 = [[_mm256_setzero_ps(); N]; ROWS];
            let mut acc1 = [[_mm256_setzero_ps(); M]; ROWS];
            // Per vector, once for all rows: a group's 8 block scales, quants and offset
            // corrections, in fixed-size arrays (no bounds checks, no pointer chasing in
            // the inner loop). Made once per call; each group overwrites what it reads.
            // The quants and corrections are left uninitialised (zeroing them was an
            // 8 KiB `memset` per call, about 2% of a prefill): every group writes slots
            // `[h][v][i]` for all the vectors `v` of half `h` and `i < len` (the
            // corrections only if `offset ≠ 0`) before its rows read exactly those.
            let mut dy = [[[0.0f32; 8]; HALF]; 2];
            let mut yq = [[[MaybeUninit::<__m256i>::uninit(); 8]; HALF]; 2];
            let mut corr = [[[MaybeUninit::<__m256i>::uninit(); 8]; HALF]; 2];
            let mut g = 0;
            while g < nb {
                let len = (nb - g).min(8);
                for h in 0..2 {
                    for v in 0..(if h == 0 { N } else { M }) {
                        let Some(yg) = yss[h][v].get(g..g + len) else {
                            // (Never: `nb` is at most every vector's length.) Zeros, so
                            // that the slots read below are written all the same.
                            for (q, c) in yq[h][v].iter_mut().zip(corr[h][v].iter_mut()).take(len) {
                                q.write(_mm256_setzero_si256());
                                c.write(_mm256_setzero_si256());
                            }
                            continue;
                        };
                        match <&[BlockQ8_0; 8]>::try_from(yg) {
                            // SAFETY: `dy[h][v]` has room for 8 f32; `storeu` needs no
                            // alignment.
                            Ok(y8) => unsafe { _mm256_storeu_ps(dy[h][v].as_mut_ptr(), d_x8(y8)) },
                            Err(_) => {
                                for (d, b) in dy[h][v].iter_mut().zip(yg) {
                                    *d = f16(b.d);
                                }
                            }
                        }
                        for ((q, c), b) in yq[h][v].iter_mut().zip(corr[h][v].iter_mut()).zip(yg) {
                            let y = load32(&b.qs, 0);
                            q.write(y);
                            if offset != 0 {
                                c.write(neg_offset(bvec, y));
                            }
                        }
                    }
                }
                for (r, xfull) in xss.iter().enumerate() {
                    // The group's blocks unpacked once for both halves of the vectors.
                    let mut dx = [0.0f32; 8];
                    let mut qs = [_mm256_setzero_si256(); 8];
                    if !$group(xfull, g, len, &mut dx, &mut qs) {
                        continue;
                    }
                    if let Some(a) = acc0.get_mut(r) {
                        half::<N>(a, &qs, len, &dx, &dy[0], &yq[0], &corr[0]);
                    }
                    if M > 0 {
                        if let Some(a) = acc1.get_mut(r) {
                            half::<M>(a, &qs, len, &dx, &dy[1], &yq[1], &corr[1]);
                        }
                    }
                }
                g += len;
            }
            let (out0, out1) = out.split_at_mut(N.min(out.len()));
            finish::<N>(&acc0[..nr], out0);
            finish::<M>(&acc1[..nr], out1);

            $($defs)*

            /// One row's `len` unpacked blocks `qs` against `K` vectors: `a[v] =
            /// fma(dx·dy, lanes, a[v])` block after block.
            #[target_feature(enable = $feat)]
            #[inline]
            fn half<const K: usize>(
                a: &mut [__m256; K],
                qs: &[__m256i; 8],
                len: usize,
                dx: &[f32; 8],
                dy: &[[f32; 8]; HALF],
                yq: &[[MaybeUninit<__m256i>; 8]; HALF],
                corr: &[[MaybeUninit<__m256i>; 8]; HALF],
            ) {
                // dx·dy per pair and block: one f32 product, as the single dot.
                let mut dd = [[0.0f32; 8]; K];
                for (d, y) in dd.iter_mut().zip(dy) {
                    for i in 0..8 {
                        d[i] = dx[i] * y[i];
                    }
                }
                let mut acc = *a;
                let offset: u8 = $offset;
                for (i, &q) in qs.iter().enumerate().take(len) {
                    for v in 0..K {
                        // SAFETY: `i < len` and `v < K`, the vectors of this half: the
                        // group wrote these slots (the correction if `offset ≠ 0`).
                        let (y, c) = unsafe {
                            (
                                yq[v][i].assume_init(),
                                if offset != 0 {
                                    corr[v][i].assume_init()
                                } else {
                                    _mm256_setzero_si256()
                                },
                            )
                        };
                        let lanes = $lanes(q, y, c);
                        let d = _mm256_set1_ps(dd[v][i]);
                        acc[v] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc[v]);
                    }
                }
                *a = acc;
            }

            /// Each row's `K` sums reduced into `out[v][r]`: whole groups of 8 rows
            /// together, then the rest.
            #[target_feature(enable = $feat)]
            #[inline]
            fn finish<const K: usize>(acc: &[[__m256; K]], out: &mut [[f32; ROWS]]) {
                let nr = acc.len();
                let full8 = nr - nr % 8;
                for (g8, a8) in acc[..full8].chunks_exact(8).enumerate() {
                    for (v, o) in out.iter_mut().enumerate().take(K) {
                        let r = reduce8_x8(core::array::from_fn(|k| a8[k][v]));
                        if let Some(o) = o.get_mut(8 * g8..8 * g8 + 8) {
                            // SAFETY: `o` holds 8 f32; `storeu` needs no alignment.
                            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), r) };
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate().skip(full8) {
                    for (o, av) in out.iter_mut().zip(a) {
                        let mut lanes = [0.0f32; 8];
                        // SAFETY: `lanes` has room for 8 f32; `storeu` needs no alignment.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *av) };
                        if let Some(o) = o.get_mut(r) {
                            *o = reduce8(lanes);
                        }
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
            let xs = xs.get(..nr).unwrap_or(xs);
            let nv = nv.min(TILE);
            // Two halves of up to 8 vectors in one pass over the weights: each block
            // unpacked once for both (the 8 accumulators of a half fill the registers).
            for v0 in (0..nv).step_by(2 * HALF) {
                let (ys, out) = (&ys[v0..], &mut out[v0..]);
                match nv - v0 {
                    1 => $tile::<1, 0>(xs, ys, out),
                    2 => $tile::<2, 0>(xs, ys, out),
                    3 => $tile::<3, 0>(xs, ys, out),
                    4 => $tile::<4, 0>(xs, ys, out),
                    5 => $tile::<5, 0>(xs, ys, out),
                    6 => $tile::<6, 0>(xs, ys, out),
                    7 => $tile::<7, 0>(xs, ys, out),
                    8 => $tile::<8, 0>(xs, ys, out),
                    9 => $tile::<8, 1>(xs, ys, out),
                    10 => $tile::<8, 2>(xs, ys, out),
                    11 => $tile::<8, 3>(xs, ys, out),
                    12 => $tile::<8, 4>(xs, ys, out),
                    13 => $tile::<8, 5>(xs, ys, out),
                    14 => $tile::<8, 6>(xs, ys, out),
                    15 => $tile::<8, 7>(xs, ys, out),
                    _ => $tile::<8, 8>(xs, ys, out),
                }
            }
        }
    };
}

gemm32! {
    "avx2,fma,f16c",
    /// q4_0 · q8_0 tile, AVX2.
    fn gemm_q4_0, tile_q4_0(BlockQ4_0) { unpack: u_q4_0, lanes: lanes_offset_avx2, offset: 8, }
}
gemm32! {
    "avx2,fma,f16c",
    /// q5_0 · q8_0 tile, AVX2.
    fn gemm_q5_0, tile_q5_0(BlockQ5_0) { unpack: u_q5_0, lanes: lanes_offset_avx2, offset: 16, }
}
gemm32! {
    "avx2,fma,f16c",
    /// q5_0 · q8_0 tile, AVX2, rows in the [`crate::kernels::WeightLayout::Q5_0x4`]
    /// layout (every x86 level: the results are those of every level's Q5_0 tile).
    fn gemm_q5_0x4, tile_q5_0x4(BlockQ5_0) {
        group: group_q5_0x4,
        lanes: lanes_offset_avx2,
        offset: 16,
        defs: {},
    }
}
gemm32! {
    "avx2,fma,f16c",
    /// q8_0 · q8_0 tile, AVX2 (sign trick: `maddubs` would saturate on quants + 128).
    fn gemm_q8_0, tile_q8_0(BlockQ8_0) { unpack: s_q8_0, lanes: lanes_signed_avx2, offset: 0, }
}
gemm32! {
    "avx2,fma,f16c",
    /// iq4_nl · q8_0 tile, AVX2 (sign trick).
    fn gemm_iq4_nl, tile_iq4_nl(BlockIQ4NL) { unpack: s_iq4_nl, lanes: lanes_signed_avx2, offset: 0, }
}
gemm32! {
    "avx2,fma,f16c,avxvnni",
    /// q4_0 · q8_0 tile, AVX-VNNI.
    fn gemm_q4_0_vnni, tile_q4_0_vnni(BlockQ4_0) { unpack: u_q4_0, lanes: lanes_offset_vnni, offset: 8, }
}
gemm32! {
    "avx2,fma,f16c,avxvnni",
    /// q5_0 · q8_0 tile, AVX-VNNI.
    fn gemm_q5_0_vnni, tile_q5_0_vnni(BlockQ5_0) { unpack: u_q5_0, lanes: lanes_offset_vnni, offset: 16, }
}
gemm32! {
    "avx2,fma,f16c,avxvnni",
    /// q8_0 · q8_0 tile, AVX-VNNI (quants + 128).
    fn gemm_q8_0_vnni, tile_q8_0_vnni(BlockQ8_0) { unpack: u_q8_0, lanes: lanes_offset_vnni, offset: 128, }
}
gemm32! {
    "avx2,fma,f16c,avxvnni",
    /// iq4_nl · q8_0 tile, AVX-VNNI (values + 128).
    fn gemm_iq4_nl_vnni, tile_iq4_nl_vnni(BlockIQ4NL) { unpack: u_iq4_nl, lanes: lanes_offset_vnni, offset: 128, }
}

// ---------------------------------------------------------------- AVX-512 VNNI

/// The lanes `−B·Σ4 y` of two activation blocks side by side (see [`neg_offset`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn pair_i(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// `[a; 8] ++ [b; 8]` as 16 f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn pair_f(a: f32, b: f32) -> __m512 {
    let lo = _mm256_castps_pd(_mm256_set1_ps(a));
    let hi = _mm256_castps_pd(_mm256_set1_ps(b));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castpd256_pd512(lo), hi))
}

/// [`reduce8`] of 16 sets of 8 lanes held two per register (set `h` of register `k`:
/// lanes `8h .. 8h + 8`), the same additions in the same pairs, done together:
/// `c_k + c_{k+4}`, `s_0 + s_2`, `s_1 + s_3`, `t_0 + t_1`, each a vertical add after
/// the shuffles that line the pairs up. Set `h` of register `k` ends in lane
/// `8·(k mod 2) + 4h + k/2` of the result.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn reduce8_sets(x: [__m512; 8]) -> __m512 {
    // `c_k + c_{k+4}`: four sets per register, one per 128-bit lane.
    let s: [__m512; 4] = core::array::from_fn(|i| {
        let (a, b) = (x[2 * i], x[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xdd>(a, b),
        )
    });
    // `s_0 + s_2`, `s_1 + s_3`.
    let t: [__m512; 2] = core::array::from_fn(|i| {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(a, b),
            _mm512_shuffle_ps::<0xee>(a, b),
        )
    });
    // `t_0 + t_1`.
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(t[0], t[1]),
        _mm512_shuffle_ps::<0xdd>(t[0], t[1]),
    )
}

/// [`reduce8_sets`] of 8 rows' registers (row `k`'s sets for vectors `2p` and `2p + 1`),
/// in row order: vector `2p`'s sums of rows 0..8 in the lower half, `2p + 1`'s in the
/// upper half.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn reduce8_x16(x: [__m512; 8]) -> __m512 {
    // Lanes of the sums: rows 0, 2, 4, 6 of vector 2p, the same of 2p + 1, then rows 1,
    // 3, 5, 7 of each; into row order.
    let idx = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_permutexvar_ps(idx, reduce8_sets(x))
}

/// Half `h` (0: lanes 0..8, 1: lanes 8..16) of `r`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn half8(r: __m512, h: usize) -> __m256 {
    if h == 0 {
        _mm512_castps512_ps256(r)
    } else {
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(r)))
    }
}

/// [`reduce8`] of 8 registers (row `k`'s lanes in register `k`), the same additions
/// in the same pairs, done together: `c_k + c_{k+4}`, `s_0 + s_2`, `s_1 + s_3`,
/// `t_0 + t_1`, each a vertical add after the shuffles that line the pairs up; the 8
/// sums in row order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn reduce8_x8(x: [__m256; 8]) -> __m256 {
    // `c_k + c_{k+4}`: rows 2i and 2i + 1 in one register.
    let s: [__m256; 4] = core::array::from_fn(|i| {
        let (a, b) = (x[2 * i], x[2 * i + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // `s_0 + s_2`, `s_1 + s_3`.
    let t: [__m256; 2] = core::array::from_fn(|i| {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(a, b),
            _mm256_shuffle_ps::<0xee>(a, b),
        )
    });
    // `t_0 + t_1`: rows 0, 2, 4, 6, then 1, 3, 5, 7; into row order.
    let r = _mm256_add_ps(
        _mm256_shuffle_ps::<0x88>(t[0], t[1]),
        _mm256_shuffle_ps::<0xdd>(t[0], t[1]),
    );
    _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Generates a tile kernel on 512-bit registers and its `GemmFn` entry: each register
/// holds two (row, vector) pairs — the same weight block against two vectors, 8 lanes
/// each — so every lane runs exactly the 8-lane arithmetic of the 256-bit kernels:
/// `vpdpbusd` onto the offset correction, `cvt`, `dx·dy` (one f32 product per lane),
/// one fused multiply-add per block, `reduce8` per half at the end.
macro_rules! gemm32_zmm {
    // The AVX-512 VNNI features unless `features:` names more.
    (
        $(#[$doc:meta])*
        fn $name:ident, $tile:ident($X:ty) { unpack: $unpack:path, offset: $offset:expr, }
    ) => {
        gemm32_zmm! {
            $(#[$doc])*
            fn $name, $tile($X) {
                unpack: $unpack,
                offset: $offset,
                features: "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
            }
        }
    };
    (
        $(#[$doc:meta])*
        fn $name:ident, $tile:ident($X:ty) {
            unpack: $unpack:path,
            offset: $offset:expr,
            features: $feat:literal,
        }
    ) => {
        #[target_feature(enable = $feat)]
        fn $tile<const P: usize>(
            xs: &[&[u8]],
            ys: &[&[u8]; TILE],
            nv: usize,
            out: &mut [[f32; ROWS]; TILE],
        ) {
            let xs = xs.get(..ROWS).unwrap_or(xs);
            let nr = xs.len();
            let mut xss: [&[$X]; ROWS] = [&[]; ROWS];
            for (d, s) in xss.iter_mut().zip(xs) {
                *d = blk::<$X>(s);
            }
            let xss = &xss[..nr];
            let nv = nv.clamp(1, 2 * P);
            // Vector pair p = vectors 2p and 2p + 1 (the last repeated when nv is odd).
            let vi = |p: usize, h: usize| (2 * p + h).min(nv - 1);
            let mut yss: [&[BlockQ8_0]; TILE] = [&[]; TILE];
            for (d, s) in yss.iter_mut().zip(ys) {
                *d = blk::<BlockQ8_0>(s);
            }
            let nb = xss
                .iter()
                .map(|x| x.len())
                .chain(yss[..nv].iter().map(|y| y.len()))
                .min()
                .unwrap_or(0);
            let offset: u8 = $offset;
            let bvec = _mm256_set1_epi8(offset as i8);
            let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
            // Per vector pair, once for all rows: a group's quants, corrections, scales
            // (made once per call; each group overwrites what it reads).
            // Left uninitialised (zeroing them was a 12 KiB `memset` per call, about 1% of
            // a prefill): every group writes slots `[p][i]` for all `p < P`, `i < len`
            // before its rows read exactly those.
            let mut yq = [[MaybeUninit::<__m512i>::uninit(); 8]; P];
            let mut corr = [[MaybeUninit::<__m512i>::uninit(); 8]; P];
            let mut dy = [[MaybeUninit::<__m512>::uninit(); 8]; P];
            let mut g = 0;
            while g < nb {
                let len = (nb - g).min(8);
                for p in 0..P {
                    let (Some(y0), Some(y1)) =
                        (yss[vi(p, 0)].get(g..g + len), yss[vi(p, 1)].get(g..g + len))
                    else {
                        // (Never: `nb` is at most every vector's length.) Zeros, so that
                        // the slots read below are written all the same.
                        for i in 0..len.min(8) {
                            yq[p][i].write(_mm512_setzero_si512());
                            corr[p][i].write(_mm512_setzero_si512());
                            dy[p][i].write(_mm512_setzero_ps());
                        }
                        continue;
                    };
                    for (i, (b0, b1)) in y0.iter().zip(y1).enumerate() {
                        let i = i & 7;
                        let (q0, q1) = (load32(&b0.qs, 0), load32(&b1.qs, 0));
                        yq[p][i].write(pair_i(q0, q1));
                        corr[p][i].write(pair_i(neg_offset(bvec, q0), neg_offset(bvec, q1)));
                        dy[p][i].write(pair_f(f16(b0.d), f16(b1.d)));
                    }
                }
                for (r, xfull) in xss.iter().enumerate() {
                    let Some(xg) = xfull.get(g..g + len) else { continue };
                    let mut dxs = [0.0f32; 8];
                    match <&[$X; 8]>::try_from(xg) {
                        // SAFETY: `dxs` has room for 8 f32; `storeu` needs no alignment.
                        Ok(x8) => unsafe { _mm256_storeu_ps(dxs.as_mut_ptr(), d_x8(x8)) },
                        Err(_) => {
                            for (d, b) in dxs.iter_mut().zip(xg) {
                                *d = f16(b.d);
                            }
                        }
                    }
                    let Some(a) = acc.get_mut(r) else { continue };
                    let mut a = *a;
                    for (i, xb) in xg.iter().enumerate() {
                        let i = i & 7;
                        let q = _mm512_broadcast_i64x4($unpack(xb));
                        let dx = _mm512_set1_ps(dxs[i]);
                        for p in 0..P {
                            // SAFETY: `i < len` (`xg` has `len` blocks) and `p < P`: this
                            // group wrote these three slots above (see the tables).
                            let (c, y, dyp) = unsafe {
                                (corr[p][i].assume_init(), yq[p][i].assume_init(), dy[p][i].assume_init())
                            };
                            let lanes = _mm512_dpbusd_epi32(c, q, y);
                            let d = _mm512_mul_ps(dx, dyp);
                            a[p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), a[p]);
                        }
                    }
                    if let Some(dst) = acc.get_mut(r) {
                        *dst = a;
                    }
                }
                g += len;
            }
            // Whole groups of 8 rows: their 16 sums per vector pair reduced together.
            let full8 = nr - nr % 8;
            for (g8, a8) in acc[..full8].chunks_exact(8).enumerate() {
                for p in 0..P {
                    let r = reduce8_x16(core::array::from_fn(|k| a8[k][p]));
                    for h in 0..2 {
                        let v = 2 * p + h;
                        if v >= nv {
                            continue;
                        }
                        if let Some(o) = out.get_mut(v).and_then(|o| o.get_mut(8 * g8..8 * g8 + 8)) {
                            // SAFETY: `o` holds 8 f32; `storeu` needs no alignment.
                            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), half8(r, h)) };
                        }
                    }
                }
            }
            for (r, a) in acc[..nr].iter().enumerate().skip(full8) {
                for p in 0..P {
                    let mut lanes = [0.0f32; 16];
                    // SAFETY: `lanes` has room for 16 f32; `storeu` needs no alignment.
                    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), a[p]) };
                    for h in 0..2 {
                        let v = 2 * p + h;
                        if v < nv {
                            let mut l8 = [0.0f32; 8];
                            l8.copy_from_slice(&lanes[8 * h..8 * h + 8]);
                            if let Some(o) = out.get_mut(v).and_then(|o| o.get_mut(r)) {
                                *o = reduce8(l8);
                            }
                        }
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
            let xs = xs.get(..nr).unwrap_or(xs);
            match nv {
                0 => {}
                1 | 2 => $tile::<1>(xs, ys, nv, out),
                3 | 4 => $tile::<2>(xs, ys, nv, out),
                5 | 6 => $tile::<3>(xs, ys, nv, out),
                7 | 8 => $tile::<4>(xs, ys, nv, out),
                9 | 10 => $tile::<5>(xs, ys, nv, out),
                11 | 12 => $tile::<6>(xs, ys, nv, out),
                13 | 14 => $tile::<7>(xs, ys, nv, out),
                _ => $tile::<8>(xs, ys, nv, out),
            }
        }
    };
}

gemm32_zmm! {
    /// q4_0 · q8_0 tile, AVX-512 VNNI.
    fn gemm_q4_0_zmm, tile_q4_0_zmm(BlockQ4_0) { unpack: u_q4_0, offset: 8, }
}
gemm32_zmm! {
    /// q5_0 · q8_0 tile, AVX-512 VNNI.
    fn gemm_q5_0_zmm, tile_q5_0_zmm(BlockQ5_0) { unpack: super::rows::u_q5_0_k, offset: 16, }
}
gemm32_zmm! {
    /// q8_0 · q8_0 tile, AVX-512 VNNI (quants + 128).
    fn gemm_q8_0_zmm, tile_q8_0_zmm(BlockQ8_0) { unpack: u_q8_0, offset: 128, }
}
gemm32_zmm! {
    /// iq4_nl · q8_0 tile, AVX-512 VNNI (values + 128).
    fn gemm_iq4_nl_zmm, tile_iq4_nl_zmm(BlockIQ4NL) { unpack: u_iq4_nl, offset: 128, }
}
gemm32_zmm! {
    /// q5_0 · q8_0 tile, AVX-512 VNNI + GFNI.
    fn gemm_q5_0_gfni, tile_q5_0_gfni(BlockQ5_0) {
        unpack: super::rows::u_q5_0_g,
        offset: 16,
        features: "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni",
    }
}
