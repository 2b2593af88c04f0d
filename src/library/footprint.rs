//! What a library build holds at its peak, from the parent's configuration and the build's
//! settings alone, so that it can be refused before the parent is read (`memory_budget`). The
//! parent is walked one layer at a time and its activations are cached on disk, so the token
//! budget does not appear. Beside one parent layer's tensors (f32), a build either walks (the
//! block built from those tensors and one chunk of windows through it) or trains (the
//! calibration statistics and each worker's item: weights, gradient and two Adam moments, its
//! initial and trained tensors, a frozen parent FFN beside an attention variant, and one
//! batch's activations through the block), never both at once. Measured on a Llama-3.1-8B-shaped
//! parent (`--layers 30-31` of the paper space, one worker, 2 windows of 64 per step): 4.39 GiB
//! at both token budgets tried, against 4.94 GiB. Knows the build's data layout, nothing of
//! training itself.

use super::activations::CHUNK;
use super::build::BuildOptions;
use crate::memory_budget::Estimate;
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};

const F32: u64 = 4;

/// The peak of building (part of) a library of `config`'s parent with `options`.
pub fn build_estimate(config: &ModelConfig, options: &BuildOptions) -> Estimate {
    let hidden = config.hidden_size as u64;
    let seq = options.seq_len as u64;
    let heads = config.num_attention_heads as u64;
    let widest = config
        .blocks
        .iter()
        .map(|b| match b.ffn {
            FfnConfig::SwiGlu { intermediate } => intermediate as u64,
            _ => hidden,
        })
        .max()
        .unwrap_or(hidden);
    let params = |block: BlockConfig| config.block_params(&block) as u64;
    let largest =
        |part: fn(&BlockConfig) -> BlockConfig| config.blocks.iter().map(|b| params(part(b))).max().unwrap_or(0);
    let layer = largest(|b| *b);
    let ffn = largest(|b| BlockConfig {
        attention: AttentionConfig::NoOp,
        ffn: b.ffn,
    });
    let attention = largest(|b| BlockConfig {
        attention: b.attention,
        ffn: FfnConfig::NoOp,
    });
    let workers = crate::parallel::thread_count(options.workers, usize::MAX) as u64;
    let walk_window = seq * (8 * hidden + 3 * widest + 2 * heads * seq) * F32;
    let train_window = seq * (16 * hidden + 8 * widest + 3 * heads * seq) * F32;
    let walk = layer * F32 + CHUNK as u64 * walk_window;
    // An FFN variant, or an attention variant with two copies of the parent's FFN after it.
    let item = (6 * ffn).max(6 * attention + 2 * ffn) * F32 + options.bld.batch_windows as u64 * train_window;
    let calibration = options.calibration_tokens as u64 * (4 * hidden + widest) * F32;
    let train = calibration + workers * item;
    Estimate::new()
        .with("one parent layer's tensors (f32)", layer * F32)
        .with(
            format!(
                "the larger of walking the layer ({CHUNK} windows at once) and training ({workers} items at once, \
                 {} calibration tokens)",
                options.calibration_tokens
            ),
            walk.max(train),
        )
}

/// What to change when a build does not fit.
pub const ADVICE: &str = "fewer items at once (--workers), fewer windows per step (--batch-windows), fewer \
calibration tokens (--calibration-tokens), or more memory; the token budget does not matter: activations are cached \
on disk";
