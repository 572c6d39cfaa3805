//! Attention of query heads over their cached keys, in llama.cpp's float order (the
//! arithmetic of `ggml_vec_dot_f16` / llamafile's tinyBLAS for `K·Q` and `KQ·V`, and of
//! `ggml_vec_soft_max_f32` with ggml's vectorised `expf`): one kernel, [`HeadsFn`], for
//! the query heads that share a KV head, an entry of the [`Kernels`](super::Kernels)
//! table ([`AttnKernels`]).
//!
//! The body is written once, as plain Rust over fixed-size lane arrays, and
//! instantiated three times: the portable entry below ([`SCALAR`]) and, on x86-64, two
//! copies compiled with AVX2/FMA/F16C and with AVX-512 enabled (`x86_64/attn.rs`),
//! which the compiler vectorises. A level may bring its own inner steps ([`Dot4x16`]):
//! the `K·Q` dot products of 4 heads with one key or 4 keys, those of one head with a
//! tile of keys in 64 lanes (one query), and one lane of `KQ·V`.
//! Every copy runs the same operations in the same order (Rust never contracts or
//! reassociates float operations), so every level gives the same bits; `tests` checks
//! them against the straightforward loops.
//!
//! Layout: the keys (values) of a KV head are rows of `hd` f32 values, row `i` starting
//! at `i · stride` (a layer's cache rows hold all KV heads: `stride = kv_dim`). Row `i`
//! is the cache position `first + i`; the lane of a sum and the chunk of the softmax
//! are taken from the cache position, as in llama.cpp. Nothing here panics: rows or
//! scratch that are not all there end the work early (the callers never pass such
//! slices).

use super::ops::v_expf;
use super::reduce8;
use super::scalar::fma;

/// How many lanes the `K·Q` and `KQ·V` sums use (see [`reduce_lanes`]): llama.cpp's
/// two code paths, one token decoded or a batch. Its reference build here targets the
/// machine's AVX-512 (see `fixtures/reference.sh`); these are its sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// 16 lanes: a batch of queries (llamafile's tinyBLAS with AVX-512).
    L16,
    /// 64 lanes: one query (`ggml_vec_dot_f16` with AVX-512: 4 × 16 lanes).
    L64,
}

/// The shape of one call of [`HeadsFn`]: `heads` query heads that share one KV head.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Query heads in this call (their scratch blocks follow each other in `ws`).
    pub heads: usize,
    /// Values per head.
    pub hd: usize,
    /// Room for scores in each scratch block (the cache length).
    pub n_ctx: usize,
    /// Cached positions attended to (`≤ n_ctx`).
    pub n_keys: usize,
    /// Cache position of the first of them.
    pub first: usize,
    /// Distance between consecutive key (value) rows, in values.
    pub stride: usize,
    /// Lanes of the `K·Q` and `KQ·V` sums.
    pub lanes: Lanes,
    /// Every product is exact in f32 (an f16 cache: Q, K, V and the probabilities are
    /// f16 values): the portable code then multiplies and adds, a level with an FMA
    /// instruction fuses, with the same bits; the probabilities are rounded to f16.
    /// Otherwise fused multiply-adds at every level.
    pub exact: bool,
    /// Scale of the `K·Q` scores.
    pub scale: f32,
    /// Where the values are: rows like the keys, or transposed.
    pub values: VLayout,
}

/// The layout of the values handed to [`HeadsFn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VLayout {
    /// Rows like the keys: row `i` (cache position `first + i`) at `i · stride`.
    Rows,
    /// Transposed: value `d` of cache position `P` at `d · stride + (P − base)`, so
    /// that one value of every cache position is a contiguous row (`KQ·V` is then one
    /// dot product per value, its lanes contiguous). `base ≤ first`; the fast paths
    /// want `base` a multiple of the lanes' count and every row readable from `base`
    /// to the end of the block of 16 positions holding the last key (zeros or not:
    /// positions outside the keys are never summed).
    Cols { stride: usize, base: usize },
}

/// Values of one head's scratch block: `[out hd][q hd][scores n_ctx][lanes 64·hd]`
/// (room for the widest lanes, [`Lanes::L64`]).
pub fn block_len(hd: usize, n_ctx: usize) -> Option<usize> {
    hd.checked_mul(64 + 2)?.checked_add(n_ctx)
}

/// Attention of `s.heads` query heads over the same cached keys and values: for head
/// `j`, its scratch block `ws[j·block ..]` ([`block_len`]) holds its query at `hd..2·hd`
/// (put there by the caller) and receives its output at `0..hd`. Per head:
/// `scores_i = scale · Σ_d q_d · k_{i,d}` (lanes by value index), a softmax whose
/// exponentials are summed in chunks of 16 cache positions into an f64, then
/// `out_d = Σ_i p_i · v_{i,d}` (lanes by cache position). The keys (values) are rows of
/// `k` (`v`), row `i` at `i · s.stride`.
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type HeadsFn = unsafe fn(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]);

/// [`HeadsFn`] for one query (the decode of a token: `s.lanes` is [`Lanes::L64`]) with
/// the keys and values read from the f16 cache itself: `k` and `v` are its
/// little-endian bytes, row `i` from byte `2 · i · s.stride`, the values as rows
/// whatever `s.values` says. The same results as [`HeadsFn`] on the rows widened to
/// f32 (every f16 is exact in f32), without that copy of the span. Shapes with 16
/// lanes are left alone (the callers pass none).
///
/// # Safety
///
/// The CPU must support the table's level.
pub(crate) type HeadsF16Fn = unsafe fn(s: &AttnShape, k: &[u8], v: &[u8], ws: &mut [f32]);

/// The attention kernels of one level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnKernels {
    pub(crate) heads: HeadsFn,
    /// At the levels whose f16 conversion is cheap enough to redo per use (F16C);
    /// the others widen the span once ([`HeadsFn`]).
    pub(crate) heads_f16: Option<HeadsF16Fn>,
}

/// The portable entries.
pub(crate) const SCALAR: AttnKernels = AttnKernels {
    heads: heads_scalar,
    heads_f16: None,
};

fn heads_scalar(s: &AttnShape, k: &[f32], v: &[f32], ws: &mut [f32]) {
    heads::<false, _>(&PortableDot4::<false>, s, k, v, ws);
}

// ---------------------------------------------------------------- bodies

/// `_mm512_reduce_add_ps` (GCC): the upper 8 lanes onto the lower 8, then [`reduce8`].
#[inline(always)]
pub(crate) fn reduce16(a: &[f32; 16]) -> f32 {
    let mut c = [0.0f32; 8];
    for (k, d) in c.iter_mut().enumerate() {
        *d = a[k] + a[k + 8];
    }
    reduce8(c)
}

/// Sum the lanes of one attention dot product in ggml's order for `L` lanes: 16
/// (tinyBLAS: [`reduce16`]) or 64 (`GGML_F32x16_REDUCE`: accumulators 0 + 2 and 1 + 3,
/// then their sum, then [`reduce16`]).
#[inline(always)]
pub(crate) fn reduce_lanes<const L: usize>(acc: &[f32; L]) -> f32 {
    let mut v = [0.0f32; 16];
    if L == 64 {
        for (k, d) in v.iter_mut().enumerate() {
            *d = (acc[k] + acc[k + 32]) + (acc[k + 16] + acc[k + 48]);
        }
    } else {
        for (k, d) in v.iter_mut().enumerate() {
            *d = acc.get(k).copied().unwrap_or(0.0);
        }
    }
    reduce16(&v)
}

/// `Σ x_i·y_i` with `L` lanes (`lane = i mod L`, in index order), reduced by
/// [`reduce_lanes`]; each step as [`step`].
#[inline(always)]
fn lane_dot<const L: usize, const EXACT: bool, const FUSE: bool>(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; L];
    let mut xs = x.chunks_exact(L);
    let mut ys = y.chunks_exact(L);
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        for ((a, &p), &q) in acc.iter_mut().zip(xc).zip(yc) {
            *a = step::<EXACT, FUSE>(*a, p, q);
        }
    }
    for ((a, &p), &q) in acc.iter_mut().zip(xs.remainder()).zip(ys.remainder()) {
        *a = step::<EXACT, FUSE>(*a, p, q);
    }
    reduce_lanes(&acc)
}

/// One lane step: `a + p·q` (`EXACT`: multiply then add) or `fma(p, q, a)`. With
/// `EXACT` the product is exact in f32, so both give the same bits; `FUSE` (a level
/// with a fused multiply-add instruction) takes the fused form for them too.
#[inline(always)]
fn step<const EXACT: bool, const FUSE: bool>(a: f32, p: f32, q: f32) -> f32 {
    if EXACT && !FUSE {
        a + p * q
    } else {
        fma(p, q, a)
    }
}

/// [`lane_dot`] of `x` with 4 rows at once (each summed exactly as alone): 4 independent
/// accumulator sets keep the adds from waiting on each other. The rows hold at least
/// `x.len()` values (the caller slices them so).
#[inline(always)]
fn lane_dot4<const L: usize, const EXACT: bool, const FUSE: bool>(
    x: &[f32],
    y: [&[f32]; 4],
) -> [f32; 4] {
    let n = x.len();
    let [Some(y0), Some(y1), Some(y2), Some(y3)] = y.map(|r| r.get(..n)) else {
        return [0.0; 4];
    };
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; L], [0.0f32; L], [0.0f32; L], [0.0f32; L]);
    let chunks = x
        .chunks_exact(L)
        .zip(y0.chunks_exact(L))
        .zip(y1.chunks_exact(L))
        .zip(y2.chunks_exact(L))
        .zip(y3.chunks_exact(L));
    for ((((xc, c0), c1), c2), c3) in chunks {
        let (Ok(xc), Ok(c0), Ok(c1), Ok(c2), Ok(c3)) = (
            <&[f32; L]>::try_from(xc),
            <&[f32; L]>::try_from(c0),
            <&[f32; L]>::try_from(c1),
            <&[f32; L]>::try_from(c2),
            <&[f32; L]>::try_from(c3),
        ) else {
            break;
        };
        for t in 0..L {
            let p = xc[t];
            a0[t] = step::<EXACT, FUSE>(a0[t], p, c0[t]);
            a1[t] = step::<EXACT, FUSE>(a1[t], p, c1[t]);
            a2[t] = step::<EXACT, FUSE>(a2[t], p, c2[t]);
            a3[t] = step::<EXACT, FUSE>(a3[t], p, c3[t]);
        }
    }
    let full = n - n % L;
    for t in full..n {
        let p = x[t];
        a0[t - full] = step::<EXACT, FUSE>(a0[t - full], p, y0[t]);
        a1[t - full] = step::<EXACT, FUSE>(a1[t - full], p, y1[t]);
        a2[t - full] = step::<EXACT, FUSE>(a2[t - full], p, y2[t]);
        a3[t - full] = step::<EXACT, FUSE>(a3[t - full], p, y3[t]);
    }
    [
        reduce_lanes(&a0),
        reduce_lanes(&a1),
        reduce_lanes(&a2),
        reduce_lanes(&a3),
    ]
}

#[inline(always)]
fn kq_rows<const L: usize, const EXACT: bool, const FUSE: bool>(
    q: &[f32],
    k: &[f32],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let hd = q.len();
    let row = |i: usize| {
        i.checked_mul(stride)
            .and_then(|at| k.get(at..at.checked_add(hd)?))
    };
    let mut groups = scores.chunks_exact_mut(4);
    let mut i = 0;
    // With 16 lanes, 4 rows at a time (64 lanes already give 8 independent vectors).
    if L == 16 {
        for g in &mut groups {
            let (Some(r0), Some(r1), Some(r2), Some(r3)) =
                (row(i), row(i + 1), row(i + 2), row(i + 3))
            else {
                return;
            };
            let d = lane_dot4::<L, EXACT, FUSE>(q, [r0, r1, r2, r3]);
            for (s, d) in g.iter_mut().zip(d) {
                *s = d * scale;
            }
            i += 4;
        }
    }
    let rest = if L == 16 {
        groups.into_remainder()
    } else {
        scores
    };
    for s in rest.iter_mut() {
        let Some(r) = row(i) else {
            return;
        };
        *s = lane_dot::<L, EXACT, FUSE>(q, r) * scale;
        i += 1;
    }
}

/// `K·Q` of one head: `scores[i] = scale · Σ_d q_d · k_{i,d}` over the rows of `k`.
#[inline(always)]
pub(crate) fn kq<const FUSE: bool>(
    q: &[f32],
    k: &[f32],
    stride: usize,
    lanes: Lanes,
    exact: bool,
    scale: f32,
    scores: &mut [f32],
) {
    match (lanes, exact) {
        (Lanes::L16, true) => kq_rows::<16, true, FUSE>(q, k, stride, scale, scores),
        (Lanes::L16, false) => kq_rows::<16, false, FUSE>(q, k, stride, scale, scores),
        (Lanes::L64, true) => kq_rows::<64, true, FUSE>(q, k, stride, scale, scores),
        (Lanes::L64, false) => kq_rows::<64, false, FUSE>(q, k, stride, scale, scores),
    }
}

/// Round to the nearest f16 (ties to even) and back, as `half::f16::from_f32(x).to_f32()`
/// (ggml's `GGML_CPU_FP32_TO_FP16` then `FP16_TO_FP32`), for every non-NaN `x`, without
/// branches (so that it vectorises). A NaN stays a NaN (its payload may differ).
#[inline(always)]
pub(crate) fn round_f16(x: f32) -> f32 {
    let sign = x.to_bits() & 0x8000_0000;
    let a = f32::from_bits(x.to_bits() & 0x7fff_ffff);
    // Normal f16 range: round the mantissa to 10 bits, ties to even (a carry moves into
    // the exponent, as it should).
    let u = a.to_bits();
    let normal = f32::from_bits((u + 0x0fff + ((u >> 13) & 1)) & 0xffff_e000);
    // Below 2^-14 (f16 subnormals): multiples of 2^-24; `a + 0.5` rounds there exactly
    // once (the ulp of [0.5, 1) is 2^-24), then `- 0.5` is exact.
    let sub = (a + 0.5) - 0.5;
    let r = if a < f32::from_bits(0x3880_0000) {
        sub
    } else {
        normal
    };
    // From 65520 (the midpoint of 65504 and 2^16) on, f16 overflows to infinity.
    let r = if a >= 65520.0 { f32::INFINITY } else { r };
    let r = f32::from_bits(r.to_bits() | sign);
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// Softmax of one head's scores in place (cache positions `first..`), rounded to f16 if
/// `round`.
#[inline(always)]
pub(crate) fn softmax(scores: &mut [f32], first: usize, round: bool) {
    let n = scores.len();
    if n == 0 {
        return;
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0.0f64;
    let mut i = 0;
    let mut off = first % 16;
    while i < n {
        let len = (16 - off).min(n - i);
        let mut vals = [0.0f32; 16];
        match (off, scores.get_mut(i..i + 16)) {
            (0, Some(seg)) => {
                // A whole chunk: a fixed-size loop that vectorises.
                let seg: &mut [f32; 16] = match seg.try_into() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                for (v, s) in vals.iter_mut().zip(seg.iter_mut()) {
                    *s = v_expf(*s - max);
                    *v = *s;
                }
            }
            _ => {
                let seg = scores.get_mut(i..i + len).unwrap_or(&mut []);
                for (v, s) in vals[off..].iter_mut().zip(seg.iter_mut()) {
                    *s = v_expf(*s - max);
                    *v = *s;
                }
            }
        }
        sum += f64::from(reduce16(&vals));
        i += len;
        off = 0;
    }
    let inv = (1.0 / sum) as f32;
    if round {
        scores.iter_mut().for_each(|s| *s = round_f16(*s * inv));
    } else {
        scores.iter_mut().for_each(|s| *s *= inv);
    }
}

/// `KQ·V` of the heads whose scratch blocks (`block` values each) make up `ws`: each
/// head's probabilities (its scores) times the value rows, into its lanes, reduced into
/// its output.
///
/// Lane `l` sums the rows `i ≡ l − first (mod L)` in index order: rows
/// `start(l) + m·L` for m = 0, 1, … The work goes by chunks of the head dimension (16
/// values, then 8, then 1 at the tail) and by up to 4 heads: for one lane, the chunk's
/// accumulators of those heads stay in registers over all of the lane's rows, and each
/// value row, once loaded, serves every head. The chunk's lane sums are then stored in
/// each head's lane area and reduced there ([`reduce_lane_rows`]). Same operations in
/// the same order as summing lane by lane, row by row.
#[inline(always)]
fn kqv_heads<const L: usize, const EXACT: bool, const FUSE: bool, D: Dot4x16>(
    d: &D,
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    v: &[f32],
) {
    let hd = s.hd;
    let nh = ws.len() / block.max(1);
    let mut c0 = 0;
    while c0 < hd {
        let w = match hd - c0 {
            r if r >= 64 && D::WIDE => 64,
            r if r >= 16 => 16,
            r if r >= 8 => 8,
            _ => 1,
        };
        let mut h = 0;
        while h < nh {
            let hn = (nh - h).min(4);
            let hn = if hn == 3 { 2 } else { hn };
            let Some(part) = ws.get_mut(h * block..(h + hn) * block) else {
                return;
            };
            let args = (part, block, s, v, c0);
            let done = match (hn, w) {
                (4, 64) => kqv_chunk::<L, 4, 64, EXACT, FUSE, D>(d, args),
                (4, 16) => kqv_chunk::<L, 4, 16, EXACT, FUSE, D>(d, args),
                (4, 8) => kqv_chunk::<L, 4, 8, EXACT, FUSE, D>(d, args),
                (4, _) => kqv_chunk::<L, 4, 1, EXACT, FUSE, D>(d, args),
                (2, 64) => kqv_chunk::<L, 2, 64, EXACT, FUSE, D>(d, args),
                (2, 16) => kqv_chunk::<L, 2, 16, EXACT, FUSE, D>(d, args),
                (2, 8) => kqv_chunk::<L, 2, 8, EXACT, FUSE, D>(d, args),
                (2, _) => kqv_chunk::<L, 2, 1, EXACT, FUSE, D>(d, args),
                (_, 64) => kqv_chunk::<L, 1, 64, EXACT, FUSE, D>(d, args),
                (_, 16) => kqv_chunk::<L, 1, 16, EXACT, FUSE, D>(d, args),
                (_, 8) => kqv_chunk::<L, 1, 8, EXACT, FUSE, D>(d, args),
                _ => kqv_chunk::<L, 1, 1, EXACT, FUSE, D>(d, args),
            };
            if done.is_none() {
                return;
            }
            h += hn;
        }
        c0 += w;
    }
}

/// [`kqv_heads`] for the `H` heads of `ws` (`H` scratch blocks) and the `W` values
/// `c0 .. c0 + W` of the head dimension: every lane's sums, then their reduction into
/// the heads' outputs. `None` if a slice is not all there (the callers never pass such).
#[inline(always)]
fn kqv_chunk<
    const L: usize,
    const H: usize,
    const W: usize,
    const EXACT: bool,
    const FUSE: bool,
    D: Dot4x16,
>(
    d: &D,
    (ws, block, s, v, c0): (&mut [f32], usize, &AttnShape, &[f32], usize),
) -> Option<()> {
    let (hd, n, stride) = (s.hd, s.n_keys, s.stride);
    let (sc0, acc0) = (2 * hd, 2 * hd + s.n_ctx);
    let mut blocks = ws.chunks_exact_mut(block);
    let mut parts: [Option<(&mut [f32], &mut [f32])>; H] =
        core::array::from_fn(|_| blocks.next().and_then(|b| b.split_at_mut_checked(acc0)));
    let start = |l: usize| (l + L - s.first % L) % L;
    for l in 0..L {
        let acc = {
            let mut sc: [&[f32]; H] = [&[]; H];
            for (d, p) in sc.iter_mut().zip(parts.iter()) {
                *d = p.as_ref()?.0.get(sc0..sc0 + n)?;
            }
            let rows = LaneRows {
                v,
                stride,
                c0,
                first: start(l),
                step: L,
            };
            d.lane_sums::<H, W, EXACT, FUSE>(sc, rows)?
        };
        for (a, p) in acc.iter().zip(parts.iter_mut()) {
            let lane = p.as_mut()?.1.get_mut(l * W..(l + 1) * W)?;
            lane.copy_from_slice(a);
        }
    }
    for p in parts.iter_mut() {
        let (head, lanes) = p.as_mut()?;
        let (rows, _) = lanes.get_mut(..L * W)?.as_chunks_mut::<W>();
        reduce_lane_rows::<L, W>(rows);
        head.get_mut(c0..c0 + W)?.copy_from_slice(rows.first()?);
    }
    Some(())
}

/// Heads that [`kqv_seq`] takes in one pass over the value rows.
const SEQ_HEADS: usize = 8;

/// `KQ·V` in 64 lanes (one query) of all the heads of `ws`: [`kqv_seq`] by chunks of
/// the head dimension (16 values, then 8, then 1 at the tail).
#[inline(always)]
pub(crate) fn kqv_rows64<const FUSE: bool, V: ValueRows>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    v: V,
) -> Option<()> {
    let mut c0 = 0;
    while c0 < s.hd {
        c0 += match (s.hd - c0, s.exact) {
            (r, true) if r >= 16 => kqv_seq::<16, 4, true, FUSE, V>(ws, block, s, v, c0)?,
            (r, false) if r >= 16 => kqv_seq::<16, 4, false, FUSE, V>(ws, block, s, v, c0)?,
            (r, true) if r >= 8 => kqv_seq::<8, 4, true, FUSE, V>(ws, block, s, v, c0)?,
            (r, false) if r >= 8 => kqv_seq::<8, 4, false, FUSE, V>(ws, block, s, v, c0)?,
            (_, true) => kqv_seq::<1, 4, true, FUSE, V>(ws, block, s, v, c0)?,
            (_, false) => kqv_seq::<1, 4, false, FUSE, V>(ws, block, s, v, c0)?,
        };
    }
    Some(())
}

/// [`Dot4x16::kq64_keys`] for the query `q` and the key rows `keys` (row `i` at
/// `i · stride`) into `out`, with the shape's scale and exactness.
#[inline(always)]
fn kq64_scores<const FUSE: bool, D: Dot4x16>(
    d: &D,
    s: &AttnShape,
    q: &[f32],
    keys: &[f32],
    stride: usize,
    out: &mut [f32],
) {
    if s.exact {
        d.kq64_keys::<true, FUSE>(q, keys, stride, s.scale, out);
    } else {
        d.kq64_keys::<false, FUSE>(q, keys, stride, s.scale, out);
    }
}

/// Where [`kqv_seq`] reads the value rows.
pub(crate) trait ValueRows: Copy {
    /// Values `c0 .. c0 + W` of row `i` as f32, if they are all there.
    fn piece<const W: usize>(&self, i: usize, c0: usize) -> Option<[f32; W]>;

    /// The rows as stored, and the distance between two rows in values (for a level's
    /// own [`Dot4x16::kqv64`]; only the x86 levels have one).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn stored(&self) -> (StoredRows<'_>, usize);
}

/// Value rows as they are stored: row `i` at value `i · stride` (see
/// [`ValueRows::stored`]).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum StoredRows<'a> {
    F32(&'a [f32]),
    /// f16 values as little-endian bytes.
    F16(&'a [u8]),
}

/// Value rows in f32: row `i` at `i · stride` of `v`.
#[derive(Clone, Copy)]
struct F32Rows<'a> {
    v: &'a [f32],
    stride: usize,
}

impl ValueRows for F32Rows<'_> {
    #[inline(always)]
    fn piece<const W: usize>(&self, i: usize, c0: usize) -> Option<[f32; W]> {
        let at = i.checked_mul(self.stride)?.checked_add(c0)?;
        self.v.get(at..at.checked_add(W)?)?.try_into().ok()
    }

    fn stored(&self) -> (StoredRows<'_>, usize) {
        (StoredRows::F32(self.v), self.stride)
    }
}

/// Value rows in f16 (little-endian bytes): row `i` from byte `2 · i · stride` of
/// `v`, widened by the level's [`Dot4x16::widen`]. (Only the x86 levels read f16 rows.)
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct F16Rows<'a, D> {
    v: &'a [u8],
    stride: usize,
    d: &'a D,
}

impl<D> Clone for F16Rows<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for F16Rows<'_, D> {}

impl<D: Dot4x16> ValueRows for F16Rows<'_, D> {
    #[inline(always)]
    fn piece<const W: usize>(&self, i: usize, c0: usize) -> Option<[f32; W]> {
        let at = i
            .checked_mul(self.stride)?
            .checked_add(c0)?
            .checked_mul(2)?;
        let src = self.v.get(at..at.checked_add(2 * W)?)?;
        let mut out = [0.0f32; W];
        self.d.widen(src, &mut out);
        Some(out)
    }

    fn stored(&self) -> (StoredRows<'_>, usize) {
        (StoredRows::F16(self.v), self.stride)
    }
}

/// `KQ·V` in 64 lanes (one query) of the heads of `ws` for the values `c0 .. c0 + W`,
/// the sums of [`kqv_heads`] with the value rows walked in order rather than lane by
/// lane (whose walk, 64 rows apart, keeps missing the caches on a long context). Each
/// head's 64 lane sums stay in its lane area (`[lane][W]`, in L1 for up to
/// [`SEQ_HEADS`] heads); the rows go `R` at a time, 64 apart (all in one lane), so that
/// a lane's sums are loaded and stored once per `R` rows and the `R` rows, once
/// loaded, serve every head; the rows after the last whole group of `64·R` go one at a
/// time. Every lane still sums its rows in index order, one [`step`] per value and
/// row: the same bits. Returns `W`; `None` if a slice is not all there (the callers
/// never pass such).
#[inline(always)]
fn kqv_seq<const W: usize, const R: usize, const EXACT: bool, const FUSE: bool, V: ValueRows>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    rows: V,
    c0: usize,
) -> Option<usize> {
    const L: usize = 64;
    let (hd, n) = (s.hd, s.n_keys);
    let acc0 = 2 * hd + s.n_ctx;
    let mut blocks = ws.chunks_exact_mut(block.max(1));
    loop {
        // The next (up to) SEQ_HEADS heads: probabilities, lane sums and output.
        let mut ps: [&[f32]; SEQ_HEADS] = [&[]; SEQ_HEADS];
        let mut accs: [&mut [[f32; W]]; SEQ_HEADS] = Default::default();
        let mut outs: [&mut [f32]; SEQ_HEADS] = Default::default();
        let mut hn = 0;
        // (The arrays first: `zip` then takes no block past the last slot.)
        for ((p, (acc, out)), b) in ps
            .iter_mut()
            .zip(accs.iter_mut().zip(outs.iter_mut()))
            .zip(&mut blocks)
        {
            let (head, lanes) = b.split_at_mut_checked(acc0)?;
            let (o, rest) = head.split_at_mut_checked(hd)?;
            *p = rest.get(hd..hd + n)?;
            *out = o.get_mut(c0..c0 + W)?;
            let (lanes, _) = lanes.get_mut(..L * W)?.as_chunks_mut::<W>();
            lanes.fill([0.0; W]);
            *acc = lanes;
            hn += 1;
        }
        if hn == 0 {
            return Some(W);
        }
        let group = L * R;
        let full = n / group * group;
        let mut i0 = 0;
        while i0 < full {
            for t in 0..L {
                let l = (s.first + i0 + t) % L;
                let mut x = [[0.0f32; W]; R];
                for (j, x) in x.iter_mut().enumerate() {
                    *x = rows.piece::<W>(i0 + t + L * j, c0)?;
                }
                for (p, acc) in ps.iter().zip(accs.iter_mut()).take(hn) {
                    let a = acc.get_mut(l)?;
                    let mut pj = [0.0f32; R];
                    for (j, pj) in pj.iter_mut().enumerate() {
                        *pj = *p.get(i0 + t + L * j)?;
                    }
                    for (w, a) in a.iter_mut().enumerate() {
                        let mut sum = *a;
                        for (pj, x) in pj.iter().zip(&x) {
                            sum = step::<EXACT, FUSE>(sum, *pj, x[w]);
                        }
                        *a = sum;
                    }
                }
            }
            i0 += group;
        }
        for i in full..n {
            let l = (s.first + i) % L;
            let x = rows.piece::<W>(i, c0)?;
            for (p, acc) in ps.iter().zip(accs.iter_mut()).take(hn) {
                let (a, &pi) = (acc.get_mut(l)?, p.get(i)?);
                for (a, x) in a.iter_mut().zip(x) {
                    *a = step::<EXACT, FUSE>(*a, pi, x);
                }
            }
        }
        for (acc, out) in accs.iter_mut().zip(outs.iter_mut()).take(hn) {
            reduce_lane_rows::<L, W>(acc);
            out.copy_from_slice(acc.first()?);
        }
    }
}

/// Reduce `L` lane rows of `W` values into row 0: the additions of [`reduce_lanes`] on
/// whole rows (the same pairs, in the same order, for every value).
#[inline(always)]
fn reduce_lane_rows<const L: usize, const W: usize>(acc: &mut [[f32; W]]) {
    let mut fold = |dst: usize, src: usize| {
        if let Some(&s) = acc.get(src) {
            if let Some(d) = acc.get_mut(dst) {
                for (d, s) in d.iter_mut().zip(s) {
                    *d += s;
                }
            }
        }
    };
    if L == 64 {
        for k in 0..16 {
            fold(k, k + 32);
            fold(k + 16, k + 48);
            fold(k, k + 16);
        }
    }
    // reduce16 then reduce8 on rows 0..16.
    for k in 0..8 {
        fold(k, k + 8);
    }
    for k in 0..4 {
        fold(k, k + 4);
    }
    for k in 0..2 {
        fold(k, k + 2);
    }
    fold(0, 1);
}

/// The value rows of one `KQ·V` lane: rows `first, first + step, …` of `v` (row `i` at
/// `i · stride`), values `c0 ..` of each.
#[derive(Clone, Copy)]
pub(crate) struct LaneRows<'a> {
    pub(crate) v: &'a [f32],
    pub(crate) stride: usize,
    pub(crate) c0: usize,
    pub(crate) first: usize,
    pub(crate) step: usize,
}

impl<'a> LaneRows<'a> {
    /// Values `c0 .. c0 + W` of row `i`, if they are all there.
    #[inline(always)]
    pub(crate) fn row<const W: usize>(&self, i: usize) -> Option<&'a [f32; W]> {
        let at = i.checked_mul(self.stride)?.checked_add(self.c0)?;
        self.v.get(at..at.checked_add(W)?)?.try_into().ok()
    }
}

/// The portable [`Dot4x16::lane_sums`].
#[inline(always)]
pub(crate) fn lane_sums<const H: usize, const W: usize, const EXACT: bool, const FUSE: bool>(
    p: [&[f32]; H],
    rows: LaneRows<'_>,
) -> Option<[[f32; W]; H]> {
    let n = p.first().map_or(0, |p| p.len());
    let mut acc = [[0.0f32; W]; H];
    let mut i = rows.first;
    while i < n {
        let r: &[f32; W] = rows.row(i)?;
        for (a, p) in acc.iter_mut().zip(&p) {
            let p = p.get(i).copied().unwrap_or(0.0);
            for (a, &x) in a.iter_mut().zip(r) {
                *a = step::<EXACT, FUSE>(*a, p, x);
            }
        }
        i += rows.step;
    }
    Some(acc)
}

/// The inner steps of a level: dot products of one row with 4 others in 16 lanes, each
/// summed exactly as [`lane_dot`] (`exact`: the products are exact, see
/// [`AttnShape::exact`]), the inner step of `K·Q` for several heads; the same for 4 rows
/// at once; and one lane of `KQ·V`. A level may bring its own (see `x86_64/attn.rs`).
pub(crate) trait Dot4x16 {
    /// `KQ·V` may take 64 values of the head dimension at a time ([`lane_sums`](Self::lane_sums)
    /// with `W = 64`); otherwise at most 16.
    const WIDE: bool = false;

    fn dot4(&self, exact: bool, x: &[f32], y: [&[f32]; 4]) -> [f32; 4];

    /// One lane of `KQ·V` for `H` heads and `W` values: `Σ_i p_{j,i} · v_i[c0 .. c0 + W]`
    /// over the lane's rows `i` ([`LaneRows`]) in index order, one [`step`] per value
    /// and row; `p_j` are the heads' probabilities (`n` of them, the rows' count).
    /// `None` if a row is not all there.
    #[inline(always)]
    fn lane_sums<const H: usize, const W: usize, const EXACT: bool, const FUSE: bool>(
        &self,
        p: [&[f32]; H],
        rows: LaneRows<'_>,
    ) -> Option<[[f32; W]; H]> {
        lane_sums::<H, W, EXACT, FUSE>(p, rows)
    }

    /// `KQ·V` of all the heads of `ws` with transposed values: [`kqv_cols`]'s sums.
    #[inline(always)]
    fn kqv_cols<const L: usize, const EXACT: bool, const FUSE: bool>(
        &self,
        ws: &mut [f32],
        block: usize,
        s: &AttnShape,
        v: &[f32],
        c: Cols,
    ) -> Option<()> {
        kqv_cols::<L, EXACT, FUSE>(ws, block, s, v, c)
    }

    /// `KQ·V` in 64 lanes (one query) of all the heads of `ws` from value rows:
    /// [`kqv_rows64`]'s sums. `None` if a slice is not all there.
    #[inline(always)]
    fn kqv64<const FUSE: bool, V: ValueRows>(
        &self,
        ws: &mut [f32],
        block: usize,
        s: &AttnShape,
        v: V,
    ) -> Option<()> {
        kqv_rows64::<FUSE, V>(ws, block, s, v)
    }

    /// [`dot4`](Self::dot4) of 4 rows `x` (keys) at once: `[key][head]`, the same bits.
    #[inline(always)]
    fn dot4x4(&self, exact: bool, x: [&[f32]; 4], y: [&[f32]; 4]) -> [[f32; 4]; 4] {
        x.map(|r| self.dot4(exact, r, y))
    }

    /// f16 → f32 (exact) for `min(src.len() / 2, dst.len())` values: `src` is
    /// little-endian bytes.
    #[inline(always)]
    fn widen(&self, src: &[u8], dst: &mut [f32]) {
        let mut s8 = src.chunks_exact(16);
        let mut d8 = dst.chunks_exact_mut(8);
        for (s, d) in (&mut s8).zip(&mut d8) {
            if let (Ok(s), Ok(d)) = (<&[u8; 16]>::try_from(s), <&mut [f32; 8]>::try_from(d)) {
                *d = self.widen8(s);
            }
        }
        let (s, d) = (s8.remainder(), d8.into_remainder());
        if !s.is_empty() && !d.is_empty() {
            super::scalar::f16_to_f32_row(s, d);
        }
    }

    /// [`widen`](Self::widen) of 8 values.
    #[inline(always)]
    fn widen8(&self, src: &[u8; 16]) -> [f32; 8] {
        let mut out = [0.0f32; 8];
        super::scalar::f16_to_f32_row(src, &mut out);
        out
    }

    /// The `K·Q` scores in 64 lanes of one head's query `q` (the head dimension) with
    /// the key rows of `k` (row `i` at `i · stride`), one per value of `scores`:
    /// `scores_i = scale · lane_dot(q, k_i)`, as [`kq`] gives them.
    #[inline(always)]
    fn kq64_keys<const EXACT: bool, const FUSE: bool>(
        &self,
        q: &[f32],
        k: &[f32],
        stride: usize,
        scale: f32,
        scores: &mut [f32],
    ) {
        kq_rows::<64, EXACT, FUSE>(q, k, stride, scale, scores);
    }
}

/// [`Dot4x16`] by the portable body.
pub(crate) struct PortableDot4<const FUSE: bool>;

impl<const FUSE: bool> Dot4x16 for PortableDot4<FUSE> {
    #[inline(always)]
    fn dot4(&self, exact: bool, x: &[f32], y: [&[f32]; 4]) -> [f32; 4] {
        if exact {
            lane_dot4::<16, true, FUSE>(x, y)
        } else {
            lane_dot4::<16, false, FUSE>(x, y)
        }
    }
}

/// `K·Q` in 16 lanes of up to 4 heads with 4 key rows at a time, so that each key row
/// is loaded once for all of them. The heads' queries are rows of `q` at `q_stride`
/// (their scratch blocks); fewer than 4 are padded by repeating the last one (and
/// their sums computed).
#[inline(always)]
fn kq_heads<const FUSE: bool, D: Dot4x16>(
    d: &D,
    q: &[f32],
    q_stride: usize,
    hn: usize,
    k: &[f32],
    s: &AttnShape,
    out: &mut [[f32; 4]],
) {
    let hd = s.hd;
    let qj = |j: usize| {
        let at = j.min(hn.saturating_sub(1)) * q_stride;
        q.get(at..at + hd).unwrap_or(&[])
    };
    let qs = [qj(0), qj(1), qj(2), qj(3)];
    let row = |i: usize| {
        i.checked_mul(s.stride)
            .and_then(|at| k.get(at..at.checked_add(hd)?))
    };
    let mut groups = out.chunks_exact_mut(4);
    let mut i = 0;
    for g in &mut groups {
        let (Some(r0), Some(r1), Some(r2), Some(r3)) = (row(i), row(i + 1), row(i + 2), row(i + 3))
        else {
            return;
        };
        for (o, d) in g.iter_mut().zip(d.dot4x4(s.exact, [r0, r1, r2, r3], qs)) {
            *o = d.map(|x| x * s.scale);
        }
        i += 4;
    }
    for o in groups.into_remainder() {
        let Some(r) = row(i) else {
            return;
        };
        *o = d.dot4(s.exact, r, qs).map(|x| x * s.scale);
        i += 1;
    }
}

/// Scores of 4 heads for this many keys at a time (a stack buffer).
const KQ_TILE: usize = 64;

/// Bytes of key rows per tile of the 64-lane `K·Q` (half of a 32 KiB L1 data cache).
const KQ_TILE_BYTES: usize = 16 << 10;

/// The body of [`HeadsFn`].
#[inline(always)]
pub(crate) fn heads<const FUSE: bool, D: Dot4x16>(
    d: &D,
    s: &AttnShape,
    k: &[f32],
    v: &[f32],
    ws: &mut [f32],
) {
    let (hd, n) = (s.hd, s.n_keys);
    let Some(block) = block_len(hd, s.n_ctx) else {
        return;
    };
    if n > s.n_ctx || hd == 0 {
        return;
    }
    let Some(ws) = s.heads.checked_mul(block).and_then(|len| ws.get_mut(..len)) else {
        return;
    };
    // K·Q. With 64 lanes (one query: the costliest part of a long context's decoding),
    // tiles of keys that stay in L1 while every head takes its scores from them. With
    // 16 lanes and several heads, 4 heads per pass over the key rows.
    let mut h0 = 0;
    if s.lanes == Lanes::L64 {
        let tile = (KQ_TILE_BYTES / (4 * hd).max(1)).max(8) / 8 * 8;
        let mut key0 = 0;
        while key0 < n {
            let kn = (n - key0).min(tile);
            let rows = k.get(key0 * s.stride..).unwrap_or(&[]);
            for b in ws.chunks_exact_mut(block) {
                let Some((q, rest)) = b.get_mut(hd..).and_then(|r| r.split_at_mut_checked(hd))
                else {
                    return;
                };
                let Some(out) = rest.get_mut(key0..key0 + kn) else {
                    return;
                };
                kq64_scores::<FUSE, D>(d, s, q, rows, s.stride, out);
            }
            key0 += kn;
        }
        h0 = s.heads;
    } else if s.heads > 1 {
        while h0 < s.heads {
            let hn = (s.heads - h0).min(4);
            let mut key0 = 0;
            while key0 < n {
                let kn = (n - key0).min(KQ_TILE);
                let mut tile = [[0.0f32; 4]; KQ_TILE];
                {
                    let q = ws.get(h0 * block + hd..).unwrap_or(&[]);
                    let rows = k.get(key0 * s.stride..).unwrap_or(&[]);
                    let out = &mut tile[..kn];
                    kq_heads::<FUSE, D>(d, q, block, hn, rows, s, out);
                }
                for j in 0..hn {
                    let at = (h0 + j) * block + 2 * hd + key0;
                    if let Some(dst) = ws.get_mut(at..at + kn) {
                        for (d, t) in dst.iter_mut().zip(&tile[..kn]) {
                            *d = t[j];
                        }
                    }
                }
                key0 += kn;
            }
            h0 += hn;
        }
    }
    for b in ws.chunks_exact_mut(block) {
        let Some((_, rest)) = b.split_at_mut_checked(hd) else {
            return;
        };
        let Some((q, rest)) = rest.split_at_mut_checked(hd) else {
            return;
        };
        let Some(scores) = rest.get_mut(..n) else {
            return;
        };
        if h0 == 0 {
            kq::<FUSE>(q, k, s.stride, s.lanes, s.exact, s.scale, scores);
        }
        softmax(scores, s.first, s.exact);
    }
    if let VLayout::Cols { stride, base } = s.values {
        let c = Cols { stride, base };
        // `None` only for slices that are not all there (the callers never pass such).
        let _ = match (s.lanes, s.exact) {
            (Lanes::L16, true) => d.kqv_cols::<16, true, FUSE>(ws, block, s, v, c),
            (Lanes::L16, false) => d.kqv_cols::<16, false, FUSE>(ws, block, s, v, c),
            (Lanes::L64, true) => d.kqv_cols::<64, true, FUSE>(ws, block, s, v, c),
            (Lanes::L64, false) => d.kqv_cols::<64, false, FUSE>(ws, block, s, v, c),
        };
        return;
    }
    match (s.lanes, s.exact) {
        (Lanes::L16, true) => kqv_heads::<16, true, FUSE, D>(d, ws, block, s, v),
        (Lanes::L16, false) => kqv_heads::<16, false, FUSE, D>(d, ws, block, s, v),
        (Lanes::L64, _) => {
            let rows = F32Rows {
                v,
                stride: s.stride,
            };
            let _ = d.kqv64::<FUSE, _>(ws, block, s, rows);
        }
    }
}

/// The body of [`HeadsF16Fn`]: [`heads`]'s 64-lane path on f16 rows. The keys go by
/// tiles (as many as fit [`KQ_TILE_BYTES`], at most 64), each widened once into the
/// last head's lane area (free until `KQ·V`) and scored there by every head; the value
/// rows are widened as `KQ·V` loads them (once per pass over the rows, for up to
/// [`SEQ_HEADS`] heads).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn heads_f16<const FUSE: bool, D: Dot4x16>(
    d: &D,
    s: &AttnShape,
    k: &[u8],
    v: &[u8],
    ws: &mut [f32],
) {
    let _ = heads_f16_inner::<FUSE, D>(d, s, k, v, ws);
}

/// [`heads_f16`]; `None` if a slice is not all there (the callers never pass such).
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn heads_f16_inner<const FUSE: bool, D: Dot4x16>(
    d: &D,
    s: &AttnShape,
    k: &[u8],
    v: &[u8],
    ws: &mut [f32],
) -> Option<()> {
    let (hd, n) = (s.hd, s.n_keys);
    let block = block_len(hd, s.n_ctx)?;
    if n > s.n_ctx || hd == 0 || s.heads == 0 || s.lanes != Lanes::L64 {
        return None;
    }
    let ws = ws.get_mut(..s.heads.checked_mul(block)?)?;
    let acc0 = 2 * hd + s.n_ctx;
    let (heads, spare) = ws.split_at_mut_checked((s.heads - 1) * block + acc0)?;
    // K·Q.
    let per_tile = (KQ_TILE_BYTES / (4 * hd)).clamp(8, 64);
    let tile = spare.get_mut(..per_tile * hd)?;
    let mut key0 = 0;
    while key0 < n {
        let kn = (n - key0).min(per_tile);
        for (r, dst) in tile.chunks_exact_mut(hd).take(kn).enumerate() {
            let at = (key0 + r).checked_mul(s.stride)?.checked_mul(2)?;
            d.widen(k.get(at..at.checked_add(2 * hd)?)?, dst);
        }
        let keys = tile.get(..kn * hd)?;
        for b in heads.chunks_mut(block) {
            let (q, rest) = b.get_mut(hd..)?.split_at_mut_checked(hd)?;
            let out = rest.get_mut(key0..key0 + kn)?;
            kq64_scores::<FUSE, D>(d, s, q, keys, hd, out);
        }
        key0 += kn;
    }
    for b in ws.chunks_exact_mut(block) {
        softmax(b.get_mut(2 * hd..2 * hd + n)?, s.first, s.exact);
    }
    let rows = F16Rows {
        v,
        stride: s.stride,
        d,
    };
    d.kqv64::<FUSE, _>(ws, block, s, rows)
}

/// The transposed layout's parameters ([`VLayout::Cols`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cols {
    pub(crate) stride: usize,
    pub(crate) base: usize,
}

/// `KQ·V` with transposed values ([`VLayout::Cols`]), the portable body: for each head
/// (scratch block of `ws`) and value `d`, `Σ_i p_i · v[d][i]` in `L` lanes by cache
/// position, each lane in position order, then [`reduce_lanes`] into the head's output
/// `d`: the sums of [`kqv_heads`], the same operations in the same order. The keys
/// before the first whole block of `L` positions go to their lanes one by one, then the
/// blocks (the last one may be short) lane by lane.
#[inline(always)]
pub(crate) fn kqv_cols<const L: usize, const EXACT: bool, const FUSE: bool>(
    ws: &mut [f32],
    block: usize,
    s: &AttnShape,
    v: &[f32],
    c: Cols,
) -> Option<()> {
    let (hd, n) = (s.hd, s.n_keys);
    let off = s.first.checked_sub(c.base)?;
    let l0 = s.first % L;
    let head = if l0 == 0 { 0 } else { (L - l0).min(n) };
    for b in ws.chunks_exact_mut(block) {
        let (out, rest) = b.split_at_mut_checked(hd)?;
        let p = rest.get(hd..hd + n)?;
        let (p_head, p_rest) = p.split_at_checked(head)?;
        for (dv, o) in out.iter_mut().enumerate() {
            let at = dv.checked_mul(c.stride)?.checked_add(off)?;
            let x = v.get(at..at.checked_add(n)?)?;
            let (x_head, x_rest) = x.split_at_checked(head)?;
            let mut acc = [0.0f32; L];
            let lanes = acc.get_mut(l0..).unwrap_or(&mut []);
            for (a, (&p, &x)) in lanes.iter_mut().zip(p_head.iter().zip(x_head)) {
                *a = step::<EXACT, FUSE>(*a, p, x);
            }
            for (pc, xc) in p_rest.chunks(L).zip(x_rest.chunks(L)) {
                for ((a, &p), &x) in acc.iter_mut().zip(pc).zip(xc) {
                    *a = step::<EXACT, FUSE>(*a, p, x);
                }
            }
            *o = reduce_lanes(&acc);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{kernels, KernelLevel};
    use alloc::vec;
    use alloc::vec::Vec;

    /// xorshift64*: deterministic test data.
    struct Rng(u64);
    impl Rng {
        fn f32(&mut self, scale: f32) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            (r as f32 / (1u64 << 24) as f32 - 0.5) * scale
        }
    }

    // The straightforward loops (the forward pass's code before these kernels).
    fn ref_lanes(acc: &[f32]) -> f32 {
        let r16 = |a: &[f32]| {
            let c: [f32; 8] = core::array::from_fn(|k| a[k] + a[k + 8]);
            reduce8(c)
        };
        if acc.len() == 64 {
            let v: Vec<f32> = (0..16)
                .map(|k| (acc[k] + acc[k + 32]) + (acc[k + 16] + acc[k + 48]))
                .collect();
            r16(&v)
        } else {
            r16(acc)
        }
    }

    fn ref_kq(
        q: &[f32],
        k: &[f32],
        stride: usize,
        l: usize,
        exact: bool,
        scale: f32,
        s: &mut [f32],
    ) {
        for (i, s) in s.iter_mut().enumerate() {
            let row = &k[i * stride..i * stride + q.len()];
            let mut acc = vec![0.0f32; l];
            for j in 0..q.len() {
                acc[j % l] = if exact {
                    acc[j % l] + q[j] * row[j]
                } else {
                    fma(q[j], row[j], acc[j % l])
                };
            }
            *s = ref_lanes(&acc) * scale;
        }
    }

    fn ref_softmax(s: &mut [f32], lo: usize, round: bool) {
        let pos = lo + s.len() - 1;
        let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0f64;
        let mut p = lo & !15;
        while p <= pos {
            let mut vals = [0.0f32; 16];
            for (k, v) in vals.iter_mut().enumerate() {
                let at = p + k;
                if at >= lo && at <= pos {
                    let e = v_expf(s[at - lo] - max);
                    s[at - lo] = e;
                    *v = e;
                }
            }
            sum += f64::from(reduce16(&vals));
            p += 16;
        }
        let inv = (1.0 / sum) as f32;
        for x in s.iter_mut() {
            *x *= inv;
            if round {
                *x = half::f16::from_f32(*x).to_f32();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ref_kqv(
        p: &[f32],
        v: &[f32],
        stride: usize,
        lo: usize,
        l: usize,
        exact: bool,
        out: &mut [f32],
    ) {
        let hd = out.len();
        let mut lanes = vec![0.0f32; l * hd];
        for (i, &pr) in p.iter().enumerate() {
            let row = &v[i * stride..i * stride + hd];
            let lane = &mut lanes[((lo + i) % l) * hd..][..hd];
            for (a, &x) in lane.iter_mut().zip(row) {
                *a = if exact { *a + pr * x } else { fma(pr, x, *a) };
            }
        }
        for (d, o) in out.iter_mut().enumerate() {
            let col: Vec<f32> = (0..l).map(|k| lanes[k * hd + d]).collect();
            *o = ref_lanes(&col);
        }
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// Every level's kernel equals the straightforward loops bit for bit, for 1 to 5
    /// heads at once.
    #[test]
    fn kernels_equal_reference() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let levels: Vec<_> = KernelLevel::ALL
            .into_iter()
            .filter_map(|l| kernels(l).ok())
            .collect();
        let mut f16_runs = 0;
        for hd in [1usize, 7, 16, 24, 64, 72, 256] {
            for n in [1usize, 2, 3, 4, 5, 15, 16, 17, 33, 70, 131, 300, 579] {
                for first in [0usize, 5, 15, 16, 33] {
                    for (lanes, l) in [(Lanes::L16, 16), (Lanes::L64, 64)] {
                        for exact in [true, false] {
                            // Up to 10 heads with the longer spans (more than one pass
                            // of the 64-lane `KQ·V`, whose rows go 4 per lane).
                            let heads = 1 + (hd + n + first) % 5 + if n > 256 { 5 } else { 0 };
                            let stride = if n % 2 == 0 { hd } else { 2 * hd + 3 };
                            let n_ctx = n + first % 7;
                            let round = |x: f32| {
                                if exact {
                                    half::f16::from_f32(x).to_f32()
                                } else {
                                    x
                                }
                            };
                            let qs: Vec<Vec<f32>> = (0..heads)
                                .map(|_| (0..hd).map(|_| round(rng.f32(4.0))).collect())
                                .collect();
                            let k: Vec<f32> =
                                (0..n * stride).map(|_| round(rng.f32(4.0))).collect();
                            let v: Vec<f32> =
                                (0..n * stride).map(|_| round(rng.f32(4.0))).collect();
                            let want: Vec<Vec<f32>> = qs
                                .iter()
                                .map(|q| {
                                    let mut sc = vec![0.0f32; n];
                                    ref_kq(q, &k, stride, l, exact, 0.125, &mut sc);
                                    ref_softmax(&mut sc, first, exact);
                                    let mut o = vec![0.0f32; hd];
                                    ref_kqv(&sc, &v, stride, first, l, exact, &mut o);
                                    o
                                })
                                .collect();
                            let shape = AttnShape {
                                heads,
                                hd,
                                n_ctx,
                                n_keys: n,
                                first,
                                stride,
                                lanes,
                                exact,
                                scale: 0.125,
                                values: VLayout::Rows,
                            };
                            // The same values transposed, from a base on a multiple of
                            // 16 positions (the fast paths) or not; infinities around
                            // them (never summed: they would turn the sums into NaNs).
                            let cols = |base: usize| {
                                let off = first - base;
                                let t_len = (off + n).div_ceil(16) * 16 + 16 + n % 3;
                                let mut vt = vec![f32::INFINITY; hd * t_len];
                                for i in 0..n {
                                    for d in 0..hd {
                                        vt[d * t_len + off + i] = v[i * stride + d];
                                    }
                                }
                                let shape = AttnShape {
                                    values: VLayout::Cols {
                                        stride: t_len,
                                        base,
                                    },
                                    ..shape
                                };
                                (shape, vt)
                            };
                            let layouts = [
                                (shape, v.clone()),
                                cols(first - first % 16),
                                cols(first - first % 64),
                                cols(first.saturating_sub(3)),
                            ];
                            let block = block_len(hd, n_ctx).unwrap();
                            // The f16 rows themselves, for the levels that read them
                            // (one query: 64 lanes; every value an f16).
                            let f16s = |x: &[f32]| -> Vec<u8> {
                                x.iter()
                                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                                    .collect()
                            };
                            let (k16, v16) = (f16s(&k), f16s(&v));
                            for t in levels.iter().filter(|t| t.attn_reads_f16()) {
                                if lanes != Lanes::L64 || !exact {
                                    continue;
                                }
                                f16_runs += 1;
                                let mut ws = vec![f32::NAN; heads * block];
                                for (j, q) in qs.iter().enumerate() {
                                    ws[j * block + hd..j * block + 2 * hd].copy_from_slice(q);
                                }
                                t.attn_heads_f16(&shape, &k16, &v16, &mut ws);
                                for (j, w) in want.iter().enumerate() {
                                    assert_eq!(
                                        bits(&ws[j * block..j * block + hd]),
                                        bits(w),
                                        "{:?} f16 rows, head {j}/{heads} hd {hd} n {n} first {first}",
                                        t.level(),
                                    );
                                }
                            }
                            for t in &levels {
                                for (shape, v) in &layouts {
                                    let mut ws = vec![f32::NAN; heads * block];
                                    for (j, q) in qs.iter().enumerate() {
                                        ws[j * block + hd..j * block + 2 * hd].copy_from_slice(q);
                                    }
                                    t.attn_heads(shape, &k, v, &mut ws);
                                    for (j, w) in want.iter().enumerate() {
                                        assert_eq!(
                                            bits(&ws[j * block..j * block + hd]),
                                            bits(w),
                                            "{:?} head {j}/{heads} hd {hd} n {n} first {first} {lanes:?} exact {exact} {:?}",
                                            t.level(),
                                            shape.values,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // An x86 CPU with AVX2 and F16C (the CI machines') reads the f16 rows directly.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
            assert!(f16_runs > 0);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = f16_runs;
    }

    /// Short slices and scratch never panic.
    #[test]
    fn short_slices_do_not_panic() {
        for t in KernelLevel::ALL.into_iter().filter_map(|l| kernels(l).ok()) {
            for heads in [1, 3] {
                for lanes in [Lanes::L16, Lanes::L64] {
                    let shape = AttnShape {
                        heads,
                        hd: 8,
                        n_ctx: 9,
                        n_keys: 9,
                        first: 3,
                        stride: 8,
                        lanes,
                        exact: true,
                        scale: 1.0,
                        values: VLayout::Rows,
                    };
                    t.attn_heads(&shape, &[1.0; 20], &[1.0; 20], &mut [0.0; 1000]);
                    t.attn_heads(&shape, &[1.0; 20], &[1.0; 4], &mut [0.0; 100]);
                    t.attn_heads(&shape, &[], &[], &mut []);
                    let zero = AttnShape {
                        stride: 0,
                        n_keys: 12,
                        ..shape
                    };
                    t.attn_heads(&zero, &[1.0; 8], &[1.0; 8], &mut [0.0; 1000]);
                    let one = 0x3c00u16.to_le_bytes().repeat(20);
                    t.attn_heads_f16(&shape, &one, &one, &mut [0.0; 1000]);
                    t.attn_heads_f16(&shape, &one, &one[..8], &mut [0.0; 1000]);
                    t.attn_heads_f16(&shape, &one[..7], &one, &mut [0.0; 100]);
                    t.attn_heads_f16(&shape, &[], &[], &mut []);
                    t.attn_heads_f16(&zero, &one, &one, &mut [0.0; 1000]);
                    for (stride, base) in [(16, 0), (0, 0), (16, 5), (3, 0), (usize::MAX, 0)] {
                        let cols = AttnShape {
                            values: VLayout::Cols { stride, base },
                            ..shape
                        };
                        t.attn_heads(&cols, &[1.0; 20], &[1.0; 20], &mut [0.0; 1000]);
                        t.attn_heads(&cols, &[1.0; 20], &[1.0; 200], &mut [0.0; 100]);
                        t.attn_heads(&cols, &[], &[], &mut []);
                    }
                }
            }
        }
    }

    /// The branch-free rounding equals `half`'s for every f32 on a fine sweep.
    #[test]
    fn round_f16_equals_half() {
        let mut u = 0u32;
        loop {
            let x = f32::from_bits(u);
            let want = half::f16::from_f32(x).to_f32();
            let got = round_f16(x);
            if x.is_nan() {
                assert!(got.is_nan());
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{x:e} ({u:#x})");
            }
            let Some(next) = u.checked_add(4093) else {
                break;
            };
            u = next;
        }
        for x in [
            0.0f32,
            -0.0,
            65504.0,
            65519.99,
            65520.0,
            5.96e-8,
            2.98e-8,
            2.99e-8,
            6.1e-5,
            f32::INFINITY,
        ] {
            assert_eq!(
                round_f16(x).to_bits(),
                half::f16::from_f32(x).to_f32().to_bits(),
                "{x:e}"
            );
        }
    }
}
