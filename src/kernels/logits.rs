//! The sampler's passes over the whole vocabulary: the largest logit and one token's
//! log-probability (`l − log Σ e^logit`). Every sampled token carries its
//! log-probability, so these run once per token over 32k–262k logits.
//!
//! The bodies are portable code written so that the compiler vectorizes it (same
//! operations on every value and lane, no fused multiply-adds: Rust never contracts a
//! multiply and an add), and the x86-64 tables compile the same bodies for AVX2. Every
//! level therefore gives the same bits; the level in use ([`super::cpu_features`],
//! `TRAMONTANE_KERNELS`) picks the code, as for the model's kernels.

/// The largest logit, NaN skipped (comparisons with it are false); −∞ if there is none.
#[inline(always)]
pub(crate) fn max_logit_body(logits: &[f32]) -> f32 {
    // Whole blocks of 8, then the tail: with `chunks(8)` the compiler kept the lanes in
    // memory and stored them masked every block.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = logits.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    for (m, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *m = if v > *m { v } else { *m };
    }
    lanes
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// `l − log Σ e^logit`, given `max`, the largest logit ([`max_logit_body`]).
#[inline(always)]
pub(crate) fn log_softmax_body(logits: &[f32], l: f32, max: f32) -> f32 {
    // Exponentials in f32 with a polynomial the compiler vectorizes, summed in f64 in 8
    // lanes (value `i` into lane `i % 8`: eight independent chains of adds instead of
    // one), the lanes added pairwise at the end.
    let mut acc = [0.0f64; 8];
    let mut chunks = logits.chunks_exact(8);
    for chunk in &mut chunks {
        let mut e = [0.0f32; 8];
        for (e, &v) in e.iter_mut().zip(chunk) {
            *e = exp_le0(v - max);
        }
        for (a, &e) in acc.iter_mut().zip(&e) {
            *a += f64::from(e);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f64::from(exp_le0(v - max));
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    let sum = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
    l - max - libm::log(sum) as f32
}

/// `e^x` for `x ≤ 0` (relative error < 3e-7; 0 below -87 and for NaN), without branches
/// or saturating casts so that a loop over it vectorizes: `x = n·ln2 + r` with
/// `|r| ≤ ln2/2`, `n` rounded to nearest by adding and subtracting 1.5·2²³ (which also
/// leaves `n` in the low bits of the sum), `e^r` by its degree-6 Taylor polynomial,
/// `2^n` through the exponent bits.
#[inline(always)]
pub(crate) fn exp_le0(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0;
    let keep = x >= -87.0; // false for NaN
    let x = if keep { x.min(0.0) } else { -87.0 };
    // x·log2(e) is in [-125.6, 0]: the sum is exact to the unit, `n` = its low bits.
    let m = x * core::f32::consts::LOG2_E + ROUND;
    let nf = m - ROUND;
    let n = (m.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n ≥ -126: a normal power of two.
    let scale = f32::from_bits((n.wrapping_add(127) as u32) << 23);
    let keep_bits = if keep { u32::MAX } else { 0 };
    f32::from_bits((p * scale).to_bits() & keep_bits)
}

/// The portable entries (the scalar and aarch64 tables; NEON is the aarch64 baseline,
/// so they vectorize there as they are).
pub(crate) fn max_logit(logits: &[f32]) -> f32 {
    max_logit_body(logits)
}

/// See [`max_logit`].
pub(crate) fn log_softmax_at(logits: &[f32], l: f32, max: f32) -> f32 {
    log_softmax_body(logits, l, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn exp_le0_is_close_to_exp() {
        let mut x = 0.0f32;
        while x >= -87.0 {
            let want = libm::exp(f64::from(x));
            let got = f64::from(exp_le0(x));
            assert!(
                (got - want).abs() <= 3e-7 * want + 1e-38,
                "e^{x}: {got} vs {want}"
            );
            x -= 0.0123;
        }
        assert_eq!(exp_le0(0.0), 1.0);
        assert_eq!(exp_le0(-88.0), 0.0);
        assert_eq!(exp_le0(f32::NAN), 0.0);
        assert_eq!(exp_le0(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn every_level_gives_the_same_bits() {
        // Each available level's table against the portable bodies, over lengths around
        // the 8 lanes and logits below the −87 cut.
        for level in crate::kernels::KernelLevel::ALL {
            let Ok(k) = crate::kernels::kernels(level) else {
                continue;
            };
            for n in [1usize, 7, 8, 9, 33, 4099] {
                let logits: Vec<f32> = (0..n)
                    .map(|i| ((i.wrapping_mul(2_654_435_761) % 20001) as f32 - 10000.0) / 97.0)
                    .collect();
                let max = k.max_logit(&logits);
                assert_eq!(max.to_bits(), max_logit_body(&logits).to_bits(), "{level}");
                for id in [0, n / 3, n - 1] {
                    let l = logits[id];
                    let a = k.log_softmax_at(&logits, l, max);
                    let b = log_softmax_body(&logits, l, max);
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{level} n {n} id {id}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
