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

/// Per token of a fine-tuning step: the logits, their log-probabilities and their gradient.
const LM_LOGIT_COPIES: u64 = 3;

/// Per token of a GRPO update: the policy's logits, log-probabilities, probabilities (for the
/// entropy) and the gradient; the reference's log-probabilities were gathered when sampling.
const GRPO_LOGIT_COPIES: u64 = 4;

/// The model as f32: the checkpoint it starts from and the trained one, the model, gradients
/// and AdamW's two moments.
const TRAINED_COPIES: u64 = 6;

fn micro_batch_arenas(micro_batches: usize) -> (String, u64) {
    let more = micro_batches.saturating_sub(1);
    (
        format!("allocator arenas of {more} more micro-batch threads"),
        more as u64 * THREAD_ARENA_BYTES,
    )
}

/// The peak of SFT on `model` (after its chats are tokenized, before it is built): the model
/// trained as f32, one step's activations (`batch_size` chats padded to the `longest`, all
/// micro-batches at once) and the chats themselves, `chat_bytes` of text and tokens.
pub fn sft_estimate(
    model: &ModelConfig,
    batch_size: usize,
    micro_batches: usize,
    longest: usize,
    chat_bytes: u64,
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
            format!("activations of a step ({batch_size} chats of up to {longest} tokens)"),
            tokens * per_token * F32,
        )
        .with("the chats, as text and tokens", chat_bytes)
        .with(arenas, arena_bytes)
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
