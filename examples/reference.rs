//! reference: llama.cpp (through the `llama-cpp-2` crate, feature `llama-cpp`) as the
//! ground truth for tokenization, logits, greedy continuations, quantizer bytes and
//! speed. Every golden file in fixtures/ is made by a script that calls this program:
//!
//!   cargo run --release --features llama-cpp --example reference -- SUBCOMMAND ...
//!
//! The first build compiles llama.cpp with cmake + clang (Debian: cmake clang
//! libclang-dev), about 10 minutes on 2 cores; ordinary test runs never need it.
//!
//! Subcommands:
//!   tokenize MODEL            stdin: JSON lines {"text":..,"add_special":bool,"parse_special":bool}
//!                             stdout: {"ids":[...]} per line
//!   detok MODEL id...         one line per id: "<id> <hex of token_to_piece(special=true)>"
//!   logits MODEL id...        all ids as one batch, logits for every position;
//!                             per position JSON {"pos","top":[[id,logit]x20],"sum","fnv1a"}
//!   greedy MODEL N PROMPT     greedy decode N tokens after the prompt
//!   bench MODEL THREADS       prefill 128 tokens, decode 64, print tok/s
//!   info MODEL                a few model facts
//!   detokenize MODEL          stdin: JSON lines {"ids","remove_special","unparse_special"}
//!                             stdout: {"hex": hex of llama_detokenize's bytes} per line
//!                             (LLAMA_REF_VOCAB_ONLY=1 loads vocab-only GGUF files)
//!   quantize TYPE N           stdin: N little-endian f32; stdout: ggml's reference
//!                             quantization (type_traits.from_float_ref) of them, as
//!                             rows of N (TYPE: q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 q2_K q3_K
//!                             q4_K q5_K q6_K q8_K ...; ggml's type names)
//!
//! Env knobs:
//!   LLAMA_REF_FA=auto|on|off  flash attention policy (default auto = llama.cpp default; resolves to ON on CPU)
//!   LLAMA_REF_THREADS=N       threads for logits/greedy (default 1)
//!   LLAMA_REF_DUMP=PATH       logits: also write raw little-endian f32 [n_pos][n_vocab]
//!   LLAMA_REF_KV=f16|f32      KV cache type (default f16 = llama.cpp default)
//!   LLAMA_REF_VERBOSE=1       keep llama.cpp logs on stderr

use std::io::{BufRead, Write};
use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn load(backend: &LlamaBackend, path: &str) -> Res<LlamaModel> {
    // CPU only: no GPU backend is compiled in; n_gpu_layers=0 makes it explicit.
    let mut params = LlamaModelParams::default().with_n_gpu_layers(0);
    if std::env::var("LLAMA_REF_VOCAB_ONLY").is_ok_and(|v| v == "1") {
        // Vocab-only GGUF files (the extra tokenizer vocabularies) have no tensors.
        params = params.with_vocab_only(true);
    }
    Ok(LlamaModel::load_from_file(backend, path, &params)?)
}

fn ctx_params(n_ctx: u32, n_batch: u32, threads: i32) -> LlamaContextParams {
    let fa = match env_or("LLAMA_REF_FA", "auto").as_str() {
        "on" => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "auto" => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        _ => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    };
    let kv = match env_or("LLAMA_REF_KV", "f16").as_str() {
        "f32" => KvCacheType::F32,
        _ => KvCacheType::F16,
    };
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(fa)
        .with_type_k(kv)
        .with_type_v(kv)
}

fn new_ctx<'a>(
    model: &'a LlamaModel,
    backend: &LlamaBackend,
    n_ctx: u32,
    n_batch: u32,
    threads: i32,
) -> Res<LlamaContext<'a>> {
    Ok(model.new_context(backend, ctx_params(n_ctx, n_batch, threads))?)
}

fn round_up(n: usize, m: usize) -> u32 {
    (n.div_ceil(m) * m).max(m) as u32
}

fn argmax(v: &[f32]) -> usize {
    // first index of the maximum (same tie-break as llama.cpp's greedy sampler)
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

fn fnv1a(v: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_ids(args: &[String]) -> Res<Vec<LlamaToken>> {
    let mut out = Vec::new();
    for a in args {
        for p in a.split(|c: char| c == ',' || c.is_whitespace()) {
            if !p.is_empty() {
                out.push(LlamaToken::new(p.parse()?));
            }
        }
    }
    Ok(out)
}

fn cmd_tokenize(model: &LlamaModel) -> Res<()> {
    #[derive(serde::Deserialize)]
    struct Req {
        text: String,
        #[serde(default)]
        add_special: bool,
        #[serde(default)]
        parse_special: bool,
    }
    let vocab = model.vocab();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Req = serde_json::from_str(&line)?;
        // add_special: adds BOS/EOS only if the model's metadata asks for it
        let ids = vocab.tokenize(req.text.as_bytes(), req.add_special, req.parse_special);
        let ids: Vec<i32> = ids.iter().map(|t| t.0).collect();
        writeln!(out, "{}", serde_json::json!({ "ids": ids }))?;
    }
    Ok(())
}

/// JSON lines {"ids":[..],"remove_special":bool,"unparse_special":bool} in,
/// {"hex": hex of llama_detokenize's bytes} out.
fn cmd_detokenize(model: &LlamaModel) -> Res<()> {
    #[derive(serde::Deserialize)]
    struct Req {
        ids: Vec<i32>,
        #[serde(default)]
        remove_special: bool,
        #[serde(default)]
        unparse_special: bool,
    }
    let vocab = model.vocab();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Req = serde_json::from_str(&line)?;
        // llama-cpp-2 0.1.160 panics on empty ids with remove_special; the answer is "".
        let bytes = if req.ids.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<LlamaToken> = req.ids.iter().map(|&i| LlamaToken::new(i)).collect();
            vocab.detokenize(&ids, req.remove_special, req.unparse_special)
        };
        writeln!(out, "{}", serde_json::json!({ "hex": hex(&bytes) }))?;
    }
    Ok(())
}

fn cmd_detok(model: &LlamaModel, ids: &[LlamaToken]) -> Res<()> {
    let vocab = model.vocab();
    for &t in ids {
        let piece = vocab.token_to_piece(t, true, None);
        println!("{} {}", t.0, hex(&piece));
    }
    Ok(())
}

fn cmd_logits(model: &LlamaModel, backend: &LlamaBackend, ids: &[LlamaToken]) -> Res<()> {
    let threads: i32 = env_or("LLAMA_REF_THREADS", "1").parse()?;
    let n = ids.len();
    let nb = round_up(n, 64);
    let mut ctx = new_ctx(model, backend, round_up(n, 256).max(512), nb, threads)?;
    let mut batch = LlamaBatch::new(n, 1);
    for (i, &t) in ids.iter().enumerate() {
        batch.add(t, i as i32, &[0], true)?;
    }
    ctx.decode(&mut batch)?;
    let mut dump = match std::env::var("LLAMA_REF_DUMP") {
        Ok(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        Err(_) => None,
    };
    let mut out = std::io::stdout().lock();
    for i in 0..n {
        let l = ctx.get_logits_ith(i as i32);
        let mut idx: Vec<usize> = (0..l.len()).collect();
        // sort by logit desc, then id asc
        idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
        let top: Vec<(usize, f32)> = idx.iter().take(20).map(|&j| (j, l[j])).collect();
        let sum: f64 = l.iter().map(|&x| x as f64).sum();
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "pos": i, "token": ids[i].0, "top": top, "sum": sum,
                "fnv1a": format!("{:016x}", fnv1a(l)), "n_vocab": l.len(),
            })
        )?;
        if let Some(d) = dump.as_mut() {
            for x in l {
                d.write_all(&x.to_le_bytes())?;
            }
        }
    }
    if let Some(mut d) = dump {
        d.flush()?;
    }
    Ok(())
}

fn cmd_greedy(model: &LlamaModel, backend: &LlamaBackend, n_gen: usize, prompt: &str) -> Res<()> {
    let threads: i32 = env_or("LLAMA_REF_THREADS", "1").parse()?;
    let vocab = model.vocab();
    // add_special=true -> BOS added iff tokenizer.ggml.add_bos_token says so
    let prompt_ids = vocab.tokenize(prompt.as_bytes(), true, false);
    let total = prompt_ids.len() + n_gen;
    let mut ctx = new_ctx(
        model,
        backend,
        round_up(total, 256).max(512),
        round_up(prompt_ids.len(), 64),
        threads,
    )?;
    let mut batch = LlamaBatch::new(prompt_ids.len().max(1), 1);
    batch.add_sequence(&prompt_ids, 0, false)?; // logits only for last
    ctx.decode(&mut batch)?;
    let mut last = batch.n_tokens() - 1;
    let mut gen = Vec::new();
    let mut pos = prompt_ids.len() as i32;
    let mut eog_at = None;
    for k in 0..n_gen {
        let next = LlamaToken::new(argmax(ctx.get_logits_ith(last)) as i32);
        gen.push(next);
        if eog_at.is_none() && vocab.is_eog(next) {
            eog_at = Some(k);
        }
        if k + 1 == n_gen {
            break;
        }
        batch.clear();
        batch.add(next, pos, &[0], true)?;
        pos += 1;
        ctx.decode(&mut batch)?;
        last = 0;
    }
    let mut text = Vec::new();
    for &t in &gen {
        text.extend(vocab.token_to_piece(t, false, None));
    }
    println!(
        "{}",
        serde_json::json!({
            "prompt_ids": prompt_ids.iter().map(|t| t.0).collect::<Vec<_>>(),
            "gen_ids": gen.iter().map(|t| t.0).collect::<Vec<_>>(),
            "first_eog_index": eog_at,
            "text": String::from_utf8_lossy(&text),
            "text_hex": hex(&text),
        })
    );
    Ok(())
}

fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn cmd_bench(model: &LlamaModel, backend: &LlamaBackend, threads: i32) -> Res<()> {
    const NP: usize = 128;
    const NG: usize = 64;
    let vocab = model.vocab();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(64);
    let mut ids = vocab.tokenize(text.as_bytes(), true, false);
    ids.truncate(NP);
    assert_eq!(ids.len(), NP);
    let mut ctx = new_ctx(model, backend, 512, NP as u32, threads)?;
    let mut batch = LlamaBatch::new(NP, 1);

    // warm-up (touch weights, allocate graphs), then clear the cache
    batch.add_sequence(&ids[..16], 0, false)?;
    ctx.decode(&mut batch)?;
    ctx.clear_kv_cache();

    let mut best_pp = f64::MAX;
    let mut best_tg = f64::MAX;
    let (mut cpu_pp, mut cpu_tg) = (f64::MAX, f64::MAX);
    let reps: usize = env_or("LLAMA_REF_REPS", "3").parse()?;
    for _ in 0..reps {
        ctx.clear_kv_cache();
        batch.clear();
        batch.add_sequence(&ids, 0, false)?;
        let c0 = cpu_secs();
        let t0 = Instant::now();
        ctx.decode(&mut batch)?;
        let _ = ctx.get_logits_ith(NP as i32 - 1)[0]; // synchronize
        let pp = t0.elapsed().as_secs_f64();
        cpu_pp = cpu_pp.min(cpu_secs() - c0);

        let mut next = LlamaToken::new(argmax(ctx.get_logits_ith(NP as i32 - 1)) as i32);
        let c1 = cpu_secs();
        let t1 = Instant::now();
        for k in 0..NG {
            batch.clear();
            batch.add(next, (NP + k) as i32, &[0], true)?;
            ctx.decode(&mut batch)?;
            next = LlamaToken::new(argmax(ctx.get_logits_ith(0)) as i32);
        }
        let tg = t1.elapsed().as_secs_f64();
        cpu_tg = cpu_tg.min(cpu_secs() - c1);
        best_pp = best_pp.min(pp);
        best_tg = best_tg.min(tg);
    }
    println!(
        "{}",
        serde_json::json!({
            "threads": threads, "n_prompt": NP, "n_gen": NG, "reps": reps,
            "prefill_tok_s": NP as f64 / best_pp,
            "decode_tok_s": NG as f64 / best_tg,
            // tokens per CPU-second of the whole process (all threads); with threads=1 this
            // approximates the uncontended speed on a busy machine
            "prefill_tok_per_cpu_s": NP as f64 / cpu_pp,
            "decode_tok_per_cpu_s": NG as f64 / cpu_tg,
            "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        })
    );
    Ok(())
}

fn cmd_info(model: &LlamaModel) -> Res<()> {
    let vocab = model.vocab();
    println!(
        "{}",
        serde_json::json!({
            "n_vocab": model.n_vocab(), "n_embd": model.n_embd(), "n_layer": model.n_layer(),
            "n_head": model.n_head(), "n_head_kv": model.n_head_kv(), "n_ctx_train": model.n_ctx_train(),
            "bos": vocab.bos().0, "eos": vocab.eos().0, "eot": vocab.eot().0,
            "add_bos": vocab.should_add_bos(), "add_eos": vocab.should_add_eos(),
            "arch": model.meta_val_str("general.architecture").ok(),
            "n_params": model.n_params(), "size": model.size(),
            "system_info": unsafe { std::ffi::CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) }.to_string_lossy(),
        })
    );
    Ok(())
}

#[allow(non_snake_case)]
extern "C" {
    /// ggml-quants.c's reference Q8_K quantizer (libggml-base, linked by llama-cpp-sys-2).
    fn quantize_row_q8_K_ref(x: *const f32, y: *mut std::ffi::c_void, k: i64);
}

/// ggml's reference quantizer for `ty` over one row of `n` values read from stdin.
fn cmd_quantize(ty: &str, n: usize) -> Res<()> {
    use std::io::Read;
    let mut id = None;
    for t in 0..llama_cpp_sys_2::GGML_TYPE_COUNT {
        // SAFETY: ggml_get_type_traits accepts any id below GGML_TYPE_COUNT and returns
        // a pointer to a static table entry (or NULL for ids past the table).
        let traits = unsafe { llama_cpp_sys_2::ggml_get_type_traits(t) };
        if traits.is_null() {
            continue;
        }
        // SAFETY: non-null pointer into ggml's static traits table; type_name is a
        // static NUL-terminated string or NULL for removed types.
        let name = unsafe { (*traits).type_name };
        if !name.is_null() && unsafe { std::ffi::CStr::from_ptr(name) }.to_str()? == ty {
            id = Some(traits);
            break;
        }
    }
    let traits = id.ok_or_else(|| format!("unknown ggml type {ty}"))?;
    // SAFETY: `traits` points into ggml's static table (checked non-null above).
    let (blck, size, from_float) = unsafe {
        (
            (*traits).blck_size as usize,
            (*traits).type_size,
            (*traits).from_float_ref,
        )
    };
    // ggml's traits table has no from_float_ref for Q8_K (its quantizer lives in the CPU
    // backend's table); the reference one is ggml-quants.c's, exported by ggml-base.
    let from_float = match (from_float, ty) {
        (Some(f), _) => f,
        (None, "q8_K") => quantize_row_q8_K_ref,
        _ => return Err(format!("ggml has no reference quantizer for {ty}").into()),
    };
    if blck == 0 || n % blck != 0 {
        return Err(format!("{n} values are not whole {ty} blocks of {blck}").into());
    }
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    if raw.len() != n * 4 {
        return Err(format!("stdin has {} bytes, expected {}", raw.len(), n * 4).into());
    }
    let x: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut y = vec![0u8; n / blck * size];
    // SAFETY: x holds n f32 and y holds the n/blck blocks of `size` bytes that the
    // quantizer writes for a row of n values.
    unsafe { from_float(x.as_ptr(), y.as_mut_ptr().cast(), n as i64) };
    std::io::stdout().write_all(&y)?;
    Ok(())
}

/// `tensors MODEL OUTDIR NAMES ids...`: run the ids through llama.cpp as one batch (flash
/// attention off, f16 KV cache, one thread, logits for the last position) and write
/// every f32 graph tensor whose name is in `NAMES` (comma-separated, `*` for all) to
/// `OUTDIR/NAME.bin` (little-endian f32 in ggml's element order; a name computed twice
/// keeps its last value), with `OUTDIR/index.txt` listing name, type and shape. Compare
/// with the crate's tensors (`examples/trace.rs`) by `fixtures/compare-tensors.py`.
fn cmd_tensors(path: &str, dir: &str, names: &str, ids: &[i32]) -> Res<()> {
    use llama_cpp_sys_2 as sys;
    use std::ffi::{c_void, CStr, CString};

    struct Probe {
        dir: String,
        names: Vec<String>,
        index: String,
    }

    unsafe extern "C" fn probe(t: *mut sys::ggml_tensor, ask: bool, ud: *mut c_void) -> bool {
        // SAFETY: `ud` is the `Probe` passed below, alive for the whole decode; ggml
        // calls back on the decoding thread only; `t` is a live graph node.
        let (p, tt) = unsafe { (&mut *(ud as *mut Probe), &*t) };
        // SAFETY: ggml_get_name returns the node's NUL-terminated name.
        let name = unsafe { CStr::from_ptr(sys::ggml_get_name(t)) }
            .to_string_lossy()
            .into_owned();
        let wanted = p.names.iter().any(|n| n == "*" || *n == name);
        if ask || !wanted {
            return wanted || !ask;
        }
        p.index
            .push_str(&format!("{name} type={} ne={:?}\n", tt.type_, tt.ne));
        if tt.type_ != sys::GGML_TYPE_F32 || tt.data.is_null() {
            return true;
        }
        let mut out = Vec::new();
        let base = tt.data as *const u8;
        for i3 in 0..tt.ne[3] {
            for i2 in 0..tt.ne[2] {
                for i1 in 0..tt.ne[1] {
                    for i0 in 0..tt.ne[0] {
                        let off = i0 as usize * tt.nb[0]
                            + i1 as usize * tt.nb[1]
                            + i2 as usize * tt.nb[2]
                            + i3 as usize * tt.nb[3];
                        // SAFETY: the offset is inside the tensor (ne/nb from ggml).
                        let v = unsafe { (base.add(off) as *const f32).read_unaligned() };
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        let _ = std::fs::write(format!("{}/{}.bin", p.dir, name.replace('/', "_")), out);
        true
    }

    std::fs::create_dir_all(dir)?;
    let mut p = Box::new(Probe {
        dir: dir.to_string(),
        names: names.split(',').map(String::from).collect(),
        index: String::new(),
    });
    let mut ids = ids.to_vec();
    // SAFETY: plain llama.cpp C API calls in their documented order; every pointer is
    // checked before use and freed at the end.
    unsafe {
        sys::llama_backend_init();
        let mut mp = sys::llama_model_default_params();
        mp.n_gpu_layers = 0;
        let cpath = CString::new(path)?;
        let m = sys::llama_model_load_from_file(cpath.as_ptr(), mp);
        if m.is_null() {
            return Err(format!("cannot load {path}").into());
        }
        let mut cp = sys::llama_context_default_params();
        let n = ids.len() as u32;
        cp.n_ctx = round_up(n as usize, 256).max(512) as u32;
        cp.n_batch = cp.n_ctx;
        cp.n_ubatch = cp.n_ctx;
        cp.n_threads = 1;
        cp.n_threads_batch = 1;
        cp.flash_attn_type = sys::LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.cb_eval = Some(probe);
        cp.cb_eval_user_data = &mut *p as *mut Probe as *mut c_void;
        let ctx = sys::llama_init_from_model(m, cp);
        if ctx.is_null() {
            sys::llama_model_free(m);
            return Err("cannot create a context".into());
        }
        let batch = sys::llama_batch_get_one(ids.as_mut_ptr(), ids.len() as i32);
        let rc = sys::llama_decode(ctx, batch);
        sys::llama_free(ctx);
        sys::llama_model_free(m);
        if rc != 0 {
            return Err(format!("llama_decode returned {rc}").into());
        }
    }
    std::fs::write(format!("{dir}/index.txt"), &p.index)?;
    eprintln!("wrote {} tensors to {dir}", p.index.lines().count());
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 4 && args[1] == "quantize" {
        return cmd_quantize(&args[2], args[3].parse()?);
    }
    if args.len() >= 6 && args[1] == "tensors" {
        let ids: Vec<i32> = args[5..]
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?;
        return cmd_tensors(&args[2], &args[3], &args[4], &ids);
    }
    if args.len() < 3 {
        eprintln!("usage: reference tokenize|detok|logits|greedy|bench|info MODEL [args] | quantize TYPE N | tensors MODEL OUTDIR NAMES ids...");
        std::process::exit(2);
    }
    let mut backend = LlamaBackend::init()?;
    if std::env::var("LLAMA_REF_VERBOSE").is_err() {
        backend.void_logs(); // llama_log_set(noop) -> silences llama.cpp + ggml logs
    }
    let model = load(&backend, &args[2])?;
    match args[1].as_str() {
        "tokenize" => cmd_tokenize(&model),
        "detokenize" => cmd_detokenize(&model),
        "detok" => cmd_detok(&model, &parse_ids(&args[3..])?),
        "logits" => cmd_logits(&model, &backend, &parse_ids(&args[3..])?),
        "greedy" => cmd_greedy(&model, &backend, args[3].parse()?, &args[4]),
        "bench" => cmd_bench(&model, &backend, args[3].parse()?),
        "info" => cmd_info(&model),
        c => Err(format!("unknown subcommand {c}").into()),
    }
}
