//! tramontane against llama.cpp, side by side in one process (issue 9's measurement).
//!
//! ```text
//! scripts/bench-vs-llama.sh                        # the committed command (build flags, docs copy)
//! cargo bench --features llama-cpp --bench vs_llama_cpp
//! ```
//!
//! For each real model and thread count, ours and llama.cpp run alternately (ours,
//! llama.cpp, ours, llama.cpp, … `TRAMONTANE_BENCH_PAIRS` pairs, default 5) on the same
//! token ids, after the file has been dropped from the page cache and read in again by
//! our open (so that both engines map the same page-cache folios, whatever read the
//! file last):
//! - prefill tok/s of a 128-token and of a 512-token prompt, each one batch;
//! - decode tok/s over 128 greedy tokens, one per call, after a 16-token prompt, and
//!   after the 512-token prompt (a longer context: positions 512 to 639, where the
//!   attention over the cache takes a larger part of each token);
//! - the time from opening the file (`Model::open`; llama.cpp: model load + context
//!   creation) to the first generated token of a 64-token prompt, cold: the file is
//!   dropped from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`) before each
//!   run, and the pages still resident afterwards are counted with `mincore`;
//! - peak RSS (VmHWM) of each engine in a child process (this binary re-executed with
//!   `--rss-child`): the 512-token prompt as one batch and 16 decoded tokens, at the
//!   highest thread count (`TRAMONTANE_BENCH_RSS_PAIRS` pairs, default 3).
//!
//! The machine's read bandwidth (a read-only sum over 1 GiB with the kernels' loads,
//! as benches/kernels.rs) is measured at the start and at the end of the run, and right
//! before each pair's decode runs. The decode rate is turned into GB/s of weights read
//! (bytes of weights touched per token × tok/s), and its share of the bandwidth is the
//! median over the pairs of the decode GB/s over the bandwidth measured just before
//! (the load of a shared machine drifts over the minutes between the start and the
//! end). Other knobs: `TRAMONTANE_BENCH_THREADS` (default `1,2`),
//! `TRAMONTANE_BENCH_MODELS` (file-name substrings), `TRAMONTANE_MODELS_DIR`,
//! `TRAMONTANE_PLOT_FONT` (a TTF file for the plot's text), and
//! `TRAMONTANE_BENCH_REPACK=1`: our engine with its weights repacked after each open
//! (`Model::repack_weights`, an opt-in; its time and memory count in the figures).
//!
//! Output: a markdown table printed and written to target/vs_llama_cpp.md, and a PNG
//! plot in target/vs_llama_cpp.png (scripts/bench-vs-llama.sh copies it to docs/).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use llama_cpp_2::llama_batch::LlamaBatch;

const PREFILL_SHORT: usize = 128;
const PREFILL_LONG: usize = 512;
const DECODE_PROMPT: usize = 16;
const DECODE_N: usize = 128;
const TTFT_PROMPT: usize = 64;
const RSS_DECODE: usize = 16;
const BANDWIDTH_BYTES: usize = 1 << 30;
const BANDWIDTH_PASSES: usize = 5;

/// Per-pair figures of one engine for one (model, threads).
#[derive(Default, Clone)]
struct Figures {
    prefill_short: Vec<f64>,
    prefill_long: Vec<f64>,
    decode: Vec<f64>,
    /// Decode tok/s after the 512-token prompt.
    decode_long: Vec<f64>,
    /// Decoded tokens per CPU-second of the process.
    decode_cpu: Vec<f64>,
    ttft_ms: Vec<f64>,
}

struct Row {
    model: &'static str,
    threads: usize,
    ours: Figures,
    llama: Figures,
    /// Decoded tokens equal between the engines (first pair), out of DECODE_N: after
    /// the 16-token prompt and after the 512-token one.
    greedy_same: usize,
    greedy_same_long: usize,
    /// First tokens (after the 64-token prompt) equal in every pair.
    first_token_same: bool,
    /// Largest fraction of the file still in the page cache after a drop.
    resident_after_drop: f64,
    /// Share of the file's mapped pages mapped as 2 MiB pages, after the warm-up.
    huge_share: Option<f64>,
    /// Read bandwidth (GB/s) measured right before each pair's decode runs.
    probe: Vec<f64>,
    decode_bytes: u64,
}

impl Row {
    /// Median over the pairs of decode GB/s (from `decode`, tok/s per pair) over the
    /// read bandwidth measured before that pair.
    fn share(&self, decode: &[f64]) -> f64 {
        let shares: Vec<f64> = decode
            .iter()
            .zip(&self.probe)
            .map(|(d, b)| self.decode_bytes as f64 * d / 1e9 / b)
            .collect();
        median(&shares)
    }
}

struct Rss {
    model: &'static str,
    threads: usize,
    ours: Vec<f64>,
    llama: Vec<f64>,
}

fn ratio_median(a: &[f64], b: &[f64]) -> f64 {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&r)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(r) = rss_child(&args) {
        return r;
    }
    let cfg = Config::from_env(5)?;
    let rss_pairs: usize = match std::env::var("TRAMONTANE_BENCH_RSS_PAIRS") {
        Ok(v) => v.parse()?,
        Err(_) => 3,
    };
    let started = today();
    let load_before = loadavg();
    let backend = llama_backend()?;
    eprintln!(
        "vs_llama_cpp: {} pairs, threads {:?}, {} model(s); ours: {:?}; llama.cpp: {}",
        cfg.pairs,
        cfg.threads,
        cfg.models.len(),
        tramontane::cpu_features(),
        llama_system_info()
    );

    let mut bw: Vec<(usize, Vec<f64>)> = cfg.threads.iter().map(|&t| (t, Vec::new())).collect();
    let probe_buf = bandwidth_buffer(BANDWIDTH_BYTES);
    measure_bandwidth(&probe_buf, &mut bw)?;

    let mut rows = Vec::new();
    let mut rss = Vec::new();
    for (name, path) in &cfg.models {
        for &t in &cfg.threads {
            rows.push(measure(&backend, name, path, t, cfg.pairs, &probe_buf)?);
        }
        if rss_pairs > 0 {
            let t = cfg.threads.iter().copied().max().unwrap_or(1);
            let ids = {
                let m = tramontane::Model::open(path)?;
                prompt_ids(&m, PREFILL_LONG)?
            };
            let mut r = Rss {
                model: name,
                threads: t,
                ours: Vec::new(),
                llama: Vec::new(),
            };
            for p in 0..rss_pairs {
                r.ours.push(peak_rss_mb("ours", path, t, &ids, RSS_DECODE)?);
                r.llama
                    .push(peak_rss_mb("llama", path, t, &ids, RSS_DECODE)?);
                eprintln!(
                    "  {name} peak RSS pair {p}: ours {:.0} MB, llama.cpp {:.0} MB",
                    r.ours[p], r.llama[p]
                );
            }
            rss.push(r);
        }
    }

    measure_bandwidth(&probe_buf, &mut bw)?;
    drop(probe_buf);
    let load_after = loadavg();

    let md = report(
        &cfg,
        &rows,
        &rss,
        &bw,
        &started,
        &load_before,
        &load_after,
        rss_pairs,
    );
    println!("\n{md}");
    let target = target_dir();
    std::fs::create_dir_all(&target)?;
    let md_path = target.join("vs_llama_cpp.md");
    std::fs::write(&md_path, &md)?;
    eprintln!("wrote {}", md_path.display());
    let png = target.join("vs_llama_cpp.png");
    match plot(&png, &rows, &rss, &started) {
        Ok(true) => eprintln!("wrote {}", png.display()),
        Ok(false) => eprintln!("no TTF font found (set TRAMONTANE_PLOT_FONT): plot skipped"),
        Err(e) => eprintln!("plot failed: {e}"),
    }
    Ok(())
}

/// target/ of this checkout (where `cargo bench` writes, whatever CARGO_TARGET_DIR).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

fn measure_bandwidth(buf: &[u8], bw: &mut [(usize, Vec<f64>)]) -> Res<()> {
    for (t, v) in bw.iter_mut() {
        let passes = read_bandwidth(buf, *t, BANDWIDTH_PASSES + 1)?;
        v.extend_from_slice(&passes[1..]); // the first pass warms up
        eprintln!(
            "read bandwidth, {t} thread(s): {:.1} GB/s (median of passes so far)",
            median(v)
        );
    }
    Ok(())
}

fn measure(
    backend: &llama_cpp_2::llama_backend::LlamaBackend,
    name: &'static str,
    path: &Path,
    threads: usize,
    pairs: usize,
    probe_buf: &[u8],
) -> Res<Row> {
    eprintln!("{name}, {threads} thread(s)");
    // The file is read in by the open below, whatever read it before (the cold runs of
    // the last cell, the tests): both engines then map the same page cache, in the
    // folios (2 MiB where the map takes huge pages) that this library's open reads.
    drop_from_page_cache(path)?;
    let mut ours = Ours::open(path, threads, PREFILL_LONG)?;
    let ids_long = prompt_ids(&ours.model, PREFILL_LONG)?;
    let ids_short = &ids_long[..PREFILL_SHORT];
    let ids_dec = &ids_long[..DECODE_PROMPT];
    let ids_ttft = ids_long[..TTFT_PROMPT].to_vec();
    let (l_long, l_short, l_dec) = (to_llama(&ids_long), to_llama(ids_short), to_llama(ids_dec));
    let decode_bytes = decode_weight_bytes(&ours.model);

    let lmodel = llama_load(backend, path)?;
    let mut lctx = llama_ctx(backend, &lmodel, threads, PREFILL_LONG)?;
    let mut batch = LlamaBatch::new(PREFILL_LONG, 1);

    // Warm-up: page the weights in, let both engines allocate what they allocate lazily.
    ours.prefill(&ids_long[..32])?;
    ours.decode(ids_dec, 4)?;
    llama_prefill(&mut lctx, &mut batch, &l_long[..32])?;
    llama_decode(&mut lctx, &mut batch, &l_dec, 4)?;
    let huge_share = huge_mapped_share(path);
    if let Some(h) = huge_share {
        eprintln!("  mapped in 2 MiB pages: {:.0}%", 100.0 * h);
    }

    let mut o = Figures::default();
    let mut l = Figures::default();
    let mut greedy_same = 0;
    let mut greedy_same_long = 0;
    let mut probe = Vec::with_capacity(pairs);
    for p in 0..pairs {
        o.prefill_short
            .push(tok_s(PREFILL_SHORT, ours.prefill(ids_short)?));
        l.prefill_short.push(tok_s(
            PREFILL_SHORT,
            llama_prefill(&mut lctx, &mut batch, &l_short)?,
        ));
        // The long prompt, then the decode that goes on from it.
        o.prefill_long
            .push(tok_s(PREFILL_LONG, ours.prefill(&ids_long)?));
        let (od_long, _, otoks_long) = ours.greedy(DECODE_N)?;
        l.prefill_long.push(tok_s(
            PREFILL_LONG,
            llama_prefill(&mut lctx, &mut batch, &l_long)?,
        ));
        let (ld_long, _, ltoks_long) = llama_greedy(&mut lctx, &mut batch, PREFILL_LONG, DECODE_N)?;
        o.decode_long.push(tok_s(DECODE_N, od_long));
        l.decode_long.push(tok_s(DECODE_N, ld_long));
        // The read bandwidth right before the decode runs (two passes, the second kept),
        // so that each pair's decode GB/s stands against the machine's state of then.
        probe.push(read_bandwidth(probe_buf, threads, 2)?[1]);
        let (od, oc, otoks) = ours.decode(ids_dec, DECODE_N)?;
        let (ld, lc, ltoks) = llama_decode(&mut lctx, &mut batch, &l_dec, DECODE_N)?;
        o.decode.push(tok_s(DECODE_N, od));
        l.decode.push(tok_s(DECODE_N, ld));
        o.decode_cpu.push(DECODE_N as f64 / oc);
        l.decode_cpu.push(DECODE_N as f64 / lc);
        if p == 0 {
            greedy_same = otoks.iter().zip(&ltoks).take_while(|(a, b)| a == b).count();
            greedy_same_long = otoks_long
                .iter()
                .zip(&ltoks_long)
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "  greedy ids, first 12: ours {:?}, llama.cpp {:?}",
                &otoks[..12.min(otoks.len())],
                &ltoks[..12.min(ltoks.len())]
            );
        }
        eprintln!(
            "  pair {p}: prefill {PREFILL_SHORT} {:.1} | {:.1}, prefill {PREFILL_LONG} {:.1} | {:.1}, decode {:.1} | {:.1}, decode after {PREFILL_LONG} {:.1} | {:.1} tok/s (ours | llama.cpp)",
            o.prefill_short[p], l.prefill_short[p], o.prefill_long[p], l.prefill_long[p], o.decode[p], l.decode[p], o.decode_long[p], l.decode_long[p]
        );
    }
    drop(lctx);
    drop(lmodel);
    drop(ours);

    // Cold start: nothing of this file is mapped by this process any more.
    let mut resident_after_drop = 0.0f64;
    let mut first_token_same = true;
    let l_ttft = to_llama(&ids_ttft);
    for p in 0..pairs {
        resident_after_drop = resident_after_drop.max(drop_from_page_cache(path)?);
        let (od, otok) = ours_first_token(path, threads, &ids_ttft)?;
        resident_after_drop = resident_after_drop.max(drop_from_page_cache(path)?);
        let (ld, ltok) = llama_first_token(backend, path, threads, &l_ttft)?;
        o.ttft_ms.push(od.as_secs_f64() * 1e3);
        l.ttft_ms.push(ld.as_secs_f64() * 1e3);
        first_token_same &= otok == ltok;
        eprintln!(
            "  pair {p}: open → first token (cold) {:.0} | {:.0} ms",
            o.ttft_ms[p], l.ttft_ms[p]
        );
    }
    Ok(Row {
        model: name,
        threads,
        ours: o,
        llama: l,
        greedy_same,
        greedy_same_long,
        first_token_same,
        resident_after_drop,
        huge_share,
        probe,
        decode_bytes,
    })
}

#[allow(clippy::too_many_arguments)]
fn report(
    cfg: &Config,
    rows: &[Row],
    rss: &[Rss],
    bw: &[(usize, Vec<f64>)],
    started: &str,
    load_before: &str,
    load_after: &str,
    rss_pairs: usize,
) -> String {
    let mut s = String::new();
    let pairs = cfg.pairs;
    s += &format!("### tramontane / llama.cpp, {started}\n\n");
    s += &format!(
        "Machine: {}; load average (1, 5, 15 min) {load_before} at the start, {load_after} at the end. \
         Ours: {}, kernel level {:?}{}. llama.cpp: `{}`.\n\n",
        cpu_model(),
        source_state(),
        tramontane::cpu_features(),
        ours_options(),
        llama_system_info()
    );
    s += &format!(
        "Medians of {pairs} interleaved pairs in one process (ours, llama.cpp, ours, …; same token ids, \
         a prompt is one batch, greedy argmax, f16 KV cache, {N_CTX} positions). \
         Ratio = median of the per-pair ratios ours / llama.cpp: for tok/s higher is better, \
         for time and memory lower is better. Decode per CPU-second: decoded tokens per second of \
         the process's CPU time (all its threads, spinning included), less disturbed than wall time \
         when other processes compete for the cores.\n\n"
    );
    let rss_of = |model: &str| rss.iter().find(|r| r.model == model);
    s += "| model | threads | prefill 128 | prefill 512 | decode 128 | decode per CPU-second | decode 128 after 512 | open → first token, cold | peak RSS |\n";
    s += "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for r in rows {
        let rr = rss_of(r.model).map_or(f64::NAN, |x| ratio_median(&x.ours, &x.llama));
        s += &format!(
            "| {} | {} | {}× | {}× | {}× | {}× | {}× | {}× | {}× |\n",
            r.model,
            r.threads,
            fmt(
                ratio_median(&r.ours.prefill_short, &r.llama.prefill_short),
                2
            ),
            fmt(ratio_median(&r.ours.prefill_long, &r.llama.prefill_long), 2),
            fmt(ratio_median(&r.ours.decode, &r.llama.decode), 2),
            fmt(ratio_median(&r.ours.decode_cpu, &r.llama.decode_cpu), 2),
            fmt(ratio_median(&r.ours.decode_long, &r.llama.decode_long), 2),
            fmt(ratio_median(&r.ours.ttft_ms, &r.llama.ttft_ms), 2),
            fmt(rr, 2),
        );
    }
    s += "\nAbsolute figures (medians; decode GB/s = bytes of weights read per token × tok/s; \
          of read bandwidth: the median over the pairs of the decode GB/s over the read \
          bandwidth measured right before that pair's decode runs, same thread count):\n\n";
    s += "| model | threads | engine | prefill 128 tok/s | prefill 512 tok/s | decode tok/s | decode tok/CPU-s | decode GB/s | of read bandwidth | decode after 512 tok/s | open → first token ms | peak RSS MB |\n";
    s += "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for r in rows {
        for (engine, f, rs) in [
            ("tramontane", &r.ours, rss_of(r.model).map(|x| &x.ours)),
            ("llama.cpp", &r.llama, rss_of(r.model).map(|x| &x.llama)),
        ] {
            let gbs = r.decode_bytes as f64 * median(&f.decode) / 1e9;
            s += &format!(
                "| {} | {} | {engine} | {} | {} | {} | {} | {} | {}% | {} | {} | {} |\n",
                r.model,
                r.threads,
                fmt(median(&f.prefill_short), 1),
                fmt(median(&f.prefill_long), 1),
                fmt(median(&f.decode), 1),
                fmt(median(&f.decode_cpu), 1),
                fmt(gbs, 2),
                fmt(100.0 * r.share(&f.decode), 0),
                fmt(median(&f.decode_long), 1),
                fmt(median(&f.ttft_ms), 0),
                fmt(rs.map_or(f64::NAN, |v| median(v)), 0),
            );
        }
    }
    s += "\n";
    let bws: Vec<String> = bw
        .iter()
        .map(|(t, v)| format!("{} GB/s with {t} thread(s)", fmt(median(v), 1)))
        .collect();
    s += &format!(
        "- Read bandwidth: {} (read-only sum over 1 GiB, median of {} passes at the start and the end of the run).\n",
        bws.join(", "),
        BANDWIDTH_PASSES * 2
    );
    let before: Vec<String> = rows
        .iter()
        .map(|r| {
            let lo = r.probe.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.probe.iter().copied().fold(0.0f64, f64::max);
            format!(
                "{} {}t {} ({}–{})",
                r.model,
                r.threads,
                fmt(median(&r.probe), 1),
                fmt(lo, 1),
                fmt(hi, 1)
            )
        })
        .collect();
    s += &format!(
        "- Read bandwidth right before each pair's decode runs (median, range; GB/s): {}.\n",
        before.join(", ")
    );
    for r in rows.iter().filter(|r| r.threads == rows[0].threads) {
        let same: Vec<String> = rows
            .iter()
            .filter(|x| x.model == r.model)
            .map(|x| {
                format!(
                    "{} ({} after the {PREFILL_LONG}-token prompt) with {} thread(s)",
                    x.greedy_same, x.greedy_same_long, x.threads
                )
            })
            .collect();
        let first_same = rows
            .iter()
            .filter(|x| x.model == r.model)
            .all(|x| x.first_token_same);
        s += &format!(
            "- {}: {:.1} MB of weights read per decoded token; greedy tokens identical between the engines \
             for the first {} of {DECODE_N}; first token after the 64-token prompt {} in every cold run.\n",
            r.model,
            r.decode_bytes as f64 / 1e6,
            same.join(", "),
            if first_same {
                "the same"
            } else {
                "not always the same"
            },
        );
    }
    let resident = rows
        .iter()
        .map(|r| r.resident_after_drop)
        .fold(0.0f64, f64::max);
    s += &format!(
        "- Cold start: before each run the model file is dropped from the page cache with \
         `posix_fadvise(POSIX_FADV_DONTNEED)` (no root; /proc/sys/vm/drop_caches is not used); \
         at most {:.1}% of its pages were still resident afterwards (mincore). \
         llama.cpp's backend is initialized once per process before the runs.\n",
        100.0 * resident
    );
    let huge: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let h = r.huge_share?;
            Some(format!("{} {}t {:.0}%", r.model, r.threads, 100.0 * h))
        })
        .collect();
    if !huge.is_empty() {
        s += &format!(
            "- Pages of the model file mapped as 2 MiB pages (both engines' maps, after the \
             warm-up; the read probe runs on 2 MiB pages too where Linux gives them): {}.\n",
            huge.join(", ")
        );
    }
    if let Some(r) = rss.first() {
        s += &format!(
            "- Peak RSS: VmHWM of a child process per engine that evaluates the 512-token prompt as one batch and decodes {RSS_DECODE} tokens with {} thread(s); median of {rss_pairs} pair(s).\n",
            r.threads
        );
    }
    s
}

// ---------------------------------------------------------------- plot

fn find_font() -> Option<&'static [u8]> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("TRAMONTANE_PLOT_FONT") {
        candidates.push(p.into());
    }
    for p in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ] {
        candidates.push(p.into());
    }
    candidates
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|b| &*Box::leak(b.into_boxed_slice()))
}

const COLORS: [plotters::style::RGBColor; 4] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(174, 199, 232),
    plotters::style::RGBColor(214, 39, 40),
    plotters::style::RGBColor(255, 152, 150),
];

/// Two panels: the ratios per figure (one bar per model × threads), and decode GB/s of
/// both engines against the read bandwidth measured before their decode runs. Returns
/// false when no font was found.
fn plot(path: &Path, rows: &[Row], rss: &[Rss], started: &str) -> Res<bool> {
    use plotters::prelude::*;
    let Some(font) = find_font() else {
        return Ok(false);
    };
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "invalid font file")?;

    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("tramontane vs llama.cpp, same process, medians ({started})"),
        ("sans-serif", 22),
    )?;
    let (left, right) = root.split_horizontally(820);

    // Left: ratios.
    const METRICS: [&str; 6] = [
        "prefill 128 ↑",
        "prefill 512 ↑",
        "decode ↑",
        "decode after 512 ↑",
        "first token (cold) ↓",
        "peak RSS ↓",
    ];
    let ratios: Vec<[f64; 6]> = rows
        .iter()
        .map(|r| {
            let rr = rss
                .iter()
                .find(|x| x.model == r.model)
                .map_or(f64::NAN, |x| ratio_median(&x.ours, &x.llama));
            [
                ratio_median(&r.ours.prefill_short, &r.llama.prefill_short),
                ratio_median(&r.ours.prefill_long, &r.llama.prefill_long),
                ratio_median(&r.ours.decode, &r.llama.decode),
                ratio_median(&r.ours.decode_long, &r.llama.decode_long),
                ratio_median(&r.ours.ttft_ms, &r.llama.ttft_ms),
                rr,
            ]
        })
        .collect();
    let ymax = ratios
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .fold(1.2f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .caption(
            "ours / llama.cpp (↑ higher is better, ↓ lower is better)",
            ("sans-serif", 17),
        )
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..METRICS.len() as f64, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(METRICS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < METRICS.len() {
                METRICS[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("ratio")
        .label_style(("sans-serif", 14))
        .draw()?;
    let n = rows.len().max(1) as f64;
    let w = 0.8 / n;
    for (s, (r, rat)) in rows.iter().zip(&ratios).enumerate() {
        let c = COLORS[s % COLORS.len()];
        chart
            .draw_series(
                rat.iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(m, &v)| {
                        let x0 = m as f64 + 0.1 + s as f64 * w;
                        Rectangle::new([(x0, 0.0), (x0 + w * 0.92, v)], c.filled())
                    }),
            )?
            .label(format!("{}, {} thread(s)", short(r.model), r.threads))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    for (s, rat) in ratios.iter().enumerate() {
        chart.draw_series(rat.iter().enumerate().filter(|(_, v)| v.is_finite()).map(
            |(m, &v)| {
                let x0 = m as f64 + 0.1 + s as f64 * w;
                Text::new(
                    format!("{v:.2}"),
                    (x0, v + ymax * 0.012),
                    ("sans-serif", 11),
                )
            },
        ))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (METRICS.len() as f64, 1.0)],
        BLACK.stroke_width(2),
    )))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .draw()?;

    // Right: decode GB/s against the read bandwidth.
    let gbs: Vec<(f64, f64, f64)> = rows
        .iter()
        .map(|r| {
            let b = r.decode_bytes as f64 / 1e9;
            (
                b * median(&r.ours.decode),
                b * median(&r.llama.decode),
                median(&r.probe),
            )
        })
        .collect();
    let gmax = gbs
        .iter()
        .flat_map(|&(a, b, c)| [a, b, c])
        .filter(|x| x.is_finite())
        .fold(1.0f64, f64::max)
        * 1.2;
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}t", short(r.model), r.threads))
        .collect();
    let mut chart = ChartBuilder::on(&right)
        .margin(12)
        .caption("decode: GB/s of weights read", ("sans-serif", 17))
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..rows.len() as f64, 0f64..gmax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc("GB/s")
        .label_style(("sans-serif", 14))
        .draw()?;
    let ours_c = RGBColor(31, 119, 180);
    let llama_c = RGBColor(214, 39, 40);
    chart
        .draw_series(gbs.iter().enumerate().map(|(i, &(o, _, _))| {
            let x = i as f64 + 0.15;
            Rectangle::new([(x, 0.0), (x + 0.33, o)], ours_c.filled())
        }))?
        .label("tramontane")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], ours_c.filled()));
    chart
        .draw_series(gbs.iter().enumerate().map(|(i, &(_, l, _))| {
            let x = i as f64 + 0.52;
            Rectangle::new([(x, 0.0), (x + 0.33, l)], llama_c.filled())
        }))?
        .label("llama.cpp")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], llama_c.filled()));
    chart
        .draw_series(gbs.iter().enumerate().map(|(i, &(_, _, b))| {
            PathElement::new(
                vec![(i as f64 + 0.08, b), (i as f64 + 0.92, b)],
                BLACK.stroke_width(2),
            )
        }))?
        .label("read bandwidth (same threads)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(true)
}

fn short(model: &str) -> &str {
    model.split(' ').next().unwrap_or(model)
}
