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

    /// Parameters of one block, norms included.
    pub fn block_params(&self, block: &BlockConfig) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let attention = match block.attention {
            AttentionConfig::Gqa { kv_heads } => h + h * q + 2 * h * kv_heads * self.head_dim + q * h,
            AttentionConfig::Linear => h + h * h,
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
