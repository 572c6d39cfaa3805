//! What differs between architectures, held as data.
//!
//! The forward pass (`forward.rs`) is written once; an [`ArchSpec`] says which of its
//! optional pieces an architecture uses. The values follow llama.cpp's graph builders
//! (`src/models/{llama,qwen2,qwen3,gemma3}.cpp`) and `llama_model_rope_type`.

use alloc::string::ToString;

use super::ModelError;

/// How RoPE pairs the dimensions of a head (ggml's `rope_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// `LLAMA_ROPE_TYPE_NORM`: rotate adjacent pairs `(x[2i], x[2i+1])` (llama, mistral).
    Norm,
    /// `LLAMA_ROPE_TYPE_NEOX`: rotate `(x[i], x[i + n_rot/2])` (qwen2, qwen3, gemma3).
    Neox,
}

/// The activation of the gated feed-forward network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnActivation {
    /// `silu(gate) * up` (ggml `swiglu`).
    Silu,
    /// `gelu_tanh(gate) * up` with ggml's f16 GELU table (ggml `geglu`).
    GeluTanh,
}

/// Which layers use sliding-window attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwaRule {
    /// Never: `attention.sliding_window` is ignored, as llama.cpp does for `llama`
    /// (Mistral 7B converted to `llama` runs with full attention there too).
    Ignored,
    /// If `attention.sliding_window` > 0: layer `il` is local when
    /// `il % n < n - 1` (the last of every `n` layers is global). `n` comes from
    /// `attention.sliding_window_pattern` when present, else this default
    /// (llama.cpp's `set_swa_pattern(n, dense_first = false)`).
    Pattern {
        /// Default period (gemma3: 6, i.e. five local layers then one global).
        default_period: u32,
    },
}

/// How the attention scores are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnScale {
    /// `softmax(K·Q / sqrt(head_dim))`: the scale is applied to the scores.
    InvSqrtHeadDim,
    /// Gemma 3: Q is multiplied by `1/sqrt(head_dim)` (`1/sqrt(n_embd/n_head)` for the
    /// 62-layer 27B) after RoPE, and the scores are not scaled again.
    GemmaQuery,
}

/// One architecture's choices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture` value and metadata key prefix.
    pub name: &'static str,
    /// RoPE pairing.
    pub rope: RopeStyle,
    /// Per-head RMS norm of Q and K before RoPE (`attn_q_norm`, `attn_k_norm`), required.
    pub qk_norm: bool,
    /// RMS norms after attention and after the FFN (`post_attention_norm`,
    /// `post_ffw_norm`), required.
    pub post_norms: bool,
    /// FFN activation.
    pub ffn_act: FfnActivation,
    /// Token embeddings multiplied by `sqrt(n_embd)`.
    pub embed_scale_sqrt_d: bool,
    /// Attention scaling.
    pub attn_scale: AttnScale,
    /// Sliding-window layers.
    pub swa: SwaRule,
    /// RoPE base of sliding-window layers when `rope.freq_base_swa` is absent.
    pub swa_rope_base_default: f32,
    /// Reads `final_logit_softcapping` and applies `c * tanh(logits / c)`.
    pub final_softcap: bool,
    /// `n_head * head_dim` must equal `n_embd` (qwen2 declares `attn_output` as
    /// `{n_embd, n_embd}`).
    pub q_dim_is_embd: bool,
}

/// llama (Llama 2/3, TinyLlama, SmolLM, Mistral/Ministral converted to `llama`).
pub const LLAMA: ArchSpec = ArchSpec {
    name: "llama",
    rope: RopeStyle::Norm,
    qk_norm: false,
    post_norms: false,
    ffn_act: FfnActivation::Silu,
    embed_scale_sqrt_d: false,
    attn_scale: AttnScale::InvSqrtHeadDim,
    swa: SwaRule::Ignored,
    swa_rope_base_default: 10_000.0,
    final_softcap: false,
    q_dim_is_embd: false,
};

/// qwen2 (Qwen2, Qwen2.5, Qwen2.5-Coder): Q/K/V biases (optional in the loader, as in
/// llama.cpp), NEOX RoPE.
pub const QWEN2: ArchSpec = ArchSpec {
    name: "qwen2",
    rope: RopeStyle::Neox,
    q_dim_is_embd: true,
    ..LLAMA
};

/// qwen3: QK-norm, NEOX RoPE.
pub const QWEN3: ArchSpec = ArchSpec {
    name: "qwen3",
    rope: RopeStyle::Neox,
    qk_norm: true,
    ..LLAMA
};

/// gemma3: embeddings × √d, QK-norm, post-norms, GELU-tanh gate, 5 local : 1 global
/// sliding-window layers with their own RoPE base, optional final soft-cap.
pub const GEMMA3: ArchSpec = ArchSpec {
    name: "gemma3",
    rope: RopeStyle::Neox,
    qk_norm: true,
    post_norms: true,
    ffn_act: FfnActivation::GeluTanh,
    embed_scale_sqrt_d: true,
    attn_scale: AttnScale::GemmaQuery,
    swa: SwaRule::Pattern { default_period: 6 },
    swa_rope_base_default: 10_000.0,
    final_softcap: true,
    q_dim_is_embd: false,
};

/// Every supported architecture.
pub const ARCHS: [ArchSpec; 4] = [LLAMA, QWEN2, QWEN3, GEMMA3];

impl ArchSpec {
    /// The spec for a `general.architecture` value, or [`ModelError::UnknownArch`].
    pub fn for_name(arch: &str) -> Result<ArchSpec, ModelError> {
        ARCHS
            .iter()
            .find(|a| a.name == arch)
            .copied()
            .ok_or_else(|| ModelError::UnknownArch {
                arch: arch.to_string(),
            })
    }
}
