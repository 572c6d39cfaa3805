//! Scalar reference dequantization (ggml's `dequantize_row_*`).
//!
//! The arithmetic is ggml's, operation for operation and in the same order (e.g. Q4_1
//! is `q·d + m`, Q6_K is `(d·sc)·q`), with no fused multiply-add, so the results are
//! bit-identical to ggml's portable reference and to gguf-py's numpy code.

use super::blocks::{
    BlockIQ4NL, BlockIQ4XS, BlockMXFP4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, QuantBlock,
    KVALUES_IQ4NL, KVALUES_MXFP4, QK_K,
};
use super::{f16_le, typed_blocks, QuantError, QuantOp};
use crate::gguf::GgmlType;

/// Dequantize `src`, a whole number of blocks of `ty`, into the start of `dst`.
///
/// Writes `src.len() / block_bytes · block_size` values; `dst` may be longer. Supports
/// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
/// Q8_K, IQ4_NL, IQ4_XS and MXFP4; other types give [`QuantError::Unsupported`].
/// `src` may start at any address.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    use GgmlType as T;
    match ty {
        T::F32 => scalars::<4>(ty, src, dst, f32::from_le_bytes),
        T::F16 => scalars::<2>(ty, src, dst, f16_le),
        T::BF16 => scalars::<2>(ty, src, dst, |b| {
            f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
        }),
        T::Q4_0 => each_block::<BlockQ4_0, 32>(src, dst, q4_0),
        T::Q4_1 => each_block::<BlockQ4_1, 32>(src, dst, q4_1),
        T::Q5_0 => each_block::<BlockQ5_0, 32>(src, dst, q5_0),
        T::Q5_1 => each_block::<BlockQ5_1, 32>(src, dst, q5_1),
        T::Q8_0 => each_block::<BlockQ8_0, 32>(src, dst, |b, y| q8(b.d(), &b.qs, y)),
        T::Q8_1 => each_block::<BlockQ8_1, 32>(src, dst, |b, y| q8(b.d(), &b.qs, y)),
        T::Q2_K => each_block::<BlockQ2K, QK_K>(src, dst, q2_k),
        T::Q3_K => each_block::<BlockQ3K, QK_K>(src, dst, q3_k),
        T::Q4_K => each_block::<BlockQ4K, QK_K>(src, dst, q4_k),
        T::Q5_K => each_block::<BlockQ5K, QK_K>(src, dst, q5_k),
        T::Q6_K => each_block::<BlockQ6K, QK_K>(src, dst, q6_k),
        T::Q8_K => each_block::<BlockQ8K, QK_K>(src, dst, |b, y| q8(b.d(), &b.qs, y)),
        T::IQ4_NL => each_block::<BlockIQ4NL, 32>(src, dst, iq4_nl),
        T::IQ4_XS => each_block::<BlockIQ4XS, QK_K>(src, dst, iq4_xs),
        T::MXFP4 => each_block::<BlockMXFP4, 32>(src, dst, mxfp4),
        _ => Err(QuantError::Unsupported {
            ty,
            op: QuantOp::Dequantize,
        }),
    }
}

/// The part of `dst` that `n` results go to, or the error saying it is too short.
fn out(ty: GgmlType, dst: &mut [f32], n: usize) -> Result<&mut [f32], QuantError> {
    let got = dst.len();
    dst.get_mut(..n).ok_or(QuantError::OutputTooShort {
        ty,
        op: QuantOp::Dequantize,
        needed: n,
        got,
    })
}

/// One value per `N` little-endian bytes.
fn scalars<const N: usize>(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn([u8; N]) -> f32,
) -> Result<(), QuantError> {
    if !src.len().is_multiple_of(N) {
        return Err(QuantError::NotWholeBlocks {
            ty,
            len: src.len(),
            block_bytes: N,
        });
    }
    let dst = out(ty, dst, src.len() / N)?;
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(N)) {
        // `chunks_exact(N)` only yields N-byte chunks; this cannot fail.
        if let Ok(x) = <[u8; N]>::try_from(x) {
            *y = f(x);
        }
    }
    Ok(())
}

/// View `src` as blocks of `B` and dequantize each into its `QK` outputs.
fn each_block<B: QuantBlock, const QK: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn(&B, &mut [f32; QK]),
) -> Result<(), QuantError> {
    let bs: &[B] = typed_blocks(src)?;
    let n = bs.len().saturating_mul(QK);
    let dst = out(B::TYPE, dst, n)?;
    for (b, y) in bs.iter().zip(dst.chunks_exact_mut(QK)) {
        // `chunks_exact_mut(QK)` only yields QK-long chunks; this cannot fail.
        if let Ok(y) = <&mut [f32; QK]>::try_from(y) {
            f(b, y);
        }
    }
    Ok(())
}

/// Split `y` into its first and second halves.
#[inline]
fn halves<const N: usize>(y: &mut [f32; N]) -> (&mut [f32], &mut [f32]) {
    y.split_at_mut(N / 2)
}

fn q4_0(b: &BlockQ4_0, y: &mut [f32; 32]) {
    let d = b.d();
    let (lo, hi) = halves(y);
    for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
        *y0 = (i32::from(q & 0x0f) - 8) as f32 * d;
        *y1 = (i32::from(q >> 4) - 8) as f32 * d;
    }
}

fn q4_1(b: &BlockQ4_1, y: &mut [f32; 32]) {
    let (d, m) = (b.d(), b.m());
    let (lo, hi) = halves(y);
    for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
        *y0 = f32::from(q & 0x0f) * d + m;
        *y1 = f32::from(q >> 4) * d + m;
    }
}

/// The two 5-bit quants of byte `j` of a Q5_0/Q5_1 block: values j and j + 16.
#[inline]
fn q5_pair(qs: u8, qh: u32, j: usize) -> (u8, u8) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    ((qs & 0x0f) | h0, (qs >> 4) | h1)
}

fn q5_0(b: &BlockQ5_0, y: &mut [f32; 32]) {
    let (d, qh) = (b.d(), b.qh());
    let (lo, hi) = halves(y);
    for (j, ((q, y0), y1)) in b.qs.iter().zip(lo).zip(hi).enumerate() {
        let (x0, x1) = q5_pair(*q, qh, j);
        *y0 = (i32::from(x0) - 16) as f32 * d;
        *y1 = (i32::from(x1) - 16) as f32 * d;
    }
}

fn q5_1(b: &BlockQ5_1, y: &mut [f32; 32]) {
    let (d, m, qh) = (b.d(), b.m(), b.qh());
    let (lo, hi) = halves(y);
    for (j, ((q, y0), y1)) in b.qs.iter().zip(lo).zip(hi).enumerate() {
        let (x0, x1) = q5_pair(*q, qh, j);
        *y0 = f32::from(x0) * d + m;
        *y1 = f32::from(x1) * d + m;
    }
}

fn q8(d: f32, qs: &[i8], y: &mut [f32]) {
    for (y, q) in y.iter_mut().zip(qs) {
        *y = f32::from(*q) * d;
    }
}

fn q2_k(b: &BlockQ2K, y: &mut [f32; QK_K]) {
    let (d, min) = (b.d(), b.dmin());
    // Two halves of 128 values; each takes 32 bytes of qs, four 2-bit planes of it,
    // and each plane is two sub-blocks of 16 values.
    for (half, (q, y)) in
        b.qs.chunks_exact(32)
            .zip(y.chunks_exact_mut(128))
            .enumerate()
    {
        for (plane, y) in y.chunks_exact_mut(32).enumerate() {
            let shift = 2 * plane;
            for (k, (q, y)) in q.chunks_exact(16).zip(y.chunks_exact_mut(16)).enumerate() {
                let sc = b.scales[(8 * half + 2 * plane + k) % 16];
                let dl = d * f32::from(sc & 0x0f);
                let ml = min * f32::from(sc >> 4);
                for (y, q) in y.iter_mut().zip(q) {
                    *y = dl * f32::from((q >> shift) & 3) - ml;
                }
            }
        }
    }
}

fn q3_k(b: &BlockQ3K, y: &mut [f32; QK_K]) {
    let d_all = b.d();
    for (half, (q, y)) in
        b.qs.chunks_exact(32)
            .zip(y.chunks_exact_mut(128))
            .enumerate()
    {
        for (plane, y) in y.chunks_exact_mut(32).enumerate() {
            let shift = 2 * plane;
            let m = 1u8 << (4 * half + plane);
            let sub = q.chunks_exact(16).zip(b.hmask.chunks_exact(16));
            for (k, ((q, hm), y)) in sub.zip(y.chunks_exact_mut(16)).enumerate() {
                let dl = d_all * f32::from(b.scale(8 * half + 2 * plane + k));
                for ((y, q), hm) in y.iter_mut().zip(q).zip(hm) {
                    let low = ((q >> shift) & 3) as i8;
                    let v = if hm & m != 0 { low } else { low - 4 };
                    *y = dl * f32::from(v);
                }
            }
        }
    }
}

fn q4_k(b: &BlockQ4K, y: &mut [f32; QK_K]) {
    let (d, min) = (b.d(), b.dmin());
    for (c, (q, y)) in
        b.qs.chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
    {
        let (sc1, m1) = b.scale_min(2 * c);
        let (sc2, m2) = b.scale_min(2 * c + 1);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        for ((q, y0), y1) in q.iter().zip(lo).zip(hi) {
            *y0 = d1 * f32::from(q & 0x0f) - m1;
            *y1 = d2 * f32::from(q >> 4) - m2;
        }
    }
}

fn q5_k(b: &BlockQ5K, y: &mut [f32; QK_K]) {
    let (d, min) = (b.d(), b.dmin());
    for (c, (ql, y)) in
        b.qs.chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
    {
        let (sc1, m1) = b.scale_min(2 * c);
        let (sc2, m2) = b.scale_min(2 * c + 1);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (lo, hi) = y.split_at_mut(32);
        for (((ql, qh), y0), y1) in ql.iter().zip(&b.qh).zip(lo).zip(hi) {
            let h1 = if qh & u1 != 0 { 16 } else { 0 };
            let h2 = if qh & u2 != 0 { 16 } else { 0 };
            *y0 = d1 * f32::from((ql & 0x0f) + h1) - m1;
            *y1 = d2 * f32::from((ql >> 4) + h2) - m2;
        }
    }
}

fn q6_k(b: &BlockQ6K, y: &mut [f32; QK_K]) {
    let d = b.d();
    let parts = b.ql.chunks_exact(64).zip(b.qh.chunks_exact(32));
    let parts = parts.zip(b.scales.chunks_exact(8));
    for (((ql, qh), sc), y) in parts.zip(y.chunks_exact_mut(128)) {
        let (ql0, ql1) = ql.split_at(32);
        for (l, ((a, b), h)) in ql0.iter().zip(ql1).zip(qh).enumerate() {
            let is = l / 16;
            let q = [
                (a & 0x0f) | ((h & 3) << 4),
                (b & 0x0f) | (((h >> 2) & 3) << 4),
                (a >> 4) | (((h >> 4) & 3) << 4),
                (b >> 4) | (((h >> 6) & 3) << 4),
            ];
            for (k, q) in q.iter().enumerate() {
                let s = sc.get(is + 2 * k).copied().unwrap_or(0);
                let v = (*q as i8) - 32;
                if let Some(y) = y.get_mut(l + 32 * k) {
                    *y = d * f32::from(s) * f32::from(v);
                }
            }
        }
    }
}

fn iq4_nl(b: &BlockIQ4NL, y: &mut [f32; 32]) {
    let d = b.d();
    let (lo, hi) = halves(y);
    for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
        *y0 = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0x0f)]);
        *y1 = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
    }
}

fn iq4_xs(b: &BlockIQ4XS, y: &mut [f32; QK_K]) {
    let d = b.d();
    for (ib, (qs, y)) in
        b.qs.chunks_exact(16)
            .zip(y.chunks_exact_mut(32))
            .enumerate()
    {
        let dl = d * b.scale(ib) as f32;
        let (lo, hi) = y.split_at_mut(16);
        for ((q, y0), y1) in qs.iter().zip(lo).zip(hi) {
            *y0 = dl * f32::from(KVALUES_IQ4NL[usize::from(q & 0x0f)]);
            *y1 = dl * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
        }
    }
}

fn mxfp4(b: &BlockMXFP4, y: &mut [f32; 32]) {
    let d = b.d();
    let (lo, hi) = halves(y);
    for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
        *y0 = f32::from(KVALUES_MXFP4[usize::from(q & 0x0f)]) * d;
        *y1 = f32::from(KVALUES_MXFP4[usize::from(q >> 4)]) * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_type_and_lengths() {
        let mut y = [0f32; 64];
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0; 19], &mut y),
            Err(QuantError::NotWholeBlocks {
                ty: GgmlType::Q4_0,
                len: 19,
                block_bytes: 18
            })
        ));
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0; 54], &mut y),
            Err(QuantError::OutputTooShort {
                needed: 96,
                got: 64,
                ..
            })
        ));
        assert!(matches!(
            dequantize_row(GgmlType::IQ2_XXS, &[0; 66], &mut y),
            Err(QuantError::Unsupported {
                ty: GgmlType::IQ2_XXS,
                op: QuantOp::Dequantize
            })
        ));
        assert!(matches!(
            dequantize_row(GgmlType::F32, &[0; 7], &mut y),
            Err(QuantError::NotWholeBlocks {
                ty: GgmlType::F32,
                len: 7,
                block_bytes: 4
            })
        ));
        // Empty input is fine and writes nothing.
        dequantize_row(GgmlType::Q6_K, &[], &mut []).unwrap();
    }

    #[test]
    fn unaligned_source() {
        let mut bytes = [0u8; 9];
        bytes[1..5].copy_from_slice(&1.5f32.to_le_bytes());
        bytes[5..9].copy_from_slice(&(-2.0f32).to_le_bytes());
        let mut y = [0f32; 2];
        dequantize_row(GgmlType::F32, &bytes[1..], &mut y).unwrap();
        assert_eq!(y, [1.5, -2.0]);
    }
}
