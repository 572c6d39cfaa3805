//! The f32 operators of the forward pass, with ggml's arithmetic (`ggml-cpu/ops.cpp`,
//! `vec.h`, `vec.cpp`).
//!
//! Where ggml's CPU code has one exact definition (the portable C path), these follow
//! it operation for operation, without fused multiply-adds. Where ggml's result depends
//! on the ISA it was built for (its SIMD `exp` approximation in softmax and SiLU), these
//! use ggml's portable scalar formula with a correctly rounded libm, identically on every
//! target. Notes per function.
//!
//! These functions take slices whose lengths should agree; they never panic: when
//! lengths differ, they work on the common prefix (documented per function).

use libm::{cosf, expf, powf, sinf, sqrtf, tanhf};

/// ggml's `rms_norm` (then `mul` by `weight`, if given):
/// `out_i = (x_i · scale) · w_i` with `scale = 1 / sqrtf(mean + eps)`, where the mean of
/// squares is summed in f64 over f32 squares (`ggml_float`) and rounded to f32.
///
/// Works on `min(out.len(), x.len(), weight.len())` values, and takes the mean over
/// `x.len()` values.
pub fn rms_norm(out: &mut [f32], x: &[f32], weight: Option<&[f32]>, eps: f32) {
    if x.is_empty() {
        return;
    }
    let mut sum = 0.0f64;
    for &v in x {
        sum += f64::from(v * v);
    }
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / sqrtf(mean + eps);
    match weight {
        Some(w) => {
            for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
                *o = (v * scale) * w;
            }
        }
        None => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v * scale;
            }
        }
    }
}

/// ggml's `soft_max` (after any scaling and masking, which the caller applies):
/// `max` by ggml's `MAX` comparison, `e_i = expf(x_i − max)` summed in f64, then every
/// `e_i` multiplied by `(f32)(1 / sum)`.
///
/// ggml's x86/ARM builds compute most `e_i` with their SIMD `ggml_v_expf`
/// approximation (≤ 1 ulp from `expf`); this uses `expf` for all, as ggml's portable
/// path does. An empty slice is left as is.
pub fn softmax_inplace(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let mut max = f32::NEG_INFINITY;
    for &v in x.iter() {
        max = if max > v { max } else { v };
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        let e = expf(*v - max);
        sum += f64::from(e);
        *v = e;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// ggml's `rope` for one position over `n_heads` heads of `head_dim` values laid out one
/// after the other, rotating the first `n_rot` dimensions of each head.
///
/// As ggml's rope cache: `theta_scale = powf(freq_base, −2/n_rot)`, `theta_0 = pos`,
/// `theta_{k+1} = theta_k · theta_scale` (f32, iteratively), angle
/// `freq_scale · theta_k`, `cos`/`sin` in f32. Pair `k` is `(2k, 2k+1)` (normal) or
/// `(k, k + n_rot/2)` (NeoX); `(x0, x1) → (x0·c − x1·s, x0·s + x1·c)`. No YaRN
/// (`ext_factor = 0`, `attn_factor = 1`), no frequency factors.
///
/// `n_rot` is clamped to `head_dim` and rounded down to even; only whole heads inside
/// `x` are touched.
#[allow(clippy::too_many_arguments)]
pub fn rope_inplace(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    n_rot: usize,
    pos: usize,
    freq_base: f32,
    freq_scale: f32,
    neox: bool,
) {
    let n_rot = n_rot.min(head_dim) & !1;
    if n_rot == 0 || head_dim == 0 {
        return;
    }
    let n_heads = n_heads.min(x.len() / head_dim);
    let theta_scale = powf(freq_base, -2.0f32 / n_rot as f32);
    let mut theta = pos as f32;
    let half = n_rot / 2;
    for k in 0..half {
        let angle = freq_scale * theta;
        let (c, s) = (cosf(angle), sinf(angle));
        theta *= theta_scale;
        let (i0, i1) = if neox {
            (k, k + half)
        } else {
            (2 * k, 2 * k + 1)
        };
        for head in x.chunks_exact_mut(head_dim).take(n_heads) {
            if let (Some(&x0), Some(&x1)) = (head.get(i0), head.get(i1)) {
                head[i0] = x0 * c - x1 * s;
                head[i1] = x0 * s + x1 * c;
            }
        }
    }
}

/// ggml's `silu`: `x / (1 + expf(−x))` (its portable formula; see the module docs).
pub fn silu_inplace(x: &mut [f32]) {
    for v in x {
        *v = *v / (1.0f32 + expf(-*v));
    }
}

const GELU_COEF_A: f32 = 0.044715;
#[allow(clippy::excessive_precision)]
const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_355_879_892_119_868_76;

/// ggml's `gelu_f32` formula (tanh approximation), unrounded.
#[inline]
fn gelu_formula(x: f32) -> f32 {
    0.5f32 * x * (1.0f32 + tanhf(SQRT_2_OVER_PI * x * (1.0f32 + GELU_COEF_A * x * x)))
}

/// ggml's CPU GELU (tanh approximation) exactly as built (`GGML_GELU_FP16`): `x ≤ −10 → 0`,
/// `x ≥ 10 → x`, otherwise `x` is rounded to f16 and the result is ggml's table entry,
/// `f16(gelu(f16(x)))`, computed here on the fly instead of from a 128 KiB table.
pub fn gelu_tanh_inplace(x: &mut [f32]) {
    for v in x {
        *v = gelu_one(*v);
    }
}

#[inline]
fn gelu_one(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let h = half::f16::from_f32(x).to_f32();
        half::f16::from_f32(gelu_formula(h)).to_f32()
    }
}

/// `a_i += b_i` over the common length.
pub fn add_inplace(a: &mut [f32], b: &[f32]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += *b;
    }
}

/// `a_i *= b_i` over the common length.
pub fn mul_inplace(a: &mut [f32], b: &[f32]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a *= *b;
    }
}

/// f16 (little-endian bytes, any address) → f32, exact; `min(src.len()/2, dst.len())`
/// values.
///
/// Uses the SIMD level in use (`vcvtph2ps`, `fcvtl`); exact at every level.
pub fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    match super::kernels(super::cpu_features()) {
        Ok(k) => k.f16_to_f32_row(src, dst),
        Err(_) => super::scalar::f16_to_f32_row(src, dst),
    }
}

/// f32 → f16 (round to nearest even, as `GGML_FP32_TO_FP16`), little-endian bytes;
/// `min(src.len(), dst.len()/2)` values.
///
/// Uses the SIMD level in use (`vcvtps2ph`, `fcvtn`); the same bits at every level,
/// except possibly NaN payloads.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
    match super::kernels(super::cpu_features()) {
        Ok(k) => k.f32_to_f16_row(src, dst),
        Err(_) => super::scalar::f32_to_f16_row(src, dst),
    }
}

/// f32 → bf16 as `ggml_compute_fp32_to_bf16` (round to nearest even, NaN → quiet NaN),
/// little-endian bytes; `min(src.len(), dst.len()/2)` values.
pub fn f32_to_bf16_row(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(2)) {
        d.copy_from_slice(&bf16_bits(*s).to_le_bytes());
    }
}

fn bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

pub use super::vec_dot_f16;

/// ggml's vectorised `expf` (`ggml_v_expf`) as llama.cpp's reference build runs it
/// (x86 with AVX-512, where its softmax and SiLU use it), value for value: reduction by
/// `ln 2` with fused multiply-adds, a degree-5 polynomial, `scalef` by the exponent, and
/// 0 / +∞ beyond `|n| > 192`. It is not the C library's `expf`; llama.cpp's attention
/// probabilities and SiLU depend on this one.
///
/// Written without branches (selects only), so that a loop over it vectorises.
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    let (n, j) = exp_parts(x);
    // `scalef(j, n)`: j·2^n rounded once (n is an integer here; the clamp only keeps
    // the exponent in range for the lanes that the selects below replace).
    let k = if n > 193.0 {
        193
    } else if n < -193.0 {
        -193
    } else {
        n as i32
    };
    let scaled = (f64::from(j) * exp2i(k)) as f32;
    let an = if n < 0.0 { -n } else { n };
    let big = if n <= 0.0 { 0.0 } else { f32::INFINITY };
    let r = if n.is_nan() { n } else { scaled };
    if an > 192.0 {
        big
    } else {
        r
    }
}

/// `x = n·ln 2 + b`: the integer `n` (as f32) and the polynomial `j ≈ e^b` of
/// [`v_expf`], before the scaling by `2^n`.
#[inline(always)]
fn exp_parts(x: f32) -> (f32, f32) {
    use super::scalar::fma;
    let c = |bits: u32| f32::from_bits(bits);
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = fma(x, c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = fma(-n, c(0x35bf_be8e), fma(-n, c(0x3f31_7200), x));
    let u = b * b;
    let j = fma(
        fma(
            fma(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            fma(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        fma(c(0x3f7f_fff6), b, 1.0),
    );
    (n, j)
}

/// 2^k as f64 for |k| ≤ 193 (exact).
#[inline(always)]
fn exp2i(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0f32, 2.0, 3.0, -1.0];
        softmax_inplace(&mut x);
        let s: f32 = x.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0] && x[0] > x[3]);
    }

    #[test]
    fn rope_position_zero_is_identity() {
        let mut x: [f32; 8] = core::array::from_fn(|i| i as f32 + 0.5);
        let y = x;
        rope_inplace(&mut x, 2, 4, 4, 0, 10000.0, 1.0, false);
        assert_eq!(x, y);
        rope_inplace(&mut x, 2, 4, 4, 0, 10000.0, 1.0, true);
        assert_eq!(x, y);
    }

    #[test]
    fn gelu_edges() {
        let mut x = [-11.0f32, 11.0, 0.0, 1.0];
        gelu_tanh_inplace(&mut x);
        assert_eq!(x[0], 0.0);
        assert_eq!(x[1], 11.0);
        assert_eq!(x[2], 0.0);
        assert!((x[3] - 0.8413).abs() < 1e-3);
    }

    /// `v_expf` as first written (with branches where it now selects): the select form
    /// must equal it.
    fn v_expf_branchy(x: f32) -> f32 {
        let (n, j) = exp_parts(x);
        let an = if n < 0.0 { -n } else { n };
        if an > 192.0 {
            return if n <= 0.0 { 0.0 } else { f32::INFINITY };
        }
        if n.is_nan() {
            return n;
        }
        (f64::from(j) * exp2i(n as i32)) as f32
    }

    #[test]
    fn v_expf_select_form_equals_branches() {
        let mut u = 0u32;
        loop {
            let x = f32::from_bits(u);
            let (a, b) = (v_expf(x), v_expf_branchy(x));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{x:e}"
            );
            let Some(next) = u.checked_add(997) else {
                break;
            };
            u = next;
        }
    }

    #[test]
    fn bf16_rounding() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie → even
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
    }
}
