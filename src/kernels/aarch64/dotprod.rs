//! NEON + dotprod (Armv8.2 `sdot`) kernels.

use core::arch::aarch64::{int32x4_t, int8x16_t};

/// `acc + Σ` over groups of 4 of `a_i·b_i`, with one `sdot`.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction; this function's target features (and so
    // every caller's, see `Dotprod`) include dotprod.
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

super::body::neon_kernels!("neon,dotprod", crate::kernels::KernelLevel::Dotprod);

/// The table of this level.
pub(in crate::kernels) static TABLE: crate::kernels::table::Kernels = TABLE_FIELDS;
