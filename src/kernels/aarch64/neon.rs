//! NEON (Armv8.0 Advanced SIMD) kernels: integer dot products by widening multiplies.

use core::arch::aarch64::{
    int32x4_t, int8x16_t, vget_low_s8, vmull_high_s8, vmull_s8, vpadalq_s16,
};

/// `acc + Σ` over groups of 4 of `a_i·b_i` (i16 products, pairwise-added into i32;
/// exact, and the same per-lane sums as `sdot`).
#[target_feature(enable = "neon")]
#[inline]
fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

super::body::neon_kernels!("neon", crate::kernels::KernelLevel::Neon);

/// The table of this level.
pub(in crate::kernels) static TABLE: crate::kernels::table::Kernels = TABLE_FIELDS;
