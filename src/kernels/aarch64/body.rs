//! The aarch64 kernels, written once and instantiated per level by [`neon_kernels!`]:
//! the NEON level (integer dot products by `smull` + pairwise adds) and the dotprod
//! level (`sdot`). Each instantiation brings its own `dot16` and target features.
//!
//! The arithmetic reproduces the scalar twins exactly (see [`crate::kernels`]): exact
//! integer lane sums; ggml's x86 accumulation for the 32-value blocks (8 f32 lanes,
//! two `float32x4_t`, one fused multiply-add per block), Q4_K and Q6_K; one sequential
//! f32 sum of super-block terms for the other K-quants; 32 f32 lanes (eight
//! `float32x4_t`) for float rows. For the prefill of Q4_K and Q6_K, the batch
//! arithmetic of the scalar twins (`dot4_q4_k_batch`, `dot4_q6_k_batch`): each weight
//! super-block is unpacked once for up to 4 vectors, and the vectors' f32 chains run
//! side by side, one lane each. The 32-value blocks' prefill goes through
//! [`dot32x4_fn`]: one unpack per weight block for up to 4 vectors.

/// Instantiate the kernels with target features `$feat` (a string literal). The
/// invoking module must define `dot16(acc, a, b)`: `acc + Σ` over groups of 4 of
/// `a_i·b_i` (exact, `int32x4_t`), with the same target features.
macro_rules! neon_kernels {
    ($feat:literal, $level:expr) => {
        use core::arch::aarch64::*;
        use core::arch::asm;

        use crate::kernels::aarch64::body::{block_fn, dot32_fn, dot32x4_fn, dot_float, sequential};
        use crate::kernels::scalar::{blk, fma, k_term};
        use crate::kernels::table::{Kernels, TypeKernels};
        use crate::kernels::{reduce32, reduce8};
        use crate::quant::{
            BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
            BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, KVALUES_IQ4NL,
        };

        /// The table of this level (the invoking module makes it a static).
        pub(in crate::kernels) const TABLE_FIELDS: Kernels = Kernels {
            level: $level,
            q4_0: TypeKernels::tiled(dot_q4_0, dot4_q4_0),
            q4_1: TypeKernels::tiled(dot_q4_1, dot4_q4_1),
            q5_0: TypeKernels::tiled(dot_q5_0, dot4_q5_0),
            // (Repacked Q5_0 rows: the portable code; nothing repacks them on aarch64.)
            q5_0x4: TypeKernels::single(crate::kernels::scalar::dot_q5_0x4),
            q5_1: TypeKernels::tiled(dot_q5_1, dot4_q5_1),
            q8_0: TypeKernels::tiled(dot_q8_0, dot4_q8_0),
            q2_k: TypeKernels::single(dot_q2_k),
            q3_k: TypeKernels::single(dot_q3_k),
            q4_k: TypeKernels::single(dot_q4_k)
                .with_batch(dot4_q4_k_batch, crate::kernels::table::BatchRule::Groups4),
            q5_k: TypeKernels::single(dot_q5_k),
            q6_k: TypeKernels::single(dot_q6_k)
                .with_batch(dot4_q6_k_batch, crate::kernels::table::BatchRule::AllFrom8),
            iq4_nl: TypeKernels::tiled(dot_iq4_nl, dot4_iq4_nl),
            iq4_xs: TypeKernels::single(dot_iq4_xs),
            f32: TypeKernels::single(dot_f32),
            f16: TypeKernels::single(dot_f16),
            bf16: TypeKernels::single(dot_bf16),
            f16_to_f32: f16_to_f32_row,
            f32_to_f16: f32_to_f16_row,
            swiglu: crate::kernels::scalar::swiglu_row,
            // NEON is the aarch64 baseline: the portable code vectorises as it is.
            quantize_acts: crate::kernels::acts::quantize_into,
            // A fused multiply-add is an instruction on every aarch64 CPU.
            rope: crate::model::ops::rope_head,
            // Attention: the portable bodies (NEON is the aarch64 baseline).
            attn: crate::kernels::attn::SCALAR,
            max_logit: crate::kernels::logits::max_logit,
            log_softmax_at: crate::kernels::logits::log_softmax_at,
        };

        /// f16 → f32 (`fcvtl`, exact) for `min(src.len() / 2, dst.len())` values.
        #[target_feature(enable = $feat)]
        fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
            let n = (src.len() / 2).min(dst.len());
            let mut i = 0;
            while i + 8 <= n {
                let (lo, hi) = f16x8_at(src, 2 * i);
                if let Some(d) = dst.get_mut(i..i + 8) {
                    // SAFETY: `d` has room for 8 f32; no alignment requirement.
                    unsafe {
                        vst1q_f32(d.as_mut_ptr(), lo);
                        vst1q_f32(d.as_mut_ptr().add(4), hi);
                    }
                }
                i += 8;
            }
            if let (Some(s), Some(d)) = (src.get(2 * i..2 * n), dst.get_mut(i..n)) {
                crate::kernels::scalar::f16_to_f32_row(s, d);
            }
        }

        /// f32 → f16 (`fcvtn`, round to nearest even) for `min(src.len(), dst.len() / 2)`
        /// values.
        #[target_feature(enable = $feat)]
        fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
            let n = src.len().min(dst.len() / 2);
            let mut i = 0;
            while i + 4 <= n {
                let v = vreinterpretq_f32_u8(ld_u8(src, 4 * i));
                let h: uint16x4_t;
                // SAFETY: a register-only conversion of base Advanced SIMD (rounding
                // by FPCR, round to nearest even unless the program changed it).
                unsafe {
                    asm!(
                        "fcvtn {o:v}.4h, {i:v}.4s",
                        o = lateout(vreg) h,
                        i = in(vreg) v,
                        options(pure, nomem, nostack, preserves_flags)
                    )
                };
                if let Some(d) = dst.get_mut(2 * i..2 * i + 8) {
                    // SAFETY: `d` has room for 8 bytes; no alignment requirement.
                    unsafe { vst1_u16(d.as_mut_ptr().cast(), h) };
                }
                i += 4;
            }
            if let (Some(s), Some(d)) = (src.get(i..n), dst.get_mut(2 * i..2 * n)) {
                crate::kernels::scalar::f32_to_f16_row(s, d);
            }
        }

        // ------------------------------------------------------------ loads

        /// 16 bytes of `a` from `off` (zeros if they are not all there, which the
        /// constant offsets used here never ask for; the check keeps loads sound).
        #[target_feature(enable = $feat)]
        #[inline]
        fn ld_u8<T: bytemuck::Pod>(a: &[T], off: usize) -> uint8x16_t {
            let bytes: &[u8] = bytemuck::cast_slice(a);
            match bytes.get(off..off + 16) {
                // SAFETY: 16 readable bytes; `vld1q_u8` has no alignment requirement.
                Some(s) => unsafe { vld1q_u8(s.as_ptr()) },
                None => vdupq_n_u8(0),
            }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn ld_s8<T: bytemuck::Pod>(a: &[T], off: usize) -> int8x16_t {
            vreinterpretq_s8_u8(ld_u8(a, off))
        }

        // ------------------------------------------------------------ helpers

        /// 8 f16 (16 bytes at `off`) → two 4×f32.
        #[target_feature(enable = $feat)]
        #[inline]
        fn f16x8_at(b: &[u8], off: usize) -> (float32x4_t, float32x4_t) {
            let v = ld_u8(b, off);
            let (lo, hi): (float32x4_t, float32x4_t);
            // SAFETY: register-only conversions of base Advanced SIMD.
            unsafe {
                asm!(
                    "fcvtl {lo:v}.4s, {i:v}.4h",
                    "fcvtl2 {hi:v}.4s, {i:v}.8h",
                    // `lo` is written before `i` is read again: not `lateout`.
                    lo = out(vreg) lo,
                    hi = lateout(vreg) hi,
                    i = in(vreg) v,
                    options(pure, nomem, nostack, preserves_flags)
                )
            };
            (lo, hi)
        }

        fn f16(b: [u8; 2]) -> f32 {
            half::f16::from_le_bytes(b).to_f32()
        }

        /// Σ a·b over 32 signed bytes, as 4 partial i32.
        #[target_feature(enable = $feat)]
        #[inline]
        fn dot32(a0: int8x16_t, a1: int8x16_t, b0: int8x16_t, b1: int8x16_t) -> int32x4_t {
            dot16(dot16(vdupq_n_s32(0), a0, b0), a1, b1)
        }

        /// Nibbles of 16 bytes: (low nibbles, high nibbles).
        #[target_feature(enable = $feat)]
        #[inline]
        fn nibbles(q: uint8x16_t) -> (uint8x16_t, uint8x16_t) {
            (vandq_u8(q, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(q))
        }

        /// 32 bytes from the 32 bits of `bits`: 0xff where the bit is set.
        #[target_feature(enable = $feat)]
        #[inline]
        fn bytes_from_bits(bits: u32) -> (uint8x16_t, uint8x16_t) {
            let b = vreinterpretq_u8_u32(vdupq_n_u32(bits));
            const IDX0: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
            const IDX1: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
            const MASK: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
            let mask = ld_u8(&MASK, 0);
            (
                vtstq_u8(vqtbl1q_u8(b, ld_u8(&IDX0, 0)), mask),
                vtstq_u8(vqtbl1q_u8(b, ld_u8(&IDX1, 0)), mask),
            )
        }

        // ------------------------------------------------------------ 32-value blocks

        /// The 32 quants of a block as two vectors of signed bytes (values 0..16, 16..32).
        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_q4_0(x: &BlockQ4_0) -> (int8x16_t, int8x16_t) {
            let (lo, hi) = nibbles(ld_u8(&x.qs, 0));
            let eight = vdupq_n_s8(8);
            (vsubq_s8(vreinterpretq_s8_u8(lo), eight), vsubq_s8(vreinterpretq_s8_u8(hi), eight))
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_q4_1(x: &BlockQ4_1) -> (int8x16_t, int8x16_t) {
            let (lo, hi) = nibbles(ld_u8(&x.qs, 0));
            (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_q5_0(x: &BlockQ5_0) -> (int8x16_t, int8x16_t) {
            let (lo, hi) = nibbles(ld_u8(&x.qs, 0));
            let (b0, b1) = bytes_from_bits(x.qh());
            // Without the fifth bit, OR in 0xf0: (q | 0xf0) = q − 16 as i8.
            let f0 = vdupq_n_u8(0xf0);
            (
                vreinterpretq_s8_u8(vorrq_u8(lo, vbicq_u8(f0, b0))),
                vreinterpretq_s8_u8(vorrq_u8(hi, vbicq_u8(f0, b1))),
            )
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_q5_1(x: &BlockQ5_1) -> (int8x16_t, int8x16_t) {
            let (lo, hi) = nibbles(ld_u8(&x.qs, 0));
            let (b0, b1) = bytes_from_bits(x.qh());
            let t = vdupq_n_u8(0x10);
            (
                vreinterpretq_s8_u8(vorrq_u8(lo, vandq_u8(b0, t))),
                vreinterpretq_s8_u8(vorrq_u8(hi, vandq_u8(b1, t))),
            )
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_q8_0(x: &BlockQ8_0) -> (int8x16_t, int8x16_t) {
            (ld_s8(&x.qs, 0), ld_s8(&x.qs, 16))
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_iq4_nl(x: &BlockIQ4NL) -> (int8x16_t, int8x16_t) {
            let table = ld_s8(&KVALUES_IQ4NL, 0);
            let (lo, hi) = nibbles(ld_u8(&x.qs, 0));
            (vqtbl1q_s8(table, lo), vqtbl1q_s8(table, hi))
        }

        /// The 32 activation quants of a Q8_0 / Q8_1 block.
        #[target_feature(enable = $feat)]
        #[inline]
        fn act_pair(qs: &[i8; 32]) -> (int8x16_t, int8x16_t) {
            (ld_s8(qs, 0), ld_s8(qs, 16))
        }

        block_fn!($feat, block_q4_0, unpack_q4_0, BlockQ4_0, BlockQ8_0);
        block_fn!($feat, block_q4_1, unpack_q4_1, BlockQ4_1, BlockQ8_1);
        block_fn!($feat, block_q5_0, unpack_q5_0, BlockQ5_0, BlockQ8_0);
        block_fn!($feat, block_q5_1, unpack_q5_1, BlockQ5_1, BlockQ8_1);
        block_fn!($feat, block_q8_0, unpack_q8_0, BlockQ8_0, BlockQ8_0);
        block_fn!($feat, block_iq4_nl, unpack_iq4_nl, BlockIQ4NL, BlockQ8_0);

        dot32_fn!(
            $feat,
            /// q4_0 · q8_0.
            fn dot_q4_0, dot4_q4_0(BlockQ4_0, BlockQ8_0), block_q4_0, unpack_q4_0
        );
        dot32_fn!(
            $feat,
            /// q4_1 · q8_1.
            fn dot_q4_1, dot4_q4_1(BlockQ4_1, BlockQ8_1), block_q4_1, unpack_q4_1, min: |x, y| (x.m, y.s)
        );
        dot32_fn!(
            $feat,
            /// q5_0 · q8_0.
            fn dot_q5_0, dot4_q5_0(BlockQ5_0, BlockQ8_0), block_q5_0, unpack_q5_0
        );
        dot32_fn!(
            $feat,
            /// q5_1 · q8_1.
            fn dot_q5_1, dot4_q5_1(BlockQ5_1, BlockQ8_1), block_q5_1, unpack_q5_1, min: |x, y| (x.m, y.s)
        );
        dot32_fn!(
            $feat,
            /// q8_0 · q8_0.
            fn dot_q8_0, dot4_q8_0(BlockQ8_0, BlockQ8_0), block_q8_0, unpack_q8_0
        );
        dot32_fn!(
            $feat,
            /// iq4_nl · q8_0.
            fn dot_iq4_nl, dot4_iq4_nl(BlockIQ4NL, BlockQ8_0), block_iq4_nl, unpack_iq4_nl
        );

        // ------------------------------------------------------------ super-blocks

        /// Σ over 16 products of u8 (as i8, ≤ 127) and i8, as 4 partial i32.
        #[target_feature(enable = $feat)]
        #[inline]
        fn dot16u(a: uint8x16_t, b: int8x16_t) -> int32x4_t {
            dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(a), b)
        }

        /// Σ_j bsum_j · m_j over the 16 sums of a Q8_K block, `m` 16 bytes (u8 ≤ 63).
        #[target_feature(enable = $feat)]
        #[inline]
        fn bsum_dot(y: &BlockQ8K, m: uint8x16_t) -> i32 {
            // SAFETY: `bsums` is 32 bytes: two loads of 8 i16.
            let (b0, b1) = unsafe {
                (vld1q_s16(y.bsums.as_ptr().cast()), vld1q_s16(y.bsums.as_ptr().add(16).cast()))
            };
            let m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
            let m1 = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(m)));
            let p = vmull_s16(vget_low_s16(b0), vget_low_s16(m0));
            let p = vmlal_s16(p, vget_high_s16(b0), vget_high_s16(m0));
            let p = vmlal_s16(p, vget_low_s16(b1), vget_low_s16(m1));
            let p = vmlal_s16(p, vget_high_s16(b1), vget_high_s16(m1));
            vaddvq_s32(p)
        }

        /// q2_K · q8_K.
        #[target_feature(enable = $feat)]
        fn dot_q2_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<BlockQ2K>(x), blk::<BlockQ8K>(y));
            let m3 = vdupq_n_u8(3);
            sequential!(xs, ys, |x, y| {
                let sc = ld_u8(&x.scales, 0);
                let msum = bsum_dot(y, vshrq_n_u8::<4>(sc));
                let mut scales = [0u8; 16];
                for (s, v) in scales.iter_mut().zip(x.scales) {
                    *s = v & 0x0f;
                }
                let mut isum = 0i32;
                for h in 0..2 {
                    let q0 = ld_u8(&x.qs, 32 * h);
                    let q1 = ld_u8(&x.qs, 32 * h + 16);
                    for s in 0..4 {
                        let sh = vdupq_n_s8(-(2 * s as i8));
                        let v0 = vandq_u8(vshlq_u8(q0, sh), m3);
                        let v1 = vandq_u8(vshlq_u8(q1, sh), m3);
                        let base = 128 * h + 32 * s;
                        let p0 = vaddvq_s32(dot16u(v0, ld_s8(&y.qs, base)));
                        let p1 = vaddvq_s32(dot16u(v1, ld_s8(&y.qs, base + 16)));
                        let is = 8 * h + 2 * s;
                        isum += i32::from(scales[is]) * p0 + i32::from(scales[is + 1]) * p1;
                    }
                }
                k_term(y.d() * f16(x.d), isum, y.d() * f16(x.dmin), msum)
            })
        }

        /// q3_K · q8_K.
        #[target_feature(enable = $feat)]
        fn dot_q3_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<BlockQ3K>(x), blk::<BlockQ8K>(y));
            let m3 = vdupq_n_u8(3);
            sequential!(xs, ys, |x, y| {
                let hm0 = ld_u8(&x.hmask, 0);
                let hm1 = ld_u8(&x.hmask, 16);
                let mut isum = 0i32;
                for h in 0..2 {
                    let q0 = ld_u8(&x.qs, 32 * h);
                    let q1 = ld_u8(&x.qs, 32 * h + 16);
                    for s in 0..4 {
                        let sh = vdupq_n_s8(-(2 * s as i8));
                        let bit = vdupq_n_u8(1u8 << (4 * h + s));
                        // low 2 bits, minus 4 where the high bit is clear
                        let four0 = vandq_u8(vceqq_u8(vandq_u8(hm0, bit), vdupq_n_u8(0)), vdupq_n_u8(4));
                        let four1 = vandq_u8(vceqq_u8(vandq_u8(hm1, bit), vdupq_n_u8(0)), vdupq_n_u8(4));
                        let v0 = vsubq_s8(
                            vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, sh), m3)),
                            vreinterpretq_s8_u8(four0),
                        );
                        let v1 = vsubq_s8(
                            vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, sh), m3)),
                            vreinterpretq_s8_u8(four1),
                        );
                        let base = 128 * h + 32 * s;
                        let p0 = vaddvq_s32(dot16(vdupq_n_s32(0), v0, ld_s8(&y.qs, base)));
                        let p1 = vaddvq_s32(dot16(vdupq_n_s32(0), v1, ld_s8(&y.qs, base + 16)));
                        let is = 8 * h + 2 * s;
                        isum += i32::from(x.scale(is)) * p0 + i32::from(x.scale(is + 1)) * p1;
                    }
                }
                k_term(f16(x.d) * y.d(), isum, 0.0, 0)
            })
        }

        /// Scales (bytes 0..8) and mins (8..16) of a Q4_K / Q5_K block.
        #[inline]
        fn k4_scales(q: &[u8; 12]) -> [u8; 16] {
            let mut out = [0u8; 16];
            for j in 0..8 {
                let (s, m) = if j < 4 {
                    (q[j] & 63, q[j + 4] & 63)
                } else {
                    ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
                };
                out[j] = s;
                out[8 + j] = m;
            }
            out
        }

        /// Σ_j bsum_j · min_{j/2} of a Q4_K / Q5_K block.
        #[target_feature(enable = $feat)]
        #[inline]
        fn k4_msum(y: &BlockQ8K, sm: &[u8; 16]) -> i32 {
            let mut m = [0u8; 16];
            for (j, v) in m.iter_mut().enumerate() {
                *v = sm[8 + j / 2];
            }
            bsum_dot(y, ld_u8(&m, 0))
        }

        /// q4_K · q8_K.
        #[target_feature(enable = $feat)]
        fn dot_q4_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<BlockQ4K>(x), blk::<BlockQ8K>(y));
            let (mut accd, mut accm) = (0.0f32, 0.0f32);
            for (x, y) in xs.iter().zip(ys) {
                let sm = k4_scales(&x.scales);
                let mut acc = vdupq_n_s32(0);
                for j in 0..4 {
                    let (l0, h0) = nibbles(ld_u8(&x.qs, 32 * j));
                    let (l1, h1) = nibbles(ld_u8(&x.qs, 32 * j + 16));
                    let base = 64 * j;
                    let plo = dot16(dot16u(l0, ld_s8(&y.qs, base)), vreinterpretq_s8_u8(l1), ld_s8(&y.qs, base + 16));
                    let phi = dot16(dot16u(h0, ld_s8(&y.qs, base + 32)), vreinterpretq_s8_u8(h1), ld_s8(&y.qs, base + 48));
                    acc = vmlaq_n_s32(acc, plo, i32::from(sm[2 * j]));
                    acc = vmlaq_n_s32(acc, phi, i32::from(sm[2 * j + 1]));
                }
                // ggml's x86 repacked gemv: one fused multiply-add per super-block
                // for the sums and one for the mins.
                accd = fma(vaddvq_s32(acc) as f32, f16(x.d) * y.d(), accd);
                accm = fma(k4_msum(y, &sm) as f32, f16(x.dmin) * y.d(), accm);
            }
            accd - accm
        }

        /// q5_K · q8_K.
        #[target_feature(enable = $feat)]
        fn dot_q5_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<BlockQ5K>(x), blk::<BlockQ8K>(y));
            let one = vdupq_n_u8(1);
            sequential!(xs, ys, |x, y| {
                let sm = k4_scales(&x.scales);
                let qh0 = ld_u8(&x.qh, 0);
                let qh1 = ld_u8(&x.qh, 16);
                let mut acc = vdupq_n_s32(0);
                for j in 0..4 {
                    let (l0, h0) = nibbles(ld_u8(&x.qs, 32 * j));
                    let (l1, h1) = nibbles(ld_u8(&x.qs, 32 * j + 16));
                    let slo = vdupq_n_s8(-(2 * j as i8));
                    let shi = vdupq_n_s8(-(2 * j as i8 + 1));
                    let bit = |q: uint8x16_t, s: int8x16_t| vshlq_n_u8::<4>(vandq_u8(vshlq_u8(q, s), one));
                    let l0 = vorrq_u8(l0, bit(qh0, slo));
                    let l1 = vorrq_u8(l1, bit(qh1, slo));
                    let h0 = vorrq_u8(h0, bit(qh0, shi));
                    let h1 = vorrq_u8(h1, bit(qh1, shi));
                    let base = 64 * j;
                    let plo = dot16(dot16u(l0, ld_s8(&y.qs, base)), vreinterpretq_s8_u8(l1), ld_s8(&y.qs, base + 16));
                    let phi = dot16(dot16u(h0, ld_s8(&y.qs, base + 32)), vreinterpretq_s8_u8(h1), ld_s8(&y.qs, base + 48));
                    acc = vmlaq_n_s32(acc, plo, i32::from(sm[2 * j]));
                    acc = vmlaq_n_s32(acc, phi, i32::from(sm[2 * j + 1]));
                }
                k_term(f16(x.d) * y.d(), vaddvq_s32(acc), f16(x.dmin) * y.d(), k4_msum(y, &sm))
            })
        }

        /// The 256 quants of a Q6_K block, unsigned (0..=63): element `i` holds values
        /// 16i..16i+16, those of scale `i`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn unpack_q6_k(x: &BlockQ6K) -> [uint8x16_t; 16] {
            let m4 = vdupq_n_u8(0x0f);
            let m3 = vdupq_n_u8(3);
            let mut a = [vdupq_n_u8(0); 16];
            for h in 0..2 {
                for half in 0..2 {
                    // 16 of the 32 columns `l` of this 128-value half
                    let o = 16 * half;
                    let ql0 = ld_u8(&x.ql, 64 * h + o);
                    let ql1 = ld_u8(&x.ql, 64 * h + 32 + o);
                    let qh = ld_u8(&x.qh, 32 * h + o);
                    let hb = |s: i8| vshlq_n_u8::<4>(vandq_u8(vshlq_u8(qh, vdupq_n_s8(-s)), m3));
                    let v = [
                        vorrq_u8(vandq_u8(ql0, m4), hb(0)),
                        vorrq_u8(vandq_u8(ql1, m4), hb(2)),
                        vorrq_u8(vshrq_n_u8::<4>(ql0), hb(4)),
                        vorrq_u8(vshrq_n_u8::<4>(ql1), hb(6)),
                    ];
                    for (k, v) in v.into_iter().enumerate() {
                        // Values 128h + 32k + o .. +16: scale 8h + 2k + half.
                        if let Some(slot) = a.get_mut(8 * h + 2 * k + half) {
                            *slot = v;
                        }
                    }
                }
            }
            a
        }

        /// q6_K · q8_K in ggml's x86 arithmetic (see `scalar::q6_k_lanes`): 8 lanes of
        /// scaled sums of unsigned quants, minus 32·(scale·block sum) per lane pair,
        /// accumulated with one fused multiply-add per super-block.
        #[target_feature(enable = $feat)]
        fn dot_q6_k(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<BlockQ6K>(x), blk::<BlockQ8K>(y));
            let mut acc0 = vdupq_n_f32(0.0);
            let mut acc1 = vdupq_n_f32(0.0);
            for (x, y) in xs.iter().zip(ys) {
                let mut lanes = [vdupq_n_s32(0); 2];
                // Values 16i..16i+16 (scale i) go to lanes 0..4 (even i) or 4..8 (odd i),
                // as ggml's 8 lanes of 4 products.
                for (i, (v, &sc)) in unpack_q6_k(x).into_iter().zip(&x.scales).enumerate() {
                    let p = dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(v), ld_s8(&y.qs, 16 * i));
                    lanes[i % 2] = vmlaq_n_s32(lanes[i % 2], p, i32::from(sc));
                }
                let mut l = [0i32; 8];
                // SAFETY: `l` has room for 8 i32; no alignment requirement.
                unsafe {
                    vst1q_s32(l.as_mut_ptr(), lanes[0]);
                    vst1q_s32(l.as_mut_ptr().add(4), lanes[1]);
                }
                for (k, v) in l.iter_mut().enumerate() {
                    let b = i32::from(y.bsum(2 * k)) * i32::from(x.scales[2 * k])
                        + i32::from(y.bsum(2 * k + 1)) * i32::from(x.scales[2 * k + 1]);
                    *v -= 32 * b;
                }
                // SAFETY: `l` holds 8 readable i32.
                let (l0, l1) = unsafe { (vld1q_s32(l.as_ptr()), vld1q_s32(l.as_ptr().add(4))) };
                let d = f16(x.d) * y.d();
                acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(l0), d);
                acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(l1), d);
            }
            let mut out = [0.0f32; 8];
            // SAFETY: `out` has room for 8 f32; no alignment requirement.
            unsafe {
                vst1q_f32(out.as_mut_ptr(), acc0);
                vst1q_f32(out.as_mut_ptr().add(4), acc1);
            }
            reduce8(out)
        }

        /// The activation rows `ys[..nv]` as blocks (empty past `nv`).
        #[inline]
        fn act_rows<'a, Y: bytemuck::Pod>(ys: &[&'a [u8]; 4], nv: usize) -> [&'a [Y]; 4] {
            core::array::from_fn(|v| if v < nv { blk::<Y>(ys[v]) } else { &[] })
        }

        /// Writes lanes `..nv` of `r` to `out[..nv]`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn store_lanes(r: float32x4_t, nv: usize, out: &mut [f32; 4]) {
            let mut l = [0.0f32; 4];
            // SAFETY: `l` has room for 4 f32; no alignment requirement.
            unsafe { vst1q_f32(l.as_mut_ptr(), r) };
            for (o, v) in out.iter_mut().zip(l).take(nv) {
                *o = v;
            }
        }

        /// q4_K · q8_K in the batch arithmetic (`scalar::dot_q4_k_batch`, ggml's x86
        /// repacked `gemm`) for up to 4 vectors: each super-block is unpacked once for
        /// all of them; per pair of sub-blocks the exact sums of the 4 vectors go into
        /// one register, one lane per vector, and take one fused multiply-add for the
        /// sums and one for the mins, as the scalar code does vector by vector.
        #[target_feature(enable = $feat)]
        fn dot4_q4_k_batch(x: &[u8], ys: [&[u8]; 4], nv: usize, _n: usize, out: &mut [f32; 4]) {
            let nv = nv.min(4);
            let xs = blk::<BlockQ4K>(x);
            let yb = act_rows::<BlockQ8K>(&ys, nv);
            let (mut acc, mut accm) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            for (b, x) in xs.iter().enumerate() {
                let sm = k4_scales(&x.scales);
                // Pair j: the low nibbles of bytes 32j..32j+32 (sub-block 2j), then the
                // high ones (sub-block 2j + 1).
                let q: [[int8x16_t; 4]; 4] = core::array::from_fn(|j| {
                    let (l0, h0) = nibbles(ld_u8(&x.qs, 32 * j));
                    let (l1, h1) = nibbles(ld_u8(&x.qs, 32 * j + 16));
                    [l0, l1, h0, h1].map(|v| vreinterpretq_s8_u8(v))
                });
                // [vector][pair], read back transposed ([pair][vector]) by `vld4q`.
                let mut isum = [0i32; 16];
                let mut msum = [0i32; 16];
                let mut dy = [0.0f32; 4];
                // The mins, widened: sub-blocks 0..4 and 4..8.
                let m = vmovl_u8(vget_high_u8(ld_u8(&sm, 0)));
                let m_lo = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(m)));
                let m_hi = vreinterpretq_s32_u32(vmovl_high_u16(m));
                for v in 0..nv {
                    let Some(y) = yb[v].get(b) else { continue };
                    dy[v] = y.d();
                    let p: [int32x4_t; 4] = core::array::from_fn(|j| {
                        let (q, base, zero) = (&q[j], 64 * j, vdupq_n_s32(0));
                        let plo = dot16(dot16(zero, q[0], ld_s8(&y.qs, base)), q[1], ld_s8(&y.qs, base + 16));
                        let phi = dot16(dot16(zero, q[2], ld_s8(&y.qs, base + 32)), q[3], ld_s8(&y.qs, base + 48));
                        vmlaq_n_s32(vmulq_n_s32(plo, i32::from(sm[2 * j])), phi, i32::from(sm[2 * j + 1]))
                    });
                    // Pair sums: Σ lanes of p[j] for j = 0..4.
                    let is = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
                    // SAFETY: `bsums` is 32 bytes: two loads of 8 i16.
                    let (b0, b1) = unsafe {
                        (vld1q_s16(y.bsums.as_ptr().cast()), vld1q_s16(y.bsums.as_ptr().add(16).cast()))
                    };
                    // Sub-block sums (pairs of the 16-value sums, in i32), times the mins,
                    // then added by pairs of sub-blocks.
                    let ms = vpaddq_s32(
                        vmulq_s32(vpaddlq_s16(b0), m_lo),
                        vmulq_s32(vpaddlq_s16(b1), m_hi),
                    );
                    if let (Some(i), Some(o)) = (isum.get_mut(4 * v..4 * v + 4), msum.get_mut(4 * v..4 * v + 4)) {
                        // SAFETY: `i` and `o` have room for 4 i32 each; no alignment
                        // requirement.
                        unsafe {
                            vst1q_s32(i.as_mut_ptr(), is);
                            vst1q_s32(o.as_mut_ptr(), ms);
                        }
                    }
                }
                // SAFETY: `isum` and `msum` hold 16 readable i32, `dy` 4 f32.
                let (is, ms, dy) = unsafe {
                    (vld4q_s32(isum.as_ptr()), vld4q_s32(msum.as_ptr()), vld1q_f32(dy.as_ptr()))
                };
                // x.d·y.d and x.dmin·y.d per vector (f32 products, as the scalar code).
                let d = vmulq_n_f32(dy, f16(x.d));
                let dmin = vmulq_n_f32(dy, f16(x.dmin));
                for (is, ms) in [(is.0, ms.0), (is.1, ms.1), (is.2, ms.2), (is.3, ms.3)] {
                    acc = vfmaq_f32(acc, vcvtq_f32_s32(is), d);
                    accm = vfmaq_f32(accm, vcvtq_f32_s32(ms), dmin);
                }
            }
            store_lanes(vsubq_f32(acc, accm), nv, out);
        }

        /// q6_K · q8_K in the batch arithmetic (`scalar::dot_q6_k_batch`, llama.cpp's
        /// tiled K-quant matmul) for up to 4 vectors: each super-block is unpacked once
        /// (signed quants, −32..=31); per vector the exact `isum`; then, one lane per
        /// vector, `acc = fma(x.d·isum, y.d, acc)` as the scalar code.
        #[target_feature(enable = $feat)]
        fn dot4_q6_k_batch(x: &[u8], ys: [&[u8]; 4], nv: usize, _n: usize, out: &mut [f32; 4]) {
            let nv = nv.min(4);
            let xs = blk::<BlockQ6K>(x);
            let yb = act_rows::<BlockQ8K>(&ys, nv);
            let mut acc = vdupq_n_f32(0.0);
            for (b, x) in xs.iter().enumerate() {
                // a[i]: values 16i..16i+16 of the super-block (scale i), signed.
                let a = unpack_q6_k(x).map(|v| vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(32)));
                let mut isum = [0i32; 4];
                let mut dy = [0.0f32; 4];
                for v in 0..nv {
                    let Some(y) = yb[v].get(b) else { continue };
                    dy[v] = y.d();
                    let mut p = vdupq_n_s32(0);
                    for (i, (a, &sc)) in a.iter().zip(&x.scales).enumerate() {
                        let d = dot16(vdupq_n_s32(0), *a, ld_s8(&y.qs, 16 * i));
                        p = vmlaq_n_s32(p, d, i32::from(sc));
                    }
                    isum[v] = vaddvq_s32(p);
                }
                // SAFETY: `isum` and `dy` hold 4 readable values each.
                let (is, dy) = unsafe { (vld1q_s32(isum.as_ptr()), vld1q_f32(dy.as_ptr())) };
                acc = vfmaq_f32(acc, vmulq_n_f32(vcvtq_f32_s32(is), f16(x.d)), dy);
            }
            store_lanes(acc, nv, out);
        }

        /// iq4_xs · q8_K.
        #[target_feature(enable = $feat)]
        fn dot_iq4_xs(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<BlockIQ4XS>(x), blk::<BlockQ8K>(y));
            let table = ld_s8(&KVALUES_IQ4NL, 0);
            sequential!(xs, ys, |x, y| {
                let mut acc = vdupq_n_s32(0);
                for ib in 0..8 {
                    let (lo, hi) = nibbles(ld_u8(&x.qs, 16 * ib));
                    let p = dot32(
                        vqtbl1q_s8(table, lo),
                        vqtbl1q_s8(table, hi),
                        ld_s8(&y.qs, 32 * ib),
                        ld_s8(&y.qs, 32 * ib + 16),
                    );
                    acc = vmlaq_n_s32(acc, p, x.scale(ib));
                }
                k_term(f16(x.d) * y.d(), vaddvq_s32(acc), 0.0, 0)
            })
        }

        // ------------------------------------------------------------ float rows

        #[target_feature(enable = $feat)]
        #[inline]
        fn load_f32x8(b: &[u8], off: usize) -> (float32x4_t, float32x4_t) {
            (
                vreinterpretq_f32_u8(ld_u8(b, off)),
                vreinterpretq_f32_u8(ld_u8(b, off + 16)),
            )
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn load_bf16x8(b: &[u8], off: usize) -> (float32x4_t, float32x4_t) {
            let v = vreinterpretq_u16_u8(ld_u8(b, off));
            (
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(v))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(v)),
            )
        }

        fn f32_le(b: [u8; 4]) -> f32 {
            f32::from_le_bytes(b)
        }

        fn bf16_le(b: [u8; 2]) -> f32 {
            f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
        }

        dot_float!(
            $feat,
            /// f32 · f32.
            fn dot_f32, 4, load_f32x8, f32_le
        );
        dot_float!(
            $feat,
            /// f16 · f16.
            fn dot_f16, 2, f16x8_at, f16
        );
        dot_float!(
            $feat,
            /// bf16 · bf16.
            fn dot_bf16, 2, load_bf16x8, bf16_le
        );
    };
}

/// The block dot products of one 32-value block type, in ggml's x86 arithmetic (see
/// [`crate::kernels`]): per block, the 8 lane sums of `$block(x, y)` converted to f32
/// and `acc = fma(lanes, dx·dy, acc)` in two `float32x4_t`; `Σ mx·sy` apart (with
/// `min`); [`reduce8`] at the end. Also `$name4`, the same for up to 4 vectors with
/// one `$unpack` per weight block ([`dot32x4_fn`]).
macro_rules! dot32_fn {
    (
        $feat:literal,
        $(#[$doc:meta])* fn $name:ident, $name4:ident($X:ty, $Y:ty), $block:ident, $unpack:ident
        $(, min: |$x:ident, $y:ident| ($m:expr, $s:expr))?
    ) => {
        dot32x4_fn!(
            $feat,
            /// The same for up to 4 vectors (see `dot32x4_fn!`).
            fn $name4($X, $Y), $unpack $(, min: |$x, $y| ($m, $s))?
        );

        $(#[$doc])*
        #[target_feature(enable = $feat)]
        fn $name(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let (xs, ys) = (blk::<$X>(x), blk::<$Y>(y));
            let mut acc0 = vdupq_n_f32(0.0);
            let mut acc1 = vdupq_n_f32(0.0);
            #[allow(unused_mut)]
            let mut summs = 0.0f32;
            for (xb, yb) in xs.iter().zip(ys) {
                let (l0, l1) = $block(xb, yb);
                let d = f16(xb.d) * f16(yb.d);
                acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(l0), d);
                acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(l1), d);
                $(
                    let $x = xb;
                    let $y = yb;
                    summs += f16($m) * f16($s);
                )?
            }
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` has room for 8 f32; no alignment requirement.
            unsafe {
                vst1q_f32(lanes.as_mut_ptr(), acc0);
                vst1q_f32(lanes.as_mut_ptr().add(4), acc1);
            }
            reduce8(lanes) + summs
        }
    };
}

/// [`dot32_fn`]'s dot product for up to 4 vectors (a `Dot4Fn`): each weight block is
/// unpacked once for all of them (`$unpack`), and every vector keeps its own two
/// accumulators and its own order of blocks, so each result has the single dot's bits.
/// Vectors past `nv` (or past the end of their row) are not computed; `out[nv..]` is
/// left as it is.
macro_rules! dot32x4_fn {
    (
        $feat:literal,
        $(#[$doc:meta])* fn $name:ident($X:ty, $Y:ty), $unpack:ident
        $(, min: |$x:ident, $y:ident| ($m:expr, $s:expr))?
    ) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        fn $name(x: &[u8], ys: [&[u8]; 4], nv: usize, _n: usize, out: &mut [f32; 4]) {
            let nv = nv.min(4);
            let xs = blk::<$X>(x);
            let yv = act_rows::<$Y>(&ys, nv);
            let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
            #[allow(unused_mut)]
            let mut summs = [0.0f32; 4];
            for (b, xb) in xs.iter().enumerate() {
                let (a0, a1) = $unpack(xb);
                let dx = f16(xb.d);
                for ((acc, y), _summ) in acc.iter_mut().zip(&yv).zip(summs.iter_mut()) {
                    let Some(yb) = y.get(b) else { continue };
                    let (b0, b1) = act_pair(&yb.qs);
                    let d = dx * f16(yb.d);
                    let l0 = dot16(vdupq_n_s32(0), a0, b0);
                    let l1 = dot16(vdupq_n_s32(0), a1, b1);
                    acc[0] = vfmaq_n_f32(acc[0], vcvtq_f32_s32(l0), d);
                    acc[1] = vfmaq_n_f32(acc[1], vcvtq_f32_s32(l1), d);
                    $(
                        let $x = xb;
                        let $y = yb;
                        *_summ += f16($m) * f16($s);
                    )?
                }
            }
            for ((o, acc), summ) in out.iter_mut().zip(&acc).zip(summs).take(nv) {
                let mut lanes = [0.0f32; 8];
                // SAFETY: `lanes` has room for 8 f32; no alignment requirement.
                unsafe {
                    vst1q_f32(lanes.as_mut_ptr(), acc[0]);
                    vst1q_f32(lanes.as_mut_ptr().add(4), acc[1]);
                }
                *o = reduce8(lanes) + summ;
            }
        }
    };
}

/// Sum the super-block terms in order.
macro_rules! sequential {
    ($xs:expr, $ys:expr, |$x:ident, $y:ident| $term:expr) => {{
        let mut sum = 0.0f32;
        for ($x, $y) in $xs.iter().zip($ys) {
            sum += $term;
        }
        sum
    }};
}

/// 32-lane float dot over `$w`-byte values; `$load(bytes, off)` gives 8 f32.
macro_rules! dot_float {
    ($feat:literal, $(#[$doc:meta])* fn $name:ident, $w:expr, $load:ident, $scalar:path) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        fn $name(x: &[u8], y: &[u8], _n: usize) -> f32 {
            let n = (x.len() / $w).min(y.len() / $w);
            let mut acc = [vdupq_n_f32(0.0); 8];
            let mut i = 0;
            while i + 32 <= n {
                for k in 0..4 {
                    let off = $w * (i + 8 * k);
                    let (x0, x1) = $load(x, off);
                    let (y0, y1) = $load(y, off);
                    acc[2 * k] = vaddq_f32(acc[2 * k], vmulq_f32(x0, y0));
                    acc[2 * k + 1] = vaddq_f32(acc[2 * k + 1], vmulq_f32(x1, y1));
                }
                i += 32;
            }
            let mut lanes = [0.0f32; 32];
            for (k, a) in acc.iter().enumerate() {
                // SAFETY: lanes[4k..4k+4] is in bounds (k < 8).
                unsafe { vst1q_f32(lanes.as_mut_ptr().add(4 * k), *a) };
            }
            for j in i..n {
                let a = x.get($w * j..$w * j + $w).and_then(|s| s.try_into().ok());
                let b = y.get($w * j..$w * j + $w).and_then(|s| s.try_into().ok());
                if let (Some(a), Some(b)) = (a, b) {
                    lanes[j % 32] += $scalar(a) * $scalar(b);
                }
            }
            reduce32(lanes)
        }
    };
}

/// A block dot product from an unpacking function: the 8 lane sums of one block
/// (lane k = Σ of products 4k..4k+3), as two `int32x4_t`.
macro_rules! block_fn {
    ($feat:literal, $block:ident, $unpack:ident, $X:ty, $Y:ty) => {
        #[target_feature(enable = $feat)]
        #[inline]
        fn $block(x: &$X, y: &$Y) -> (int32x4_t, int32x4_t) {
            let (a0, a1) = $unpack(x);
            let (b0, b1) = act_pair(&y.qs);
            (dot16(vdupq_n_s32(0), a0, b0), dot16(vdupq_n_s32(0), a1, b1))
        }
    };
}

pub(super) use {block_fn, dot32_fn, dot32x4_fn, dot_float, neon_kernels, sequential};
