//! Time the prefill of an N-token prompt as one batch (a quick probe for kernel work).
//!
//! `cargo run --release --example prefill -- MODEL [THREADS] [TOKENS] [RUNS]`
//! prints one line per run: tokens, milliseconds, tokens per second. A short warm-up
//! prompt is evaluated first so that the mapped weights are resident.

use std::time::Instant;

use tramontane::{Model, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: prefill MODEL [THREADS] [TOKENS] [RUNS]")?;
    let threads: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let n: usize = args.next().map_or(Ok(512), |s| s.parse())?;
    let runs: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let model = Model::open(&path)?;
    let opts = SessionOptions {
        context_len: 1024.max(n + 16),
        threads,
        batch_size: n.max(1),
        ..Default::default()
    };
    let mut session = model.session(opts)?;
    let text = "The quick brown fox jumps over the lazy dog, and then it runs into the \
                forest where the trees are tall and the rivers are cold. ";
    let mut tokens = session.tokenize(&text.repeat(1 + n / 8), true)?;
    tokens.truncate(n);
    session.feed(tokens.get(..16.min(tokens.len())).unwrap_or(&[]))?;
    for _ in 0..runs {
        session.reset();
        let t = Instant::now();
        session.feed(&tokens)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{} tokens {ms:.1} ms {:.1} tok/s",
            tokens.len(),
            tokens.len() as f64 * 1e3 / ms
        );
    }
    // A digest of the logits after the prompt and after 8 greedy decode steps, to check
    // that two builds compute the same bits.
    let mut digest = 0u64;
    let mut mix = |l: &[f32]| {
        for v in l {
            digest = (digest ^ u64::from(v.to_bits())).wrapping_mul(0x100_0000_01b3);
        }
    };
    let mut last = session.logits().ok_or("no logits")?.to_vec();
    mix(&last);
    for _ in 0..8 {
        let next = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .ok_or("empty logits")?;
        last = session.decode_one(next as u32)?.to_vec();
        mix(&last);
    }
    println!("logits digest {digest:016x}");
    Ok(())
}
