//! NEON + dotprod + i8mm: the level exists (and is detected and reported) but runs the
//! dotprod kernels.
//!
//! `smmla` multiplies 2×8 by 8×2 i8 matrices: each of its four results is a sum over 8
//! values. The crate's 32-value block dot products follow llama.cpp's x86 arithmetic,
//! which converts sums over groups of **4** values to f32 separately (8 lanes a block,
//! see [`crate::kernels`]); 8-value sums cannot be split back into those lanes, and
//! masking half of every operand to get them takes as many instructions as `sdot`. So
//! no `smmla` tile is used for them: outputs stay bit-identical to every other level
//! and to llama.cpp's.
//!
//! The batch arithmetic of Q4_K and Q6_K (the prefill of a Q4_K_M model) is different:
//! it sums whole sub-blocks or super-blocks in i32 before converting, so any order of
//! the integer products gives the same bits, `smmla`'s included. A 2 rows × 2 vectors
//! `smmla` tile reads each operand as two 8-byte halves of different rows or vectors,
//! so it pays only once the weights and the activations are stored interleaved that
//! way (as ggml's repacked ARM layouts do); zipping them per call takes as many
//! instructions as the `sdot`s it saves. Until such a layout exists this level runs
//! the dotprod batch kernels (`dot4_q4_k_batch`, `dot4_q6_k_batch` in `body.rs`).

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

super::body::neon_kernels!("neon,dotprod,i8mm", crate::kernels::KernelLevel::I8mm);

/// The table of this level.
pub(in crate::kernels) static TABLE: crate::kernels::table::Kernels = TABLE_FIELDS;
