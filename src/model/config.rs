//! Hyper-parameters read from GGUF metadata, as llama.cpp's `load_hparams` reads them.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::arch::{ArchSpec, AttnScale, SwaRule};
use super::ModelError;
use crate::gguf::{Gguf, Value};
use crate::Result;

/// Most layers accepted (llama.cpp's `LLAMA_MAX_LAYERS`).
pub const MAX_LAYERS: u32 = 512;

/// How RoPE frequencies are scaled for long contexts (`rope.scaling.type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// No scaling (`none`, or `linear` with factor 1).
    None,
    /// Positions multiplied by `freq_scale = 1 / rope.scaling.factor`.
    Linear,
}

/// The model's shape and constants.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// What differs per architecture.
    pub arch: ArchSpec,
    /// `{arch}.block_count`.
    pub n_layer: usize,
    /// `{arch}.embedding_length` (d).
    pub n_embd: usize,
    /// `{arch}.feed_forward_length`.
    pub n_ff: usize,
    /// `{arch}.attention.head_count`.
    pub n_head: usize,
    /// `{arch}.attention.head_count_kv` (defaults to `n_head`).
    pub n_head_kv: usize,
    /// `{arch}.attention.key_length` (defaults to `n_embd / n_head`); equal to the value length.
    pub head_dim: usize,
    /// `{arch}.rope.dimension_count` (defaults to `head_dim`): dimensions rotated per head.
    pub n_rot: usize,
    /// Vocabulary size (rows of `token_embd.weight`).
    pub n_vocab: usize,
    /// `{arch}.context_length`: the context the model was trained with.
    pub n_ctx_train: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_freq_base: f32,
    /// `1 / rope.scaling.factor` (1 when absent).
    pub rope_freq_scale: f32,
    /// The scaling kind.
    pub rope_scaling: RopeScaling,
    /// RoPE base of sliding-window layers (`rope.freq_base_swa`, else the arch default).
    pub rope_freq_base_swa: f32,
    /// RoPE scale of sliding-window layers (1).
    pub rope_freq_scale_swa: f32,
    /// `attention.sliding_window` when the architecture uses it and it is > 0.
    pub sliding_window: Option<usize>,
    /// For each layer: does it use the sliding window?
    pub swa_layers: Vec<bool>,
    /// Factor applied to the attention scores before softmax.
    pub kq_scale: f32,
    /// Factor applied to Q after RoPE (Gemma), else `None`.
    pub q_scale: Option<f32>,
    /// Token embeddings are multiplied by this (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    /// `final_logit_softcapping` when the architecture reads it and it is non-zero.
    pub final_logit_softcap: Option<f32>,
}

fn key(arch: &str, k: &str) -> String {
    format!("{arch}.{k}")
}

fn invalid(key: String, value: u64, reason: &'static str) -> crate::Error {
    ModelError::InvalidHparam { key, value, reason }.into()
}

/// A required positive count that fits the address space.
fn count<B: AsRef<[u8]>>(g: &Gguf<B>, k: &str) -> Result<usize> {
    let v = g.get_u32(k)?;
    if v == 0 {
        return Err(invalid(k.to_string(), 0, "must be > 0"));
    }
    usize::try_from(v).map_err(|_| invalid(k.to_string(), u64::from(v), "too large"))
}

/// An optional count: `Ok(None)` when absent.
fn opt_count<B: AsRef<[u8]>>(g: &Gguf<B>, k: &str) -> Result<Option<usize>> {
    match g.find_u32(k)? {
        None => Ok(None),
        Some(v) => usize::try_from(v)
            .map(Some)
            .map_err(|_| invalid(k.to_string(), u64::from(v), "too large")),
    }
}

/// Per-layer arrays (`head_count` as an array) are not supported: say so clearly.
fn reject_array<B: AsRef<[u8]>>(g: &Gguf<B>, k: &str) -> Result<()> {
    if let Some(Value::Array(_)) = g.get(k) {
        return Err(ModelError::Unsupported {
            what: format!("per-layer values for {k}"),
        }
        .into());
    }
    Ok(())
}

impl ModelConfig {
    /// Read and validate the configuration. `n_vocab` comes from the caller (the rows of
    /// `token_embd.weight`).
    pub fn from_gguf<B: AsRef<[u8]>>(g: &Gguf<B>, n_vocab: usize) -> Result<ModelConfig> {
        let arch_name = g.get_str("general.architecture")?;
        let arch = ArchSpec::for_name(arch_name)?;
        let a = arch.name;

        for k in [
            "feed_forward_length",
            "attention.head_count",
            "attention.head_count_kv",
        ] {
            reject_array(g, &key(a, k))?;
        }

        let n_layer_u = g.get_u32(&key(a, "block_count"))?;
        if n_layer_u == 0 || n_layer_u > MAX_LAYERS {
            return Err(invalid(
                key(a, "block_count"),
                u64::from(n_layer_u),
                "must be in 1..=512",
            ));
        }
        let n_layer = n_layer_u as usize;
        let n_embd = count(g, &key(a, "embedding_length"))?;
        let n_ff = count(g, &key(a, "feed_forward_length"))?;
        let n_head = count(g, &key(a, "attention.head_count"))?;
        let n_head_kv = opt_count(g, &key(a, "attention.head_count_kv"))?.unwrap_or(n_head);
        if n_head_kv == 0 {
            return Err(invalid(key(a, "attention.head_count_kv"), 0, "must be > 0"));
        }
        if n_head % n_head_kv != 0 {
            return Err(ModelError::KvHeadsDontDivide {
                n_head: n_head as u32,
                n_head_kv: n_head_kv as u32,
            }
            .into());
        }
        let head_dim_k = opt_count(g, &key(a, "attention.key_length"))?.unwrap_or(n_embd / n_head);
        let head_dim_v =
            opt_count(g, &key(a, "attention.value_length"))?.unwrap_or(n_embd / n_head);
        if head_dim_k == 0 || head_dim_k % 2 != 0 {
            return Err(invalid(
                key(a, "attention.key_length"),
                head_dim_k as u64,
                "head size must be even and > 0",
            ));
        }
        if head_dim_v != head_dim_k {
            return Err(ModelError::Unsupported {
                what: format!(
                    "attention.value_length {head_dim_v} different from key_length {head_dim_k}"
                ),
            }
            .into());
        }
        let head_dim = head_dim_k;
        let n_rot = opt_count(g, &key(a, "rope.dimension_count"))?.unwrap_or(head_dim);
        // llama.cpp asserts n_rot == head size in every graph used here.
        if n_rot != head_dim {
            return Err(invalid(
                key(a, "rope.dimension_count"),
                n_rot as u64,
                "must equal the head size",
            ));
        }
        if arch.q_dim_is_embd && n_head * head_dim != n_embd {
            return Err(invalid(
                key(a, "attention.key_length"),
                head_dim as u64,
                "head_count * key_length must equal embedding_length for this architecture",
            ));
        }
        let n_ctx_train = count(g, &key(a, "context_length"))?;
        let rms_eps = g.get_f32(&key(a, "attention.layer_norm_rms_epsilon"))?;
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(invalid(
                key(a, "attention.layer_norm_rms_epsilon"),
                0,
                "must be finite and >= 0",
            ));
        }

        let rope_freq_base = g.find_f32(&key(a, "rope.freq_base"))?.unwrap_or(10_000.0);
        let scaling_type = g
            .find_str(&key(a, "rope.scaling.type"))?
            .unwrap_or("linear");
        let factor = match g.find_f32(&key(a, "rope.scaling.factor"))? {
            Some(f) => f,
            None => g.find_f32(&key(a, "rope.scale_linear"))?.unwrap_or(0.0),
        };
        let rope_freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
        let rope_scaling = match scaling_type {
            "none" => RopeScaling::None,
            "linear" if rope_freq_scale == 1.0 => RopeScaling::None,
            "linear" => RopeScaling::Linear,
            other => {
                return Err(ModelError::Unsupported {
                    what: format!("rope.scaling.type {other:?}"),
                }
                .into())
            }
        };
        if !(rope_freq_base.is_finite() && rope_freq_base > 0.0 && rope_freq_scale.is_finite()) {
            return Err(invalid(
                key(a, "rope.freq_base"),
                0,
                "must be finite and > 0",
            ));
        }

        let mut sliding_window = None;
        let mut swa_layers = alloc::vec![false; n_layer];
        let mut rope_freq_base_swa = arch.swa_rope_base_default;
        if let SwaRule::Pattern { default_period } = arch.swa {
            let n_swa = opt_count(g, &key(a, "attention.sliding_window"))?.unwrap_or(0);
            if n_swa > 0 {
                sliding_window = Some(n_swa);
                let pk = key(a, "attention.sliding_window_pattern");
                match g.get(&pk) {
                    Some(Value::Array(arr)) => {
                        if arr.len() < n_layer {
                            return Err(invalid(pk, arr.len() as u64, "fewer entries than layers"));
                        }
                        for (i, slot) in swa_layers.iter_mut().enumerate() {
                            *slot = match arr.get(i) {
                                Some(Value::Bool(b)) => b,
                                Some(v) => v.as_integer().map(|x| x != 0).ok_or_else(|| {
                                    invalid(pk.clone(), i as u64, "entries must be bool")
                                })?,
                                None => false,
                            };
                        }
                    }
                    Some(_) => {
                        let n = g.get_u32(&pk)?;
                        set_swa_pattern(&mut swa_layers, n);
                    }
                    None => set_swa_pattern(&mut swa_layers, default_period),
                }
                if let Some(b) = g.find_f32(&key(a, "rope.freq_base_swa"))? {
                    rope_freq_base_swa = b;
                }
            }
        }

        let (kq_scale, q_scale) = match arch.attn_scale {
            AttnScale::InvSqrtHeadDim => (1.0 / libm::sqrtf(head_dim as f32), None),
            AttnScale::GemmaQuery => {
                // llama.cpp: the 27B (62 layers) uses n_embd / n_head, the others head_dim.
                let d = if n_layer == 62 {
                    n_embd / n_head
                } else {
                    head_dim
                };
                (1.0, Some(1.0 / libm::sqrtf(d as f32)))
            }
        };
        let embed_scale = arch.embed_scale_sqrt_d.then(|| libm::sqrtf(n_embd as f32));
        let final_logit_softcap = if arch.final_softcap {
            g.find_f32(&key(a, "final_logit_softcapping"))?
                .filter(|&c| c != 0.0)
        } else {
            None
        };

        Ok(ModelConfig {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            n_vocab,
            n_ctx_train,
            rms_eps,
            rope_freq_base,
            rope_freq_scale,
            rope_scaling,
            rope_freq_base_swa,
            rope_freq_scale_swa: 1.0,
            sliding_window,
            swa_layers,
            kq_scale,
            q_scale,
            embed_scale,
            final_logit_softcap,
        })
    }

    /// `n_head * head_dim`: width of Q and of the attention output.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// `n_head_kv * head_dim`: width of K and V.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Is layer `il` a sliding-window layer?
    pub fn is_swa(&self, il: usize) -> bool {
        self.swa_layers.get(il).copied().unwrap_or(false)
    }

    /// RoPE `(freq_base, freq_scale)` of layer `il`.
    pub fn rope_params(&self, il: usize) -> (f32, f32) {
        if self.is_swa(il) {
            (self.rope_freq_base_swa, self.rope_freq_scale_swa)
        } else {
            (self.rope_freq_base, self.rope_freq_scale)
        }
    }
}

/// llama.cpp's `set_swa_pattern(n, dense_first = false)`: layer `il` is local when
/// `il % n < n - 1`; `n == 0` makes every layer local.
fn set_swa_pattern(layers: &mut [bool], n: u32) {
    let n = n as usize;
    for (il, slot) in layers.iter_mut().enumerate() {
        *slot = n == 0 || il % n < n - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_pattern_is_five_local_one_global() {
        let mut l = [false; 12];
        set_swa_pattern(&mut l, 6);
        assert_eq!(
            l,
            [true, true, true, true, true, false, true, true, true, true, true, false]
        );
    }
}
