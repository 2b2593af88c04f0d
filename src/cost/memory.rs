//! What a block occupies: parameters, their bytes at a precision, and the KV cache it adds per
//! token (DESIGN §1.6): `2 · kv_heads · head_dim · bytes` for softmax attention, nothing for a
//! linear or removed attention, which keep no keys or values.

use serde::Serialize;

use super::precision::Precision;
use crate::model::{AttentionConfig, BlockConfig, ModelConfig};

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BlockMemory {
    pub num_params: usize,
    pub param_bytes: usize,
    pub kv_bytes_per_token: usize,
}

/// KV-cache bytes one token adds to a layer with `attention`.
pub fn kv_bytes_per_token(config: &ModelConfig, attention: &AttentionConfig, precision: Precision) -> usize {
    match attention {
        AttentionConfig::Gqa { kv_heads } => 2 * kv_heads * config.head_dim * precision.bytes(),
        AttentionConfig::Linear | AttentionConfig::NoOp => 0,
    }
}

/// KV-cache bytes one token adds to the whole model: the sum over its layers.
pub fn model_kv_bytes_per_token(config: &ModelConfig, precision: Precision) -> usize {
    config
        .blocks
        .iter()
        .map(|b| kv_bytes_per_token(config, &b.attention, precision))
        .sum()
}

pub fn block_memory(config: &ModelConfig, block: &BlockConfig, precision: Precision) -> BlockMemory {
    let num_params = config.block_params(block);
    BlockMemory {
        num_params,
        param_bytes: num_params * precision.bytes(),
        kv_bytes_per_token: kv_bytes_per_token(config, &block.attention, precision),
    }
}

/// Parameters outside the blocks: embeddings, final norm and (untied) LM head.
pub fn outside_params(config: &ModelConfig) -> usize {
    let embed = config.vocab_size * config.hidden_size;
    embed + config.hidden_size + if config.tie_word_embeddings { 0 } else { embed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FfnConfig;

    #[test]
    fn kv_bytes_are_two_heads_worth_per_token_and_none_without_softmax_attention() {
        let config = ModelConfig::uniform(100, 128, 2, 8, 4, 256, 64);
        for precision in [Precision::F32, Precision::Bf16, Precision::Fp8] {
            for kv_heads in [1, 2, 4, 8] {
                let block = BlockConfig {
                    attention: AttentionConfig::Gqa { kv_heads },
                    ffn: FfnConfig::NoOp,
                };
                let memory = block_memory(&config, &block, precision);
                assert_eq!(memory.kv_bytes_per_token, 2 * kv_heads * 16 * precision.bytes());
            }
            for attention in [AttentionConfig::Linear, AttentionConfig::NoOp] {
                assert_eq!(kv_bytes_per_token(&config, &attention, precision), 0);
            }
        }
        // Two layers of 4 KV heads (head_dim 16); a layer without attention adds nothing.
        assert_eq!(model_kv_bytes_per_token(&config, Precision::Bf16), 2 * (2 * 4 * 16 * 2));
        let mut mixed = config.clone();
        mixed.blocks[1].attention = AttentionConfig::NoOp;
        assert_eq!(model_kv_bytes_per_token(&mixed, Precision::F32), 2 * 4 * 16 * 4);
        let parent = config.blocks[0];
        let memory = block_memory(&config, &parent, Precision::Bf16);
        assert_eq!(memory.param_bytes, 2 * config.block_params(&parent));
        assert_eq!(
            config.num_params(),
            outside_params(&config) + config.blocks.iter().map(|b| config.block_params(b)).sum::<usize>()
        );
    }
}
