//! What distillation holds at its peak, from the two models' configurations and the options
//! alone, so that it can be refused before either model is loaded (`memory_budget`): the
//! teacher as f32 (twice while it is built from its checkpoint), the student as f32 with its
//! checkpoint, gradients and AdamW's two moments, and the activations of one step (its
//! micro-batches run at once): per token, what each student layer keeps for the backward pass
//! (norms and residuals, attention projections and scores, the SwiGLU's three products), the
//! teacher's hidden states, and the logits in [`LOGIT_COPIES`] forms; and an allocator arena per
//! further micro-batch thread. Measured peaks (resident set, `tessera distill`, 2 micro-batches)
//! against this estimate: the default parent's fused 2× child, 16 × 64 tokens 210–214 MiB (0.26
//! GiB), 64 × 64 tokens 352 MiB (0.39 GiB); SmolLM2-135M into itself, 16 × 64 tokens 5.10 GiB
//! (6.05 GiB). Knows model configurations only.

use super::distill::DistillOptions;
use crate::memory_budget::{Estimate, THREAD_ARENA_BYTES};
use crate::model::{AttentionConfig, FfnConfig, ModelConfig};

const F32: u64 = 4;

/// Per token: both models' logits, their log-probabilities, the teacher's probabilities and the
/// gradient of the student's logits.
pub const LOGIT_COPIES: u64 = 6;

/// Floats the student keeps per token for its backward pass, over all layers, with windows of
/// `seq_len` tokens.
fn saved_per_token(config: &ModelConfig, seq_len: usize) -> u64 {
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

/// The peak of distilling `student` from `teacher` with `options`.
pub fn distill_estimate(teacher: &ModelConfig, student: &ModelConfig, options: &DistillOptions) -> Estimate {
    let tokens = (options.batch_size * options.seq_len) as u64;
    let per_token = saved_per_token(student, options.seq_len)
        + (teacher.num_layers() * teacher.hidden_size) as u64
        + LOGIT_COPIES * student.vocab_size as u64;
    Estimate::new()
        .with(
            "teacher weights (f32, twice while built)",
            2 * teacher.num_params() as u64 * F32,
        )
        .with(
            "student weights, checkpoint, gradients, AdamW moments (f32)",
            5 * student.num_params() as u64 * F32,
        )
        .with(
            format!("activations of a step ({tokens} tokens)"),
            tokens * per_token * F32,
        )
        .with(
            format!(
                "allocator arenas of {} more micro-batch threads",
                options.micro_batches.saturating_sub(1)
            ),
            (options.micro_batches.saturating_sub(1)) as u64 * THREAD_ARENA_BYTES,
        )
}

/// What to change when distillation does not fit.
pub const ADVICE: &str = "a smaller batch (--batch-size) or shorter windows (--seq-len), or more memory; both models \
are held whole as f32";
