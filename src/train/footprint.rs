//! What training a model as a language model holds at its peak, from its configuration and the
//! step's shape alone: the model trained as f32 (start, trained, gradients, AdamW's two
//! moments), one step's activations (all micro-batches at once: per token what each layer keeps
//! for the backward pass, and the logits in a few forms) and an allocator arena per further
//! micro-batch thread. Shared by the parent's pretraining and the post-training stages
//! (`posttrain::footprint`). Knows model configurations only.

use crate::memory_budget::{Estimate, THREAD_ARENA_BYTES};
use crate::model::{AttentionConfig, FfnConfig, ModelConfig};

const F32: u64 = 4;

/// Floats a trained model keeps per token for its backward pass, over all layers, with windows of
/// `seq_len` tokens.
pub fn saved_per_token(config: &ModelConfig, seq_len: usize) -> u64 {
    let hidden = config.hidden_size as u64;
    let scores = 2 * (config.num_attention_heads * seq_len) as u64;
    config
        .blocks
        .iter()
        .map(|block| {
            let attention = match block.attention {
                AttentionConfig::Gqa { kv_heads } => 2 * hidden + 2 * (kv_heads * config.head_dim) as u64 + scores,
                AttentionConfig::Linear => hidden,
                AttentionConfig::NoOp => 0,
            };
            let ffn = match block.ffn {
                FfnConfig::SwiGlu { intermediate } => 3 * intermediate as u64 + hidden,
                FfnConfig::Linear => hidden,
                FfnConfig::NoOp => 0,
            };
            4 * hidden + attention + ffn
        })
        .sum()
}

/// Per token of a fine-tuning step: the logits, their log-probabilities and their gradient.
pub const LM_LOGIT_COPIES: u64 = 3;

/// The model as f32: the checkpoint it starts from and the trained one, the model, gradients
/// and AdamW's two moments.
pub const TRAINED_COPIES: u64 = 6;

pub fn micro_batch_arenas(micro_batches: usize) -> (String, u64) {
    let more = micro_batches.saturating_sub(1);
    (
        format!("allocator arenas of {more} more micro-batch threads"),
        more as u64 * THREAD_ARENA_BYTES,
    )
}

/// The peak of training `model` as a language model on `batch_size` rows (`rows`: what they
/// are) of up to `longest` tokens a step: the model trained as f32 and one step's activations,
/// all micro-batches at once.
pub fn lm_training_estimate(
    model: &ModelConfig,
    batch_size: usize,
    micro_batches: usize,
    longest: usize,
    rows: &str,
) -> Estimate {
    let tokens = (batch_size * longest) as u64;
    let per_token = saved_per_token(model, longest) + LM_LOGIT_COPIES * model.vocab_size as u64;
    let (arenas, arena_bytes) = micro_batch_arenas(micro_batches);
    Estimate::new()
        .with(
            "model: start, trained, gradients, AdamW moments (f32)",
            TRAINED_COPIES * model.num_params() as u64 * F32,
        )
        .with(
            format!("activations of a step ({batch_size} {rows} of up to {longest} tokens)"),
            tokens * per_token * F32,
        )
        .with(arenas, arena_bytes)
}
