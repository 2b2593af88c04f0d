//! The runtime description of a heterogeneous Llama: shared dimensions plus one block config per
//! layer. It knows nothing about file formats (see `checkpoint::hf_config`) or tensors.

use serde::{Deserialize, Serialize};

/// The attention sub-block of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttentionConfig {
    /// Grouped-query attention with `kv_heads` key/value heads (the query heads are shared).
    Gqa { kv_heads: usize },
    /// One `[hidden, hidden]` linear map; each token attends only to itself.
    Linear,
    /// The sub-block is removed: neither weights nor norm.
    NoOp,
}

/// The FFN sub-block of one layer. A fused FFN (several parent FFNs read in parallel) is a
/// SwiGLU with the summed width, so it needs no variant of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FfnConfig {
    /// SwiGLU with `intermediate` hidden channels.
    SwiGlu { intermediate: usize },
    /// One `[hidden, hidden]` linear map.
    Linear,
    /// The sub-block is removed: neither weights nor norm.
    NoOp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockConfig {
    pub attention: AttentionConfig,
    pub ffn: FfnConfig,
}

/// How rotary frequencies are scaled for long contexts (transformers' `rope_type`); each
/// variant's maths is in `model::rope`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// `θ^(-2i/d)` as it is.
    #[default]
    None,
    /// Every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.x: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// YaRN: interpolation and extrapolation blended per frequency, cos/sin scaled by
    /// `attention_factor`.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        truncate: bool,
    },
}

/// Which attention projections carry a bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionBias {
    #[default]
    None,
    /// q, k and v (Qwen2).
    Qkv,
    /// q, k, v and the output projection (Llama's and Qwen3's `attention_bias`).
    QkvO,
}

impl AttentionBias {
    pub fn on_qkv(self) -> bool {
        self != AttentionBias::None
    }

    pub fn on_output(self) -> bool {
        self == AttentionBias::QkvO
    }
}

/// The model family a parent came as, so that a child is written back as the same family. It
/// does not change the computation, which the other fields describe completely.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    #[default]
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

/// Everything needed to build a model, shared across layers except `blocks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub blocks: Vec<BlockConfig>,
    #[serde(default)]
    pub rope_scaling: RopeScaling,
    #[serde(default)]
    pub attention_bias: AttentionBias,
    /// RMSNorm over each query and key head before RoPE (Qwen3).
    #[serde(default)]
    pub qk_norm: bool,
    /// Every softmax-attention layer sees only the last `sliding_window` positions (Mistral):
    /// query `i` attends key `j` when `i - sliding_window < j <= i`.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub family: Family,
}

/// A configuration that cannot describe a working model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{field} must be positive")]
    Zero { field: &'static str },
    #[error("layer {layer}: {kv_heads} KV heads do not divide {heads} attention heads")]
    KvHeads {
        layer: usize,
        kv_heads: usize,
        heads: usize,
    },
    #[error("the model has no layers")]
    NoLayers,
    #[error("head_dim {0} must be even: RoPE rotates pairs")]
    OddHeadDim(usize),
}

impl ModelConfig {
    /// A plain Llama: every layer GQA with `kv_heads` and SwiGLU of width `intermediate`, tied
    /// embeddings, RoPE θ = 10000, BOS = 1, EOS = 2.
    pub fn uniform(
        vocab_size: usize,
        hidden_size: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
        intermediate: usize,
        max_positions: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_attention_heads: heads,
            head_dim: hidden_size / heads,
            max_position_embeddings: max_positions,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            bos_token_id: 1,
            eos_token_id: 2,
            blocks: vec![
                BlockConfig {
                    attention: AttentionConfig::Gqa { kv_heads },
                    ffn: FfnConfig::SwiGlu { intermediate }
                };
                layers
            ],
            rope_scaling: RopeScaling::None,
            attention_bias: AttentionBias::None,
            qk_norm: false,
            sliding_window: None,
            family: Family::Llama,
        }
    }

    /// A small model with every attention kind and every FFN kind in some layer (tests, demo).
    pub fn tiny_heterogeneous(vocab_size: usize) -> Self {
        use AttentionConfig as A;
        use FfnConfig as F;
        let blocks = [
            (A::Gqa { kv_heads: 4 }, F::SwiGlu { intermediate: 96 }),
            (A::Gqa { kv_heads: 1 }, F::Linear),
            (A::Linear, F::SwiGlu { intermediate: 40 }),
            (A::NoOp, F::SwiGlu { intermediate: 64 }),
            (A::Gqa { kv_heads: 2 }, F::NoOp),
            (A::NoOp, F::NoOp),
        ];
        Self {
            blocks: blocks
                .into_iter()
                .map(|(attention, ffn)| BlockConfig { attention, ffn })
                .collect(),
            tie_word_embeddings: false,
            ..Self::uniform(vocab_size, 64, 0, 8, 8, 0, 64)
        }
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Checks the invariants the forward pass relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if self.blocks.is_empty() {
            return Err(ConfigError::NoLayers);
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim(self.head_dim));
        }
        if self.sliding_window == Some(0) {
            return Err(ConfigError::Zero {
                field: "sliding_window",
            });
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            if let AttentionConfig::Gqa { kv_heads } = block.attention
                && (kv_heads == 0 || !self.num_attention_heads.is_multiple_of(kv_heads))
            {
                return Err(ConfigError::KvHeads {
                    layer,
                    kv_heads,
                    heads: self.num_attention_heads,
                });
            }
            if let FfnConfig::SwiGlu { intermediate: 0 } = block.ffn {
                return Err(ConfigError::Zero {
                    field: "intermediate_size",
                });
            }
        }
        Ok(())
    }

    /// The block shared by every layer, when there is one (an HF `LlamaConfig` needs it).
    pub fn homogeneous_block(&self) -> Option<BlockConfig> {
        let first = *self.blocks.first()?;
        self.blocks.iter().all(|b| *b == first).then_some(first)
    }

    /// Parameter count of the whole model (embeddings and head included).
    pub fn num_params(&self) -> usize {
        let h = self.hidden_size;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        let blocks: usize = self.blocks.iter().map(|b| self.block_params(b)).sum();
        embed + head + blocks + h
    }

    /// Parameters of one block, norms and biases included.
    pub fn block_params(&self, block: &BlockConfig) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let bias = self.attention_bias;
        let attention = match block.attention {
            AttentionConfig::Gqa { kv_heads } => {
                let kv = kv_heads * self.head_dim;
                let biases = usize::from(bias.on_qkv()) * (q + 2 * kv) + usize::from(bias.on_output()) * h;
                h + h * q + 2 * h * kv + q * h + biases + usize::from(self.qk_norm) * 2 * self.head_dim
            }
            AttentionConfig::Linear => h + h * h + usize::from(bias.on_qkv()) * h,
            AttentionConfig::NoOp => 0,
        };
        let ffn = match block.ffn {
            FfnConfig::SwiGlu { intermediate } => h + 3 * h * intermediate,
            FfnConfig::Linear => h + h * h,
            FfnConfig::NoOp => 0,
        };
        attention + ffn
    }

    /// Approximate forward FLOPs per token at context length `context` (2 per multiply-add).
    pub fn flops_per_token(&self, context: usize) -> f64 {
        let h = self.hidden_size as f64;
        let q = (self.num_attention_heads * self.head_dim) as f64;
        let mut flops = 2.0 * h * self.vocab_size as f64;
        for block in &self.blocks {
            flops += match block.attention {
                AttentionConfig::Gqa { kv_heads } => {
                    let kv = (kv_heads * self.head_dim) as f64;
                    2.0 * (h * q + 2.0 * h * kv + q * h) + 4.0 * q * context as f64
                }
                AttentionConfig::Linear => 2.0 * h * h,
                AttentionConfig::NoOp => 0.0,
            };
            flops += match block.ffn {
                FfnConfig::SwiGlu { intermediate } => 6.0 * h * intermediate as f64,
                FfnConfig::Linear => 2.0 * h * h,
                FfnConfig::NoOp => 0.0,
            };
        }
        flops
    }
}
