//! Generate the tiny synthetic models of `fixtures/models-synth/` (random weights, fixed
//! seed), one per architecture and tensor type, each well under 1 MiB, and the token ids
//! the goldens are computed on.
//!
//! ```text
//! cargo run --example gen_synth -- fixtures/models-synth
//! fixtures/models-synth/gen_goldens.sh      # llama.cpp's logits for each model
//! ```
//!
//! The vocabulary is a minimal SentencePiece one (`tokenizer.ggml.model = "llama"`):
//! `<unk> <s> </s>`, the 256 byte tokens and word pieces, enough for llama.cpp to load.

use std::path::{Path, PathBuf};

use tramontane::gguf::{GgmlType, GgufWriter};
use tramontane::quant::quantize_row;

const N_VOCAB: usize = 320;
const N_TOKENS: usize = 24;

/// splitmix64: small, seedable, good enough for weights.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// Tensor types of one model.
#[derive(Clone, Copy)]
struct Types {
    embd: GgmlType,
    /// `None`: tied to the embeddings.
    output: Option<GgmlType>,
    attn_qk: GgmlType,
    attn_v: GgmlType,
    attn_o: GgmlType,
    ffn_gate_up: GgmlType,
    ffn_down: GgmlType,
}

impl Types {
    fn all(t: GgmlType, tied: bool) -> Types {
        Types {
            embd: t,
            output: if tied { None } else { Some(t) },
            attn_qk: t,
            attn_v: t,
            attn_o: t,
            ffn_gate_up: t,
            ffn_down: t,
        }
    }
}

struct Spec {
    name: &'static str,
    arch: &'static str,
    n_layer: usize,
    d: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    ff: usize,
    types: Types,
    rope_base: f32,
    qkv_bias: bool,
    qk_norm: bool,
    post_norms: bool,
    /// `(key suffix, value)` extra u32 metadata.
    extra_u32: &'static [(&'static str, u32)],
    /// `(key suffix, value)` extra f32 metadata.
    extra_f32: &'static [(&'static str, f32)],
    seed: u64,
}

fn specs() -> Vec<Spec> {
    use GgmlType::*;
    vec![
        Spec {
            name: "llama-gqa-f32",
            arch: "llama",
            n_layer: 2,
            d: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            ff: 128,
            types: Types::all(F32, false),
            rope_base: 10000.0,
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            extra_u32: &[],
            extra_f32: &[],
            seed: 1,
        },
        Spec {
            name: "llama-gqa-f16",
            arch: "llama",
            n_layer: 2,
            d: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            ff: 128,
            types: Types::all(F16, false),
            rope_base: 500000.0,
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            extra_u32: &[],
            extra_f32: &[],
            seed: 2,
        },
        Spec {
            // Mistral-style: a sliding window in the metadata, which llama.cpp ignores
            // for the `llama` architecture (and so do we); MQA (one KV head).
            name: "mistral-swa-q8_0",
            arch: "llama",
            n_layer: 2,
            d: 64,
            n_head: 4,
            n_head_kv: 1,
            head_dim: 16,
            ff: 128,
            types: Types::all(Q8_0, false),
            rope_base: 10000.0,
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            extra_u32: &[("attention.sliding_window", 4)],
            extra_f32: &[],
            seed: 3,
        },
        Spec {
            name: "qwen2-q4_0",
            arch: "qwen2",
            n_layer: 2,
            d: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            ff: 128,
            types: Types {
                attn_v: Q8_0,
                ..Types::all(Q4_0, false)
            },
            rope_base: 1_000_000.0,
            qkv_bias: true,
            qk_norm: false,
            post_norms: false,
            extra_u32: &[],
            extra_f32: &[],
            seed: 4,
        },
        Spec {
            name: "qwen3-q8_0",
            arch: "qwen3",
            n_layer: 2,
            d: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 32,
            ff: 128,
            types: Types::all(Q8_0, true),
            rope_base: 1_000_000.0,
            qkv_bias: false,
            qk_norm: true,
            post_norms: false,
            extra_u32: &[],
            extra_f32: &[],
            seed: 5,
        },
        Spec {
            // Six layers: the default 5 local : 1 global pattern; a window of 4; the
            // local layers use the default local RoPE base (10000); a final soft-cap.
            name: "gemma3-f16",
            arch: "gemma3",
            n_layer: 6,
            d: 64,
            n_head: 2,
            n_head_kv: 1,
            head_dim: 48,
            ff: 128,
            types: Types::all(F16, true),
            rope_base: 1_000_000.0,
            qkv_bias: false,
            qk_norm: true,
            post_norms: true,
            extra_u32: &[("attention.sliding_window", 4)],
            extra_f32: &[("final_logit_softcapping", 30.0)],
            seed: 6,
        },
        Spec {
            // K-quants (Q4_K + Q6_K like a Q4_K_M file), pattern 2 (local, global) and an
            // explicit local RoPE base.
            name: "gemma3-q4_k",
            arch: "gemma3",
            n_layer: 2,
            d: 256,
            n_head: 4,
            n_head_kv: 1,
            head_dim: 64,
            ff: 512,
            types: Types {
                embd: Q6_K,
                output: None,
                attn_qk: Q4_K,
                attn_v: Q6_K,
                attn_o: Q4_K,
                ffn_gate_up: Q4_K,
                ffn_down: Q6_K,
            },
            rope_base: 1_000_000.0,
            qkv_bias: false,
            qk_norm: true,
            post_norms: true,
            extra_u32: &[
                ("attention.sliding_window", 4),
                ("attention.sliding_window_pattern", 2),
            ],
            extra_f32: &[("rope.freq_base_swa", 20000.0)],
            seed: 7,
        },
    ]
}

fn encode(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    let bytes = ty.row_bytes(values.len() as u64).expect("whole blocks") as usize;
    let mut out = vec![0u8; bytes];
    quantize_row(ty, values, &mut out).expect("quantize");
    out
}

fn matrix(
    w: &mut GgufWriter,
    rng: &mut Rng,
    name: &str,
    ty: GgmlType,
    cols: usize,
    rows: usize,
    gain: f32,
) {
    let scale = gain / (cols as f32).sqrt();
    let v: Vec<f32> = (0..cols * rows).map(|_| rng.normal() * scale).collect();
    w.add_tensor(name, ty, &[cols as u64, rows as u64], &encode(ty, &v))
        .expect("tensor");
}

fn vector(w: &mut GgufWriter, rng: &mut Rng, name: &str, len: usize, center: f32, spread: f32) {
    let v: Vec<f32> = (0..len).map(|_| center + spread * rng.normal()).collect();
    w.add_tensor(
        name,
        GgmlType::F32,
        &[len as u64],
        &encode(GgmlType::F32, &v),
    )
    .expect("tensor");
}

fn vocab(w: &mut GgufWriter, rng: &mut Rng) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut i = 0;
    while tokens.len() < N_VOCAB {
        tokens.push(format!("\u{2581}w{i}"));
        types.push(1);
        i += 1;
    }
    let scores: Vec<f32> = (0..N_VOCAB)
        .map(|i| {
            if i < 259 {
                0.0
            } else {
                -(i as f32) - rng.uniform() as f32
            }
        })
        .collect();
    w.add_str("tokenizer.ggml.model", "llama");
    w.add_str_array("tokenizer.ggml.tokens", &tokens);
    w.add_f32_array("tokenizer.ggml.scores", &scores);
    w.add_i32_array("tokenizer.ggml.token_type", &types);
    w.add_u32("tokenizer.ggml.unknown_token_id", 0);
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    w.add_bool("tokenizer.ggml.add_bos_token", true);
}

fn build(s: &Spec) -> (Vec<u8>, Vec<u32>) {
    let mut rng = Rng(0x7261_6d6f_6e74_616e ^ s.seed.wrapping_mul(0x1000_0000_01b3));
    let mut w = GgufWriter::new();
    let a = s.arch;
    let k = |x: &str| format!("{a}.{x}");
    w.add_str("general.architecture", a);
    w.add_str("general.name", s.name);
    w.add_u32(&k("context_length"), 2048);
    w.add_u32(&k("embedding_length"), s.d as u32);
    w.add_u32(&k("block_count"), s.n_layer as u32);
    w.add_u32(&k("feed_forward_length"), s.ff as u32);
    w.add_u32(&k("attention.head_count"), s.n_head as u32);
    w.add_u32(&k("attention.head_count_kv"), s.n_head_kv as u32);
    w.add_u32(&k("attention.key_length"), s.head_dim as u32);
    w.add_u32(&k("attention.value_length"), s.head_dim as u32);
    w.add_u32(&k("rope.dimension_count"), s.head_dim as u32);
    w.add_f32(&k("attention.layer_norm_rms_epsilon"), 1e-6);
    w.add_f32(&k("rope.freq_base"), s.rope_base);
    for (key, v) in s.extra_u32 {
        w.add_u32(&k(key), *v);
    }
    for (key, v) in s.extra_f32 {
        w.add_f32(&k(key), *v);
    }
    vocab(&mut w, &mut rng);

    let t = s.types;
    let (d, q, kv, ff, hd) = (
        s.d,
        s.n_head * s.head_dim,
        s.n_head_kv * s.head_dim,
        s.ff,
        s.head_dim,
    );
    // Embeddings: unit variance per component for llama/qwen; Gemma multiplies by √d.
    let embd_gain = if a == "gemma3" {
        1.0
    } else {
        (d as f32).sqrt()
    };
    matrix(
        &mut w,
        &mut rng,
        "token_embd.weight",
        t.embd,
        d,
        N_VOCAB,
        embd_gain,
    );
    vector(&mut w, &mut rng, "output_norm.weight", d, 1.0, 0.1);
    if let Some(ot) = t.output {
        matrix(&mut w, &mut rng, "output.weight", ot, d, N_VOCAB, 2.0);
    }
    for il in 0..s.n_layer {
        let n = |x: &str| format!("blk.{il}.{x}");
        vector(&mut w, &mut rng, &n("attn_norm.weight"), d, 1.0, 0.1);
        matrix(&mut w, &mut rng, &n("attn_q.weight"), t.attn_qk, d, q, 1.5);
        matrix(&mut w, &mut rng, &n("attn_k.weight"), t.attn_qk, d, kv, 1.5);
        matrix(&mut w, &mut rng, &n("attn_v.weight"), t.attn_v, d, kv, 1.0);
        matrix(
            &mut w,
            &mut rng,
            &n("attn_output.weight"),
            t.attn_o,
            q,
            d,
            1.0,
        );
        if s.qkv_bias {
            vector(&mut w, &mut rng, &n("attn_q.bias"), q, 0.0, 0.5);
            vector(&mut w, &mut rng, &n("attn_k.bias"), kv, 0.0, 0.5);
            vector(&mut w, &mut rng, &n("attn_v.bias"), kv, 0.0, 0.5);
        }
        if s.qk_norm {
            vector(&mut w, &mut rng, &n("attn_q_norm.weight"), hd, 1.0, 0.1);
            vector(&mut w, &mut rng, &n("attn_k_norm.weight"), hd, 1.0, 0.1);
        }
        if s.post_norms {
            vector(
                &mut w,
                &mut rng,
                &n("post_attention_norm.weight"),
                d,
                1.0,
                0.1,
            );
            vector(&mut w, &mut rng, &n("post_ffw_norm.weight"), d, 1.0, 0.1);
        }
        vector(&mut w, &mut rng, &n("ffn_norm.weight"), d, 1.0, 0.1);
        matrix(
            &mut w,
            &mut rng,
            &n("ffn_gate.weight"),
            t.ffn_gate_up,
            d,
            ff,
            1.5,
        );
        matrix(
            &mut w,
            &mut rng,
            &n("ffn_up.weight"),
            t.ffn_gate_up,
            d,
            ff,
            1.0,
        );
        matrix(
            &mut w,
            &mut rng,
            &n("ffn_down.weight"),
            t.ffn_down,
            ff,
            d,
            1.0,
        );
    }
    let bytes = w.to_bytes().expect("gguf");

    let mut ids = vec![1u32];
    while ids.len() < N_TOKENS {
        ids.push(3 + (rng.next_u64() % (N_VOCAB as u64 - 3)) as u32);
    }
    (bytes, ids)
}

fn main() {
    let dir: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("fixtures/models-synth").to_path_buf());
    std::fs::create_dir_all(&dir).expect("create output dir");
    for s in specs() {
        let (bytes, ids) = build(&s);
        assert!(bytes.len() < 1 << 20, "{} is {} bytes", s.name, bytes.len());
        std::fs::write(dir.join(format!("{}.gguf", s.name)), &bytes).expect("write model");
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        std::fs::write(dir.join(format!("{}.tokens", s.name)), ids.join(" ") + "\n")
            .expect("write tokens");
        println!("{:<20} {:>8} bytes", s.name, bytes.len());
    }
}
