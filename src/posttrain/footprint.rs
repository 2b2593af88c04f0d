//! What the post-training stages hold at their peak, from configurations, options and token
//! counts alone, so that each is refused before it builds a model (`memory_budget`).
//!
//! Distillation (before either model is loaded): the
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
use super::rl::RlOptions;
use crate::memory_budget::Estimate;
use crate::model::{AttentionConfig, ModelConfig};
use crate::train::footprint::{TRAINED_COPIES, lm_training_estimate, micro_batch_arenas, saved_per_token};

const F32: u64 = 4;

/// Per token: both models' logits, their log-probabilities, the teacher's probabilities and the
/// gradient of the student's logits.
pub const LOGIT_COPIES: u64 = 6;

/// The peak of distilling `student` from `teacher` with `options`.
pub fn distill_estimate(teacher: &ModelConfig, student: &ModelConfig, options: &DistillOptions) -> Estimate {
    let tokens = (options.batch_size * options.seq_len) as u64;
    let (arenas, arena_bytes) = micro_batch_arenas(options.micro_batches);
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
        .with(arenas, arena_bytes)
}

/// Per token of a GRPO update: the policy's logits, log-probabilities, probabilities (for the
/// entropy) and the gradient; the reference's log-probabilities were gathered when sampling.
const GRPO_LOGIT_COPIES: u64 = 4;

/// The peak of SFT on `model` (after its chats are tokenized, before it is built): LM training
/// on `batch_size` chats padded to the `longest`, and the chats themselves, `chat_bytes` of text
/// and tokens.
pub fn sft_estimate(
    model: &ModelConfig,
    batch_size: usize,
    micro_batches: usize,
    longest: usize,
    chat_bytes: u64,
) -> Estimate {
    lm_training_estimate(model, batch_size, micro_batches, longest, "chats")
        .with("the chats, as text and tokens", chat_bytes)
}

/// What to change when SFT does not fit.
pub const SFT_ADVICE: &str = "a smaller batch (--batch-size, [sft] batch_size) or shorter chats, or more memory; the model is trained whole as f32";

/// The peak of GRPO on `model` (after its prompts are encoded, before it is built): the policy
/// trained as f32, the frozen reference beside it, and a step's rollouts — every prompt of the
/// round sampled `group_size` times, the micro-batches at once, each reply as long as
/// `max_new_tokens` allows (the KV cache while sampling, the activations of the update). Replies
/// are usually shorter: measured peaks are below this worst case (default child 589 MiB against
/// 0.80 GiB, SmolLM2's 4.90 against 7.21 GiB, replies averaging a quarter of their limit).
pub fn rl_estimate(model: &ModelConfig, options: &RlOptions, longest_prompt: usize) -> Estimate {
    let sequences = options.prompts_per_round * options.group_size;
    let length = longest_prompt + options.max_new_tokens;
    let tokens = (sequences * length) as u64;
    let kv_per_token: u64 = model
        .blocks
        .iter()
        .map(|b| match b.attention {
            AttentionConfig::Gqa { kv_heads } => 2 * (kv_heads * model.head_dim) as u64,
            AttentionConfig::Linear | AttentionConfig::NoOp => 0,
        })
        .sum();
    let per_token = saved_per_token(model, length) + GRPO_LOGIT_COPIES * model.vocab_size as u64;
    let (arenas, arena_bytes) = micro_batch_arenas(options.micro_batches);
    Estimate::new()
        .with(
            "policy: start, trained, gradients, AdamW moments (f32)",
            TRAINED_COPIES * model.num_params() as u64 * F32,
        )
        .with("reference model (f32)", model.num_params() as u64 * F32)
        .with(
            format!("KV cache sampling {sequences} replies of up to {length} tokens"),
            tokens * kv_per_token * F32,
        )
        .with(
            format!("activations of an update ({sequences} sequences of up to {length} tokens)"),
            tokens * per_token * F32,
        )
        .with(arenas, arena_bytes)
}

/// What to change when GRPO does not fit.
pub const RL_ADVICE: &str = "fewer prompts per round or a smaller group (--prompts-per-round, --group-size), shorter \
replies (--max-tokens), or more memory; policy and reference are held whole as f32";

/// What to change when distillation does not fit.
pub const DISTILL_ADVICE: &str = "a smaller batch (--batch-size) or shorter windows (--seq-len), or more memory; both models \
are held whole as f32";
