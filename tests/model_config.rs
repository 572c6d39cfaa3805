//! Configuration validation: hostile or inconsistent metadata and tensor shapes give
//! typed errors that name the key or tensor (and the expected and found shapes), never
//! a panic. Each case rewrites one synthetic fixture with one thing changed.

use tramontane::gguf::{GgmlType, Gguf, GgufError, GgufWriter, OwnedValue, Value};
use tramontane::model::{Model, ModelError};
use tramontane::Error;

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/models-synth")
        .join(format!("{name}.gguf"));
    std::fs::read(p).unwrap()
}

fn owned(v: Value<'_>) -> OwnedValue {
    match v {
        Value::U8(x) => OwnedValue::U8(x),
        Value::I8(x) => OwnedValue::I8(x),
        Value::U16(x) => OwnedValue::U16(x),
        Value::I16(x) => OwnedValue::I16(x),
        Value::U32(x) => OwnedValue::U32(x),
        Value::I32(x) => OwnedValue::I32(x),
        Value::F32(x) => OwnedValue::F32(x),
        Value::Bool(x) => OwnedValue::Bool(x),
        Value::String(x) => OwnedValue::String(x.to_string()),
        Value::U64(x) => OwnedValue::U64(x),
        Value::I64(x) => OwnedValue::I64(x),
        Value::F64(x) => OwnedValue::F64(x),
        Value::Array(a) => OwnedValue::Array(a.elem_type(), a.iter().map(owned).collect()),
    }
}

/// Copy `src`, letting `kv` replace (Some) or drop (None) metadata values and `tensor`
/// replace `(type, shape, bytes)` or drop tensors.
fn rewrite(
    src: &[u8],
    kv: impl Fn(&str, OwnedValue) -> Option<OwnedValue>,
    tensor: impl Fn(&str, (GgmlType, Vec<u64>, Vec<u8>)) -> Option<(GgmlType, Vec<u64>, Vec<u8>)>,
) -> Vec<u8> {
    let g = Gguf::parse(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        if let Some(v) = kv(k, owned(v)) {
            w.add(k, v);
        }
    }
    for t in g.tensors() {
        let data = g.tensor_data(&t).to_vec();
        if let Some((ty, shape, bytes)) = tensor(t.name, (t.ty, t.shape().to_vec(), data)) {
            w.add_tensor(t.name, ty, &shape, &bytes).unwrap();
        }
    }
    w.to_bytes().unwrap()
}

fn load_err(bytes: Vec<u8>) -> Error {
    Model::from_vec(bytes).expect_err("the model must be refused")
}

fn same(_: &str, v: OwnedValue) -> Option<OwnedValue> {
    Some(v)
}

fn keep(_: &str, t: (GgmlType, Vec<u64>, Vec<u8>)) -> Option<(GgmlType, Vec<u64>, Vec<u8>)> {
    Some(t)
}

#[test]
fn unchanged_copy_loads() {
    let bytes = rewrite(&fixture("llama-gqa-f32"), same, keep);
    Model::from_vec(bytes).unwrap();
}

#[test]
fn zero_heads_is_an_error_naming_the_key() {
    let bytes = rewrite(
        &fixture("llama-gqa-f32"),
        |k, v| {
            Some(if k == "llama.attention.head_count" {
                OwnedValue::U32(0)
            } else {
                v
            })
        },
        keep,
    );
    let e = load_err(bytes);
    match &e {
        Error::Model(ModelError::InvalidHparam { key, value: 0, .. }) => {
            assert_eq!(key, "llama.attention.head_count")
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(e.to_string().contains("llama.attention.head_count"), "{e}");
}

#[test]
fn kv_heads_must_divide_heads() {
    let bytes = rewrite(
        &fixture("llama-gqa-f32"),
        |k, v| {
            Some(if k == "llama.attention.head_count_kv" {
                OwnedValue::U32(3)
            } else {
                v
            })
        },
        keep,
    );
    let e = load_err(bytes);
    assert!(
        matches!(
            e,
            Error::Model(ModelError::KvHeadsDontDivide {
                n_head: 4,
                n_head_kv: 3
            })
        ),
        "{e}"
    );
}

#[test]
fn wrong_tensor_shape_names_tensor_and_shapes() {
    // blk.1.attn_q.weight is [64, 64]; give it [64, 32].
    let bytes = rewrite(
        &fixture("llama-gqa-f32"),
        same,
        |name, (ty, shape, data)| {
            if name == "blk.1.attn_q.weight" {
                Some((ty, vec![64, 32], data[..data.len() / 2].to_vec()))
            } else {
                Some((ty, shape, data))
            }
        },
    );
    let e = load_err(bytes);
    let msg = e.to_string();
    match &e {
        Error::Model(ModelError::TensorShape {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "blk.1.attn_q.weight");
            assert_eq!(expected.0, vec![64, 64]);
            assert_eq!(found.0, vec![64, 32]);
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(
        msg.contains("blk.1.attn_q.weight") && msg.contains("[64, 64]") && msg.contains("[64, 32]"),
        "{msg}"
    );
}

#[test]
fn unknown_architecture_is_named() {
    let bytes = rewrite(
        &fixture("llama-gqa-f32"),
        |k, v| {
            Some(if k == "general.architecture" {
                OwnedValue::String("mamba".into())
            } else {
                v
            })
        },
        keep,
    );
    let e = load_err(bytes);
    match &e {
        Error::Model(ModelError::UnknownArch { arch }) => assert_eq!(arch, "mamba"),
        other => panic!("unexpected: {other}"),
    }
    assert!(e.to_string().contains("\"mamba\""), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let bytes = rewrite(&fixture("qwen3-q8_0"), same, |name, t| {
        (name != "blk.1.attn_k_norm.weight").then_some(t)
    });
    let e = load_err(bytes);
    match &e {
        Error::Gguf(GgufError::MissingTensor { name }) => {
            assert_eq!(name, "blk.1.attn_k_norm.weight")
        }
        other => panic!("unexpected: {other}"),
    }
}

#[test]
fn missing_required_key_is_named() {
    let bytes = rewrite(
        &fixture("gemma3-f16"),
        |k, v| (k != "gemma3.attention.layer_norm_rms_epsilon").then_some(v),
        keep,
    );
    let e = load_err(bytes);
    assert!(
        e.to_string()
            .contains("gemma3.attention.layer_norm_rms_epsilon"),
        "{e}"
    );
}

#[test]
fn tied_embeddings_and_arch_specs() {
    // qwen3-q8_0 has no output.weight: the output head is token_embd.
    let m = Model::from_vec(fixture("qwen3-q8_0")).unwrap();
    assert_eq!(m.weights().output.name, "token_embd.weight");
    assert!(m.weights().layers[0].q_norm.is_some());
    // Gemma 3: 5 local : 1 global with the default pattern, local RoPE base 10000,
    // query scale 1/sqrt(head_dim), embeddings × sqrt(d), final soft-cap.
    let m = Model::from_vec(fixture("gemma3-f16")).unwrap();
    let c = m.config();
    assert_eq!(c.swa_layers, vec![true, true, true, true, true, false]);
    assert_eq!(c.sliding_window, Some(4));
    assert_eq!(c.rope_params(0), (10000.0, 1.0));
    assert_eq!(c.rope_params(5), (1_000_000.0, 1.0));
    assert_eq!(c.q_scale, Some(1.0 / 48f32.sqrt()));
    assert_eq!(c.kq_scale, 1.0);
    assert_eq!(c.embed_scale, Some(64f32.sqrt()));
    assert_eq!(c.final_logit_softcap, Some(30.0));
    // Pattern 2 from the metadata and an explicit local RoPE base.
    let m = Model::from_vec(fixture("gemma3-q4_k")).unwrap();
    assert_eq!(m.config().swa_layers, vec![true, false]);
    assert_eq!(m.config().rope_params(0).0, 20000.0);
    // llama ignores attention.sliding_window, as llama.cpp does.
    let m = Model::from_vec(fixture("mistral-swa-q8_0")).unwrap();
    assert_eq!(m.config().sliding_window, None);
    assert!(m.config().swa_layers.iter().all(|&s| !s));
}
