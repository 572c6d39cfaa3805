//! The attention kernel of [`crate::kernels::attn`] compiled with AVX2/FMA/F16C and with
//! AVX-512: the same body as the portable entry (so the same operations in the same
//! order, hence the same bits), which the compiler vectorises here, and hand-written
//! steps. AVX2: the 16-lane dot products of one key row with 4 heads' queries, and the
//! 64-lane ones (one query) of one head's query with a tile of key rows, 8 keys'
//! reductions at a time; and the 64-lane `KQ·V` of up to 3 heads over a short span
//! with all the lanes of 8 values in registers ([`kqv64_avx2`]).
//! AVX-512: also those of 4 key rows at once, one register per (key, head), with their
//! reductions done 16 at a time; and one lane of `KQ·V` for 64 values of up to 4 heads
//! in 16 registers. Reached only through the AVX2 and AVX-512 tables, which only
//! [`super::Avx2`] hands out.
//!
//! One difference in form, none in result: the sums of exact products (f16 × f16
//! widened to f32) use the fused multiply-add instruction (`FUSE`), which gives the
//! same bits as the portable multiply-then-add because the product needs no rounding.

use core::arch::x86_64::*;

use crate::kernels::attn::{
    self, AttnKernels, AttnShape, Cols, Dot4x16, LaneRows, StoredRows, ValueRows,
};
use crate::kernels::scalar::fma;

/// The AVX2 entries.
pub(super) const AVX2_ATTN: AttnKernels = AttnKernels {
    heads,
    heads_f16: Some(heads_f16),
};

/// The AVX-512 entries: [`AVX2_ATTN`] with the `K·Q` of 4 keys × 4 heads in 512-bit
/// registers ([`dot4x4_zmm`]); same bits.
pub(super) const ZMM_ATTN: AttnKernels = AttnKernels {
    heads: heads_zmm,
    heads_f16: Some(heads_f16_zmm),
};

#[target_feature(enable = "avx2,fma,f16c")]
fn heads(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]) {
    attn::heads::<true, _>(&Avx2Dot4 { _private: () }, s, k, v, ws);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn heads_f16(s: &AttnShape, k: &[u8], v: &[u8], ws: &mut [f32]) {
    attn::heads_f16::<true, _>(&Avx2Dot4 { _private: () }, s, k, v, ws);
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
fn heads_zmm(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]) {
    attn::heads::<true, _>(&ZmmDot4 { _private: () }, s, k, v, ws);
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
fn heads_f16_zmm(s: &AttnShape, k: &[u8], v: &[u8], ws: &mut [f32]) {
    attn::heads_f16::<true, _>(&ZmmDot4 { _private: () }, s, k, v, ws);
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
    fn widen8(&self, src: &[u8; 16]) -> [f32; 8] {
        // SAFETY: as for `dot4` (F16C is among the AVX2 table's features).
        unsafe { widen8(src) }
    }

    #[inline(always)]
    fn kq64_keys<const EXACT: bool, const FUSE: bool>(
        &self,
        q: &[f32],
        k: &[f32],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
    ) {
        // SAFETY: as for `dot4` (AVX-512 F implies the AVX2 kernel's features here).
        unsafe { kq64_keys_x86::<EXACT, FUSE>(q, k, stride, scale, scores) }
    }

    #[inline(always)]
    fn kqv_cols<const L: usize, const EXACT: bool, const FUSE: bool>(
        &self,
        ws: &mut [f32],
        block: usize,
        s: &AttnShape,
        v: &[f32],
        c: Cols,
    ) -> Option<()> {
        // SAFETY: as for `dot4` (AVX-512 F implies the AVX2 kernel's features here).
        unsafe { kqv_cols_x86::<L, EXACT, FUSE>(ws, block, s, v, c) }
    }

    #[inline(always)]
    fn kqv64<const FUSE: bool, V: ValueRows>(
        &self,
        ws: &mut [f32],
        block: usize,
        s: &AttnShape,
        v: V,
    ) -> Option<()> {
        // SAFETY: as for `dot4` (AVX-512 F implies the AVX2 kernel's features here).
        unsafe { kqv64_x86::<FUSE, V>(ws, block, s, v) }
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

    #[inline(always)]
    fn dot4x4(&self, _exact: bool, x: [&[f32]; 4], y: [&[f32]; 4]) -> [[f32; 4]; 4] {
        // SAFETY: as for `dot4`.
        unsafe { dot4x4_avx2(x, y) }
    }

    #[inline(always)]
    fn widen8(&self, src: &[u8; 16]) -> [f32; 8] {
        // SAFETY: as for `dot4` (F16C is among the AVX2 table's features).
        unsafe { widen8(src) }
    }

    #[inline(always)]
    fn kq64_keys<const EXACT: bool, const FUSE: bool>(
        &self,
        q: &[f32],
        k: &[f32],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
    ) {
        // SAFETY: as for `dot4`.
        unsafe { kq64_keys_x86::<EXACT, FUSE>(q, k, stride, scale, scores) }
    }

    #[inline(always)]
    fn kqv_cols<const L: usize, const EXACT: bool, const FUSE: bool>(
        &self,
        ws: &mut [f32],
        block: usize,
        s: &AttnShape,
        v: &[f32],
        c: Cols,
    ) -> Option<()> {
        // SAFETY: as for `dot4`.
        unsafe { kqv_cols_x86::<L, EXACT, FUSE>(ws, block, s, v, c) }
    }

    #[inline(always)]
    fn kqv64<const FUSE: bool, V: ValueRows>(
        &self,
        ws: &mut [f32],
        block: usize,
        s: &AttnShape,
        v: V,
    ) -> Option<()> {
        // SAFETY: as for `dot4`.
        unsafe { kqv64_x86::<FUSE, V>(ws, block, s, v) }
    }
}

/// 8 f16 (little-endian bytes) → f32 (`vcvtph2ps`, exact).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn widen8(src: &[u8; 16]) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    // SAFETY: `src` holds 16 bytes and `out` 8 f32; `loadu`/`storeu` have no alignment
    // requirement.
    unsafe {
        let h = _mm_loadu_si128(src.as_ptr().cast());
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_cvtph_ps(h));
    }
    out
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

/// [`dot4x16`] of 4 key rows `x` with the same 4 heads' rows `y`, `[key][head]`: each
/// key's sums as `dot4x16` makes them (lane `i mod 16`, one fused multiply-add per
/// value in index order), their reductions done 8 at a time in registers: `lo + hi`
/// (the first step of `reduce16`), then [`super::tiles::reduce8_x8`] for two keys'
/// 4 heads. Rows whose length is not a multiple of 16 go through `dot4x16`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot4x4_avx2(x: [&[f32]; 4], y: [&[f32]; 4]) -> [[f32; 4]; 4] {
    let n = y[0].len();
    if !n.is_multiple_of(16) || x.iter().chain(&y).any(|r| r.len() < n) {
        return x.map(|r| dot4x16(r.get(..n).unwrap_or(r), y));
    }
    let mut out = [[0.0f32; 4]; 4];
    for (pair, o) in x.chunks_exact(2).zip(out.chunks_exact_mut(2)) {
        let mut sums = [_mm256_setzero_ps(); 8];
        for (xr, s) in pair.iter().zip(sums.chunks_exact_mut(4)) {
            let mut lo = [_mm256_setzero_ps(); 4];
            let mut hi = [_mm256_setzero_ps(); 4];
            let (xp, yp) = (xr.as_ptr(), y.map(|r| r.as_ptr()));
            let mut i = 0;
            while i < n {
                // SAFETY: `i + 16 ≤ n`, and `x`'s and `y`'s rows hold at least `n` f32
                // (checked above); `loadu` has no alignment requirement.
                unsafe {
                    let (x0, x1) = (_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(xp.add(i + 8)));
                    for j in 0..4 {
                        let q = yp[j].add(i);
                        lo[j] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q), lo[j]);
                        hi[j] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(q.add(8)), hi[j]);
                    }
                }
                i += 16;
            }
            for (s, (l, h)) in s.iter_mut().zip(lo.iter().zip(&hi)) {
                *s = _mm256_add_ps(*l, *h);
            }
        }
        // SAFETY: `o` is two `[f32; 4]`, 8 contiguous f32; `storeu` has no alignment
        // requirement.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr().cast(), super::tiles::reduce8_x8(sums)) };
    }
    out
}

/// [`Dot4x16::kq64_keys`] of both x86 levels: [`kq64_keys_avx2`] (exact or not, every
/// step a fused multiply-add, see the module docs), or the portable body for the head
/// dimensions it leaves.
///
/// # Safety
///
/// The CPU must support AVX2, FMA and F16C.
#[inline(always)]
unsafe fn kq64_keys_x86<const EXACT: bool, const FUSE: bool>(
    q: &[f32],
    k: &[f32],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
) {
    // SAFETY: the caller guarantees the kernel's features.
    if unsafe { kq64_keys_avx2(q, k, stride, scale, scores) }.is_none() {
        attn::kq::<FUSE>(q, k, stride, attn::Lanes::L64, EXACT, scale, scores);
    }
}

/// [`Dot4x16::kq64_keys`]: the `K·Q` scores in 64 lanes (`lane = i mod 64`, a fused
/// multiply-add per value in index order) of the query `q` with the key rows of `k`
/// (row `i` at `i · stride`), one per value of `scores`. A key's 64 lanes are 8
/// registers, folded as `attn::reduce_lanes` folds them:
/// `(a_k + a_{k+32}) + (a_{k+16} + a_{k+48})`, then the two halves of the 16 (the first
/// step of `reduce16`); the last
/// steps go 8 keys at a time through [`super::tiles::reduce8_x8`], and the 8 sums are
/// scaled together. With a head dimension of 64 the query stays in registers. `None`
/// (for the portable body) if the head dimension is not a multiple of 8 or a row is
/// short.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn kq64_keys_avx2(
    q: &[f32],
    k: &[f32],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
) -> Option<()> {
    let hd = q.len();
    let n = scores.len();
    if hd == 0 || !hd.is_multiple_of(8) {
        return None;
    }
    if n > 0 && k.len() < (n - 1).checked_mul(stride)?.checked_add(hd)? {
        return None;
    }
    let whole = hd - hd % 64;
    // The query's first 64 values (zeros past `hd`), for a head dimension of 64.
    let q64: [__m256; 8] = if hd == 64 {
        core::array::from_fn(|t| load8(q, 8 * t))
    } else {
        [_mm256_setzero_ps(); 8]
    };
    let qp = q.as_ptr();
    let sc = _mm256_set1_ps(scale);
    let mut i = 0;
    while i < n {
        let kn = (n - i).min(8);
        let mut f = [_mm256_setzero_ps(); 8];
        for (t, f) in f.iter_mut().enumerate().take(kn) {
            // Row `i + t < n` holds `hd` f32 (checked above).
            let xp = k.as_ptr().wrapping_add((i + t) * stride);
            let mut a = [_mm256_setzero_ps(); 8];
            if hd == 64 {
                for (c, a) in a.iter_mut().enumerate() {
                    // SAFETY: the row holds 64 f32 from `xp`; `loadu` has no alignment
                    // requirement.
                    *a = _mm256_fmadd_ps(q64[c], unsafe { _mm256_loadu_ps(xp.add(8 * c)) }, *a);
                }
            } else {
                let mut c0 = 0;
                while c0 < whole {
                    for (c, a) in a.iter_mut().enumerate() {
                        // SAFETY: `c0 + 8·c + 8 ≤ whole ≤ hd`, and the row and `q` hold
                        // `hd` f32; `loadu` has no alignment requirement.
                        unsafe {
                            let at = c0 + 8 * c;
                            let (y, x) = (_mm256_loadu_ps(qp.add(at)), _mm256_loadu_ps(xp.add(at)));
                            *a = _mm256_fmadd_ps(y, x, *a);
                        }
                    }
                    c0 += 64;
                }
                // The last `hd − whole` values (a multiple of 8): the first lanes once more.
                for (c, a) in a.iter_mut().enumerate().take((hd - whole) / 8) {
                    // SAFETY: `whole + 8·c + 8 ≤ hd`; as above.
                    unsafe {
                        let at = whole + 8 * c;
                        let (y, x) = (_mm256_loadu_ps(qp.add(at)), _mm256_loadu_ps(xp.add(at)));
                        *a = _mm256_fmadd_ps(y, x, *a);
                    }
                }
            }
            let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
            let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
            *f = _mm256_add_ps(lo, hi);
        }
        let r = _mm256_mul_ps(super::tiles::reduce8_x8(f), sc);
        match scores.get_mut(i..i + 8) {
            // SAFETY: `g` holds 8 f32; `storeu` has no alignment requirement.
            Some(g) => unsafe { _mm256_storeu_ps(g.as_mut_ptr(), r) },
            None => {
                let mut t = [0.0f32; 8];
                // SAFETY: `t` holds 8 f32; `storeu` has no alignment requirement.
                unsafe { _mm256_storeu_ps(t.as_mut_ptr(), r) };
                for (d, s) in scores.iter_mut().skip(i).zip(t) {
                    *d = s;
                }
            }
        }
        i += kn;
    }
    Some(())
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

/// [`Dot4x16::kqv_cols`] of both x86 levels: [`kqv_cols16`] for 16 lanes, fused steps
/// and a base on a multiple of 16 (every batch), else the portable body.
///
/// # Safety
///
/// The CPU must support AVX2, FMA and F16C.
#[inline(always)]
unsafe fn kqv_cols_x86<const L: usize, const EXACT: bool, const FUSE: bool>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    v: &[f32],
    c: Cols,
) -> Option<()> {
    if L == 16 && FUSE && c.base.is_multiple_of(16) {
        // SAFETY: the caller guarantees the kernel's features.
        unsafe { kqv_cols16(ws, block, s, v, c) }
    } else {
        attn::kqv_cols::<L, EXACT, FUSE>(ws, block, s, v, c)
    }
}

/// `KQ·V` with transposed values ([`attn::VLayout::Cols`], `c.base` a multiple of 16),
/// 16 lanes, every step a fused multiply-add: [`attn::kqv_cols`]'s sums. For each value
/// `d`, its row of cache positions goes by aligned blocks of 16 (lane = position mod 16,
/// two registers), each block loaded once for up to 4 heads; the two boundary blocks
/// take their probabilities from zero-padded copies and their values through a mask, so
/// the positions outside the keys add `fma(0, 0, acc) = acc`. Then per head `lo + hi`
/// (the first step of `reduce16`) and [`super::tiles::reduce8_x8`] for 8 values at once.
/// `None` if a slice is not all there (the callers never pass such).
#[target_feature(enable = "avx2,fma,f16c")]
fn kqv_cols16(ws: &mut [f32], block: usize, s: &AttnShape, v: &[f32], c: Cols) -> Option<()> {
    let n = s.n_keys;
    let off = s.first.checked_sub(c.base)?;
    if n == 0 || block == 0 {
        return attn::kqv_cols::<16, true, true>(ws, block, s, v, c);
    }
    let end = off.checked_add(n)?;
    let a0 = off - off % 16;
    let nblk = (end.div_ceil(16) * 16 - a0) / 16;
    let g = ColsGeom { off, end, a0, nblk };
    let nh = ws.len() / block;
    let mut h = 0;
    while h < nh {
        let hn = (nh - h).min(4);
        let part = ws.get_mut(h * block..(h + hn) * block)?;
        match hn {
            4 => cols16_heads::<4>(part, block, s, v, c, g)?,
            3 => cols16_heads::<3>(part, block, s, v, c, g)?,
            2 => cols16_heads::<2>(part, block, s, v, c, g)?,
            _ => cols16_heads::<1>(part, block, s, v, c, g)?,
        }
        h += hn;
    }
    Some(())
}

/// Where the keys sit in a transposed value row: positions `off .. end` (relative to
/// the row's start), in `nblk` aligned blocks of 16 from `a0`.
#[derive(Clone, Copy)]
struct ColsGeom {
    off: usize,
    end: usize,
    a0: usize,
    nblk: usize,
}

/// [`kqv_cols16`] for the `H` heads of `ws` (`H` scratch blocks).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn cols16_heads<const H: usize>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    v: &[f32],
    c: Cols,
    g: ColsGeom,
) -> Option<()> {
    let (hd, n) = (s.hd, s.n_keys);
    let ColsGeom { off, end, a0, nblk } = g;
    // Each head's output (mutable) and probabilities, from disjoint parts of its block.
    let mut outs: [&mut [f32]; H] = core::array::from_fn(|_| Default::default());
    let mut ps: [&[f32]; H] = [&[]; H];
    for ((o, p), b) in outs
        .iter_mut()
        .zip(ps.iter_mut())
        .zip(ws.chunks_exact_mut(block))
    {
        let (out, rest) = b.split_at_mut_checked(hd)?;
        *o = out;
        *p = rest.get(hd..hd + n)?;
    }
    // The boundary blocks (the first and the last, one block if they are the same):
    // probabilities with zeros outside the keys, and masks for the values.
    let last = a0 + 16 * (nblk - 1);
    let inside = |j: usize| j >= off && j < end;
    let mut pf = [[0.0f32; 16]; H];
    let mut pl = [[0.0f32; 16]; H];
    let mut mf = [0i32; 16];
    let mut ml = [0i32; 16];
    for k in 0..16 {
        let (jf, jl) = (a0 + k, last + k);
        if inside(jf) {
            mf[k] = -1;
            for (d, p) in pf.iter_mut().zip(&ps) {
                d[k] = p.get(jf - off).copied().unwrap_or(0.0);
            }
        }
        if inside(jl) {
            ml[k] = -1;
            for (d, p) in pl.iter_mut().zip(&ps) {
                d[k] = p.get(jl - off).copied().unwrap_or(0.0);
            }
        }
    }
    let mask = |m: &[i32; 16], at: usize| -> __m256 {
        match m.get(at..at + 8) {
            // SAFETY: 8 readable i32; `loadu` has no alignment requirement.
            Some(m) => unsafe { _mm256_castsi256_ps(_mm256_loadu_si256(m.as_ptr().cast())) },
            None => _mm256_setzero_ps(),
        }
    };
    let (mf_lo, mf_hi, ml_lo, ml_hi) = (mask(&mf, 0), mask(&mf, 8), mask(&ml, 0), mask(&ml, 8));
    // The middle blocks' probabilities: from index `a0 + 16 − off` (≥ 1), whole blocks.
    let nmid = nblk.saturating_sub(2);
    let mut pm: [&[f32]; H] = [&[]; H];
    if nmid > 0 {
        let i1 = a0 + 16 - off;
        for (d, p) in pm.iter_mut().zip(&ps) {
            *d = p.get(i1..i1 + 16 * nmid)?;
        }
    }
    let mut d0 = 0;
    while d0 < hd {
        let dn = (hd - d0).min(8);
        // `t[dd][j]`: value `d0 + dd` of head `j`, its 16 lanes folded to 8.
        let mut t = [[_mm256_setzero_ps(); H]; 8];
        for (dd, td) in t.iter_mut().enumerate().take(dn) {
            let at = (d0 + dd).checked_mul(c.stride)?.checked_add(a0)?;
            let row = v.get(at..at.checked_add(16 * nblk)?)?;
            let mut lo = [_mm256_setzero_ps(); H];
            let mut hi = [_mm256_setzero_ps(); H];
            // The first block.
            let vlo = _mm256_and_ps(load8(row, 0), mf_lo);
            let vhi = _mm256_and_ps(load8(row, 8), mf_hi);
            for j in 0..H {
                lo[j] = _mm256_fmadd_ps(load8(&pf[j], 0), vlo, lo[j]);
                hi[j] = _mm256_fmadd_ps(load8(&pf[j], 8), vhi, hi[j]);
            }
            if nblk > 1 {
                let mid = row.get(16..16 + 16 * nmid).unwrap_or(&[]);
                let rp = mid.as_ptr();
                for k in 0..mid.len() / 16 {
                    // SAFETY: `mid` holds `16 · nmid` f32 and each of `pm` as many
                    // (both sliced above), so `16k + 16` of them are readable; `loadu`
                    // has no alignment requirement.
                    unsafe {
                        let vlo = _mm256_loadu_ps(rp.add(16 * k));
                        let vhi = _mm256_loadu_ps(rp.add(16 * k + 8));
                        for j in 0..H {
                            let pp = pm[j].as_ptr().add(16 * k);
                            lo[j] = _mm256_fmadd_ps(_mm256_loadu_ps(pp), vlo, lo[j]);
                            hi[j] = _mm256_fmadd_ps(_mm256_loadu_ps(pp.add(8)), vhi, hi[j]);
                        }
                    }
                }
                // The last block.
                let at = 16 * (nblk - 1);
                let vlo = _mm256_and_ps(load8(row, at), ml_lo);
                let vhi = _mm256_and_ps(load8(row, at + 8), ml_hi);
                for j in 0..H {
                    lo[j] = _mm256_fmadd_ps(load8(&pl[j], 0), vlo, lo[j]);
                    hi[j] = _mm256_fmadd_ps(load8(&pl[j], 8), vhi, hi[j]);
                }
            }
            for (t, (l, h)) in td.iter_mut().zip(lo.iter().zip(&hi)) {
                *t = _mm256_add_ps(*l, *h);
            }
        }
        for (j, o) in outs.iter_mut().enumerate() {
            let tj: [__m256; 8] = core::array::from_fn(|dd| t[dd][j]);
            let mut r = [0.0f32; 8];
            // SAFETY: `r` has room for 8 f32; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_ps(r.as_mut_ptr(), super::tiles::reduce8_x8(tj)) };
            o.get_mut(d0..d0 + dn)?.copy_from_slice(r.get(..dn)?);
        }
        d0 += dn;
    }
    Some(())
}

/// [`Dot4x16::kqv64`] of both x86 levels: [`kqv64_avx2`] (every step a fused
/// multiply-add, `FUSE`), or the portable body for the shapes it leaves.
///
/// # Safety
///
/// The CPU must support AVX2, FMA and F16C.
#[inline(always)]
unsafe fn kqv64_x86<const FUSE: bool, V: ValueRows>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    v: V,
) -> Option<()> {
    // SAFETY: the caller guarantees the kernel's features.
    if FUSE && unsafe { kqv64_avx2(ws, block, s, v.stored()) }.is_some() {
        return Some(());
    }
    attn::kqv_rows64::<FUSE, V>(ws, block, s, v)
}

/// The longest span [`kqv64_avx2`] takes. Its walks go 16 rows apart (4 KiB for rows
/// of 256 bytes, so that they keep landing in the same L1 sets), where the portable
/// body walks the rows in order. Whole attention calls (the f16 entry, in cache, 2
/// alternated rounds of medians of 9 × 200 calls) on the AMD machine (Zen 3), with
/// this step against without, for Gemma 3's 2 heads of 256 values and Qwen2.5's 7
/// heads of 64: 19–26 against 40 µs and 19–24 against 33–41 at 128 keys; 29–33 against
/// 49–57 and 28–33 against 40–50 at 192; 45–53 against 58–70 and 40–48 against 44–51
/// at 256; about equal at 320–384; slower beyond (116 against 81 µs for the 2 heads at
/// 500 keys, 440 against 272 for the 7 at 2,048).
const KQV_REG_MAX: usize = 256;

/// The value rows of [`kqv64_group`]: their first byte and the bytes from one row to
/// the next; the values are f16 or f32 by the group's `F16`.
#[derive(Clone, Copy)]
struct Rows8 {
    base: *const u8,
    stride: usize,
}

/// `KQ·V` in 64 lanes (one query) of all the heads of `ws` (scratch blocks of `block`
/// values: output at `0..hd`, probabilities at `2·hd..2·hd + n`), the sums of
/// `attn::kqv_rows64` with the lanes in registers instead of the scratch's lane area.
/// Lane `l` sums the rows `i` with `(first + i) mod 64 = l`, in index order, one fused
/// multiply-add per value, from zero; the lanes are then folded as
/// `attn::reduce_lanes` folds them. The lanes `k, k + 16, k + 32, k + 48` take the rows
/// `i ≡ k − first (mod 16)`: one walk over those rows (16 apart) with 4 accumulators
/// per head sums all four, and gives `(L_k + L_{k+32}) + (L_{k+16} + L_{k+48})`; the
/// 16 such values then go through `reduce16`'s additions. 8 values of the head
/// dimension at a time, for up to 3 heads at once (each loaded row piece serves them
/// all; 12 accumulators stay in registers). `None` (for the portable body) if the head
/// dimension is not a multiple of 8, the span longer than [`KQV_REG_MAX`], or a slice
/// is not all there.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn kqv64_avx2(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    rows: (StoredRows<'_>, usize),
) -> Option<()> {
    let (hd, n) = (s.hd, s.n_keys);
    let (stored, stride) = rows;
    if hd == 0
        || !hd.is_multiple_of(8)
        || n > KQV_REG_MAX
        || block < hd.checked_mul(2)?.checked_add(n)?
    {
        return None;
    }
    // Values `0..(n − 1)·stride + hd` of the rows are read.
    let need = match n {
        0 => 0,
        _ => (n - 1).checked_mul(stride)?.checked_add(hd)?,
    };
    match stored {
        StoredRows::F32(v) if v.len() >= need => {
            let r = Rows8 {
                base: v.as_ptr().cast(),
                stride: stride.checked_mul(4)?,
            };
            kqv64_heads::<false>(ws, block, s, r)
        }
        StoredRows::F16(v) if v.len() >= need.checked_mul(2)? => {
            let r = Rows8 {
                base: v.as_ptr(),
                stride: stride.checked_mul(2)?,
            };
            kqv64_heads::<true>(ws, block, s, r)
        }
        _ => None,
    }
}

/// [`kqv64_avx2`] after its checks: the heads of `ws` by groups of at most 3, from the
/// rows `r` (f16 if `F16`, else f32), which hold the span's `hd` values of every row.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn kqv64_heads<const F16: bool>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    r: Rows8,
) -> Option<()> {
    let (hd, n) = (s.hd, s.n_keys);
    let mut blocks = ws.chunks_exact_mut(block);
    let mut left = blocks.len();
    while left > 0 {
        // Groups of at most 3 heads; 4 as 2 + 2.
        let g = if left == 4 { 2 } else { left.min(3) };
        let mut ps: [&[f32]; 3] = [&[]; 3];
        let mut outs: [&mut [f32]; 3] = Default::default();
        // (The arrays first: `zip` then takes no block past the group.)
        for ((p, out), b) in ps.iter_mut().zip(outs.iter_mut()).take(g).zip(&mut blocks) {
            let (o, rest) = b.split_at_mut_checked(hd)?;
            *p = rest.get(hd..hd + n)?;
            *out = o;
        }
        let [p0, p1, p2] = ps;
        let [o0, o1, o2] = outs;
        // SAFETY: every row piece read lies in the rows `kqv64_avx2` checked (`i < n`,
        // `c + 8 ≤ hd`); each `p` holds `n` values and each output `hd` (sliced so).
        unsafe {
            match g {
                1 => kqv64_group::<1, F16>([p0], [o0], r, n, s.first, hd),
                2 => kqv64_group::<2, F16>([p0, p1], [o0, o1], r, n, s.first, hd),
                _ => kqv64_group::<3, F16>([p0, p1, p2], [o0, o1, o2], r, n, s.first, hd),
            }
        }
        left -= g;
    }
    Some(())
}

/// [`kqv64_avx2`] for `H` heads, the rows f16 if `F16` (else f32).
///
/// # Safety
///
/// AVX2, FMA and F16C; row `i < n` of `r` readable for `hd` values; every `p` at least
/// `n` values and every `out` at least `hd`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kqv64_group<const H: usize, const F16: bool>(
    p: [&[f32]; H],
    mut out: [&mut [f32]; H],
    r: Rows8,
    n: usize,
    first: usize,
    hd: usize,
) {
    let size = if F16 { 2 } else { 4 };
    let pp = p.map(|p| p.as_ptr());
    // One row piece and its products with the heads' probabilities into `acc[..][j]`.
    macro_rules! step {
        ($acc:ident, $i:expr, $c:expr, $j:expr) => {{
            let i = $i;
            // SAFETY: by the caller's contract, row `i < n` and values `c .. c + 8 ≤ hd`
            // are readable.
            let at = unsafe { r.base.add(i * r.stride + $c * size) };
            let x = if F16 {
                // SAFETY: as above, 16 readable bytes.
                _mm256_cvtph_ps(unsafe { _mm_loadu_si128(at.cast()) })
            } else {
                // SAFETY: as above, 8 readable f32.
                unsafe { _mm256_loadu_ps(at.cast()) }
            };
            for h in 0..H {
                // SAFETY: `i < n ≤ p[h].len()`.
                let ph = _mm256_set1_ps(unsafe { *pp[h].add(i) });
                $acc[h][$j] = _mm256_fmadd_ps(ph, x, $acc[h][$j]);
            }
        }};
    }
    let mut c = 0;
    while c + 8 <= hd {
        // t[h][k] = (L_k + L_{k+32}) + (L_{k+16} + L_{k+48}) for these 8 values.
        let mut t = [[_mm256_setzero_ps(); 16]; H];
        for k in 0..16 {
            // The first row of the lanes k, k + 16, k + 32, k + 48: rows i0 + 16·j +
            // 64·m go to one lane for each j, `acc[..][j]`.
            let i0 = (k + 16 - first % 16) % 16;
            let mut acc = [[_mm256_setzero_ps(); 4]; H];
            let mut i = i0;
            while i + 48 < n {
                step!(acc, i, c, 0);
                step!(acc, i + 16, c, 1);
                step!(acc, i + 32, c, 2);
                step!(acc, i + 48, c, 3);
                i += 64;
            }
            if i < n {
                step!(acc, i, c, 0);
            }
            if i + 16 < n {
                step!(acc, i + 16, c, 1);
            }
            if i + 32 < n {
                step!(acc, i + 32, c, 2);
            }
            for (t, a) in t.iter_mut().zip(&acc) {
                // Lane k + 16·m is a[(m − s0) mod 4] with s0 the lane of row i0, so
                // lanes k and k + 32 are a[j] and a[j + 2] for some j, as are k + 16
                // and k + 48: whatever s0, the sum is (a0 + a2) + (a1 + a3) up to the
                // order of two operands of an addition, which gives the same bits.
                t[k] = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
            }
        }
        for (t, o) in t.iter().zip(out.iter_mut()) {
            // reduce16: c_k = t_k + t_{k+8}, then reduce8: ((c0 + c4) + (c2 + c6)) +
            // ((c1 + c5) + (c3 + c7)).
            let c8: [__m256; 8] = core::array::from_fn(|k| _mm256_add_ps(t[k], t[k + 8]));
            let s4: [__m256; 4] = core::array::from_fn(|k| _mm256_add_ps(c8[k], c8[k + 4]));
            let sum = _mm256_add_ps(_mm256_add_ps(s4[0], s4[2]), _mm256_add_ps(s4[1], s4[3]));
            if let Some(o) = o.get_mut(c..c + 8) {
                // SAFETY: `o` holds 8 f32; `storeu` has no alignment requirement.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), sum) };
            }
        }
        c += 8;
    }
}
