//! Model loading and the forward pass on the synthetic fixtures, without goldens:
//! batch prefill equals token-by-token decode bit for bit, thread counts give identical
//! logits, the context bound is enforced, and bad input is refused with typed errors.

use tramontane::model::{KvType, Model, ModelError, StateOptions};
use tramontane::{Backing, Error};

const MODELS: [&str; 7] = [
    "llama-gqa-f32",
    "llama-gqa-f16",
    "mistral-swa-q8_0",
    "qwen2-q4_0",
    "qwen3-q8_0",
    "gemma3-f16",
    "gemma3-q4_k",
];

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models-synth")
}

fn load(name: &str) -> (Model, Vec<u32>) {
    let m = Model::open(dir().join(format!("{name}.gguf"))).unwrap();
    let ids = std::fs::read_to_string(dir().join(format!("{name}.tokens")))
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    (m, ids)
}

fn all_logits(m: &Model, ids: &[u32], opts: StateOptions) -> Vec<f32> {
    let nv = m.config().n_vocab;
    let mut st = m.new_state_with(opts).unwrap();
    let mut out = vec![0.0; ids.len() * nv];
    m.eval(&mut st, ids, &mut out).unwrap();
    out
}

#[test]
fn prefill_equals_decode_and_threads_do_not_matter() {
    for name in MODELS {
        let (m, ids) = load(name);
        let nv = m.config().n_vocab;
        let base = all_logits(&m, &ids, StateOptions::new(64));
        assert!(
            base.iter().all(|v| v.is_finite()),
            "{name}: non-finite logits"
        );

        // Token by token.
        let mut st = m.new_state(64, 1).unwrap();
        let mut row = vec![0.0; nv];
        for (i, &t) in ids.iter().enumerate() {
            m.eval(&mut st, &[t], &mut row).unwrap();
            assert_eq!(
                &row[..],
                &base[i * nv..(i + 1) * nv],
                "{name}: decode differs at {i}"
            );
        }
        // Small batches, 3 threads.
        let mut o = StateOptions::new(64);
        o.threads = 3;
        o.max_batch = 5;
        assert_eq!(
            all_logits(&m, &ids, o),
            base,
            "{name}: batch 5 / 3 threads differ"
        );
        // Last position only.
        let mut st = m.new_state(64, 2).unwrap();
        m.eval(&mut st, &ids, &mut row).unwrap();
        assert_eq!(
            &row[..],
            &base[(ids.len() - 1) * nv..],
            "{name}: last-only differs"
        );
        // f32 cache: close to the f16 one.
        let mut o = StateOptions::new(64);
        o.kv_type = KvType::F32;
        let f32kv = all_logits(&m, &ids, o);
        let maxd = f32kv
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(maxd < 0.5, "{name}: f32 KV differs by {maxd}");
        eprintln!("{name}: ok (f16 vs f32 KV max |d| = {maxd:.2e})");
    }
}

#[test]
fn context_full_and_bad_input() {
    let (m, ids) = load("llama-gqa-f32");
    let nv = m.config().n_vocab;
    let mut st = m.new_state(8, 1).unwrap();
    let mut row = vec![0.0; nv];
    m.eval(&mut st, &ids[..8], &mut row).unwrap();
    let e = m.eval(&mut st, &ids[..1], &mut row).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Model(ModelError::ContextFull {
                used: 8,
                capacity: 8,
                requested: 1
            })
        ),
        "{e}"
    );
    st.clear();
    let e = m.eval(&mut st, &[nv as u32], &mut row).unwrap_err();
    assert!(
        matches!(e, Error::Model(ModelError::TokenOutOfRange { .. })),
        "{e}"
    );
    let e = m.eval(&mut st, &[], &mut row).unwrap_err();
    assert!(matches!(e, Error::Model(ModelError::EmptyInput)), "{e}");
    let e = m.eval(&mut st, &ids[..2], &mut row[..5]).unwrap_err();
    assert!(
        matches!(e, Error::Model(ModelError::LogitsBuffer { .. })),
        "{e}"
    );
    // Static backing works the same.
    let bytes: &'static [u8] = Box::leak(
        std::fs::read(dir().join("llama-gqa-f32.gguf"))
            .unwrap()
            .into_boxed_slice(),
    );
    let m2 = Model::from_backing(Backing::Static(bytes)).unwrap();
    assert_eq!(m2.config(), m.config());
}
