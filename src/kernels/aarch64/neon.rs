//! NEON (Armv8.0 Advanced SIMD) kernels: integer dot products by widening multiplies.

use core::arch::aarch64::{
    int32x4_t, int8x16_t, vaddq_s32, vget_low_s8, vmull_high_s8, vmull_s8, vpaddlq_s16, vpaddq_s32,
};

/// `acc + Σ` over groups of 4 of `a_i·b_i`: lane `k` gains the products `4k..4k+3`,
/// exactly the lanes of `sdot` (i16 products, pairs widened to i32, then adjacent pairs
/// added).
#[target_feature(enable = "neon")]
#[inline]
fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    let hi = vpaddlq_s16(vmull_high_s8(a, b));
    vaddq_s32(acc, vpaddq_s32(lo, hi))
}

super::body::neon_kernels!("neon", crate::kernels::KernelLevel::Neon);

/// The table of this level.
pub(in crate::kernels) static TABLE: crate::kernels::table::Kernels = TABLE_FIELDS;
