//! The session and streaming API on the synthetic models (and Gemma 3 270M): the stream
//! equals a hand-written greedy loop, stop conditions, cancellation, callbacks, context
//! limit and context shift, saved state round trips and refusals.

mod common;

use std::ops::ControlFlow;

use common::{gemma, synth, SYNTH};
use tramontane::model::ModelError;
use tramontane::{
    Error, GenerateOptions, Model, SamplerChain, SessionError, SessionOptions, StateError,
    StopReason,
};

fn opts(ctx: usize) -> SessionOptions {
    SessionOptions {
        context_len: ctx,
        ..Default::default()
    }
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions::default()
        .max_tokens(n)
        .sampler(SamplerChain::greedy())
        .ignore_eog(true)
}

/// (tokens, per-piece texts, stop reason) of a whole stream.
fn run(
    s: &mut tramontane::Session<'_>,
    prompt: &str,
    o: GenerateOptions,
) -> (Vec<u32>, Vec<String>, Option<StopReason>) {
    let mut stream = s.generate(prompt, o).unwrap();
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    while let Some(p) = stream.next() {
        let p = p.unwrap();
        ids.push(p.token);
        texts.push(p.text.to_string());
    }
    (ids, texts, stream.stop_reason())
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn stream_equals_a_manual_greedy_loop() {
    for name in SYNTH {
        let m = synth(name);
        let tok = m.tokenizer();
        let prompt = "The quick brown fox";
        let mut s = m.session(opts(128)).unwrap();
        let (ids, texts, stop) = run(&mut s, prompt, greedy(40));
        assert_eq!(stop, Some(StopReason::MaxTokens), "{name}");
        assert_eq!(ids.len(), 40);

        // The same by hand with Model::eval.
        let p = tok.encode(prompt, true, false).unwrap();
        let mut st = m.new_state(128, 1).unwrap();
        let mut logits = vec![0.0; m.config().n_vocab];
        m.eval(&mut st, &p, &mut logits).unwrap();
        let mut want = Vec::new();
        for i in 0..40 {
            let t = argmax(&logits);
            want.push(t);
            if i < 39 {
                m.eval(&mut st, &[t], &mut logits).unwrap();
            }
        }
        assert_eq!(ids, want, "{name}: stream differs from the greedy loop");

        // The text is the pieces' bytes, as complete UTF-8.
        let mut bytes = Vec::new();
        for &t in &ids {
            bytes.extend_from_slice(tok.token_to_piece(t, false).unwrap());
        }
        assert_eq!(texts.concat(), String::from_utf8_lossy(&bytes), "{name}");
        // The last token is sampled, not evaluated.
        assert_eq!(s.position(), p.len() + 39);
        assert_eq!(s.pending_token(), ids.last().copied());
        assert_eq!(&s.tokens()[..p.len()], &p[..]);
        assert_eq!(&s.tokens()[p.len()..], &ids[..39]);
    }
}

#[test]
fn low_level_calls() {
    let m = synth("qwen3-q8_0");
    let mut s = m.session(opts(64)).unwrap();
    assert!(s.logits().is_none());
    let mut g = SamplerChain::greedy();
    g.bind(m.config().n_vocab);
    assert!(matches!(
        s.sample(&mut g),
        Err(Error::Session(SessionError::NoLogits))
    ));
    let p = s.tokenize("hello world", true).unwrap();
    assert_eq!(p[0], m.tokenizer().bos().unwrap());
    s.feed(&p).unwrap();
    assert_eq!(s.position(), p.len());
    let first = s.logits().unwrap().to_vec();
    let t = s.sample(&mut g).unwrap();
    assert_eq!(t.id, argmax(&first));
    assert!(t.logprob <= 0.0);
    let l2 = s.decode_one(t.id).unwrap().to_vec();
    assert_eq!(s.position(), p.len() + 1);

    // A token out of range: refused, nothing evaluated.
    let nv = m.config().n_vocab as u32;
    let e = s.feed(&[1, nv]).unwrap_err();
    assert!(
        matches!(e, Error::Model(ModelError::TokenOutOfRange { .. })),
        "{e}"
    );
    assert_eq!(s.position(), p.len() + 1);
    assert_eq!(s.logits().unwrap(), &l2[..]);

    // Reset: same logits again from the start; feed in small batches too.
    s.reset();
    assert_eq!(s.position(), 0);
    assert!(s.logits().is_none());
    s.feed(&p).unwrap();
    assert_eq!(s.logits().unwrap(), &first[..]);
    let mut small = m
        .session(SessionOptions {
            context_len: 64,
            batch_size: 3,
            threads: 2,
            ..Default::default()
        })
        .unwrap();
    small.feed(&p).unwrap();
    assert_eq!(small.logits().unwrap(), &first[..]);

    // Nothing to generate from.
    s.reset();
    let e = s.generate_tokens(&[], greedy(4)).err().unwrap();
    assert!(
        matches!(e, Error::Session(SessionError::EmptyPrompt)),
        "{e}"
    );
    // An empty prompt on a non-empty session continues.
    s.feed(&p).unwrap();
    let (ids, _, _) = run(&mut s, "", greedy(3));
    assert_eq!(ids[0], argmax(&first));
}

#[test]
fn end_of_generation_token_stops() {
    let m = synth("llama-gqa-f16");
    let eos = m.tokenizer().eos().unwrap();
    assert!(m.tokenizer().is_eog(eos));
    let mut s = m.session(opts(64)).unwrap();
    let o = GenerateOptions::default()
        .max_tokens(10)
        .sampler(SamplerChain::greedy().logit_bias(eos, 1000.0));
    let (ids, texts, stop) = run(&mut s, "hi", o);
    assert_eq!(ids, [eos]);
    assert_eq!(texts, [""]);
    assert_eq!(stop, Some(StopReason::EndOfGeneration { token: eos }));
    let c = s.complete("hi", greedy(0)).unwrap();
    assert_eq!((c.tokens.len(), c.stop), (0, StopReason::MaxTokens));
}

#[test]
fn stop_strings_match_across_tokens_and_are_not_emitted() {
    for name in ["llama-gqa-f32", "gemma3-q4_k", "qwen2-q4_0"] {
        let m = synth(name);
        let mut s = m.session(opts(128)).unwrap();
        let (_, texts, _) = run(&mut s, "Once upon", greedy(48));
        let full = texts.concat();
        // A stop string made of the end of one piece and the start of the next.
        let i = (2..texts.len() - 1)
            .find(|&i| {
                texts[i].chars().count() >= 1
                    && texts[i + 1].chars().count() >= 1
                    && !texts[i].contains('\u{FFFD}')
                    && !texts[i + 1].contains('\u{FFFD}')
            })
            .unwrap_or_else(|| panic!("{name}: no two text pieces in a row: {texts:?}"));
        let a: String = {
            let c: Vec<char> = texts[i].chars().collect();
            c[c.len().saturating_sub(2)..].iter().collect()
        };
        let b: String = texts[i + 1].chars().take(1).collect();
        let stop = format!("{a}{b}");
        let want = &full[..full.find(&stop).unwrap()];

        s.reset();
        let o = greedy(48).stop("<never>").stop(stop.clone());
        let (ids, texts2, reason) = run(&mut s, "Once upon", o);
        assert_eq!(reason, Some(StopReason::StopString { index: 1 }), "{name}");
        assert_eq!(texts2.concat(), want, "{name}: stop {stop:?}");
        assert!(ids.len() <= i + 2);
        assert!(texts2.iter().all(|t| !t.contains(&stop)));
        eprintln!("{name}: stopped at {stop:?} after {} tokens", ids.len());
    }
}

#[test]
fn cancellation_and_callbacks() {
    let m = synth("mistral-swa-q8_0");
    let mut s = m.session(opts(128)).unwrap();
    let h = s.cancel_handle();

    // Between tokens.
    let mut stream = s.generate("abc", greedy(50)).unwrap();
    for _ in 0..3 {
        stream.next().unwrap().unwrap();
    }
    h.cancel();
    assert!(stream.next().is_none());
    assert_eq!(stream.stop_reason(), Some(StopReason::Cancelled));
    assert_eq!(stream.generated(), 3);
    assert!(!h.is_cancelled(), "a seen request is cleared");

    // Before prefill: nothing evaluated.
    s.reset();
    h.cancel();
    let e = s.generate("abc", greedy(5)).err().unwrap();
    assert!(matches!(e, Error::Session(SessionError::Cancelled)), "{e}");
    assert_eq!(s.position(), 0);
    // Between prefill batches (a clone from another thread, set before the call).
    let mut small = m
        .session(SessionOptions {
            context_len: 128,
            batch_size: 4,
            ..Default::default()
        })
        .unwrap();
    let h2 = small.cancel_handle();
    std::thread::scope(|sc| {
        sc.spawn(|| h2.cancel());
    });
    let e = small.feed(&[5; 40]).unwrap_err();
    assert!(matches!(e, Error::Session(SessionError::Cancelled)), "{e}");

    // A callback stops generation.
    s.reset();
    let mut n = 0;
    let reason = s
        .generate_with("abc", greedy(50), |p| {
            assert!(p.logprob.is_finite());
            n += 1;
            if n == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((reason, n), (StopReason::Callback, 4));
    let reason = s.generate_with("", greedy(5), |_| ControlFlow::Continue(()));
    assert_eq!(reason.unwrap(), StopReason::MaxTokens);
}

#[test]
fn context_full_without_shift() {
    let m = synth("qwen3-q8_0");
    let mut s = m.session(opts(16)).unwrap();
    let p: Vec<u32> = (10..20).collect();
    let mut stream = s.generate_tokens(&p, greedy(50)).unwrap();
    let mut n = 0;
    let err = loop {
        match stream.next() {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream must report a full context"),
        }
    };
    assert!(
        matches!(
            err,
            Error::Model(ModelError::ContextFull { capacity: 16, .. })
        ),
        "{err}"
    );
    assert_eq!(
        n, 7,
        "10 prompt positions + 6 generated ones, a 7th sampled"
    );
    assert!(stream.next().is_none());
    assert_eq!(s.position(), 16);

    // A prompt that does not fit: refused before anything is evaluated.
    s.reset();
    let long: Vec<u32> = (3..20).collect();
    let e = s.generate_tokens(&long, greedy(5)).err().unwrap();
    assert!(
        matches!(
            e,
            Error::Model(ModelError::ContextFull {
                used: 0,
                capacity: 16,
                requested: 17
            })
        ),
        "{e}"
    );
    assert_eq!(s.position(), 0);
}

#[test]
fn context_shift_keeps_going() {
    for name in SYNTH {
        let m = synth(name);
        let p: Vec<u32> = std::iter::once(1).chain(20..29).collect();
        // Reference: a context large enough for everything.
        let mut big = m.session(opts(256)).unwrap();
        let (want, _, _) = {
            let mut st = big.generate_tokens(&p, greedy(100)).unwrap();
            let mut ids = Vec::new();
            while let Some(x) = st.next() {
                ids.push(x.unwrap().token);
            }
            (ids, (), ())
        };
        let mut s = m
            .session(SessionOptions {
                context_len: 32,
                context_shift: true,
                keep: 1,
                ..Default::default()
            })
            .unwrap();
        let mut stream = s.generate_tokens(&p, greedy(100)).unwrap();
        let mut got = Vec::new();
        while let Some(x) = stream.next() {
            got.push(x.unwrap().token);
        }
        assert_eq!(got.len(), 100, "{name}");
        // Identical until the first shift (positions 10..32 → 23 tokens sampled).
        assert_eq!(got[..23], want[..23], "{name}");
        assert!(
            s.context_shifts() >= 3,
            "{name}: {} shifts",
            s.context_shifts()
        );
        assert!(s.position() <= 32);
        assert_eq!(s.tokens()[0], 1, "{name}: the kept prefix stays");
        assert_eq!(s.tokens().len(), s.position());
        assert_eq!(s.tokens().last(), got.get(98), "{name}");

        // feed() shifts too.
        s.reset();
        let many: Vec<u32> = (0..100).map(|i| 3 + (i % 50)).collect();
        s.feed(&many).unwrap();
        assert!(s.position() <= 32 && s.logits().is_some());
    }
}

#[test]
fn saved_state_round_trip() {
    for name in ["llama-gqa-f32", "gemma3-q4_k", "qwen2-q4_0"] {
        let m = synth(name);
        for kv in [
            tramontane::model::KvType::F16,
            tramontane::model::KvType::F32,
        ] {
            let so = SessionOptions {
                context_len: 96,
                kv_type: kv,
                ..Default::default()
            };
            let mut a = m.session(so.clone()).unwrap();
            let p = a.tokenize("Saved state, then continued", true).unwrap();
            a.feed(&p).unwrap();
            let blob = a.save_state().unwrap();
            let mut via_writer = Vec::new();
            a.save_state_to(&mut via_writer).unwrap();
            assert_eq!(blob, via_writer);
            let e = a.save_state_to(FailingWriter(100)).unwrap_err();
            assert!(matches!(e, Error::State(StateError::Write(_))), "{e}");
            let o = greedy(24);
            let want = collect(&mut a, o.clone());

            // A fresh session, larger context, other threads.
            let mut b = m
                .session(SessionOptions {
                    context_len: 128,
                    threads: 2,
                    ..so.clone()
                })
                .unwrap();
            b.load_state(&blob).unwrap();
            assert_eq!(b.position(), p.len());
            assert_eq!(b.tokens(), &p[..]);
            let got = collect(&mut b, o.clone());
            assert_eq!(got, want, "{name} {kv:?}");

            // Saved mid-generation, with a pending token: the same continuation.
            let mut c = m.session(so.clone()).unwrap();
            c.load_state(&blob).unwrap();
            let first = collect(&mut c, greedy(10));
            assert_eq!(c.pending_token(), Some(first[9]));
            let mid = c.save_state().unwrap();
            let rest = collect(&mut c, greedy(14));
            let mut d = m.session(so.clone()).unwrap();
            d.load_state(&mid).unwrap();
            assert_eq!(d.pending_token(), Some(first[9]));
            assert_eq!(collect(&mut d, greedy(14)), rest);
            assert_eq!([&first[..], &rest[..]].concat(), want);
        }
    }
}

/// Accepts `n` bytes, then fails.
struct FailingWriter(usize);

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn collect(s: &mut tramontane::Session<'_>, o: GenerateOptions) -> Vec<u32> {
    let mut st = s.generate_tokens(&[], o).unwrap();
    let mut v = Vec::new();
    while let Some(p) = st.next() {
        v.push(p.unwrap().token);
    }
    v
}

#[test]
fn saved_state_refusals() {
    let m = synth("llama-gqa-f16");
    let other = synth("llama-gqa-f32");
    let mut a = m.session(opts(64)).unwrap();
    a.feed(&[1, 30, 31, 32, 33]).unwrap();
    let blob = a.save_state().unwrap();
    let mut s = m.session(opts(64)).unwrap();
    s.feed(&[1, 40]).unwrap();
    let before = s.logits().unwrap().to_vec();
    let state_err = |r: tramontane::Result<()>| match r {
        Err(Error::State(e)) => e,
        other => panic!("expected a state error, got {other:?}"),
    };

    // Another model.
    let mut o = other.session(opts(64)).unwrap();
    let e = state_err(o.load_state(&blob));
    assert!(matches!(e, StateError::WrongModel { .. }), "{e}");
    // Corrupted: one bit anywhere (header, history, logits, KV) → a typed error.
    for at in [20, 50, blob.len() / 2, blob.len() - 20, blob.len() - 1] {
        let mut bad = blob.clone();
        bad[at] ^= 0x10;
        let e = state_err(s.load_state(&bad));
        assert!(
            matches!(e, StateError::Checksum { .. } | StateError::Length { .. }),
            "byte {at}: {e}"
        );
    }
    // Truncated, empty, not a state, another version.
    for cut in [0, 7, 30, blob.len() - 1] {
        let e = state_err(s.load_state(&blob[..cut]));
        assert!(
            matches!(e, StateError::Length { .. } | StateError::NotAState),
            "cut {cut}: {e}"
        );
    }
    let e = state_err(s.load_state(b"GGUF and more bytes than a header has, surely......"));
    assert!(matches!(e, StateError::NotAState), "{e}");
    let mut v2 = blob.clone();
    v2[8] = 2;
    let e = state_err(s.load_state(&v2));
    assert!(matches!(e, StateError::Version { found: 2, .. }), "{e}");
    // Too long for the session, another KV type.
    let mut tiny = m.session(opts(4)).unwrap();
    let e = state_err(tiny.load_state(&blob));
    assert!(
        matches!(
            e,
            StateError::TooLong {
                positions: 5,
                capacity: 4
            }
        ),
        "{e}"
    );
    let mut f32kv = m
        .session(SessionOptions {
            context_len: 64,
            kv_type: tramontane::model::KvType::F32,
            ..Default::default()
        })
        .unwrap();
    let e = state_err(f32kv.load_state(&blob));
    assert!(matches!(e, StateError::KvType { .. }), "{e}");
    // Every refusal left the session as it was.
    assert_eq!(s.position(), 2);
    assert_eq!(s.logits().unwrap(), &before[..]);
}

#[test]
fn loading_and_sharing_the_model() {
    let path = common::synth_path("gemma3-f16");
    let bytes = std::fs::read(&path).unwrap();
    let a = Model::from_vec(bytes.clone()).unwrap();
    let b = Model::from_static(Box::leak(bytes.clone().into_boxed_slice())).unwrap();
    let mut calls = Vec::new();
    let c = Model::open_with_progress(&path, |d, t| calls.push((d, t))).unwrap();
    assert_eq!(calls.first(), Some(&(0, bytes.len() as u64)));
    assert_eq!(
        calls.last(),
        Some(&(bytes.len() as u64, bytes.len() as u64))
    );
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint(), c.fingerprint());
    assert_ne!(a.fingerprint(), synth("gemma3-q4_k").fingerprint());

    // One model, sessions on several threads at once.
    let outs: Vec<Vec<u32>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let m = &c;
                sc.spawn(move || {
                    let mut s = m
                        .session(SessionOptions {
                            context_len: 64,
                            threads: 1 + t % 2,
                            ..Default::default()
                        })
                        .unwrap();
                    run(&mut s, "shared", greedy(16)).0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
}

/// The whole pipeline on Gemma 3 270M: the prompt's ids equal llama.cpp's (goldens of
/// tests/parity.rs) and the streamed greedy continuation equals a `Model::eval` greedy
/// loop over them (whether that equals llama.cpp's is tests/parity.rs's business); and
/// prefill can be cancelled between batches.
#[test]
fn gemma_greedy_continuation_and_prefill_cancel() {
    let Some(m) = gemma() else { return };
    let golden = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/models-synth/real/gemma-3-270m-q4_k_m.greedy.jsonl"),
    )
    .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut s = m
        .session(SessionOptions {
            context_len: 256,
            threads: 2,
            ..Default::default()
        })
        .unwrap();
    let nv = m.config().n_vocab;
    for line in golden.lines().take(2) {
        let g: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = g["prompt"].as_str().unwrap();
        let n = ids(&g["gen_ids"]).len();
        s.reset();
        let p = s.tokenize(prompt, true).unwrap();
        assert_eq!(
            p,
            ids(&g["prompt_ids"]),
            "{prompt:?}: tokens differ from llama.cpp's"
        );
        let o = GenerateOptions::default()
            .max_tokens(n)
            .sampler(SamplerChain::greedy());
        let c = s.complete(prompt, o).unwrap();

        let mut st = m.new_state(256, 1).unwrap();
        let mut logits = vec![0.0; nv];
        m.eval(&mut st, &p, &mut logits).unwrap();
        let mut want = Vec::new();
        while want.len() < n {
            let t = argmax(&logits);
            want.push(t);
            if m.tokenizer().is_eog(t) {
                break;
            }
            m.eval(&mut st, &[t], &mut logits).unwrap();
        }
        assert_eq!(c.tokens, want, "{prompt:?}");
        let same = c.tokens == ids(&g["gen_ids"]);
        eprintln!(
            "gemma: {prompt:?} → {:?} (llama.cpp's continuation: {})",
            c.text,
            if same { "identical" } else { "differs" }
        );
    }

    // Cancel a long prefill from another thread: it stops between batches.
    let mut s = m
        .session(SessionOptions {
            context_len: 2048,
            batch_size: 8,
            threads: 1,
            ..Default::default()
        })
        .unwrap();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(150);
    let p = s.tokenize(&text, true).unwrap();
    assert!(p.len() > 1500 && p.len() < 2048);
    let h = s.cancel_handle();
    let t0 = std::time::Instant::now();
    let r = std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            h.cancel();
        });
        s.feed(&p)
    });
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Session(SessionError::Cancelled)), "{e}");
    let pos = s.position();
    eprintln!(
        "prefill cancelled after {pos} of {} tokens in {:?}",
        p.len(),
        t0.elapsed()
    );
    // Stopped at a batch boundary before the end (on a very loaded machine possibly
    // before the first batch).
    assert!(pos < p.len() && pos % 8 == 0, "position {pos}");
}
