//! Model loading and the forward pass on the synthetic fixtures, without goldens:
//! thread counts give identical logits, token-by-token decode and small batches agree
//! with one batch (same top-1, close logits), the context bound is enforced, and bad
//! input is refused with typed errors.

use tramontane::model::{KvType, Model, ModelError, StateOptions, VectorRef};
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

/// Largest |a − b| and whether the argmax of every row of `nv` is the same.
fn compare(a: &[f32], b: &[f32], nv: usize) -> (f32, bool) {
    let maxd = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |m, (i, &v)| if v > m.1 { (i, v) } else { m },
            )
            .0
    };
    let same_top = a
        .chunks_exact(nv)
        .zip(b.chunks_exact(nv))
        .all(|(x, y)| argmax(x) == argmax(y));
    (maxd, same_top)
}

/// Thread counts never change a bit. The batch size may change the last bits (as in
/// llama.cpp, whose batch kernels sum in other orders than its one-token ones; the
/// forward pass follows both), so one token at a time and small batches are only
/// close to one batch, with the same top-1 token everywhere.
#[test]
fn threads_do_not_matter_and_batches_agree() {
    for name in MODELS {
        let (m, ids) = load(name);
        let nv = m.config().n_vocab;
        let base = all_logits(&m, &ids, StateOptions::new(64));
        assert!(
            base.iter().all(|v| v.is_finite()),
            "{name}: non-finite logits"
        );
        let mut o = StateOptions::new(64);
        o.threads = 3;
        assert_eq!(all_logits(&m, &ids, o), base, "{name}: 3 threads differ");

        // Token by token, 1 and 2 threads.
        let decode = |threads: usize| {
            let mut st = m.new_state(64, threads).unwrap();
            let mut row = vec![0.0; nv];
            let mut all = Vec::with_capacity(ids.len() * nv);
            for &t in &ids {
                m.eval(&mut st, &[t], &mut row).unwrap();
                all.extend_from_slice(&row);
            }
            all
        };
        let d1 = decode(1);
        assert_eq!(decode(2), d1, "{name}: decode with 2 threads differs");
        let (maxd, same_top) = compare(&d1, &base, nv);
        assert!(
            maxd < 0.05 && same_top,
            "{name}: decode vs batch: max |d| {maxd}, same top-1 {same_top}"
        );

        // Small batches, 1 and 3 threads.
        let mut o = StateOptions::new(64);
        o.max_batch = 5;
        let b5 = all_logits(&m, &ids, o);
        o.threads = 3;
        assert_eq!(
            all_logits(&m, &ids, o),
            b5,
            "{name}: batch 5 / 3 threads differ"
        );
        let (maxd5, same_top) = compare(&b5, &base, nv);
        assert!(
            maxd5 < 0.05 && same_top,
            "{name}: batch 5 vs 64: max |d| {maxd5}"
        );

        // Last position only: the output head multiplies one vector instead of all
        // (as llama.cpp with its output ids), the rest is the same batch.
        let mut st = m.new_state(64, 2).unwrap();
        let mut row = vec![0.0; nv];
        m.eval(&mut st, &ids, &mut row).unwrap();
        let (maxl, same_top) = compare(&row, &base[(ids.len() - 1) * nv..], nv);
        assert!(
            maxl < 0.05 && same_top,
            "{name}: last-only differs by {maxl}"
        );
        eprintln!("{name}: decode vs batch max |d| {maxd:.2e}, batch 5 vs 64 {maxd5:.2e}");
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

/// `Model::open_with`: read-ahead in the background or none gives the same logits; a
/// file larger than the part asked for before parsing starts the thread, and dropping
/// the model at once stops it; an out-of-range id in a batch is an error, not a panic,
/// with the embedding rows asked for.
#[test]
fn prefetch_modes_agree() {
    use tramontane::{LoadOptions, Prefetch};
    let src = dir().join("llama-gqa-f32.gguf");
    let (m, ids) = load("llama-gqa-f32");
    let nv = m.config().n_vocab;
    let want = all_logits(&m, &ids[..8], StateOptions::new(16));
    // The same file followed by 9 MiB of zeros (bytes after the data are ignored).
    let big = std::env::temp_dir().join(format!("tramontane-prefetch-{}.gguf", std::process::id()));
    let mut bytes = std::fs::read(&src).unwrap();
    bytes.resize(bytes.len() + (9 << 20), 0);
    std::fs::write(&big, &bytes).unwrap();
    for path in [&src, &big] {
        for p in [Prefetch::None, Prefetch::Background] {
            let m = Model::open_with(path, LoadOptions::new().prefetch(p)).unwrap();
            assert_eq!(
                all_logits(&m, &ids[..8], StateOptions::new(16)),
                want,
                "{p:?}"
            );
            let mut st = m.new_state(16, 1).unwrap();
            let mut row = vec![0.0; nv];
            let e = m
                .eval(&mut st, &[ids[0], u32::MAX, nv as u32], &mut row)
                .unwrap_err();
            assert!(
                matches!(e, Error::Model(ModelError::TokenOutOfRange { .. })),
                "{e}"
            );
            drop(Model::open_with(path, LoadOptions::new().prefetch(p)).unwrap());
        }
    }
    // Linux: the map is advised to take transparent huge pages, unless they are off.
    // (Natively only: qemu-user accepts the advice without passing it on.)
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let m = Model::open(&big).unwrap();
        let flags = vm_flags(&big).expect("the model's map in /proc/self/smaps");
        let never = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map_or(true, |s| s.contains("[never]"));
        let hg = flags.split_whitespace().any(|f| f == "hg");
        assert_eq!(hg, !never, "VmFlags: {flags}");
        drop(m);
    }
    let _ = std::fs::remove_file(&big);
}

/// The `VmFlags` of this process's map of `path` (`/proc/self/smaps`).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn vm_flags(path: &std::path::Path) -> Option<String> {
    let fields = smaps::map_fields(path)?;
    let flags = fields.iter().find_map(|l| l.strip_prefix("VmFlags:"))?;
    Some(flags.trim().to_string())
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[path = "../benches/common/smaps.rs"]
mod smaps;

/// Every norm and bias vector of `m`'s weights, with its name.
fn vectors(m: &Model) -> Vec<(String, &VectorRef)> {
    fn opt<'a>(name: &str, x: &'a Option<VectorRef>) -> Option<(String, &'a VectorRef)> {
        x.as_ref().map(|x| (name.to_string(), x))
    }
    let w = m.weights();
    let mut v = vec![("output_norm".to_string(), &w.output_norm)];
    v.extend(opt("output.bias", &w.output_b));
    v.extend(opt("rope_freqs", &w.rope_freqs));
    for (il, l) in w.layers.iter().enumerate() {
        v.push((format!("{il}.attn_norm"), &l.attn_norm));
        v.push((format!("{il}.ffn_norm"), &l.ffn_norm));
        for (name, x) in [
            ("bq", &l.bq),
            ("bk", &l.bk),
            ("bv", &l.bv),
            ("bo", &l.bo),
            ("q_norm", &l.q_norm),
            ("k_norm", &l.k_norm),
            ("post_attn_norm", &l.post_attn_norm),
            ("ffn_gate_b", &l.ffn_gate_b),
            ("ffn_up_b", &l.ffn_up_b),
            ("ffn_down_b", &l.ffn_down_b),
            ("post_ffn_norm", &l.post_ffn_norm),
        ] {
            v.extend(opt(&format!("{il}.{name}"), x));
        }
    }
    v
}

/// The F32 norm and bias vectors are read in place from a mapped file (nothing copied at
/// load time) and copied when the bytes are not 4-byte aligned (a `from_static` model
/// at an odd address): the same values and the same logits either way.
#[test]
fn vectors_in_place_or_copied_agree() {
    for name in ["qwen2-q4_0", "gemma3-q4_k"] {
        let (m, ids) = load(name);
        let bytes = std::fs::read(dir().join(format!("{name}.gguf"))).unwrap();
        // The file's bytes at an odd address, for the whole test run.
        let mut odd = vec![0u8; bytes.len() + 1];
        odd[1..].copy_from_slice(&bytes);
        let odd: &'static [u8] = &Vec::leak(odd)[1..];
        let c = Model::from_static(odd).unwrap();
        let (vm, vc) = (vectors(&m), vectors(&c));
        assert_eq!(vm.len(), vc.len());
        // Biases too where the architecture has them (qwen2's q, k, v).
        assert!(
            vm.len() > 2 * m.config().n_layer + 1,
            "{name}: {} vectors",
            vm.len()
        );
        for ((n, a), (_, b)) in vm.iter().zip(&vc) {
            assert!(a.in_place(), "{name} {n}: copied from the map");
            assert!(!b.in_place(), "{name} {n}: in place at an odd address");
            let (av, bv) = (a.get(m.gguf().bytes()), b.get(c.gguf().bytes()));
            assert!(!av.is_empty(), "{name} {n}");
            assert_eq!(av, bv, "{name} {n}");
        }
        let ids = &ids[..8];
        assert_eq!(
            all_logits(&m, ids, StateOptions::new(16)),
            all_logits(&c, ids, StateOptions::new(16)),
            "{name}"
        );
    }
}
