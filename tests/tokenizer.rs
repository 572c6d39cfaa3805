//! Tokenizer tests: goldens from llama.cpp on the real Gemma 3 (SentencePiece) and
//! Qwen2.5 (byte-level BPE) vocabularies, round trips, the streaming detokenizer, and
//! small vocabularies built in memory.
//!
//! The real models are looked up in `$TRAMONTANE_MODELS_DIR` or `fixtures/models/`
//! (see `fixtures/fetch-models.sh`). A missing model fails the test with a message
//! saying so, unless `TRAMONTANE_SKIP_REAL_MODELS=1`, which skips those tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use tramontane::gguf::{Gguf, GgufWriter, OwnedValue, ValueType};
use tramontane::tokenizer::{PreTokenizer, TokenAttr, Tokenizer, TokenizerError, VocabKind};
use tramontane::Backing;

/// Counts the allocations of the current thread (tests run in parallel threads).
struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf";

fn models_dir() -> PathBuf {
    match std::env::var_os("TRAMONTANE_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models"),
    }
}

fn skip_real_models() -> bool {
    std::env::var("TRAMONTANE_SKIP_REAL_MODELS").is_ok_and(|v| v == "1")
}

/// The tokenizer of a real model, loaded once per test binary; `None` when the model is
/// missing and `TRAMONTANE_SKIP_REAL_MODELS=1`.
fn real(file: &str) -> Option<&'static Tokenizer> {
    static GEMMA_TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    static QWEN_TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    let cell = if file == GEMMA { &GEMMA_TOK } else { &QWEN_TOK };
    cell.get_or_init(|| {
        let path = models_dir().join(file);
        if !path.exists() {
            if skip_real_models() {
                eprintln!("skipping: {} is missing and TRAMONTANE_SKIP_REAL_MODELS=1", path.display());
                return None;
            }
            panic!(
                "real model {} is missing: run fixtures/fetch-models.sh (or set TRAMONTANE_MODELS_DIR), \
                 or set TRAMONTANE_SKIP_REAL_MODELS=1 to skip the tests that need it",
                path.display()
            );
        }
        let bytes = Backing::map_file(&path).expect("map model");
        let g = Gguf::parse(bytes).expect("parse model");
        Some(Tokenizer::from_gguf(&g).expect("tokenizer from model"))
    })
    .as_ref()
}

struct Golden {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<u32>,
}

fn goldens(name: &str) -> Vec<Golden> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tokenizer")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("golden json");
            Golden {
                text: v["text"].as_str().expect("text").to_owned(),
                add_special: v["add_special"].as_bool().expect("add_special"),
                parse_special: v["parse_special"].as_bool().expect("parse_special"),
                ids: v["ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|x| x.as_u64().expect("id") as u32)
                    .collect(),
            }
        })
        .collect()
}

fn check_goldens(tok: &Tokenizer, name: &str) {
    let gs = goldens(name);
    assert!(gs.len() >= 120, "{name}: only {} goldens", gs.len());
    let mut failures = Vec::new();
    for g in &gs {
        let ids = tok
            .encode(&g.text, g.add_special, g.parse_special)
            .expect("encode");
        if ids != g.ids {
            failures.push(format!(
                "text {:?} add_special={} parse_special={}\n  llama.cpp: {:?}\n  ours:      {:?}",
                g.text, g.add_special, g.parse_special, g.ids, ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} goldens differ from llama.cpp:\n{}",
        failures.len(),
        gs.len(),
        failures.join("\n")
    );
}

/// llama.cpp's `llama_detokenize` of the corpus ids and of random id sequences.
fn check_detok_goldens(tok: &Tokenizer, name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tokenizer")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut n = 0;
    let mut failures = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let ids: Vec<u32> = v["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect();
        let (rs, us) = (
            v["remove_special"].as_bool().expect("bool"),
            v["unparse_special"].as_bool().expect("bool"),
        );
        let want = v["hex"].as_str().expect("hex");
        let got: String = tok
            .detokenize(&ids, rs, us)
            .expect("detokenize")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != want {
            failures.push(format!("{ids:?} remove_special={rs} unparse_special={us}\n  llama.cpp: {want}\n  ours:      {got}"));
        }
        n += 1;
    }
    assert!(n >= 300, "{name}: only {n} goldens");
    assert!(
        failures.is_empty(),
        "{name}: {} of {n} differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn gemma3_goldens() {
    let Some(tok) = real(GEMMA) else { return };
    assert_eq!(tok.kind(), VocabKind::SentencePiece);
    check_goldens(tok, "gemma3.jsonl");
    check_goldens(tok, "gemma3.random.jsonl");
    check_detok_goldens(tok, "gemma3.detok.jsonl");
}

#[test]
fn qwen2_goldens() {
    let Some(tok) = real(QWEN) else { return };
    assert_eq!(tok.kind(), VocabKind::BytePairEncoding);
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Qwen2));
    check_goldens(tok, "qwen2.jsonl");
    check_goldens(tok, "qwen2.random.jsonl");
    check_detok_goldens(tok, "qwen2.detok.jsonl");
}

fn corpus() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tokenizer/corpus.jsonl");
    let text = std::fs::read_to_string(&path).expect("corpus");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["text"]
                .as_str()
                .expect("text")
                .to_owned()
        })
        .collect()
}

fn check_round_trip(tok: &Tokenizer) {
    for s in corpus() {
        for add_special in [false, true] {
            let ids = tok.encode(&s, add_special, false).expect("encode");
            let back = tok.detokenize(&ids, true, false).expect("detokenize");
            // The leading-space rule (as llama.cpp): with add_space_prefix the space added
            // when encoding is removed when decoding, except after a BOS that
            // detokenize(remove_special) dropped.
            let expected =
                if tok.add_space_prefix() && add_special && tok.add_bos() && !s.is_empty() {
                    format!(" {s}")
                } else {
                    s.clone()
                };
            if !tok.clean_spaces() {
                assert_eq!(
                    String::from_utf8_lossy(&back),
                    expected,
                    "round trip of {s:?} (add_special={add_special})"
                );
            }
            // Streaming gives the text back, without the BOS and the prefix space.
            let mut d = tok
                .detokenizer()
                .strip_leading_space(tok.add_space_prefix());
            let mut streamed = String::new();
            for &id in ids
                .iter()
                .filter(|&&id| !(add_special && Some(id) == tok.bos()))
            {
                streamed.push_str(d.push(tok, id).expect("push"));
            }
            streamed.push_str(d.finish());
            assert_eq!(streamed, s, "streamed round trip of {s:?}");
        }
    }
}

#[test]
fn gemma3_round_trip() {
    let Some(tok) = real(GEMMA) else { return };
    check_round_trip(tok);
}

#[test]
fn qwen2_round_trip() {
    let Some(tok) = real(QWEN) else { return };
    check_round_trip(tok);
}

/// A vocab-only GGUF built by `fixtures/tokenizer/make_vocabs.sh` (Llama 3, Tekken).
/// Missing, it fails the test with a message, unless TRAMONTANE_SKIP_REAL_MODELS=1
/// (then `None`: the test is skipped, as the README says).
fn extra_vocab(file: &str) -> Option<Tokenizer> {
    let path = models_dir().join(file);
    if !path.exists() {
        if skip_real_models() {
            eprintln!(
                "skipping: {} is missing and TRAMONTANE_SKIP_REAL_MODELS=1",
                path.display()
            );
            return None;
        }
        panic!(
            "{} is missing: build it with fixtures/tokenizer/make_vocabs.sh \
             (or set TRAMONTANE_SKIP_REAL_MODELS=1 to skip the tests that need it)",
            path.display()
        );
    }
    let bytes = std::fs::read(&path).expect("read vocab");
    let g = Gguf::parse(&bytes[..]).expect("parse vocab");
    Some(Tokenizer::from_gguf(&g).expect("tokenizer from vocab"))
}

/// Mistral v0.1's SentencePiece vocabulary (vocab-only GGUF, committed): unlike Gemma it
/// adds a space prefix.
#[test]
fn mistral_spm_goldens_and_round_trip() {
    let tok = mistral();
    assert_eq!(tok.kind(), VocabKind::SentencePiece);
    assert!(tok.add_space_prefix() && tok.add_bos());
    check_goldens(&tok, "mistral-spm.jsonl");
    check_goldens(&tok, "mistral-spm.random.jsonl");
    check_detok_goldens(&tok, "mistral-spm.detok.jsonl");
    check_round_trip(&tok);
    // "Hello" is "▁Hello": the space comes back only where llama.cpp keeps it.
    let ids = tok.encode("Hello", true, false).expect("encode");
    assert_eq!(
        tok.detokenize(&ids[1..], false, false).expect("decode"),
        b"Hello"
    );
    assert_eq!(
        tok.detokenize(&ids, true, false).expect("decode"),
        b" Hello"
    );
}

#[test]
fn llama3_goldens_and_round_trip() {
    let Some(tok) = extra_vocab("llama3-vocab.gguf") else {
        return;
    };
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Llama3));
    check_goldens(&tok, "llama3.jsonl");
    check_goldens(&tok, "llama3.random.jsonl");
    check_detok_goldens(&tok, "llama3.detok.jsonl");
    check_round_trip(&tok);
    assert!(tok.is_eog(tok.token_id("<|eot_id|>").expect("<|eot_id|>")));
}

#[test]
fn tekken_goldens_and_round_trip() {
    let Some(tok) = extra_vocab("tekken-vocab.gguf") else {
        return;
    };
    assert_eq!(tok.pre_tokenizer(), Some(PreTokenizer::Tekken));
    check_goldens(&tok, "tekken.jsonl");
    check_goldens(&tok, "tekken.random.jsonl");
    check_detok_goldens(&tok, "tekken.detok.jsonl");
    check_round_trip(&tok);
}

#[test]
fn special_tokens_and_eog() {
    if let Some(g) = real(GEMMA) {
        assert_eq!(
            (
                g.bos(),
                g.eos(),
                g.add_bos(),
                g.add_eos(),
                g.add_space_prefix()
            ),
            (Some(2), Some(1), true, false, false)
        );
        let eot = g.token_id("<end_of_turn>").expect("<end_of_turn>");
        assert_eq!(g.eot(), Some(eot));
        assert!(g.is_eog(eot) && g.is_eog(1));
        assert!(!g.is_eog(2));
        assert!(g.is_control(eot));
        assert_eq!(g.token_to_piece(eot, false).expect("piece"), b"");
        assert_eq!(
            g.token_to_piece(eot, true).expect("piece"),
            b"<end_of_turn>"
        );
    }
    if let Some(q) = real(QWEN) {
        let im_end = q.token_id("<|im_end|>").expect("<|im_end|>");
        let eot = q.token_id("<|endoftext|>").expect("<|endoftext|>");
        assert!(q.is_eog(im_end) && q.is_eog(eot));
        assert!(!q.is_eog(q.token_id("<|im_start|>").expect("<|im_start|>")));
        assert_eq!((q.add_bos(), q.eos()), (false, Some(im_end)));
    }
}

#[test]
fn parse_special_off_gives_plain_text_tokens() {
    for (file, marker) in [(QWEN, "<|im_start|>"), (GEMMA, "<start_of_turn>")] {
        let Some(tok) = real(file) else { continue };
        let special = tok.token_id(marker).expect("marker token");
        let text = format!("{marker}user\nhello");
        let on = tok.encode(&text, false, true).expect("encode");
        let off = tok.encode(&text, false, false).expect("encode");
        assert_eq!(on.first(), Some(&special), "{file}: parse_special on");
        assert!(
            !off.contains(&special),
            "{file}: parse_special off must not produce {marker}"
        );
        assert!(off.len() > on.len());
        assert_eq!(
            tok.detokenize(&off, false, false).expect("decode"),
            text.as_bytes()
        );
    }
}

#[test]
fn invalid_token() {
    let Some(tok) = real(QWEN) else { return };
    let n = tok.n_vocab();
    let err = tok.token_to_piece(n, false).unwrap_err();
    assert_eq!(
        err,
        TokenizerError::InvalidToken {
            id: n,
            vocab_size: n
        }
    );
    assert!(matches!(
        tok.detokenize(&[1, u32::MAX], false, false),
        Err(TokenizerError::InvalidToken { id: u32::MAX, .. })
    ));
    let mut d = tok.detokenizer();
    assert!(d.push(tok, n + 5).is_err());
    let e: tramontane::Error = err.into();
    assert!(e.to_string().contains("out of range"), "{e}");
}

/// An emoji whose four bytes arrive as separate tokens comes out whole.
#[test]
fn streaming_detokenizer_split_emoji() {
    let Some(tok) = real(GEMMA) else { return };
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).expect("byte token");
    let emoji = "🦀".as_bytes();
    let mut ids: Vec<u32> = tok.encode("Crab ", false, false).expect("encode");
    ids.extend(emoji.iter().map(|&b| byte(b)));
    ids.extend(tok.encode(" é", false, false).expect("encode"));
    let mut d = tok.detokenizer();
    let mut outs = Vec::new();
    for &id in &ids {
        outs.push(d.push(tok, id).expect("push").to_owned());
    }
    outs.push(d.finish().to_owned());
    let joined: String = outs.concat();
    assert_eq!(joined, "Crab 🦀 é");
    assert!(!joined.contains('\u{FFFD}'));
    // The three first byte tokens of the emoji gave nothing, the fourth gave all of it.
    let n = ids.len();
    let first_emoji = n - emoji.len() - tok.encode(" é", false, false).expect("encode").len();
    assert_eq!(&outs[first_emoji..first_emoji + 3], ["", "", ""]);
    assert_eq!(outs[first_emoji + 3], "🦀");
    // A sequence cut short at the end of the stream is flushed as U+FFFD.
    let mut d = tok.detokenizer();
    assert_eq!(d.push(tok, byte(0xF0)).expect("push"), "");
    assert_eq!(d.push(tok, byte(0x9F)).expect("push"), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    // An invalid byte in the middle becomes U+FFFD, and what follows is kept.
    let mut d = tok.detokenizer();
    assert_eq!(d.push(tok, byte(0xE2)).expect("push"), "");
    assert_eq!(d.push(tok, byte(b'A')).expect("push"), "\u{FFFD}A");
}

fn mistral() -> Tokenizer {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tokenizer/mistral-v1-vocab.gguf");
    let bytes = std::fs::read(&path).expect("mistral vocab");
    Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).expect("parse")).expect("tokenizer")
}

/// The streaming detokenizer allocates nothing per token once created.
#[test]
fn detokenizer_does_not_allocate_per_token() {
    let b = allocs();
    std::hint::black_box(Vec::<u8>::with_capacity(16));
    assert!(allocs() > b, "the counting allocator counts");
    let mut toks = vec![mistral()];
    toks.extend(real(QWEN).cloned());
    for tok in &toks {
        let text = corpus().join(" ");
        let mut ids = tok.encode(&text, true, true).expect("encode");
        ids.extend(0..tok.n_vocab().min(5000)); // every kind of token, control ones too
        let mut d = tok.detokenizer().render_special(true);
        let mut n = 0usize;
        let before = allocs();
        for &id in &ids {
            n += d.push(tok, id).expect("push").len();
        }
        n += d.finish().len();
        assert_eq!(
            allocs() - before,
            0,
            "allocations while detokenizing {} tokens",
            ids.len()
        );
        assert!(n > text.len());
    }
}

/// Qwen2: multi-byte characters split across byte-level BPE tokens.
#[test]
fn streaming_detokenizer_bpe_partial_tokens() {
    let Some(tok) = real(QWEN) else { return };
    let text = "日本語のテキスト👨‍👩‍👧‍👦 und Grüße";
    let ids = tok.encode(text, false, false).expect("encode");
    let mut d = tok.detokenizer();
    let mut out = String::new();
    let mut saw_partial = false;
    for &id in &ids {
        let piece = tok.token_to_piece(id, false).expect("piece");
        saw_partial |= std::str::from_utf8(piece).is_err();
        let s = d.push(tok, id).expect("push");
        assert!(!s.contains('\u{FFFD}'));
        out.push_str(s);
    }
    out.push_str(d.finish());
    assert_eq!(out, text);
    assert!(
        saw_partial,
        "expected some token pieces that are not valid UTF-8 on their own"
    );
}

/// CPU time of the calling thread (Linux: /proc/thread-self/stat, in clock ticks of
/// 10 ms), or wall-clock time elsewhere: a loaded machine must not fail a time bound.
struct Clock {
    wall: Instant,
    cpu: Option<f64>,
}

fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state(3) … utime(14) stime(15).
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: thread_cpu_seconds(),
        }
    }

    /// Seconds of CPU time (or wall time) since `start`.
    fn seconds(&self) -> f64 {
        match (self.cpu, thread_cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => self.wall.elapsed().as_secs_f64(),
        }
    }
}

/// 1 MB of mixed text tokenizes in (about) linear time on both vocabularies: well under
/// 10 s of CPU time even in a debug build (a quadratic step would take hours).
#[test]
fn one_megabyte_is_not_quadratic() {
    let block = corpus().join(" ");
    let mut text = String::new();
    while text.len() < 1 << 20 {
        text.push_str(&block);
        text.push('\n');
    }
    for file in [GEMMA, QWEN] {
        let Some(tok) = real(file) else { continue };
        let clock = Clock::start();
        let ids = tok.encode(&text, false, false).expect("encode");
        let (dt, wall) = (clock.seconds(), clock.wall.elapsed().as_secs_f64());
        eprintln!(
            "{file}: {} bytes -> {} tokens in {dt:.3} s CPU, {wall:.3} s wall ({:.0} tokens/s)",
            text.len(),
            ids.len(),
            ids.len() as f64 / wall
        );
        assert!(dt < 10.0, "{file}: 1 MB took {dt:.1} s of CPU time");
        // Pathological: 256 KiB runs of one character (one SentencePiece symbol chain,
        // one BPE word, 30 overlapping space tokens at each position for Gemma).
        for s in [
            " ".repeat(1 << 18),
            "a".repeat(1 << 18),
            "\n".repeat(1 << 17) + &"1".repeat(1 << 17),
        ] {
            let clock = Clock::start();
            tok.encode(&s, false, true).expect("encode");
            let dt = clock.seconds();
            eprintln!("{file}: run of {:?}: {dt:.3} s CPU", &s[..1]);
            assert!(
                dt < 10.0,
                "{file}: run of {:?} took {dt:.1} s of CPU time",
                &s[..1]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small vocabularies built in memory (no real model needed).

fn spm_vocab(extra: impl FnOnce(&mut GgufWriter)) -> Tokenizer {
    let mut tokens: Vec<String> = [
        "<unk>", "<s>", "</s>", "▁", "▁h", "▁hi", "h", "i", "x", "<ctrl>", "<ud>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut scores = vec![0.0, 0.0, 0.0, -1.0, -3.0, -0.5, -5.0, -5.0, -5.0, 0.0, 0.0];
    let mut types = vec![2, 3, 3, 1, 1, 1, 1, 1, 1, 3, 4];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(6);
    }
    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_str_array("tokenizer.ggml.tokens", &tokens);
    w.add_f32_array("tokenizer.ggml.scores", &scores);
    w.add_i32_array("tokenizer.ggml.token_type", &types);
    extra(&mut w);
    let bytes = w.to_bytes().expect("gguf");
    Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).expect("parse")).expect("tokenizer")
}

#[test]
fn tiny_spm() {
    let tok = spm_vocab(|_| {});
    let byte = |b: u8| 11 + u32::from(b);
    assert_eq!(tok.encode("hi", true, false).unwrap(), [1, 5]);
    assert_eq!(tok.encode("hi", false, false).unwrap(), [5]);
    assert_eq!(tok.encode("", true, false).unwrap(), [1]);
    assert_eq!(tok.encode("", false, false).unwrap(), Vec::<u32>::new());
    // 'é' is not a token: byte fallback.
    assert_eq!(
        tok.encode("hé", false, false).unwrap(),
        [4, byte(0xC3), byte(0xA9)]
    );
    // Control tokens only with parse_special; user-defined ones always.
    assert_eq!(tok.encode("<ctrl>x", false, true).unwrap(), [9, 3, 8]);
    assert_ne!(tok.encode("<ctrl>x", false, false).unwrap()[0], 9);
    assert_eq!(tok.encode("<ud>x", false, false).unwrap(), [10, 3, 8]);
    // Decoding: the prefix space goes away; bytes come back.
    assert_eq!(tok.detokenize(&[5], false, false).unwrap(), b"hi");
    assert_eq!(tok.detokenize(&[1, 5], true, false).unwrap(), b" hi");
    assert_eq!(
        tok.detokenize(&[4, byte(0xC3), byte(0xA9)], false, false)
            .unwrap(),
        "hé".as_bytes()
    );
    assert_eq!(tok.token_to_piece(9, false).unwrap(), b"");
    assert_eq!(tok.token_to_piece(9, true).unwrap(), b"<ctrl>");
    assert_eq!(tok.token_attr(10).unwrap(), TokenAttr::USER_DEFINED);
    assert!(tok.is_eog(2) && !tok.is_eog(1));
    assert_eq!(
        tok.token_to_piece(10_000, false),
        Err(TokenizerError::InvalidToken {
            id: 10_000,
            vocab_size: 267
        })
    );
}

#[test]
fn api_basics() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Tokenizer>();
    let tok = mistral();
    // encode_into appends.
    let mut out = vec![7u32];
    tok.encode_into("Hello", false, false, &mut out).unwrap();
    assert_eq!(out[0], 7);
    assert_eq!(&out[1..], tok.encode("Hello", false, false).unwrap());
    // decode: detokenize(ids, false, special) as a String.
    assert_eq!(tok.decode(&out[1..], false).unwrap(), "Hello");
    assert_eq!(tok.decode(&[1, 2], true).unwrap(), "<s></s>");
    assert_eq!(tok.decode(&[1, 2], false).unwrap(), "");
    // The Detokenizer can be reused after finish().
    let mut d = tok.detokenizer();
    let ids = tok.encode("a b", false, false).unwrap();
    let first: String = ids
        .iter()
        .map(|&id| d.push(&tok, id).unwrap().to_owned())
        .collect();
    d.finish();
    let second: String = ids
        .iter()
        .map(|&id| d.push(&tok, id).unwrap().to_owned())
        .collect();
    assert_eq!((first.as_str(), second.as_str()), ("a b", "a b"));
    let e = tramontane::Error::from(TokenizerError::UnknownPreTokenizer { pre: "x".into() });
    assert!(e.to_string().starts_with("tokenizer: "), "{e}");
}

#[test]
fn tiny_spm_metadata_overrides() {
    let tok = spm_vocab(|w| {
        w.add_bool("tokenizer.ggml.add_space_prefix", false);
        w.add_bool("tokenizer.ggml.add_bos_token", false);
        w.add_bool("tokenizer.ggml.add_eos_token", true);
        w.add_u32("tokenizer.ggml.eos_token_id", 9);
    });
    assert_eq!(tok.encode("hi", true, false).unwrap(), [6, 7, 9]);
    assert!(tok.is_eog(9));
}

fn bpe_vocab(
    pre: &str,
    extra_tokens: &[&str],
    merges: &[&str],
) -> Result<Tokenizer, tramontane::Error> {
    // Every byte as a GPT-2 code point, then the extra tokens.
    let mut tokens: Vec<String> = (0..=255u8).map(gpt2_char).map(String::from).collect();
    tokens.extend(extra_tokens.iter().map(|s| s.to_string()));
    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "gpt2");
    w.add_str("tokenizer.ggml.pre", pre);
    w.add_str_array("tokenizer.ggml.tokens", &tokens);
    w.add_str_array("tokenizer.ggml.merges", merges);
    let bytes = w.to_bytes()?;
    Ok(Tokenizer::from_gguf(&Gguf::parse(&bytes[..])?)?)
}

fn gpt2_char(b: u8) -> char {
    let keep = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if keep {
        return char::from(b);
    }
    let n = (0..b)
        .filter(|&x| !((0x21..=0x7E).contains(&x) || (0xA1..=0xAC).contains(&x) || x >= 0xAE))
        .count() as u32;
    char::from_u32(256 + n).unwrap()
}

#[test]
fn tiny_bpe() {
    let tok = bpe_vocab(
        "qwen2",
        &["he", "ll", "hell", "hello", "Ġw", "Ġwo"],
        &["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"],
    )
    .unwrap();
    let he = 256;
    assert_eq!(tok.encode("hello", false, false).unwrap(), [259]);
    assert_eq!(tok.encode("hello wo", false, false).unwrap(), [259, 261]);
    // Qwen2 splits digits one by one: '1' '2'.
    // (Token ids 0..256 are the bytes in order in this vocabulary.)
    assert_eq!(
        tok.encode("12", false, false).unwrap(),
        [u32::from(b'1'), u32::from(b'2')]
    );
    assert_eq!(
        tok.detokenize(&[259, 261], false, false).unwrap(),
        b"hello wo"
    );
    assert_eq!(tok.token_text(he).unwrap(), "he");
    // Bytes of a multi-byte character come back through the byte map.
    let ids = tok.encode("é", false, false).unwrap();
    assert_eq!(tok.detokenize(&ids, false, false).unwrap(), "é".as_bytes());
}

#[test]
fn bpe_pre_tokenizers() {
    for (name, pre) in [
        ("", PreTokenizer::Default),
        ("default", PreTokenizer::Default),
        ("gpt-2", PreTokenizer::Gpt2),
        ("llama-bpe", PreTokenizer::Llama3),
        ("qwen2", PreTokenizer::Qwen2),
        ("tekken", PreTokenizer::Tekken),
        ("smollm", PreTokenizer::StarCoder),
    ] {
        let tok = bpe_vocab(name, &[], &["a b"]).unwrap();
        assert_eq!(tok.pre_tokenizer(), Some(pre), "{name}");
        // Every byte is a token here, so any text round-trips.
        let s = "Hello World 12345 l’Europe 🦀\n\n  x";
        let ids = tok.encode(s, false, false).unwrap();
        assert_eq!(
            tok.detokenize(&ids, false, false).unwrap(),
            s.as_bytes(),
            "{name}"
        );
    }
    // Llama 3 adds BOS by default (but this vocabulary has no BOS: default id 11 is used).
    assert!(bpe_vocab("llama-bpe", &[], &[]).unwrap().add_bos());
}

#[test]
fn bad_metadata_is_a_clear_error() {
    let err = bpe_vocab("no-such-pre", &[], &[]).unwrap_err();
    assert!(err.to_string().contains("no-such-pre"), "{err}");

    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    let bytes = w.to_bytes().unwrap();
    let err = Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).unwrap()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");

    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "t5");
    w.add_str_array("tokenizer.ggml.tokens", &["a"]);
    let bytes = w.to_bytes().unwrap();
    let err = Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).unwrap()).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnsupportedModel { .. }),
        "{err}"
    );

    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_str_array("tokenizer.ggml.tokens", &["a", "b", "a"]);
    let bytes = w.to_bytes().unwrap();
    let err = Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).unwrap()).unwrap_err();
    assert_eq!(err, TokenizerError::DuplicateToken { id: 2, first: 0 });

    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_str_array("tokenizer.ggml.tokens", &["a", "b"]);
    w.add_f32_array("tokenizer.ggml.scores", &[0.0]);
    let bytes = w.to_bytes().unwrap();
    let err = Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::ArrayTooShort {
                key: "tokenizer.ggml.scores",
                ..
            }
        ),
        "{err}"
    );

    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_str_array("tokenizer.ggml.tokens", &["a", "b"]);
    w.add(
        "tokenizer.ggml.token_type",
        OwnedValue::Array(ValueType::F32, vec![OwnedValue::F32(1.0); 2]),
    );
    let bytes = w.to_bytes().unwrap();
    let err = Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::WrongElementType {
                key: "tokenizer.ggml.token_type",
                ..
            }
        ),
        "{err}"
    );

    // No byte tokens, a character that is not a token: an error, not a panic.
    let mut w = GgufWriter::new();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_str_array("tokenizer.ggml.tokens", &["<unk>", "<s>", "</s>", "▁a"]);
    let bytes = w.to_bytes().unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::parse(&bytes[..]).unwrap()).unwrap();
    assert_eq!(tok.encode("a", false, false).unwrap(), [3]);
    // ("▁z": neither "▁" nor "z" is a token, and there is no <0xE2>.)
    assert!(matches!(
        tok.encode("z", false, false),
        Err(TokenizerError::MissingByteToken { byte: 0xE2 })
    ));
}
