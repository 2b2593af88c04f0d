//! What a library build holds at its peak, from the parent's configuration and the build's
//! settings alone, so that it can be refused before the parent is loaded (`memory_budget`):
//! the parent twice as f32 (the checkpoint and the model built from it), the parent's
//! activations at one layer for every window (input, after attention, output, and the next
//! layer's input while it is computed), and each worker's item in training (weights, gradient
//! and two Adam moments, and one batch's activations through the block). Knows the build's
//! data layout, nothing of training itself.

use super::build::{BuildOptions, train_windows};
use crate::memory_budget::Estimate;
use crate::model::{FfnConfig, ModelConfig};

const F32: u64 = 4;

/// The peak of building (part of) a library of `config`'s parent with `options`.
pub fn build_estimate(config: &ModelConfig, options: &BuildOptions) -> Estimate {
    let hidden = config.hidden_size as u64;
    let seq = options.seq_len as u64;
    let windows = train_windows(options) + options.held_out_windows;
    let widest = config
        .blocks
        .iter()
        .map(|b| match b.ffn {
            FfnConfig::SwiGlu { intermediate } => intermediate as u64,
            _ => hidden,
        })
        .max()
        .unwrap_or(hidden);
    let largest_block = config.blocks.iter().map(|b| config.block_params(b)).max().unwrap_or(0) as u64;
    let workers = crate::parallel::thread_count(options.workers, usize::MAX) as u64;
    let heads = config.num_attention_heads as u64;
    let batch = options.bld.batch_windows as u64 * seq * (16 * hidden + 8 * widest + 3 * heads * seq) * F32;
    Estimate::new()
        .with(
            "parent weights (f32, checkpoint and model)",
            2 * config.num_params() as u64 * F32,
        )
        .with(
            format!("parent activations ({windows} windows × 4 × {seq} × {hidden})"),
            4 * windows as u64 * seq * hidden * F32,
        )
        .with(
            format!("training ({workers} at once)"),
            workers * (4 * largest_block * F32 + batch),
        )
}

/// What to change when a build does not fit.
pub const ADVICE: &str = "a smaller token budget (--tokens), fewer items at once (--workers) or more memory; the \
parent is loaded whole as f32 whatever --layers selects";
