//! The attention kernels of [`crate::kernels::attn`] compiled with AVX2/FMA/F16C: the
//! same bodies as the portable entries (so the same operations in the same order,
//! hence the same bits), which the compiler vectorises with 256-bit registers here.
//! Reached only through the AVX2 table, which only [`super::Avx2`] hands out.

use crate::kernels::attn::{self, AttnKernels, Lanes};

/// The AVX2 entries.
pub(super) const AVX2_ATTN: AttnKernels = AttnKernels { kq, softmax, kqv };

#[target_feature(enable = "avx2,fma,f16c")]
fn kq(
    q: &[f32],
    k: &[f32],
    stride: usize,
    lanes: Lanes,
    exact: bool,
    scale: f32,
    scores: &mut [f32],
) {
    attn::kq(q, k, stride, lanes, exact, scale, scores);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn softmax(scores: &mut [f32], first: usize, round_f16: bool) {
    attn::softmax(scores, first, round_f16);
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn kqv(
    p: &[f32],
    v: &[f32],
    stride: usize,
    first: usize,
    lanes: Lanes,
    exact: bool,
    acc: &mut [f32],
    out: &mut [f32],
) {
    attn::kqv(p, v, stride, first, lanes, exact, acc, out);
}
