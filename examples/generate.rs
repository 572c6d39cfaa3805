//! Stream a completion from a GGUF model.
//!
//! ```text
//! cargo run --release --example generate -- [--model PATH] [--prompt TEXT]
//!     [--max-tokens N] [--threads N] [--ctx N] [--temperature T] [--top-k K]
//!     [--top-p P] [--min-p P] [--seed S] [--json] [--tokenize-only] [--repack]
//! ```
//!
//! Without `--model` it uses Gemma 3 270M (`gemma-3-270m-q4_k_m.gguf` in
//! `$TRAMONTANE_MODELS_DIR`, else `fixtures/models/`), fetched on first use with
//! `fixtures/fetch-models.sh gemma`. The prompt (default "Once upon a time") gets a BOS
//! token if the model's metadata asks for one; special-token text in it is not parsed.
//! `--temperature 0` is greedy. The prompt and then the generated text stream to stdout;
//! at the end stderr gets the load time, time to first token, prompt and decode speed,
//! and the peak RSS.
//!
//! `--json` prints exactly one line instead:
//! `{"prompt_ids":[..],"gen_ids":[..],"text":"..","load_ms":..,"ttft_ms":..,"prompt_tok_per_s":..,"gen_tok_per_s":..}`
//! (`gen_ids` includes the end-of-generation token if one was produced; `text` is the
//! generated text only). `--tokenize-only --json` prints `{"prompt_ids":[..]}`.
//!
//! `--repack` copies the Q5_0 matrices into the layout of the AVX2 kernels after loading
//! (`Model::repack_weights`: x86-64 at the `avx2` kernel level only). The copies take as
//! many bytes of memory as those matrices take in the file; on Linux the file's pages
//! they replace are released, so the peak RSS stays about the same.
//!
//! Bad input (missing file, not GGUF, unsupported architecture, empty prompt, context
//! too small, a bad option): one line on stderr, exit code 1.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tramontane::{GenerateOptions, Model, SamplerChain, SessionOptions};

const DEFAULT_MODEL: &str = "gemma-3-270m-q4_k_m.gguf";
const DEFAULT_PROMPT: &str = "Once upon a time";

const USAGE: &str = "usage: generate [--model PATH] [--prompt TEXT] [--max-tokens N] [--threads N] \
[--ctx N] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [--json] [--tokenize-only] \
[--repack]";

/// The command line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Args {
    pub(crate) model: Option<PathBuf>,
    pub(crate) prompt: String,
    pub(crate) max_tokens: usize,
    pub(crate) threads: usize,
    pub(crate) ctx: Option<usize>,
    pub(crate) temperature: f32,
    pub(crate) top_k: usize,
    pub(crate) top_p: f32,
    pub(crate) min_p: f32,
    pub(crate) seed: u64,
    pub(crate) json: bool,
    pub(crate) tokenize_only: bool,
    pub(crate) repack: bool,
    pub(crate) help: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            model: None,
            prompt: DEFAULT_PROMPT.to_string(),
            max_tokens: 128,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            ctx: None,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed: 0,
            json: false,
            tokenize_only: false,
            repack: false,
            help: false,
        }
    }
}

pub(crate) fn parse_args(argv: &[String]) -> Result<Args, String> {
    fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a valid value"))
    }
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{flag} needs a value")),
            }
        };
        match flag {
            "--model" | "-m" => a.model = Some(PathBuf::from(value()?)),
            "--prompt" | "-p" => a.prompt = value()?,
            "--max-tokens" | "-n" => a.max_tokens = num(flag, &value()?)?,
            "--threads" | "-t" => a.threads = num(flag, &value()?)?,
            "--ctx" | "-c" => a.ctx = Some(num(flag, &value()?)?),
            "--temperature" | "--temp" => a.temperature = num(flag, &value()?)?,
            "--top-k" => a.top_k = num(flag, &value()?)?,
            "--top-p" => a.top_p = num(flag, &value()?)?,
            "--min-p" => a.min_p = num(flag, &value()?)?,
            "--seed" => a.seed = num(flag, &value()?)?,
            "--json" => a.json = true,
            "--tokenize-only" => a.tokenize_only = true,
            "--repack" => a.repack = true,
            "--help" | "-h" => a.help = true,
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    if a.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if !a.temperature.is_finite() || a.temperature < 0.0 {
        return Err(format!("--temperature {} must be >= 0", a.temperature));
    }
    Ok(a)
}

/// `--model`, else the default model, fetched if missing.
fn model_path(a: &Args, err: &mut dyn Write) -> Result<PathBuf, String> {
    if let Some(p) = &a.model {
        return Ok(p.clone());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("TRAMONTANE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("fixtures/models"));
    let path = dir.join(DEFAULT_MODEL);
    if path.is_file() {
        return Ok(path);
    }
    let _ = writeln!(
        err,
        "{} not found: fetching it with fixtures/fetch-models.sh gemma (about 250 MB, once)",
        path.display()
    );
    // The script's progress goes to our stderr, so that stdout stays the text (or JSON).
    let status = std::process::Command::new(root.join("fixtures/fetch-models.sh"))
        .arg("gemma")
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run fixtures/fetch-models.sh: {e}"))?;
    if !status.success() || !path.is_file() {
        return Err(format!(
            "fetching the default model failed ({status}); pass --model PATH"
        ));
    }
    Ok(path)
}

/// Peak resident set size in kB (`VmHWM`), where /proc exists.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

fn per_s(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if n == 0 || s <= 0.0 {
        0.0
    } else {
        (n as f64 / s * 10.0).round() / 10.0
    }
}

/// The whole program; returns the exit code.
pub(crate) fn run(argv: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match try_run(argv, out, err) {
        Ok(()) => 0,
        Err(msg) => {
            let _ = writeln!(err, "error: {msg}");
            1
        }
    }
}

fn try_run(argv: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<(), String> {
    let a = parse_args(argv)?;
    if a.help {
        let _ = writeln!(out, "{USAGE}");
        return Ok(());
    }
    if a.prompt.is_empty() {
        return Err("empty prompt: give some text with --prompt".into());
    }
    let path = model_path(&a, err)?;

    // Load: map, validate, touch every page (progress on a terminal), build.
    let t_load = Instant::now();
    let show = !a.json && std::io::stderr().is_terminal();
    let mut last_pct = u64::MAX;
    let mut model = Model::open_with_progress(&path, |done, total| {
        let pct = done.saturating_mul(100) / total.max(1);
        if show && pct != last_pct && total > (64 << 20) {
            last_pct = pct;
            eprint!("\rloading {}: {pct:3}%", path.display());
            if done == total {
                eprint!("\r\x1b[K");
            }
        }
    })
    .map_err(|e| e.to_string())?;
    if a.repack {
        model.repack_weights().map_err(|e| e.to_string())?;
    }
    let load = t_load.elapsed();

    let t_start = Instant::now();
    let tok = model.tokenizer();
    let prompt_ids = tok
        .encode(&a.prompt, true, false)
        .map_err(|e| e.to_string())?;
    if a.tokenize_only {
        if a.json {
            let _ = writeln!(out, "{}", json!({ "prompt_ids": prompt_ids }));
        } else {
            let ids: Vec<String> = prompt_ids.iter().map(u32::to_string).collect();
            let _ = writeln!(out, "{}", ids.join(" "));
        }
        return Ok(());
    }

    let need = prompt_ids.len().saturating_add(a.max_tokens);
    let ctx = a.ctx.unwrap_or(need.max(1));
    if prompt_ids.is_empty() {
        return Err("empty prompt: it has no tokens".into());
    }
    if need > ctx {
        return Err(format!(
            "context too small: {} prompt tokens + {} to generate > --ctx {ctx}",
            prompt_ids.len(),
            a.max_tokens
        ));
    }
    let mut session = model
        .session(SessionOptions {
            context_len: ctx,
            threads: a.threads,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
    let sampler = if a.temperature == 0.0 {
        SamplerChain::greedy()
    } else {
        SamplerChain::default()
            .temperature(a.temperature)
            .top_k(a.top_k)
            .top_p(a.top_p)
            .min_p(a.min_p)
            .seed(a.seed)
    };
    sampler.validate().map_err(|e| e.to_string())?;
    let opts = GenerateOptions::default()
        .max_tokens(a.max_tokens)
        .sampler(sampler);

    if !a.json {
        let _ = write!(out, "{}", a.prompt);
        let _ = out.flush();
    }
    let t_gen = Instant::now();
    let mut stream = session
        .generate_tokens(&prompt_ids, opts)
        .map_err(|e| e.to_string())?;
    let prefill = t_gen.elapsed();
    let mut gen_ids = Vec::with_capacity(a.max_tokens);
    let mut text = String::new();
    let mut t_first = None;
    let mut t_last = t_gen;
    while let Some(piece) = stream.next() {
        let piece = piece.map_err(|e| e.to_string())?;
        t_last = Instant::now();
        t_first.get_or_insert(t_last);
        gen_ids.push(piece.token);
        if a.json {
            text.push_str(piece.text);
        } else {
            let _ = write!(out, "{}", piece.text);
            let _ = out.flush();
        }
    }
    // From the prompt text (tokenization included) to the first piece.
    let ttft = t_first.map_or(Duration::ZERO, |t| t - t_start);
    let decode = t_first.map_or(Duration::ZERO, |t| t_last - t);
    let (prompt_tps, gen_tps) = (
        per_s(prompt_ids.len(), prefill),
        per_s(gen_ids.len().saturating_sub(1), decode),
    );
    if a.json {
        let line = json!({
            "prompt_ids": prompt_ids,
            "gen_ids": gen_ids,
            "text": text,
            "load_ms": ms(load),
            "ttft_ms": ms(ttft),
            "prompt_tok_per_s": prompt_tps,
            "gen_tok_per_s": gen_tps,
        });
        let _ = writeln!(out, "{line}");
    } else {
        let _ = writeln!(out);
        let _ = writeln!(
            err,
            "load {:.1} ms | time to first token {:.1} ms | prompt {} tokens, {prompt_tps} tok/s | \
             decode {} tokens, {gen_tps} tok/s | {} threads | peak RSS {}",
            ms(load),
            ms(ttft),
            prompt_ids.len(),
            gen_ids.len(),
            a.threads,
            peak_rss_kb().map_or("n/a".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
        );
    }
    Ok(())
}

fn main() {
    let argv: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let code = match argv {
        Ok(argv) => run(&argv, &mut std::io::stdout().lock(), &mut std::io::stderr()),
        Err(bad) => {
            eprintln!("error: argument {bad:?} is not valid UTF-8");
            1
        }
    };
    std::process::exit(code);
}
