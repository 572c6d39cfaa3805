//! Shared pieces of the side-by-side benchmarks (`benches/vs_llama_cpp.rs`,
//! `benches/e2e.rs`): the two engines driven the same way on the same token ids,
//! cold-cache helpers, peak RSS in child processes, the read-bandwidth probe, medians
//! and the markdown helpers.
//!
//! Both engines get the same work: the prompt's token ids come from our tokenizer (the
//! parity tests show llama.cpp's are identical), a prompt is one batch, logits are
//! computed for the last position only, greedy decoding is an argmax over the logits
//! (first index of the maximum) and one token per call, the KV cache is f16 and holds
//! [`N_CTX`] positions.
#![allow(dead_code)] // each bench uses a subset

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tramontane::kernels::{self, Threads};
use tramontane::{Model, State, StateOptions};

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// KV cache positions of every state and context (prompt of 512 + 128 decoded fit).
pub const N_CTX: usize = 1024;

/// The real models: (short name, file name in the models directory).
pub const MODELS: [(&str, &str); 2] = [
    ("Gemma 3 270M Q4_K_M", "gemma-3-270m-q4_k_m.gguf"),
    (
        "Qwen2.5-Coder 0.5B Q4_K_M",
        "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
    ),
];

/// What to run, from the environment:
/// - `TRAMONTANE_BENCH_PAIRS`: A/B pairs per figure (default given by the bench);
/// - `TRAMONTANE_BENCH_THREADS`: thread counts, comma-separated (default `1,2`);
/// - `TRAMONTANE_BENCH_MODELS`: substrings of the model file names, comma-separated
///   (default: both real models);
/// - `TRAMONTANE_MODELS_DIR`: where the models are (default `fixtures/models`).
pub struct Config {
    pub pairs: usize,
    pub threads: Vec<usize>,
    pub models: Vec<(&'static str, PathBuf)>,
}

impl Config {
    pub fn from_env(default_pairs: usize) -> Res<Config> {
        let pairs = match std::env::var("TRAMONTANE_BENCH_PAIRS") {
            Ok(v) => v.parse::<usize>()?.max(1),
            Err(_) => default_pairs,
        };
        let threads = match std::env::var("TRAMONTANE_BENCH_THREADS") {
            Ok(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse::<usize>().map(|t| t.max(1)))
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => vec![1, 2],
        };
        let dir = std::env::var("TRAMONTANE_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models"));
        let filter = std::env::var("TRAMONTANE_BENCH_MODELS").unwrap_or_default();
        let mut models = Vec::new();
        for (name, file) in MODELS {
            let wanted = filter.is_empty()
                || filter
                    .split(',')
                    .any(|f| !f.trim().is_empty() && file.contains(f.trim()));
            if !wanted {
                continue;
            }
            let path = dir.join(file);
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: run fixtures/fetch-models.sh all (or set TRAMONTANE_MODELS_DIR)",
                    path.display()
                )
                .into());
            }
            models.push((name, path));
        }
        if models.is_empty() || threads.is_empty() {
            return Err("no model or no thread count selected".into());
        }
        Ok(Config {
            pairs,
            threads,
            models,
        })
    }
}

/// Ordinary English prose, repeated until the prompt is long enough.
const PROMPT_TEXT: &str = "The harbour was quiet in the early morning. Fishing boats \
came back one by one, their engines slowing as they passed the lighthouse, and the \
gulls followed them in wide circles. On the quay, a woman checked a list of orders \
while two boys carried crates of ice to the market hall. Nobody spoke much; the wind \
from the north had been blowing for three days, and everyone was tired of it. ";

/// The first `n` token ids of the prompt text (with BOS where the model adds one),
/// from our tokenizer; both engines are fed these same ids.
pub fn prompt_ids(model: &Model, n: usize) -> Res<Vec<u32>> {
    let mut reps = 1;
    loop {
        let ids = model
            .tokenizer()
            .encode(&PROMPT_TEXT.repeat(reps), true, false)?;
        if ids.len() >= n {
            return Ok(ids[..n].to_vec());
        }
        reps *= 2;
    }
}

pub fn to_llama(ids: &[u32]) -> Vec<LlamaToken> {
    ids.iter().map(|&t| LlamaToken::new(t as i32)).collect()
}

/// First index of the maximum (llama.cpp's greedy tie-break).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

// ---------------------------------------------------------------- ours

/// Our engine: a model and one state (f16 KV cache of [`N_CTX`], batches up to
/// `max_batch` tokens) and a logits buffer for the last position.
pub struct Ours {
    pub model: Model,
    pub state: State,
    logits: Vec<f32>,
}

/// Whether our engine runs with its weights repacked (`TRAMONTANE_BENCH_REPACK=1`:
/// [`Model::repack_weights`] after each open, which counts in the time to the first
/// token and in the peak RSS).
pub fn repack_requested() -> bool {
    std::env::var("TRAMONTANE_BENCH_REPACK").is_ok_and(|v| v == "1")
}

/// `Model::open`, then the repack if [`repack_requested`].
pub fn open_model(path: &Path) -> Res<Model> {
    Ok(Model::open_with(
        path,
        tramontane::LoadOptions::new().repack(repack_requested()),
    )?)
}

/// How the report names our engine's options: empty, or the repack.
pub fn ours_options() -> &'static str {
    if repack_requested() {
        ", weights repacked (`TRAMONTANE_BENCH_REPACK=1`: `Model::repack_weights`)"
    } else {
        ""
    }
}

impl Ours {
    pub fn open(path: &Path, threads: usize, max_batch: usize) -> Res<Ours> {
        let model = open_model(path)?;
        let state = ours_state(&model, threads, max_batch)?;
        let logits = vec![0.0; model.config().n_vocab];
        Ok(Ours {
            model,
            state,
            logits,
        })
    }

    /// Evaluate `ids` as one batch from position 0; returns the wall time.
    pub fn prefill(&mut self, ids: &[u32]) -> Res<Duration> {
        self.state.clear();
        let t0 = Instant::now();
        self.model.eval(&mut self.state, ids, &mut self.logits)?;
        Ok(t0.elapsed())
    }

    /// Evaluate `prompt` (not timed), then `n` greedy decode steps of one token each
    /// (timed, argmax included). Returns the wall time, the process CPU time (seconds,
    /// all threads) and the generated ids.
    pub fn decode(&mut self, prompt: &[u32], n: usize) -> Res<(Duration, f64, Vec<u32>)> {
        self.state.clear();
        self.model.eval(&mut self.state, prompt, &mut self.logits)?;
        self.greedy(n)
    }

    /// `n` greedy decode steps from the state the last evaluation left (its logits):
    /// the timed part of [`decode`](Self::decode).
    pub fn greedy(&mut self, n: usize) -> Res<(Duration, f64, Vec<u32>)> {
        let mut out = Vec::with_capacity(n);
        let mut next = argmax(&self.logits) as u32;
        let c0 = cpu_secs();
        let t0 = Instant::now();
        for _ in 0..n {
            out.push(next);
            self.model
                .eval(&mut self.state, &[next], &mut self.logits)?;
            next = argmax(&self.logits) as u32;
        }
        Ok((t0.elapsed(), cpu_secs() - c0, out))
    }
}

pub fn ours_state(model: &Model, threads: usize, max_batch: usize) -> Res<State> {
    let mut o = StateOptions::new(N_CTX);
    o.threads = threads;
    o.max_batch = max_batch;
    Ok(model.new_state_with(o)?)
}

/// From `Model::open` to the first generated token (argmax of the last position's
/// logits after the prompt, evaluated as one batch). Returns the time and the token.
pub fn ours_first_token(path: &Path, threads: usize, ids: &[u32]) -> Res<(Duration, u32)> {
    let t0 = Instant::now();
    let model = open_model(path)?;
    let mut state = ours_state(&model, threads, ids.len())?;
    let mut logits = vec![0.0; model.config().n_vocab];
    model.eval(&mut state, ids, &mut logits)?;
    let tok = argmax(&logits) as u32;
    Ok((t0.elapsed(), tok))
}

/// Bytes of weights one decode step reads: every layer matrix, the output head (the
/// token embeddings when they are tied) and one embedding row. Norms and biases
/// (a few KB) and the KV cache are left out.
pub fn decode_weight_bytes(model: &Model) -> u64 {
    let w = model.weights();
    let matrices: usize = w.matrices().map(|t| t.range.len()).sum();
    (matrices + w.token_embd.row_bytes) as u64
}

// ---------------------------------------------------------------- llama.cpp

/// The llama.cpp backend, once per process, logs silenced (`LLAMA_REF_VERBOSE=1`
/// keeps them).
pub fn llama_backend() -> Res<LlamaBackend> {
    let mut backend = LlamaBackend::init()?;
    if std::env::var("LLAMA_REF_VERBOSE").is_err() {
        backend.void_logs();
    }
    Ok(backend)
}

/// llama.cpp's defaults for a CPU model: mmap on, no GPU layers.
pub fn llama_load(backend: &LlamaBackend, path: &Path) -> Res<LlamaModel> {
    let params = LlamaModelParams::default().with_n_gpu_layers(0);
    Ok(LlamaModel::load_from_file(backend, path, &params)?)
}

/// A context like our state: [`N_CTX`] positions, f16 K and V, batches (and
/// micro-batches) of `n_batch`, `threads` for decode and prefill, flash attention as
/// llama.cpp decides by default (auto).
pub fn llama_ctx<'m>(
    backend: &LlamaBackend,
    model: &'m LlamaModel,
    threads: usize,
    n_batch: usize,
) -> Res<LlamaContext<'m>> {
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(N_CTX as u32))
        .with_n_batch(n_batch as u32)
        .with_n_ubatch(n_batch as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
        .with_type_k(KvCacheType::F16)
        .with_type_v(KvCacheType::F16);
    Ok(model.new_context(backend, params)?)
}

/// llama.cpp's side of [`Ours::prefill`]: cache cleared, `ids` as one batch, logits of
/// the last position read (which also synchronizes).
pub fn llama_prefill(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch,
    ids: &[LlamaToken],
) -> Res<Duration> {
    ctx.clear_kv_cache();
    batch.clear();
    batch.add_sequence(ids, 0, false)?;
    let t0 = Instant::now();
    ctx.decode(batch)?;
    let _ = ctx.get_logits_ith(ids.len() as i32 - 1)[0];
    Ok(t0.elapsed())
}

/// llama.cpp's side of [`Ours::decode`].
pub fn llama_decode(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch,
    prompt: &[LlamaToken],
    n: usize,
) -> Res<(Duration, f64, Vec<u32>)> {
    ctx.clear_kv_cache();
    batch.clear();
    batch.add_sequence(prompt, 0, false)?;
    ctx.decode(batch)?;
    llama_greedy(ctx, batch, prompt.len(), n)
}

/// llama.cpp's side of [`Ours::greedy`]: `n` greedy decode steps after a prompt of
/// `n_past` tokens evaluated as one batch (its last position's logits).
pub fn llama_greedy(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch,
    n_past: usize,
    n: usize,
) -> Res<(Duration, f64, Vec<u32>)> {
    let mut next = argmax(ctx.get_logits_ith(n_past as i32 - 1)) as i32;
    let mut out = Vec::with_capacity(n);
    let c0 = cpu_secs();
    let t0 = Instant::now();
    for k in 0..n {
        out.push(next as u32);
        batch.clear();
        batch.add(LlamaToken::new(next), (n_past + k) as i32, &[0], true)?;
        ctx.decode(batch)?;
        next = argmax(ctx.get_logits_ith(0)) as i32;
    }
    Ok((t0.elapsed(), cpu_secs() - c0, out))
}

/// llama.cpp's side of [`ours_first_token`]: model load + context creation + the
/// prompt as one batch + argmax. The backend (`llama_backend_init`) is initialized
/// once per process beforehand, as our kernel dispatch table is.
pub fn llama_first_token(
    backend: &LlamaBackend,
    path: &Path,
    threads: usize,
    ids: &[LlamaToken],
) -> Res<(Duration, u32)> {
    let t0 = Instant::now();
    let model = llama_load(backend, path)?;
    let mut ctx = llama_ctx(backend, &model, threads, ids.len())?;
    let mut batch = LlamaBatch::new(ids.len(), 1);
    batch.add_sequence(ids, 0, false)?;
    ctx.decode(&mut batch)?;
    let tok = argmax(ctx.get_logits_ith(ids.len() as i32 - 1)) as u32;
    Ok((t0.elapsed(), tok))
}

// ---------------------------------------------------------------- cold cache

mod page_cache;
mod smaps;
#[allow(unused_imports)] // each bench uses a subset
pub use page_cache::drop_from_page_cache;

// ---------------------------------------------------------------- peak RSS

/// The child side of [`peak_rss_mb`]: when the bench binary is started as
/// `BENCH --rss-child ours|llama MODEL THREADS N_DECODE ID,ID,...`, load the model with
/// that engine, evaluate the ids as one batch, decode `N_DECODE` tokens greedily,
/// print `VmHWM_kB <n>` and exit. Returns `None` when the arguments are not a child's.
pub fn rss_child(args: &[String]) -> Option<Res<()>> {
    let pos = args.iter().position(|a| a == "--rss-child")?;
    let a = &args[pos + 1..];
    Some((|| -> Res<()> {
        if a.len() < 5 {
            return Err("usage: --rss-child ours|llama MODEL THREADS N_DECODE IDS".into());
        }
        let path = Path::new(&a[1]);
        let threads: usize = a[2].parse()?;
        let n_decode: usize = a[3].parse()?;
        let ids = a[4]
            .split(',')
            .map(|s| s.parse::<u32>())
            .collect::<Result<Vec<_>, _>>()?;
        match a[0].as_str() {
            "ours" => {
                let mut e = Ours::open(path, threads, ids.len())?;
                e.decode(&ids, n_decode)?;
            }
            "llama" => {
                let backend = llama_backend()?;
                let model = llama_load(&backend, path)?;
                let mut ctx = llama_ctx(&backend, &model, threads, ids.len())?;
                let mut batch = LlamaBatch::new(ids.len(), 1);
                llama_decode(&mut ctx, &mut batch, &to_llama(&ids), n_decode)?;
            }
            e => return Err(format!("unknown engine {e}").into()),
        }
        println!("VmHWM_kB {}", vm_hwm_kb()?);
        Ok(())
    })())
}

/// The process's peak resident set (`VmHWM` in /proc/self/status), in kB.
pub fn vm_hwm_kb() -> Res<u64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmHWM:") {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    Err("no VmHWM in /proc/self/status".into())
}

/// Run this bench binary again as an RSS child (see [`rss_child`]): `ids` as one
/// batch, then `n_decode` greedy tokens. Peak RSS in MB (10^6 bytes).
pub fn peak_rss_mb(
    engine: &str,
    path: &Path,
    threads: usize,
    ids: &[u32],
    n_decode: usize,
) -> Res<f64> {
    let ids: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--rss-child")
        .arg(engine)
        .arg(path)
        .arg(threads.to_string())
        .arg(n_decode.to_string())
        .arg(ids.join(","))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("RSS child ({engine}) failed: {}", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("VmHWM_kB ") {
            return Ok(v.trim().parse::<f64>()? * 1024.0 / 1e6);
        }
    }
    Err(format!("RSS child ({engine}) printed no VmHWM: {text}").into())
}

// ---------------------------------------------------------------- bandwidth

/// The machine's read bandwidth in GB/s, as benches/kernels.rs measures it: a
/// read-only sum (`kernels::read_probe`: the kernels' vector loads and prefetching)
/// over a buffer of `bytes`, split across `threads` of our pool; one figure per pass.
pub fn read_bandwidth(buf: &[u8], threads: usize, passes: usize) -> Res<Vec<f64>> {
    let pool = Threads::new(threads)?;
    let n = pool.count();
    let chunk = buf.len().div_ceil(n);
    let mut out = Vec::new();
    let mut sums = vec![0.0f32; n];
    for _ in 0..passes {
        let t0 = Instant::now();
        pool.for_rows(&mut sums, 1, |i, o| {
            let part = buf
                .get(i * chunk..((i + 1) * chunk).min(buf.len()))
                .unwrap_or(&[]);
            o[0] = kernels::read_probe(part) as f32;
        });
        std::hint::black_box(&sums);
        out.push(buf.len() as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    Ok(out)
}

/// A buffer of `bytes` with every page written (so the probe reads RAM, not the zero
/// page). On Linux it is advised to take transparent huge pages before the first write
/// (`madvise(MADV_HUGEPAGE)`), as the model's map is: the probe then reads memory
/// mapped the way the decode's weights are (here a read-only sum over 2 MiB pages runs
/// 6–9% faster than over 4 KiB pages).
pub fn bandwidth_buffer(bytes: usize) -> ProbeBuf {
    const HUGE: usize = 2 << 20;
    let mut v: Vec<u8> = Vec::with_capacity(bytes + HUGE);
    let at = v.as_ptr().align_offset(HUGE).min(HUGE);
    #[cfg(target_os = "linux")]
    // SAFETY: `at + bytes` is within the allocation (capacity `bytes + HUGE`), which
    // nothing else uses; the advice only changes how its pages will be backed (a
    // failure is ignored: the probe runs on whatever pages it gets).
    unsafe {
        libc::madvise(v.as_mut_ptr().add(at).cast(), bytes, libc::MADV_HUGEPAGE);
    }
    v.extend((0..at + bytes).map(|i| {
        let i = i.wrapping_sub(at);
        (i * 7 + i / 4096) as u8
    }));
    ProbeBuf { v, at, len: bytes }
}

/// The bytes of [`bandwidth_buffer`], starting on a 2 MiB boundary of their allocation.
pub struct ProbeBuf {
    v: Vec<u8>,
    at: usize,
    len: usize,
}

impl std::ops::Deref for ProbeBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.v[self.at..self.at + self.len]
    }
}

/// The share of this process's mapped pages of `path` that are mapped as 2 MiB pages
/// (`FilePmdMapped` / `Rss` over its maps in `/proc/self/smaps`); `None` where that
/// file cannot be read or nothing of `path` is mapped.
pub fn huge_mapped_share(path: &std::path::Path) -> Option<f64> {
    let fields = smaps::map_fields(path)?;
    let kb = |field: &str| -> u64 {
        let lines = fields.iter().filter_map(|l| l.strip_prefix(field));
        lines
            .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    };
    let (rss, pmd) = (kb("Rss:"), kb("FilePmdMapped:"));
    (rss > 0).then(|| pmd as f64 / rss as f64)
}

// ---------------------------------------------------------------- figures

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// CPU time of the whole process (every thread), in seconds. Only one engine runs at a
/// time, so over a phase it is that engine's CPU time, spinning workers included; on a
/// loaded machine tokens per CPU-second are less disturbed than tokens per second.
pub fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

pub fn tok_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{name}, {n} CPUs")
}

/// The checkout the bench was built from: `git describe --always --dirty` style, plus
/// whether src/ had uncommitted changes (other work in progress in a shared checkout).
pub fn source_state() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match git(&["status", "--porcelain", "--", "src"]) {
        Some(s) if !s.is_empty() => format!(
            "commit {head} with uncommitted changes in {} file(s) of src/",
            s.lines().count()
        ),
        Some(_) => format!("commit {head}"),
        None => format!("commit {head}"),
    }
}

/// llama.cpp's own view of the CPU features it was built with.
pub fn llama_system_info() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string owned by llama.cpp.
    let p = unsafe { llama_cpp_sys_2::llama_print_system_info() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated, static.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string()
}

/// `x` with `d` decimals, or "–" for a missing figure.
pub fn fmt(x: f64, d: usize) -> String {
    if x.is_finite() {
        format!("{x:.d$}")
    } else {
        "–".into()
    }
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // days since 1970-01-01 to a civil date (proleptic Gregorian)
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hms = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        hms / 3600,
        hms / 60 % 60
    )
}
