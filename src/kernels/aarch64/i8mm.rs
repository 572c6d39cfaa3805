//! NEON + dotprod + i8mm kernels: the dotprod dot products, plus 2 rows × 2 vectors
//! tiles with `smmla` for the prefill matmul of the Q8_0-activation types.
//!
//! `smmla` multiplies a 2×8 by an 8×2 matrix of i8 into a 2×2 i32 tile. With the two
//! weight rows' 8-value chunks as the first operand and the two vectors' chunks as the
//! second, four `smmla` give the exact integer sums of a 32-value block for all four
//! (row, vector) pairs; the float steps are then those of the single dot product, pair
//! by pair, so every result equals the scalar twin bit for bit.

use core::arch::aarch64::{int32x4_t, int8x16_t};

/// `acc + Σ` over groups of 4 of `a_i·b_i`, with one `sdot`.
#[target_feature(enable = "neon,dotprod,i8mm")]
#[inline]
fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction; this function's target features (and so
    // every caller's, see `I8mm`) include dotprod.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    acc
}

/// `acc + A·Bᵀ` for A, B 2×8 i8 matrices (rows in the two 8-byte halves).
#[target_feature(enable = "neon,dotprod,i8mm")]
#[inline]
fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction; this function's target features (and so
    // every caller's, see `I8mm`) include i8mm.
    unsafe {
        core::arch::asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    acc
}

super::body::neon_kernels!("neon,dotprod,i8mm", crate::kernels::KernelLevel::I8mm);

/// 8-byte halves `k` (0 or 1) of `a` and `b`, side by side: `[a_k | b_k]`.
#[target_feature(enable = "neon,dotprod,i8mm")]
#[inline]
fn pair(a: int8x16_t, b: int8x16_t, hi: bool) -> int8x16_t {
    let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
    vreinterpretq_s8_s64(if hi {
        vzip2q_s64(a, b)
    } else {
        vzip1q_s64(a, b)
    })
}

/// The 2×2 exact block sums `[x0·y0, x0·y1, x1·y0, x1·y1]` of one 32-value block.
#[target_feature(enable = "neon,dotprod,i8mm")]
#[inline]
fn mm_block(
    x0: (int8x16_t, int8x16_t),
    x1: (int8x16_t, int8x16_t),
    y0: (int8x16_t, int8x16_t),
    y1: (int8x16_t, int8x16_t),
) -> int32x4_t {
    let mut acc = vdupq_n_s32(0);
    for (xa, xb, ya, yb) in [(x0.0, x1.0, y0.0, y1.0), (x0.1, x1.1, y0.1, y1.1)] {
        acc = smmla(acc, pair(xa, xb, false), pair(ya, yb, false));
        acc = smmla(acc, pair(xa, xb, true), pair(ya, yb, true));
    }
    acc
}

/// 2×2 tile kernels of the 32-value block types with Q8_0 activations.
macro_rules! mm2x2 {
    ($(#[$doc:meta])* fn $name:ident($X:ty), $unpack:ident) => {
        $(#[$doc])*
        #[target_feature(enable = "neon,dotprod,i8mm")]
        fn $name(x: [&[u8]; 2], y: [&[u8]; 2], _n: usize) -> [f32; 4] {
            let (x0, x1) = (blk::<$X>(x[0]), blk::<$X>(x[1]));
            let (y0, y1) = (blk::<BlockQ8_0>(y[0]), blk::<BlockQ8_0>(y[1]));
            let nb = x0.len().min(x1.len()).min(y0.len()).min(y1.len());
            // f[l]: lane l of the 4 pairs' 8-lane accumulators.
            let mut f = [vdupq_n_f32(0.0); 8];
            let term = |b: usize| -> float32x4_t {
                let (Some(a0), Some(a1), Some(b0), Some(b1)) = (x0.get(b), x1.get(b), y0.get(b), y1.get(b)) else {
                    return vdupq_n_f32(0.0);
                };
                let s = mm_block($unpack(a0), $unpack(a1), act_pair(&b0.qs), act_pair(&b1.qs));
                let dx = f16x4([h(a0.d), h(a0.d), h(a1.d), h(a1.d)]);
                let dy = f16x4([h(b0.d), h(b1.d), h(b0.d), h(b1.d)]);
                vmulq_f32(vmulq_f32(dx, dy), vcvtq_f32_s32(s))
            };
            let mut b = 0;
            while b + 8 <= nb {
                for (l, fl) in f.iter_mut().enumerate() {
                    *fl = vaddq_f32(*fl, term(b + l));
                }
                b += 8;
            }
            for (l, fl) in f.iter_mut().enumerate().take(nb - b) {
                *fl = vaddq_f32(*fl, term(b + l));
            }
            let mut m = [[0.0f32; 4]; 8];
            for (ml, fl) in m.iter_mut().zip(f) {
                // SAFETY: `ml` has room for 4 f32; no alignment requirement.
                unsafe { vst1q_f32(ml.as_mut_ptr(), fl) };
            }
            core::array::from_fn(|p| reduce8(core::array::from_fn(|l| m[l][p])))
        }
    };
}

mm2x2!(
    /// q4_0 · q8_0, 2×2.
    fn mm_q4_0(BlockQ4_0), unpack_q4_0
);
mm2x2!(
    /// q5_0 · q8_0, 2×2.
    fn mm_q5_0(BlockQ5_0), unpack_q5_0
);
mm2x2!(
    /// q8_0 · q8_0, 2×2.
    fn mm_q8_0(BlockQ8_0), unpack_q8_0
);
mm2x2!(
    /// iq4_nl · q8_0, 2×2.
    fn mm_iq4_nl(BlockIQ4NL), unpack_iq4_nl
);

/// The table of this level.
pub(in crate::kernels) static TABLE: Kernels = Kernels {
    q4_0: TypeKernels {
        dot2x2: Some(mm_q4_0),
        ..TABLE_FIELDS.q4_0
    },
    q5_0: TypeKernels {
        dot2x2: Some(mm_q5_0),
        ..TABLE_FIELDS.q5_0
    },
    q8_0: TypeKernels {
        dot2x2: Some(mm_q8_0),
        ..TABLE_FIELDS.q8_0
    },
    iq4_nl: TypeKernels {
        dot2x2: Some(mm_iq4_nl),
        ..TABLE_FIELDS.iq4_nl
    },
    ..TABLE_FIELDS
};
