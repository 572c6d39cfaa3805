//! The prefill matrix product at every kernel level this CPU has, side by side: for
//! each weight type, one batch of vectors against a random matrix, timed per level
//! (best of a few runs), with a check that every level gives the scalar level's bits.
//!
//! `cargo run --release --example prefill_levels -- [ROWS] [COLS] [VECTORS] [RUNS]`
//! (defaults 256 × 2048, 64 vectors, 5 runs; 1 thread). Meant for a quick look on a
//! board (or under qemu, where the times say little about real hardware).

use std::time::Instant;

use tramontane::gguf::GgmlType;
use tramontane::kernels::{self, act_type, Acts, KernelLevel, Threads, Weight, WeightLayout};

/// Pseudo-random data: a mixing hash of a counter, the same on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
}

/// Random blocks of `ty` with every f16 scale set to a small normal value, so that no
/// product overflows.
fn random_matrix(
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let row = ty
        .row_bytes(cols as u64)
        .ok_or("COLS is not a whole number of blocks")?;
    let bytes = usize::try_from(row)? * rows;
    let mut m: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
    let small = half::f16::from_f32(0.01).to_le_bytes();
    // Where each type keeps its f16 scales (`d`, and `dmin` for Q4_K).
    let scales: &[usize] = match ty {
        GgmlType::Q4_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[0],
    };
    for b in m.chunks_exact_mut(usize::try_from(ty.block_bytes())?) {
        for &at in scales {
            if let Some(s) = b.get_mut(at..at + 2) {
                s.copy_from_slice(&small);
            }
        }
    }
    Ok(m)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| -> Result<usize, std::num::ParseIntError> {
        args.next().map_or(Ok(default), |s| s.parse())
    };
    let (rows, cols, nv, runs) = (arg(256)?, arg(2048)?, arg(64)?, arg(5)?.max(1));
    if cols % 256 != 0 || rows == 0 || nv == 0 {
        return Err("COLS must be a multiple of 256; ROWS and VECTORS at least 1".into());
    }
    let threads = Threads::single();
    let mut rng = Rng(0);
    println!("{rows} x {cols} weights, {nv} vectors, 1 thread, best of {runs} runs; this CPU's level: {}", kernels::cpu_features());
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
    ] {
        let data = random_matrix(&mut rng, ty, rows, cols)?;
        let x: Vec<f32> = (0..cols * nv)
            .map(|_| (rng.next() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let mut acts = Acts::new(cols, nv);
        acts.quantize(act_type(ty).ok_or("no activation type")?, &x, cols)?;
        let w = Weight {
            name: "w",
            ty,
            cols,
            rows,
            data: &data,
            layout: WeightLayout::File,
        };
        let mut reference: Option<(f64, Vec<f32>)> = None;
        for level in KernelLevel::ALL {
            // Levels this CPU lacks are an error: skip them.
            let Ok(k) = kernels::kernels(level) else {
                continue;
            };
            let mut out = vec![0.0f32; rows * nv];
            let mut best = f64::MAX;
            for _ in 0..runs {
                let t = Instant::now();
                k.matmul(&w, &acts, &mut out, &threads)?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gmac = (rows * cols * nv) as f64 / best / 1e9;
            let (vs, same) = match &reference {
                None => {
                    reference = Some((best, out.clone()));
                    (1.0, true)
                }
                Some((t0, r)) => (
                    t0 / best,
                    r.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                ),
            };
            println!(
                "{ty:<5} {:<10} {:>9.2} ms {gmac:>7.2} GMAC/s {vs:>6.2}x scalar  {}",
                level.name(),
                best * 1e3,
                if same { "same bits" } else { "DIFFERENT BITS" }
            );
            if !same {
                return Err(format!("{ty} at {level}: not the scalar level's bits").into());
            }
        }
    }
    Ok(())
}
