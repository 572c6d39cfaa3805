//! Scalar reference quantization (ggml's `quantize_row_*_ref`).
//!
//! The activation quantizers ([`quantize_row_q8_0`], [`quantize_row_q8_1`],
//! [`quantize_row_q8_k`]) round exactly as ggml's reference does, so that dot products
//! computed on their output match ggml's. The weight quantizers behind
//! [`quantize_row`] exist to build fixtures and test models; they follow ggml's
//! reference (not the importance-weighted `quantize_*` used by llama-quantize).

use libm::{fabsf, roundf};

use super::blocks::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8K, BlockQ8_0, BlockQ8_1, QuantBlock, QK_K,
};
use super::quantize_k::{q2_k, q3_k, q4_k, q5_k, q6_k};
use super::{blocks_mut, f16_bytes, nearest_int, QuantError, QuantOp};
use crate::gguf::GgmlType;

/// Quantize `src` into the start of `dst` as `ty`.
///
/// `src.len()` must be a multiple of the block size; `dst` must hold at least
/// `src.len() / block_size · block_bytes` bytes (it may be longer and start at any
/// address). Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K,
/// Q4_K, Q5_K, Q6_K and Q8_K; other types give [`QuantError::Unsupported`].
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    use GgmlType as T;
    match ty {
        T::F32 => scalars(ty, src, dst, f32::to_le_bytes),
        T::F16 => scalars(ty, src, dst, f16_bytes),
        T::BF16 => scalars(ty, src, dst, |x| bf16_bits(x).to_le_bytes()),
        T::Q4_0 => into_bytes::<BlockQ4_0, 32>(src, dst, q4_0),
        T::Q4_1 => into_bytes::<BlockQ4_1, 32>(src, dst, q4_1),
        T::Q5_0 => into_bytes::<BlockQ5_0, 32>(src, dst, q5_0),
        T::Q5_1 => into_bytes::<BlockQ5_1, 32>(src, dst, q5_1),
        T::Q8_0 => into_bytes::<BlockQ8_0, 32>(src, dst, q8_0),
        T::Q8_1 => into_bytes::<BlockQ8_1, 32>(src, dst, q8_1),
        T::Q2_K => into_bytes::<BlockQ2K, QK_K>(src, dst, q2_k),
        T::Q3_K => into_bytes::<BlockQ3K, QK_K>(src, dst, q3_k),
        T::Q4_K => into_bytes::<BlockQ4K, QK_K>(src, dst, q4_k),
        T::Q5_K => into_bytes::<BlockQ5K, QK_K>(src, dst, q5_k),
        T::Q6_K => into_bytes::<BlockQ6K, QK_K>(src, dst, q6_k),
        T::Q8_K => into_bytes::<BlockQ8K, QK_K>(src, dst, q8_k),
        _ => Err(QuantError::Unsupported {
            ty,
            op: QuantOp::Quantize,
        }),
    }
}

/// Quantize activations to Q8_0 (`quantize_row_q8_0_ref`): per 32 values,
/// `d = amax / 127`, `q = roundf(x / d)` (ties away from zero).
///
/// `x.len()` must be a multiple of 32 and `y` hold at least `x.len() / 32` blocks.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) -> Result<(), QuantError> {
    each_block::<BlockQ8_0, 32>(x, y, q8_0)
}

/// Quantize activations to Q8_0 the way ggml's SIMD `quantize_row_q8_0` does on x86
/// (AVX2) and ARM (NEON) alike, which is what llama.cpp's matrix products see:
/// per 32 values, `d = amax / 127` (stored as f16), `q = x · (127 / amax)` rounded to
/// the nearest integer, ties to even. It differs from [`quantize_row_q8_0`] (the
/// reference: `x · (1 / d)`, ties away from zero) in the last bit now and then, and that
/// bit matters for parity with llama.cpp.
#[inline]
pub fn quantize_acts_q8_0(x: &[f32], y: &mut [BlockQ8_0]) -> Result<(), QuantError> {
    each_block::<BlockQ8_0, 32>(x, y, |x, y| {
        let d = q8_32_simd(x, &mut y.qs);
        y.set_d(d);
    })
}

/// [`quantize_acts_q8_0`] for Q8_1: plus `s = d · Σ q` (f32 `d`, then rounded to f16),
/// as ggml's SIMD `quantize_row_q8_1`.
#[inline]
pub fn quantize_acts_q8_1(x: &[f32], y: &mut [BlockQ8_1]) -> Result<(), QuantError> {
    each_block::<BlockQ8_1, 32>(x, y, |x, y| {
        let d = q8_32_simd(x, &mut y.qs);
        let sum: i32 = y.qs.iter().map(|&q| i32::from(q)).sum();
        y.set_d(d);
        y.set_s(d * sum as f32);
    })
}

/// Quantize activations to Q8_1 (`quantize_row_q8_1_ref`): Q8_0 plus `s = d · Σ q`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) -> Result<(), QuantError> {
    each_block::<BlockQ8_1, 32>(x, y, q8_1)
}

/// Quantize activations to Q8_K (`quantize_row_q8_K_ref`): per 256 values,
/// `d = max / −127` (max = the value of largest magnitude), `q = nearest_int(x / d)`
/// (ties to even), and the sums of each 16 quants in `bsums`.
#[inline]
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) -> Result<(), QuantError> {
    each_block::<BlockQ8K, QK_K>(x, y, q8_k)
}

/// Quantize weights to Q4_K (`quantize_row_q4_K_ref`, no importance matrix).
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K]) -> Result<(), QuantError> {
    each_block::<BlockQ4K, QK_K>(x, y, q4_k)
}

/// Quantize weights to Q6_K (`quantize_row_q6_K_ref`, no importance matrix).
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K]) -> Result<(), QuantError> {
    each_block::<BlockQ6K, QK_K>(x, y, q6_k)
}

/// Number of blocks in `n` values of `B`, or the error if `n` is not a multiple.
fn block_count<B: QuantBlock>(n: usize) -> Result<usize, QuantError> {
    if !n.is_multiple_of(B::QK) {
        return Err(QuantError::NotWholeValues {
            ty: B::TYPE,
            len: n,
            block_size: B::QK,
        });
    }
    Ok(n / B::QK)
}

#[inline]
fn each_block<B: QuantBlock, const QK: usize>(
    x: &[f32],
    y: &mut [B],
    f: impl Fn(&[f32; QK], &mut B),
) -> Result<(), QuantError> {
    let nb = block_count::<B>(x.len())?;
    let got = y.len();
    let y = y.get_mut(..nb).ok_or(QuantError::OutputTooShort {
        ty: B::TYPE,
        op: QuantOp::Quantize,
        needed: nb,
        got,
    })?;
    for (x, y) in x.chunks_exact(QK).zip(y) {
        // `chunks_exact(QK)` only yields QK-long chunks; this cannot fail.
        if let Ok(x) = <&[f32; QK]>::try_from(x) {
            f(x, y);
        }
    }
    Ok(())
}

fn into_bytes<B: QuantBlock, const QK: usize>(
    x: &[f32],
    dst: &mut [u8],
    f: impl Fn(&[f32; QK], &mut B),
) -> Result<(), QuantError> {
    let nb = block_count::<B>(x.len())?;
    let needed = nb.saturating_mul(core::mem::size_of::<B>());
    let got = dst.len();
    let dst = dst.get_mut(..needed).ok_or(QuantError::OutputTooShort {
        ty: B::TYPE,
        op: QuantOp::Quantize,
        needed,
        got,
    })?;
    each_block::<B, QK>(x, blocks_mut(dst)?, f)
}

fn scalars<const N: usize>(
    ty: GgmlType,
    x: &[f32],
    dst: &mut [u8],
    f: impl Fn(f32) -> [u8; N],
) -> Result<(), QuantError> {
    let needed = x.len().saturating_mul(N);
    let got = dst.len();
    let dst = dst.get_mut(..needed).ok_or(QuantError::OutputTooShort {
        ty,
        op: QuantOp::Quantize,
        needed,
        got,
    })?;
    for (x, y) in x.iter().zip(dst.chunks_exact_mut(N)) {
        y.copy_from_slice(&f(*x));
    }
    Ok(())
}

/// `ggml_compute_fp32_to_bf16`: round to nearest even; NaN becomes a quiet NaN.
fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    // No overflow: u ≤ 0xff80_0000 here.
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// Value of largest magnitude, first one on ties: ggml's scan (`if (amax < fabsf(v))
/// { amax = fabsf(v); max = v; }`, NaNs never win, 0.0 if nothing beats 0) in a form
/// that vectorises: the largest magnitude in 8 independent lanes, then the first value
/// with that magnitude.
#[inline(always)]
fn signed_max(x: &[f32]) -> f32 {
    let keep = |m: f32, v: f32| if m < fabsf(v) { fabsf(v) } else { m };
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = keep(*m, v);
        }
    }
    for (m, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *m = keep(*m, v);
    }
    let amax = lanes.iter().fold(0.0f32, |m, &v| keep(m, v));
    if amax == 0.0 {
        return 0.0;
    }
    for c in x.chunks(8) {
        if c.iter().fold(false, |hit, &v| hit | (fabsf(v) == amax)) {
            return c.iter().copied().find(|&v| fabsf(v) == amax).unwrap_or(0.0);
        }
    }
    0.0
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Pack 32 4-bit values: value j in the low nibble of byte j, value j + 16 in the high.
fn pack_nibbles(l: &[u8; 32], qs: &mut [u8; 16]) {
    let (lo, hi) = l.split_at(16);
    for ((q, a), b) in qs.iter_mut().zip(lo).zip(hi) {
        *q = (a & 0x0f) | (b << 4);
    }
}

/// Pack 32 5-bit values: low nibbles as [`pack_nibbles`], fifth bits into a u32.
fn pack_q5(l: &[u8; 32], qh: &mut [u8; 4], qs: &mut [u8; 16]) {
    pack_nibbles(l, qs);
    let mut h = 0u32;
    for (j, v) in l.iter().enumerate() {
        h |= u32::from((v >> 4) & 1) << j;
    }
    *qh = h.to_le_bytes();
}

fn q4_0(x: &[f32; 32], y: &mut BlockQ4_0) {
    let d = signed_max(x) / -8.0;
    let id = inverse(d);
    y.set_d(d);
    let l = x.map(|v| ((v * id + 8.5) as i8).clamp(0, 15) as u8);
    pack_nibbles(&l, &mut y.qs);
}

fn q4_1(x: &[f32; 32], y: &mut BlockQ4_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    y.set_d(d);
    y.set_m(min);
    let l = x
        .map(|v| ((v - min) * id + 0.5) as i8)
        .map(|v| v.clamp(0, 15) as u8);
    pack_nibbles(&l, &mut y.qs);
}

fn q5_0(x: &[f32; 32], y: &mut BlockQ5_0) {
    let d = signed_max(x) / -16.0;
    let id = inverse(d);
    y.set_d(d);
    let l = x.map(|v| ((v * id + 16.5) as i8).clamp(0, 31) as u8);
    pack_q5(&l, &mut y.qh, &mut y.qs);
}

fn q5_1(x: &[f32; 32], y: &mut BlockQ5_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    y.set_d(d);
    y.set_m(min);
    // ggml does not clamp here; the result is 0..=31 for finite input anyway.
    let l = x.map(|v| ((v - min) * id + 0.5) as u8 & 0x1f);
    pack_q5(&l, &mut y.qh, &mut y.qs);
}

/// Shared part of Q8_0 and Q8_1: returns `d`.
fn q8_32(x: &[f32; 32], qs: &mut [i8; 32]) -> f32 {
    let amax = x
        .iter()
        .fold(0.0f32, |a, &v| if a > fabsf(v) { a } else { fabsf(v) });
    let d = amax / 127.0;
    let id = inverse(d);
    for (q, v) in qs.iter_mut().zip(x) {
        *q = roundf(v * id) as i8;
    }
    d
}

/// ggml's SIMD Q8_0 rounding: `id = 127 / amax`, `round_ties_even(x · id)`.
#[inline(always)]
fn q8_32_simd(x: &[f32; 32], qs: &mut [i8; 32]) -> f32 {
    // ggml's order: `max(maxAbs, |v|)` in 8 lanes (lane k: values k, k + 8, …), then
    // across the lanes. The same value as one scan unless a value is NaN.
    let keep = |a: f32, v: f32| if a > fabsf(v) { a } else { fabsf(v) };
    let mut lanes = [0.0f32; 8];
    for c in x.chunks_exact(8) {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = keep(*m, v);
        }
    }
    let amax = lanes.iter().fold(0.0f32, |a, &v| keep(a, v));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    quantize_scaled(x, id, qs);
    d
}

/// `q = clamp(nearest_int(x · id), −128, 127)` for each value, in a form that vectorises.
#[inline(always)]
fn quantize_scaled<const N: usize>(x: &[f32; N], id: f32, qs: &mut [i8; N]) {
    for (q, v) in qs.iter_mut().zip(x) {
        *q = nearest_int(v * id).clamp(-128, 127) as i8;
    }
}

fn q8_0(x: &[f32; 32], y: &mut BlockQ8_0) {
    let d = q8_32(x, &mut y.qs);
    y.set_d(d);
}

fn q8_1(x: &[f32; 32], y: &mut BlockQ8_1) {
    let d = q8_32(x, &mut y.qs);
    let sum: i32 = y.qs.iter().map(|&q| i32::from(q)).sum();
    y.set_d(d);
    y.set_s(sum as f32 * d);
}

#[inline(always)]
fn q8_k(x: &[f32; QK_K], y: &mut BlockQ8K) {
    let max = signed_max(x);
    if max == 0.0 {
        y.set_d(0.0);
        y.qs = [0; QK_K];
        y.bsums = [0; 32];
        return;
    }
    let iscale = -127.0 / max;
    quantize_scaled(x, iscale, &mut y.qs);
    let mut sums = [0i16; QK_K / 16];
    for (s, q) in sums.iter_mut().zip(y.qs.chunks_exact(16)) {
        let mut t = 0i16;
        for &q in q {
            t = t.wrapping_add(i16::from(q));
        }
        *s = t;
    }
    for (j, s) in sums.into_iter().enumerate() {
        y.set_bsum(j, s);
    }
    y.set_d(1.0 / iscale);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's scan, the reference for [`signed_max`].
    fn signed_max_scan(x: &[f32]) -> f32 {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < fabsf(v) {
                amax = fabsf(v);
                max = v;
            }
        }
        max
    }

    /// The vectorised signed maximum equals the scan bit for bit, ties of `a` and `−a`
    /// (the first wins), zeros, NaNs and odd lengths included.
    #[test]
    fn signed_max_equals_scan() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 256] {
            for case in 0..200 {
                let mut x: alloc::vec::Vec<f32> = (0..len)
                    .map(|_| ((next() % 2001) as f32 - 1000.0) / 64.0)
                    .collect();
                if len > 0 {
                    match case % 5 {
                        // Equal magnitudes of both signs.
                        0 => x
                            .iter_mut()
                            .for_each(|v| *v = if next() % 2 == 0 { 3.5 } else { -3.5 }),
                        1 => x
                            .iter_mut()
                            .for_each(|v| *v = if next() % 2 == 0 { 0.0 } else { -0.0 }),
                        2 => {
                            let k = (next() as usize) % len;
                            x[k] = f32::NAN;
                        }
                        3 => {
                            let (a, b) = ((next() as usize) % len, (next() as usize) % len);
                            x[a] = 99.0;
                            x[b] = -99.0;
                        }
                        _ => {}
                    }
                }
                assert_eq!(
                    signed_max(&x).to_bits(),
                    signed_max_scan(&x).to_bits(),
                    "{x:?}"
                );
            }
        }
    }

    #[test]
    fn bf16_rounding() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // Halfway between 0x3f80 and 0x3f81: ties to even (down).
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(bf16_bits(f32::NEG_INFINITY), 0xff80);
    }

    #[test]
    fn q8_0_rounds_half_away_from_zero() {
        let mut x = [0f32; 32];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -0.5;
        x[3] = 1.5;
        let mut y = [BlockQ8_0 {
            d: [0; 2],
            qs: [0; 32],
        }];
        quantize_row_q8_0(&x, &mut y).unwrap();
        assert_eq!(y[0].d(), 1.0);
        assert_eq!(&y[0].qs[..4], &[127, 1, -1, 2]);
    }

    #[test]
    fn length_errors() {
        let mut y = [BlockQ8_0 {
            d: [0; 2],
            qs: [0; 32],
        }];
        assert!(matches!(
            quantize_row_q8_0(&[0.0; 33], &mut y),
            Err(QuantError::NotWholeValues {
                ty: GgmlType::Q8_0,
                len: 33,
                block_size: 32
            })
        ));
        assert!(matches!(
            quantize_row_q8_0(&[0.0; 64], &mut y),
            Err(QuantError::OutputTooShort {
                needed: 2,
                got: 1,
                ..
            })
        ));
        let mut bytes = [0u8; 35];
        assert!(matches!(
            quantize_row(GgmlType::Q4_0, &[0.0; 64], &mut bytes),
            Err(QuantError::OutputTooShort {
                needed: 36,
                got: 35,
                ..
            })
        ));
        assert!(matches!(
            quantize_row(GgmlType::IQ4_XS, &[0.0; 256], &mut bytes),
            Err(QuantError::Unsupported {
                ty: GgmlType::IQ4_XS,
                op: QuantOp::Quantize
            })
        ));
    }

    #[test]
    fn hostile_floats_do_not_panic() {
        let mut x = [f32::NAN; QK_K];
        x[1] = f32::INFINITY;
        x[2] = -f32::INFINITY;
        x[3] = f32::MAX;
        x[4] = f32::MIN_POSITIVE / 2.0;
        let mut out = [0u8; 292];
        for ty in [
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::Q8_1,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_K,
        ] {
            let n = (ty.block_size() as usize).max(32);
            quantize_row(ty, &x[..n], &mut out).unwrap();
        }
    }
}
