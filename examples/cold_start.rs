//! Where the time goes from `Model::open` to the first generated token, cold.
//!
//! ```text
//! TRAMONTANE_MODELS_DIR=fixtures/models \
//! cargo run --release --example cold_start -- [--runs N] [--threads 1,2] [--warm] [MODEL.gguf ...]
//! ```
//!
//! Without model paths it uses Gemma 3 270M and Qwen2.5-Coder 0.5B from
//! `$TRAMONTANE_MODELS_DIR` (else `fixtures/models/`). Before each run (unless `--warm`)
//! the file is dropped from the page cache with `posix_fadvise(POSIX_FADV_DONTNEED)`
//! (no root needed; the example holds no mapping of it then) and `mincore` checks how
//! much stayed. Each run then times, as `benches/vs_llama_cpp.rs` does:
//!
//! - `open`: [`Model::open`] (map, parse, configuration, weights table, tokenizer);
//! - `state`: a state of 1024 positions, f16 KV cache, batches of 64 tokens;
//! - `tokenize`: encoding a fixed English text (then cut to 64 ids);
//! - `prefill`: [`Model::eval`] of the 64 ids as one batch with the last position's
//!   logits (the output head included);
//! - `argmax`: the first token;
//!
//! and counts the major page faults (`getrusage`), the bytes the process had read from
//! the disk (`read_bytes` of `/proc/self/io`) and the CPU time. Prints each run and the
//! medians. The first token is the same in every run (checked).

use std::path::{Path, PathBuf};
use std::time::Instant;

use tramontane::model::{State, StateOptions};
use tramontane::{LoadOptions, Model, Prefetch};

const PROMPT_LEN: usize = 64;
const N_CTX: usize = 1024;

/// Ordinary prose, repeated until there are enough tokens.
const TEXT: &str = "The ferry left the island a little after seven, when the fog over the \
strait had started to lift. Most passengers stayed inside with their coffee, but an old \
man stood at the rail and watched the gulls that followed the wake. He had made this \
crossing every week for forty years, first to sell vegetables, later to visit his \
daughter, and now simply because he liked the sound of the engines. ";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[path = "../benches/common/page_cache.rs"]
mod page_cache;
use page_cache::drop_from_page_cache;

/// One run's figures.
#[derive(Clone, Copy, Default)]
struct Run {
    open: f64,
    state: f64,
    tokenize: f64,
    prefill: f64,
    argmax: f64,
    total: f64,
    cpu: f64,
    majflt: f64,
    read_mb: f64,
    resident_before: f64,
    /// Main thread off the CPU and not waiting to run: waiting for the disk (or, with
    /// 2 threads, for the other thread).
    blocked: f64,
    /// The part of `blocked` in `open`.
    blocked_open: f64,
    /// Main thread runnable but not running (other processes had the CPU).
    runq: f64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("cold_start: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let mut runs = 5usize;
    let mut threads = vec![1usize, 2];
    let mut warm = false;
    let mut modes = vec![Prefetch::Background];
    let mut models = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--threads" => {
                threads = args
                    .next()
                    .ok_or("--threads 1,2")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--warm" => warm = true,
            "--prefetch" => {
                modes = args
                    .next()
                    .ok_or("--prefetch none,background")?
                    .split(',')
                    .map(|m| match m {
                        "none" => Ok(Prefetch::None),
                        "background" => Ok(Prefetch::Background),
                        _ => Err(format!("unknown --prefetch {m}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                eprintln!(
                    "usage: cold_start [--runs N] [--threads 1,2] [--prefetch none,background] [--warm] [MODEL.gguf ...]"
                );
                return Ok(());
            }
            _ => models.push(PathBuf::from(a)),
        }
    }
    if models.is_empty() {
        let dir = std::env::var_os("TRAMONTANE_MODELS_DIR")
            .map_or_else(|| PathBuf::from("fixtures/models"), PathBuf::from);
        models.push(dir.join("gemma-3-270m-q4_k_m.gguf"));
        models.push(dir.join("qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf"));
    }
    println!(
        "{} runs each, {}; ms medians (major faults, MB read from disk, CPU ms)",
        runs,
        if warm { "warm" } else { "cold" }
    );
    println!("| model | threads | prefetch | open | state | tokenize | prefill+head | total | main thread blocked | runnable, not running | CPU | major faults | MB read |");
    println!("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for path in &models {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for &t in &threads {
            let mut all = vec![Vec::new(); modes.len()];
            let mut first = None;
            for (i, mode) in (0..runs * modes.len()).map(|i| (i, modes[i % modes.len()])) {
                let resident = if warm {
                    warm_up(path)?
                } else {
                    drop_from_page_cache(path)?
                };
                let (mut r, tok) = one_run(path, t, mode)?;
                r.resident_before = resident;
                if *first.get_or_insert(tok) != tok {
                    return Err(format!("first token changed: {first:?} then {tok}").into());
                }
                eprintln!(
                    "  {name} t={t} {mode:?}: open {:.1} state {:.1} tokenize {:.1} prefill {:.1} argmax {:.2} total {:.1} ms (main thread blocked {:.0}, in open {:.0}, runnable {:.0}), cpu {:.0} ms, majflt {:.0}, read {:.1} MB, resident before {:.1}%",
                    r.open, r.state, r.tokenize, r.prefill, r.argmax, r.total, r.blocked, r.blocked_open, r.runq, r.cpu, r.majflt, r.read_mb,
                    100.0 * r.resident_before
                );
                all[i % modes.len()].push(r);
            }
            for (all, mode) in all.iter().zip(&modes) {
                let m = |f: fn(&Run) -> f64| median(all.iter().map(f).collect());
                println!(
                "| {name} | {t} | {mode:?} | {:.1} | {:.1} | {:.1} | {:.1} | **{:.1}** | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                m(|r| r.open),
                m(|r| r.state),
                m(|r| r.tokenize),
                m(|r| r.prefill),
                m(|r| r.total),
                m(|r| r.blocked),
                m(|r| r.runq),
                m(|r| r.cpu),
                m(|r| r.majflt),
                m(|r| r.read_mb),
            );
            }
        }
    }
    Ok(())
}

/// One open → first token, timed by step. Returns the figures and the token.
fn one_run(path: &Path, threads: usize, prefetch: Prefetch) -> Res<(Run, u32)> {
    let (flt0, cpu0) = rusage();
    let (on0, rq0) = schedstat();
    let io0 = read_bytes();
    let t0 = Instant::now();
    let model = Model::open_with(path, LoadOptions::new().prefetch(prefetch))?;
    let t1 = Instant::now();
    let (on_open, rq_open) = schedstat();
    let mut o = StateOptions::new(N_CTX);
    o.threads = threads;
    o.max_batch = PROMPT_LEN;
    let mut state: State = model.new_state_with(o)?;
    let mut logits = vec![0.0f32; model.config().n_vocab];
    let t2 = Instant::now();
    let mut ids = Vec::new();
    let mut reps = 1;
    while ids.len() < PROMPT_LEN {
        ids = model.tokenizer().encode(&TEXT.repeat(reps), true, false)?;
        reps += 1;
    }
    ids.truncate(PROMPT_LEN);
    let t3 = Instant::now();
    model.eval(&mut state, &ids, &mut logits)?;
    let t4 = Instant::now();
    let tok = argmax(&logits);
    let t5 = Instant::now();
    let (flt1, cpu1) = rusage();
    let (on1, rq1) = schedstat();
    let io1 = read_bytes();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    Ok((
        Run {
            open: ms(t0, t1),
            state: ms(t1, t2),
            tokenize: ms(t2, t3),
            prefill: ms(t3, t4),
            argmax: ms(t4, t5),
            total: ms(t0, t5),
            cpu: (cpu1 - cpu0) * 1e3,
            majflt: (flt1 - flt0) as f64,
            read_mb: io1.saturating_sub(io0) as f64 / 1e6,
            resident_before: 0.0,
            blocked: ms(t0, t5) - (on1 - on0) - (rq1 - rq0),
            runq: rq1 - rq0,
            blocked_open: ms(t0, t1) - (on_open - on0) - (rq_open - rq0),
        },
        tok,
    ))
}

/// First index of the maximum.
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > bv {
            best = i;
            bv = x;
        }
    }
    best as u32
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Major page faults and CPU seconds (user + system) of this process so far.
fn rusage() -> (i64, f64) {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (ru.ru_majflt, tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// CPU time and run-queue wait of the calling thread, ms (`/proc/thread-self/schedstat`).
fn schedstat() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = s
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0) / 1e6);
    (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0))
}

/// `read_bytes` of `/proc/self/io`: bytes this process caused to be read from storage.
fn read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("read_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Read the whole file once (so that it is in the page cache); returns 1.0.
fn warm_up(path: &Path) -> Res<f64> {
    let bytes = std::fs::read(path)?;
    std::hint::black_box(bytes.len());
    Ok(1.0)
}
