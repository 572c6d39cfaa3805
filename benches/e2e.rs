//! End to end on the real models, with llama.cpp's figures from the same run (issue 4's
//! speed table; the full side-by-side with cold starts, the 512-token prompt, peak RSS
//! and bandwidth is benches/vs_llama_cpp.rs).
//!
//! ```text
//! scripts/bench-vs-llama.sh --bench e2e
//! cargo bench --features llama-cpp --bench e2e
//! ```
//!
//! For each real model and thread count, ours and llama.cpp alternately
//! (`TRAMONTANE_BENCH_PAIRS` pairs, default 3), same token ids:
//! - prefill tok/s of a 128-token prompt (one batch);
//! - decode tok/s over 128 greedy tokens after a 16-token prompt;
//! - time to first token: from opening the file (`Model::open`; llama.cpp: model load
//!   and context creation) to the argmax of the 128-token prompt's last logits, with
//!   the file in the page cache (warm; the cold figure is vs_llama_cpp's).
//!
//! Knobs as vs_llama_cpp: `TRAMONTANE_BENCH_THREADS`, `TRAMONTANE_BENCH_MODELS`,
//! `TRAMONTANE_MODELS_DIR`. Output: a markdown table printed and written to
//! target/e2e.md.

mod common;

use std::path::Path;

use common::*;
use llama_cpp_2::llama_batch::LlamaBatch;

const PROMPT: usize = 128;
const DECODE_PROMPT: usize = 16;
const DECODE_N: usize = 128;

struct Row {
    model: &'static str,
    threads: usize,
    /// (ours, llama.cpp) per pair.
    prefill: Vec<(f64, f64)>,
    decode: Vec<(f64, f64)>,
    ttft_ms: Vec<(f64, f64)>,
}

fn main() -> Res<()> {
    let cfg = Config::from_env(3)?;
    let started = today();
    let load_before = loadavg();
    let backend = llama_backend()?;
    let mut rows = Vec::new();
    for (name, path) in &cfg.models {
        for &t in &cfg.threads {
            rows.push(measure(&backend, name, path, t, cfg.pairs)?);
        }
    }
    let load_after = loadavg();

    let ratio = |v: &[(f64, f64)]| median(&v.iter().map(|(a, b)| a / b).collect::<Vec<_>>());
    let ours = |v: &[(f64, f64)]| median(&v.iter().map(|p| p.0).collect::<Vec<_>>());
    let theirs = |v: &[(f64, f64)]| median(&v.iter().map(|p| p.1).collect::<Vec<_>>());
    let mut s = format!("### End to end, tramontane and llama.cpp, {started}\n\n");
    s += &format!(
        "Machine: {}; load average {load_before} at the start, {load_after} at the end. \
         Ours: {}, kernel level {:?}{}. Medians of {} interleaved pairs; ratio = median of per-pair \
         ratios ours / llama.cpp (tok/s: higher is better; time: lower is better).\n\n",
        cpu_model(),
        source_state(),
        tramontane::cpu_features(),
        ours_options(),
        cfg.pairs
    );
    s += "| model | threads | prefill 128 tok/s (ours / llama.cpp) | ratio | decode tok/s (ours / llama.cpp) | ratio | first token ms, warm (ours / llama.cpp) | ratio |\n";
    s += "|---|--:|--:|--:|--:|--:|--:|--:|\n";
    for r in &rows {
        s += &format!(
            "| {} | {} | {} / {} | {}× | {} / {} | {}× | {} / {} | {}× |\n",
            r.model,
            r.threads,
            fmt(ours(&r.prefill), 1),
            fmt(theirs(&r.prefill), 1),
            fmt(ratio(&r.prefill), 2),
            fmt(ours(&r.decode), 1),
            fmt(theirs(&r.decode), 1),
            fmt(ratio(&r.decode), 2),
            fmt(ours(&r.ttft_ms), 0),
            fmt(theirs(&r.ttft_ms), 0),
            fmt(ratio(&r.ttft_ms), 2),
        );
    }
    println!("\n{s}");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("e2e.md"), &s)?;
    eprintln!("wrote {}", target.join("e2e.md").display());
    Ok(())
}

fn measure(
    backend: &llama_cpp_2::llama_backend::LlamaBackend,
    name: &'static str,
    path: &Path,
    threads: usize,
    pairs: usize,
) -> Res<Row> {
    eprintln!("{name}, {threads} thread(s)");
    let mut ours = Ours::open(path, threads, PROMPT)?;
    let ids = prompt_ids(&ours.model, PROMPT)?;
    let ids_dec = &ids[..DECODE_PROMPT];
    let (l_ids, l_dec) = (to_llama(&ids), to_llama(ids_dec));
    let lmodel = llama_load(backend, path)?;
    let mut lctx = llama_ctx(backend, &lmodel, threads, PROMPT)?;
    let mut batch = LlamaBatch::new(PROMPT, 1);
    ours.prefill(&ids[..32])?;
    ours.decode(ids_dec, 4)?;
    llama_prefill(&mut lctx, &mut batch, &l_ids[..32])?;
    llama_decode(&mut lctx, &mut batch, &l_dec, 4)?;

    let mut row = Row {
        model: name,
        threads,
        prefill: Vec::new(),
        decode: Vec::new(),
        ttft_ms: Vec::new(),
    };
    for p in 0..pairs {
        let o = tok_s(PROMPT, ours.prefill(&ids)?);
        let l = tok_s(PROMPT, llama_prefill(&mut lctx, &mut batch, &l_ids)?);
        row.prefill.push((o, l));
        let o = tok_s(DECODE_N, ours.decode(ids_dec, DECODE_N)?.0);
        let l = tok_s(
            DECODE_N,
            llama_decode(&mut lctx, &mut batch, &l_dec, DECODE_N)?.0,
        );
        row.decode.push((o, l));
        let o = ours_first_token(path, threads, &ids)?.0.as_secs_f64() * 1e3;
        let l = llama_first_token(backend, path, threads, &l_ids)?
            .0
            .as_secs_f64()
            * 1e3;
        row.ttft_ms.push((o, l));
        eprintln!(
            "  pair {p}: prefill {:.1} | {:.1} tok/s, decode {:.1} | {:.1} tok/s, first token {:.0} | {:.0} ms (ours | llama.cpp)",
            row.prefill[p].0, row.prefill[p].1, row.decode[p].0, row.decode[p].1, row.ttft_ms[p].0, row.ttft_ms[p].1
        );
    }
    Ok(row)
}
