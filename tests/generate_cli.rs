//! The `generate` example's logic, called directly (the example's source is included as a
//! module): options, `--json` and `--tokenize-only` output, and one clear stderr line with
//! exit code 1 for every kind of bad input. `run-tests.sh` also runs the built binary on
//! Gemma 3 270M.

#[allow(dead_code)]
#[path = "../examples/generate.rs"]
mod cli;

mod common;

use serde_json::Value;
use tramontane::{GenerateOptions, SamplerChain, SessionOptions};

/// (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run(&argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn synth() -> String {
    common::synth_path("llama-gqa-f16")
        .to_string_lossy()
        .into_owned()
}

fn assert_one_error_line(args: &[&str], needle: &str) {
    let (code, out, err) = run(args);
    assert_eq!(code, 1, "{args:?}: exit code (stderr {err:?})");
    assert!(out.is_empty(), "{args:?}: stdout {out:?}");
    assert_eq!(err.lines().count(), 1, "{args:?}: stderr {err:?}");
    assert!(err.starts_with("error: "), "{args:?}: {err:?}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn parses_options() {
    let a = |v: &[&str]| cli::parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let d = a(&[]).unwrap();
    assert_eq!(d.prompt, "Once upon a time");
    assert!(d.model.is_none() && !d.json && !d.tokenize_only);
    let x = a(&[
        "--model",
        "m.gguf",
        "--prompt=a=b",
        "--max-tokens",
        "7",
        "--threads=3",
        "--ctx",
        "99",
        "--temperature",
        "0",
        "--top-k",
        "5",
        "--top-p",
        "0.5",
        "--min-p",
        "0.1",
        "--seed",
        "42",
        "--json",
        "--tokenize-only",
    ])
    .unwrap();
    assert_eq!(x.model.as_deref(), Some(std::path::Path::new("m.gguf")));
    assert_eq!(x.prompt, "a=b");
    assert_eq!(
        (x.max_tokens, x.threads, x.ctx, x.top_k, x.seed),
        (7, 3, Some(99), 5, 42)
    );
    assert_eq!((x.temperature, x.top_p, x.min_p), (0.0, 0.5, 0.1));
    assert!(x.json && x.tokenize_only);
    for bad in [
        &["--max-tokens", "many"][..],
        &["--threads", "0"],
        &["--temperature", "-1"],
        &["--temperature", "nan"],
        &["--seed"],
        &["--frobnicate"],
        &["stray"],
    ] {
        assert!(a(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn json_output_is_one_line_and_matches_the_library() {
    let m = synth();
    let (code, out, err) = run(&[
        "--model",
        &m,
        "--prompt",
        "Diagnostic :",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--json",
        "--threads",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(out.lines().count(), 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "prompt_ids",
            "gen_ids",
            "text",
            "load_ms",
            "ttft_ms",
            "prompt_tok_per_s",
            "gen_tok_per_s"
        ]
    );
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    // The same as the library's greedy stream.
    let model = common::synth("llama-gqa-f16");
    let want_prompt = model
        .tokenizer()
        .encode("Diagnostic :", true, false)
        .unwrap();
    assert_eq!(ids("prompt_ids"), want_prompt);
    let mut s = model
        .session(SessionOptions {
            context_len: 64,
            ..Default::default()
        })
        .unwrap();
    let o = GenerateOptions::default()
        .max_tokens(12)
        .sampler(SamplerChain::greedy());
    let c = s.complete("Diagnostic :", o).unwrap();
    assert_eq!(ids("gen_ids"), c.tokens);
    assert_eq!(v["text"].as_str().unwrap(), c.text);
    for k in ["load_ms", "ttft_ms", "prompt_tok_per_s", "gen_tok_per_s"] {
        assert!(v[k].as_f64().unwrap() >= 0.0, "{k}");
    }

    // Streaming mode: the prompt, the text, a newline; the numbers on stderr.
    let (code, out, err) = run(&[
        "--model",
        &m,
        "--prompt",
        "Diagnostic :",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("Diagnostic :{}\n", c.text));
    for word in [
        "load",
        "time to first token",
        "prompt",
        "decode",
        "tok/s",
        "peak RSS",
    ] {
        assert!(err.contains(word), "stderr {err:?} lacks {word:?}");
    }
}

#[test]
fn tokenize_only() {
    let m = synth();
    let (code, out, _) = run(&[
        "--model",
        &m,
        "--prompt",
        "hello <s> world",
        "--tokenize-only",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1);
    let model = common::synth("llama-gqa-f16");
    // BOS from the metadata, "<s>" typed by the user is text, not the BOS token.
    let want = model
        .tokenizer()
        .encode("hello <s> world", true, false)
        .unwrap();
    assert_eq!(v["prompt_ids"], serde_json::json!(want));
    assert_eq!(want.iter().filter(|&&t| t == 1).count(), 1);
    let (code, out, _) = run(&["--model", &m, "--prompt", "hello", "--tokenize-only"]);
    assert_eq!(code, 0);
    assert!(
        out.trim().split(' ').all(|t| t.parse::<u32>().is_ok()),
        "{out}"
    );
}

#[test]
fn bad_input_gives_one_line_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("tramontane-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = synth();

    assert_one_error_line(
        &["--model", "/nonexistent/model.gguf"],
        "cannot read /nonexistent/model.gguf",
    );
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"this is not a gguf file at all").unwrap();
    assert_one_error_line(&["--model", junk.to_str().unwrap()], "gguf");
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert_one_error_line(&["--model", empty.to_str().unwrap()], "gguf");

    // A valid file of an architecture this crate does not run.
    let mut bytes = std::fs::read(&m).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    // type (u32 = 8, string), length (u64 = 5), "llama"
    assert_eq!(&bytes[at + 12..at + 17], b"llama");
    bytes[at + 12..at + 17].copy_from_slice(b"bloom");
    let bloom = dir.join("bloom.gguf");
    std::fs::write(&bloom, &bytes).unwrap();
    assert_one_error_line(
        &["--model", bloom.to_str().unwrap()],
        "unsupported architecture \"bloom\"",
    );

    assert_one_error_line(&["--model", &m, "--prompt", ""], "empty prompt");
    assert_one_error_line(
        &[
            "--model",
            &m,
            "--prompt",
            "a long prompt of several words",
            "--ctx",
            "4",
        ],
        "context too small",
    );
    assert_one_error_line(
        &["--model", &m, "--max-tokens", "10", "--ctx", "8"],
        "context too small",
    );
    assert_one_error_line(&["--model", &m, "--threads", "0"], "--threads");
    assert_one_error_line(&["--model", &m, "--top-p", "2"], "top_p");
    assert_one_error_line(&["--bogus"], "unknown argument");
    let _ = std::fs::remove_dir_all(&dir);
}
