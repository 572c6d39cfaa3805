//! Helpers shared by the generation tests: the synthetic models and the real ones.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tramontane::Model;

/// Every synthetic model of `fixtures/models-synth/` (one per architecture and type).
pub const SYNTH: [&str; 7] = [
    "llama-gqa-f32",
    "llama-gqa-f16",
    "mistral-swa-q8_0",
    "qwen2-q4_0",
    "qwen3-q8_0",
    "gemma3-f16",
    "gemma3-q4_k",
];

/// The default real model.
pub const GEMMA: &str = "gemma-3-270m-q4_k_m";

/// The other real model.
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-awq-q4_k_m";

pub fn synth_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/models-synth/{name}.gguf"))
}

pub fn synth(name: &str) -> Model {
    Model::open(synth_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The path of a real model (`TRAMONTANE_MODELS_DIR`, else `fixtures/models/`), or
/// `None` when it is missing and `TRAMONTANE_SKIP_REAL_MODELS=1`; a missing model
/// otherwise fails the test with what to do.
pub fn real_model(stem: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TRAMONTANE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models"));
    let path = dir.join(format!("{stem}.gguf"));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("TRAMONTANE_SKIP_REAL_MODELS").as_deref() == Ok("1") {
        eprintln!(
            "skipping {stem}: {} missing and TRAMONTANE_SKIP_REAL_MODELS=1",
            path.display()
        );
        return None;
    }
    panic!(
        "real model {} not found: run fixtures/fetch-models.sh (or set TRAMONTANE_MODELS_DIR), \
         or set TRAMONTANE_SKIP_REAL_MODELS=1 to skip",
        path.display()
    );
}

/// Gemma 3 270M, opened, or `None` (see [`real_model`]).
pub fn gemma() -> Option<Model> {
    real_model(GEMMA).map(|p| Model::open(&p).unwrap_or_else(|e| panic!("{GEMMA}: {e}")))
}
