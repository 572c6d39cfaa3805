//! Reference K-quant quantizers (ggml's `quantize_row_q{2,3,4,5,6}_K_ref`).
//!
//! These search for sub-block scales the way ggml's reference does
//! (`make_qkx2_quants` for Q2_K/Q4_K/Q5_K, `make_q3_quants` for Q3_K, `make_qx_quants`
//! for Q6_K), with the same float
//! operations in the same order, so that for the same input they produce the same
//! bytes as ggml compiled without FMA contraction. They are meant for fixtures and
//! test models, not for speed.

use libm::{fabsf, sqrtf};

use super::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use super::f16_bytes;
use super::{f16_le, nearest_int};

/// `GROUP_MAX_EPS`: below this a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Search parameters of `make_qkx2_quants`.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    /// Minimise the weighted absolute error instead of the squared error.
    use_mad: bool,
}

/// ggml's `make_qkx2_quants`: fit `x ≈ scale·L − min` with L in 0..=nmax, minimising
/// the weighted squared (or absolute) error over a few candidate scales.
/// Writes L and returns `(scale, min)` (min ≥ 0 is the amount subtracted).
fn make_qkx2_quants<const N: usize>(
    p: &Qkx2,
    x: &[f32; N],
    weights: &[f32; N],
    l: &mut [u8; N],
) -> (f32, f32) {
    let nmax_f = p.nmax as f32;
    let err = |diff: f32| if p.use_mad { fabsf(diff) } else { diff * diff };
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&xi, &w) in x.iter().zip(weights).skip(1) {
        if xi < min {
            min = xi;
        }
        if xi > max {
            max = xi;
        }
        sum_w += w;
        sum_x += w * xi;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        *l = [0; N];
        return (0.0, -min);
    }
    // Note: `min` changes when a better fit is found, and later candidates are
    // measured from the new `min`, as in ggml.
    let quant =
        |iscale: f32, xi: f32, min: f32| nearest_int(iscale * (xi - min)).clamp(0, p.nmax) as u8;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((li, &xi), &w) in l.iter_mut().zip(x).zip(weights) {
        *li = quant(iscale, xi, min);
        let diff = scale * f32::from(*li) + min - xi;
        best_error += w * err(diff);
    }
    let mut laux = [0u8; N];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((la, &xi), &w) in laux.iter_mut().zip(x).zip(weights) {
            *la = quant(iscale, xi, min);
            let lf = f32::from(*la);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * xi;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for ((&la, &xi), &w) in laux.iter().zip(x).zip(weights) {
                let diff = this_scale * f32::from(la) + this_min - xi;
                cur_error += w * err(diff);
            }
            if cur_error < best_error {
                *l = laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights: fit
/// `x ≈ scale·(L − nmax)` with L in 0..2·nmax, weights x², trying 19 scales.
fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32; N], l: &mut [u8; N]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &xi in x {
        let ax = fabsf(xi);
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        *l = [0; N];
        return 0.0;
    }
    let quant = |iscale: f32, xi: f32| nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
    // Σ w·x·l and Σ w·l² with w = x², in ggml's order: (w·x)·l and (w·l)·l.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &xi in x {
            let lf = quant(iscale, xi) as f32;
            let w = xi * xi;
            sumlx += w * xi * lf;
            suml2 += w * lf * lf;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, l: &mut [u8; N]| {
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = (quant(iscale, xi) + nmax) as u8;
        }
    };

    let iscale = -(nmax as f32) / max;
    fill(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Per sub-block scales and mins of Q4_K/Q5_K (`scales[j]`, `mins[j]` for the 8
/// sub-blocks of 32), with the quants `l` each search picked.
fn kx2_sub_blocks(p: &Qkx2, x: &[f32; QK_K], l: &mut [u8; QK_K]) -> ([f32; 8], [f32; 8]) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let parts = x.chunks_exact(32).zip(l.chunks_exact_mut(32));
    for (((x, l), s), m) in parts.zip(&mut scales).zip(&mut mins) {
        let (Ok(x), Ok(l)) = (<&[f32; 32]>::try_from(x), <&mut [u8; 32]>::try_from(l)) else {
            continue;
        };
        let sum_x2 = x.iter().fold(0.0f32, |s, &v| s + v * v);
        let av_x = sqrtf(sum_x2 / 32.0);
        let weights = x.map(|v| av_x + fabsf(v));
        (*s, *m) = make_qkx2_quants(p, x, &weights, l);
    }
    (scales, mins)
}

/// Shared scale packing and requantization of Q4_K and Q5_K: fills `d`, `dmin`,
/// `scales` of the block and the final quants `l` (0..=nmax).
fn kx2_block(
    p: &Qkx2,
    x: &[f32; QK_K],
    l: &mut [u8; QK_K],
    d_out: &mut [u8; 2],
    dmin_out: &mut [u8; 2],
    packed: &mut [u8; 12],
) {
    let (scales, mins) = kx2_sub_blocks(p, x, l);
    let max_scale = scales
        .iter()
        .fold(0.0f32, |a, &s| if s > a { s } else { a });
    let max_min = mins.iter().fold(0.0f32, |a, &m| if m > a { m } else { a });
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    *packed = [0; 12];
    for (j, (&s, &m)) in scales.iter().zip(&mins).enumerate() {
        // ggml stores nearest_int into a uint8_t (wrapping), then caps at 63.
        let ls = (nearest_int(inv_scale * s) as u8).min(63);
        let lm = (nearest_int(inv_min * m) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    *d_out = f16_bytes(max_scale / 63.0);
    *dmin_out = f16_bytes(max_min / 63.0);
    let (d, dmin) = (f16_le(*d_out), f16_le(*dmin_out));
    let parts = x.chunks_exact(32).zip(l.chunks_exact_mut(32));
    for (j, (x, l)) in parts.enumerate() {
        let (sc, m) = super::blocks::scale_min_k4(j, packed);
        let d = d * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin * f32::from(m);
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = nearest_int((xi + dm) / d).clamp(0, p.nmax) as u8;
        }
    }
}

pub(super) fn q4_k(x: &[f32; QK_K], y: &mut BlockQ4K) {
    let p = Qkx2 {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    let mut l = [0u8; QK_K];
    kx2_block(&p, x, &mut l, &mut y.d, &mut y.dmin, &mut y.scales);
    // Per 64 values: 32 bytes, value j in the low nibble, value j + 32 in the high.
    for (q, l) in y.qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
        let (lo, hi) = l.split_at(32);
        for ((q, a), b) in q.iter_mut().zip(lo).zip(hi) {
            *q = a | (b << 4);
        }
    }
}

pub(super) fn q5_k(x: &[f32; QK_K], y: &mut BlockQ5K) {
    let p = Qkx2 {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    let mut l = [0u8; QK_K];
    kx2_block(&p, x, &mut l, &mut y.d, &mut y.dmin, &mut y.scales);
    y.qh = [0; QK_K / 8];
    for (c, (q, l)) in
        y.qs.chunks_exact_mut(32)
            .zip(l.chunks_exact(64))
            .enumerate()
    {
        let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (lo, hi) = l.split_at(32);
        for (((q, h), a), b) in q.iter_mut().zip(&mut y.qh).zip(lo).zip(hi) {
            if a > &15 {
                *h |= m1;
            }
            if b > &15 {
                *h |= m2;
            }
            *q = (a & 0x0f) | ((b & 0x0f) << 4);
        }
    }
}

pub(super) fn q6_k(x: &[f32; QK_K], y: &mut BlockQ6K) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ((x, l), s) in x
        .chunks_exact(16)
        .zip(l.chunks_exact_mut(16))
        .zip(&mut scales)
    {
        let (Ok(x), Ok(l)) = (<&[f32; 16]>::try_from(x), <&mut [u8; 16]>::try_from(l)) else {
            continue;
        };
        *s = make_qx_quants(32, x, l);
        if fabsf(*s) > max_abs_scale {
            max_abs_scale = fabsf(*s);
            max_scale = *s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        return;
    }
    let iscale = -128.0 / max_scale;
    y.set_d(1.0 / iscale);
    for (q, &s) in y.scales.iter_mut().zip(&scales) {
        *q = nearest_int(iscale * s).min(127) as i8;
    }
    let d = y.d();
    let parts = x
        .chunks_exact(16)
        .zip(l.chunks_exact_mut(16))
        .zip(&y.scales);
    for ((x, l), &sc) in parts {
        let d = d * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = (nearest_int(xi / d).clamp(-32, 31) + 32) as u8;
        }
    }
    // Per 128 values: ql gets 64 bytes (values j, j+32 low nibbles; j+64, j+96 high),
    // qh gets 32 bytes with the top 2 bits of values j, j+32, j+64, j+96.
    let parts = y.ql.chunks_exact_mut(64).zip(y.qh.chunks_exact_mut(32));
    for ((ql, qh), l) in parts.zip(l.chunks_exact(128)) {
        let (ql0, ql1) = ql.split_at_mut(32);
        let (l01, l23) = l.split_at(64);
        let (l0, l1) = l01.split_at(32);
        let (l2, l3) = l23.split_at(32);
        let quads = l0.iter().zip(l1).zip(l2).zip(l3);
        for (((a0, a1), h), (((v0, v1), v2), v3)) in ql0.iter_mut().zip(ql1).zip(qh).zip(quads) {
            *a0 = (v0 & 0x0f) | ((v2 & 0x0f) << 4);
            *a1 = (v1 & 0x0f) | ((v3 & 0x0f) << 4);
            *h = (v0 >> 4) | ((v1 >> 4) << 2) | ((v2 >> 4) << 4) | ((v3 >> 4) << 6);
        }
    }
}

/// ggml's `make_q3_quants` with `do_rmse = true`: signed quants in −nmax..nmax−1
/// weighted by x², refined by up to 5 passes of coordinate descent. Writes
/// `L + nmax` and returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32; 16], out: &mut [u8; 16]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &xi in x {
        if fabsf(xi) > amax {
            amax = fabsf(xi);
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        *out = [0; 16];
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 16];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (li, &xi) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
        let w = xi * xi;
        sumlx += w * xi * *li as f32;
        suml2 += w * *li as f32 * *li as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (li, &xi) in l.iter_mut().zip(x) {
            let w = xi * xi;
            let lf = *li as f32;
            let mut slx = sumlx - w * xi * lf;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * lf * lf;
                let new_l = nearest_int(xi * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li {
                    let nf = new_l as f32;
                    slx += w * xi * nf;
                    sl2 += w * nf * nf;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for (o, li) in out.iter_mut().zip(l) {
        *o = (li + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Pack 2-bit quants as Q2_K/Q3_K do: per 128 values, byte l of 32 holds values
/// l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (q, l) in qs.chunks_exact_mut(32).zip(l.chunks_exact(128)) {
        let (l01, l23) = l.split_at(64);
        let (l0, l1) = l01.split_at(32);
        let (l2, l3) = l23.split_at(32);
        let quads = l0.iter().zip(l1).zip(l2).zip(l3);
        for (q, (((a, b), c), d)) in q.iter_mut().zip(quads) {
            *q = a | (b << 2) | (c << 4) | (d << 6);
        }
    }
}

pub(super) fn q2_k(x: &[f32; QK_K], y: &mut BlockQ2K) {
    let p = Qkx2 {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    let parts = x.chunks_exact(16).zip(l.chunks_exact_mut(16));
    for (((x, l), s), m) in parts.zip(&mut scales).zip(&mut mins) {
        let (Ok(x), Ok(l)) = (<&[f32; 16]>::try_from(x), <&mut [u8; 16]>::try_from(l)) else {
            continue;
        };
        let weights = x.map(fabsf);
        (*s, *m) = make_qkx2_quants(&p, x, &weights, l);
        if *s > max_scale {
            max_scale = *s;
        }
        if *m > max_min {
            max_min = *m;
        }
    }
    // Scales in the low nibbles, mins in the high (ggml stores ints into u8: wrapping).
    y.scales = [0; 16];
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (q, &s) in y.scales.iter_mut().zip(&scales) {
            *q = nearest_int(iscale * s) as u8;
        }
        y.set_d(max_scale / 15.0);
    } else {
        y.set_d(0.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (q, &m) in y.scales.iter_mut().zip(&mins) {
            *q |= (nearest_int(iscale * m) << 4) as u8;
        }
        y.set_dmin(max_min / 15.0);
    } else {
        y.set_dmin(0.0);
    }
    let (d, dmin) = (y.d(), y.dmin());
    let parts = x
        .chunks_exact(16)
        .zip(l.chunks_exact_mut(16))
        .zip(&y.scales);
    for ((x, l), &sc) in parts {
        let d = d * f32::from(sc & 0x0f);
        if d == 0.0 {
            continue;
        }
        let dm = dmin * f32::from(sc >> 4);
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = nearest_int((xi + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut y.qs);
}

pub(super) fn q3_k(x: &[f32; QK_K], y: &mut BlockQ3K) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for ((x, l), s) in x
        .chunks_exact(16)
        .zip(l.chunks_exact_mut(16))
        .zip(&mut scales)
    {
        let (Ok(x), Ok(l)) = (<&[f32; 16]>::try_from(x), <&mut [u8; 16]>::try_from(l)) else {
            continue;
        };
        *s = make_q3_quants(4, x, l);
        if fabsf(*s) > amax {
            amax = fabsf(*s);
            max_scale = *s;
        }
    }
    y.scales = [0; 12];
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            // ggml: int8_t l = nearest_int(..) (wrapping), clamped, then biased by 32.
            let v = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
            if j < 8 {
                y.scales[j] = v & 0x0f;
            } else {
                y.scales[j - 8] |= (v & 0x0f) << 4;
            }
            y.scales[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
        }
        y.set_d(1.0 / iscale);
    } else {
        y.set_d(0.0);
    }
    let d_all = y.d();
    for (j, (x, l)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
        let d = d_all * f32::from(y.scale(j));
        if d == 0.0 {
            continue;
        }
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = (nearest_int(xi / d).clamp(-4, 3) + 4) as u8;
        }
    }
    // High bit of value j goes to bit j / 32 of hmask[j % 32].
    y.hmask = [0; QK_K / 8];
    for (j, li) in l.iter_mut().enumerate() {
        if *li > 3 {
            y.hmask[j % 32] |= 1 << (j / 32);
            *li -= 4;
        }
    }
    pack_2bit(&l, &mut y.qs);
}
