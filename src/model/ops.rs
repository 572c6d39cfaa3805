//! Small element-wise operations of the forward pass, written to follow ggml's CPU
//! code operation for operation where it matters for parity with llama.cpp (double
//! accumulation in RMS norm and softmax, the iterative RoPE angle, the f16 GELU table).
//! They cost little next to the matrix multiplications.

use alloc::vec::Vec;

use half::f16;

use crate::kernels::scalar::fma;

/// The C library's math functions with `std` (what llama.cpp calls, so the results
/// agree to the last bit), `libm`'s otherwise.
mod math {
    #[cfg(feature = "std")]
    macro_rules! pick {
        ($name:ident, $std:ident) => {
            #[inline]
            pub fn $name(x: f32) -> f32 {
                x.$std()
            }
        };
    }
    #[cfg(not(feature = "std"))]
    macro_rules! pick {
        ($name:ident, $std:ident) => {
            #[inline]
            pub fn $name(x: f32) -> f32 {
                libm::$name(x)
            }
        };
    }
    pick!(expf, exp);
    pick!(tanhf, tanh);
    pick!(cosf, cos);
    pick!(sinf, sin);

    #[inline]
    pub fn powf(x: f32, y: f32) -> f32 {
        #[cfg(feature = "std")]
        {
            x.powf(y)
        }
        #[cfg(not(feature = "std"))]
        {
            libm::powf(x, y)
        }
    }
}

pub use math::tanhf;

/// Round to the nearest f16 and back (`GGML_CPU_FP32_TO_FP16` then `FP16_TO_FP32`):
/// the GELU reference of the tests.
#[cfg(test)]
#[inline]
pub fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// `x ← x / sqrt(mean(x²) + eps) · w` (ggml `rms_norm` then `mul`): the sum of
/// squares is accumulated in f64 as ggml does.
pub fn rms_norm(x: &mut [f32], w: Option<&[f32]>, eps: f32) {
    let n = x.len();
    if n == 0 {
        return;
    }
    let mut sum = 0.0f64;
    for &v in x.iter() {
        sum += f64::from(v * v);
    }
    let mean = (sum / n as f64) as f32;
    let scale = 1.0f32 / libm::sqrtf(mean + eps);
    match w {
        Some(w) => {
            for (v, &g) in x.iter_mut().zip(w) {
                *v = (*v * scale) * g;
            }
        }
        None => {
            for v in x.iter_mut() {
                *v *= scale;
            }
        }
    }
}

/// `out ← rms_norm(x) · w`, out of place.
pub fn rms_norm_to(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    out.copy_from_slice(x);
    rms_norm(out, Some(w), eps);
}

/// RoPE angles of one position: `cs[i] = (cos θᵢ, sin θᵢ)` for `i < n_rot/2`, with
/// ggml's `ggml_rope_cache_init` arithmetic: `θ₀ = p`, `θᵢ₊₁ = θᵢ · base^(-2/n_rot)`,
/// each divided by its frequency factor and multiplied by `freq_scale`.
pub fn rope_cache(
    cs: &mut [(f32, f32)],
    pos: usize,
    n_rot: usize,
    freq_base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
) {
    let theta_scale = math::powf(freq_base, -2.0f32 / n_rot as f32);
    let mut theta = pos as f32;
    for (i, slot) in cs.iter_mut().enumerate() {
        let ff = freq_factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
        let t = freq_scale * (theta / ff);
        *slot = (math::cosf(t), math::sinf(t));
        theta *= theta_scale;
    }
}

/// Rotate one head of `n_rot` dimensions in place. `neox` pairs `(i, i + n_rot/2)`,
/// otherwise `(2i, 2i + 1)`.
#[inline(always)]
pub fn rope_head(x: &mut [f32], cs: &[(f32, f32)], neox: bool) {
    let half = cs.len();
    if neox {
        let (a, b) = x.split_at_mut(half);
        for ((x0, x1), &(c, s)) in a.iter_mut().zip(b.iter_mut()).zip(cs) {
            let (v0, v1) = (*x0, *x1);
            *x0 = fma(v0, c, -(v1 * s));
            *x1 = fma(v0, s, v1 * c);
        }
    } else {
        for (pair, &(c, s)) in x.chunks_exact_mut(2).zip(cs) {
            if let [x0, x1] = pair {
                let (v0, v1) = (*x0, *x1);
                *x0 = fma(v0, c, -(v1 * s));
                *x1 = fma(v0, s, v1 * c);
            }
        }
    }
}

/// ggml's `ggml_gelu_f32` (tanh approximation).
#[inline]
fn gelu_f32(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    // llama.cpp's build (GCC, FMA enabled) contracts `1 + a·x·x` into one fused
    // multiply-add; the table entries depend on it.
    0.5 * x * (1.0 + math::tanhf(SQRT_2_OVER_PI * x * fma(GELU_COEF_A * x, x, 1.0)))
}

/// The largest magnitude the GELU table holds, as f16 bits: 10.0.
const GELU_MAX_BITS: u16 = 0x4900;

/// Entries of the GELU table per sign: the f16 magnitudes `0 ..= 10`.
const GELU_HALF: usize = GELU_MAX_BITS as usize + 1;

/// ggml's GELU table (`GGML_GELU_FP16`): `gelu(x)` rounded to f16 for the f16 values
/// `x` in `[−10, 10]`, the only ones [`GeluTable::geglu_with`] looks up (below −10 the
/// result is 0, above 10 it is `x`), stored as f16 bits, the positive values then the
/// negative ones: 73 KiB, where ggml's table (every f16, as f32) takes 256 KiB. The
/// lookups of one layer are scattered over the table, and the weights streamed between
/// two layers evict it from the caches; the smaller table leaves fewer lines to fetch
/// again. Built once per model.
#[derive(Clone)]
pub struct GeluTable(Vec<u16>);

impl core::fmt::Debug for GeluTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("GeluTable")
    }
}

impl GeluTable {
    /// Build the table.
    pub fn new() -> GeluTable {
        GeluTable(
            (0..2 * GELU_HALF)
                .map(|i| match i.checked_sub(GELU_HALF) {
                    // (Both fit in 16 bits: `i < 2 · 0x4901`.)
                    None => Self::entry(i as u16),
                    Some(m) => Self::entry(0x8000 | m as u16),
                })
                .collect(),
        )
    }

    /// An empty table, for architectures without GELU.
    pub fn empty() -> GeluTable {
        GeluTable(Vec::new())
    }

    /// ggml's table entry for the f16 `bits`: `gelu` of that value, rounded to f16.
    fn entry(bits: u16) -> u16 {
        f16::from_f32(gelu_f32(f16::from_bits(bits).to_f32())).to_bits()
    }

    /// The entry for the f16 `bits` (the input of a lookup): from the table within
    /// `[−10, 10]`; a NaN's computed (a NaN); 0 for the other values, whose result the
    /// caller takes elsewhere (`x ≤ −10` or `x ≥ 10`).
    #[inline(always)]
    fn lookup(&self, bits: u16) -> u16 {
        let mag = bits & 0x7fff;
        if mag <= GELU_MAX_BITS {
            let i = usize::from(mag) + if bits & 0x8000 != 0 { GELU_HALF } else { 0 };
            self.0.get(i).copied().unwrap_or(0)
        } else if mag > 0x7c00 {
            Self::entry(bits)
        } else {
            0
        }
    }

    /// ggml's `ggml_vec_geglu_f32`: 0 below −10, `x` above 10, in between `gelu` of
    /// the input rounded to f16, rounded to f16 (computed, not looked up). The reference
    /// for [`GeluTable::geglu_with`].
    #[cfg(test)]
    #[inline]
    pub fn gelu(x: f32) -> f32 {
        if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            round_f16(gelu_f32(round_f16(x)))
        }
    }

    /// `gate ← gelu(gate) · up` (ggml `geglu_split`), one value at a time: the reference
    /// for [`GeluTable::geglu_with`].
    #[cfg(test)]
    pub fn geglu(gate: &mut [f32], up: &[f32]) {
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = if *g <= -10.0 { 0.0 } else { Self::gelu(*g) * u };
        }
    }

    /// `GeluTable::geglu` (kept for the tests) with the table: the inputs rounded to
    /// f16 by `to_f16` and the entries widened by `widen` (the kernel table's row
    /// conversions, 64 values at a time) instead of one at a time. The same values, so
    /// the same results (a NaN input gives a NaN either way).
    pub fn geglu_with(
        &self,
        to_f16: impl Fn(&[f32], &mut [u8]),
        widen: impl Fn(&[u8], &mut [f32]),
        gate: &mut [f32],
        up: &[f32],
    ) {
        const N: usize = 64;
        let mut bits = [0u8; 2 * N];
        let mut ents = [0u8; 2 * N];
        let mut vals = [0.0f32; N];
        for (g, u) in gate.chunks_mut(N).zip(up.chunks(N)) {
            let n = g.len();
            to_f16(g, &mut bits);
            for (h, e) in bits.chunks_exact(2).zip(ents.chunks_exact_mut(2)).take(n) {
                let v = self.lookup(u16::from_le_bytes([h[0], h[1]]));
                e.copy_from_slice(&v.to_le_bytes());
            }
            widen(&ents[..2 * n], &mut vals[..n]);
            for ((g, &u), &t) in g.iter_mut().zip(u).zip(&vals) {
                let x = *g;
                *g = if x <= -10.0 {
                    0.0
                } else if x >= 10.0 {
                    x * u
                } else {
                    t * u
                };
            }
        }
    }
}

/// `gate ← silu(gate) · up` (ggml `swiglu_split`) for one row: `silu(x) = x / (1 +
/// e^-x)` with ggml's vectorised `expf` ([`crate::kernels::ops::v_expf`]) for whole
/// groups of 16, the C library's for a tail, as `ggml_vec_swiglu_f32` with AVX-512.
///
/// Inlined into the kernel table's entries ([`crate::kernels::Kernels::swiglu_row`]),
/// compiled once portably and once with FMA (the fused multiply-adds of `v_expf` are
/// then instructions, not calls); both give the same bits.
#[inline(always)]
pub fn swiglu_row(gate: &mut [f32], up: &[f32]) {
    let whole = gate.len() - gate.len() % 16;
    let (head, tail) = gate.split_at_mut(whole);
    let (up_head, up_tail) = up.split_at(whole.min(up.len()));
    // Two loops, not one with a branch: in one loop the compiler evaluated both
    // exponentials for every value (the C library's as a call) and selected.
    for (g, &u) in head.iter_mut().zip(up_head) {
        let x = *g;
        *g = (x / (1.0 + crate::kernels::ops::v_expf(0.0 - x))) * u;
    }
    for (g, &u) in tail.iter_mut().zip(up_tail) {
        let x = *g;
        *g = (x / (1.0 + math::expf(-x))) * u;
    }
}

/// `x ← x + b`.
pub fn add(x: &mut [f32], b: &[f32]) {
    for (v, &a) in x.iter_mut().zip(b) {
        *v += a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_neox_and_norm_rotate_pairs() {
        let mut cs = [(0.0, 0.0); 2];
        rope_cache(&mut cs, 1, 4, 10000.0, 1.0, None);
        assert!((cs[0].0 - 1f32.cos()).abs() < 1e-6);
        let mut x = [1.0, 0.0, 0.0, 0.0];
        rope_head(&mut x, &cs, false);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        let mut y = [1.0, 0.0, 0.0, 0.0];
        rope_head(&mut y, &cs, true);
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rms_norm_unit() {
        let mut x = [3.0, 4.0];
        rms_norm(&mut x, None, 0.0);
        let r = (12.5f32).sqrt();
        assert!((x[0] - 3.0 / r).abs() < 1e-6);
    }

    #[test]
    fn gelu_matches_tanh_formula_within_f16() {
        for i in -150..150 {
            let x = i as f32 * 0.1;
            let exact = gelu_f32(x);
            assert!(
                (GeluTable::gelu(x) - exact).abs() <= 2e-3 * (1.0 + exact.abs()),
                "{x}"
            );
        }
        assert_eq!(GeluTable::gelu(-10.0), 0.0);
        assert_eq!(GeluTable::gelu(12.0), 12.0);
    }

    /// Every f16 value (and values between them, and past ±10) through the table gives
    /// the bits of the computed reference.
    #[test]
    fn geglu_with_the_table_gives_the_same_bits() {
        let t = GeluTable::new();
        let mut g: Vec<f32> = (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect();
        g.extend((0..3001).map(|i| (i as f32 - 1500.0) * 0.00731));
        g.extend([
            9.999, 10.001, -9.999, -10.001, 10.0, -10.0, 65504.0, -70000.0,
        ]);
        let u: Vec<f32> = (0..g.len())
            .map(|i| 1.0 + (i % 301) as f32 * 0.01)
            .collect();
        let (mut a, mut b) = (g.clone(), g.clone());
        GeluTable::geglu(&mut a, &u);
        t.geglu_with(
            crate::kernels::ops::f32_to_f16_row,
            crate::kernels::ops::f16_to_f32_row,
            &mut b,
            &u,
        );
        for ((x, y), g) in a.iter().zip(&b).zip(&g) {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "gate {g}: {x} against {y}"
            );
        }
    }
}
