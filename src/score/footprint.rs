//! What scoring holds at its peak, from the parent's configuration and the score options alone,
//! so that it can be refused before the parent is read (`memory_budget`). Scoring walks the
//! parent one layer at a time and holds, beside the reference on every held-out window (the
//! parent's log-probabilities and last hidden state), the stream kept before each layer blocks
//! start at and one group of blocks' streams, either a layer's work (a parent layer as f32, and
//! the span being scored: the parent's layers under it, the block's weights and the block) or
//! the comparison's (the LM head as f32, one block's logits and log-probabilities), never both.
//! For task accuracy the parent and one replaced model are built whole. Measured on a
//! Llama-3.1-8B-shaped parent (`--layers 30-31`, 4 windows of 64): 4.62 GiB, against 5.38 GiB.
//! Knows the reference's layout only.

use super::stage::{ScoreMetric, ScoreOptions};
use super::walk::GROUP_BYTES;
use crate::memory_budget::Estimate;
use crate::model::ModelConfig;

const F32: u64 = 4;

/// The peak of scoring with `options` the blocks starting at `start_layers` layers of a
/// library of `config`'s parent whose windows are `seq_len` tokens.
pub fn score_estimate(config: &ModelConfig, seq_len: usize, start_layers: usize, options: &ScoreOptions) -> Estimate {
    let tokens = (options.windows * seq_len) as u64;
    let hidden = config.hidden_size as u64;
    let vocab = config.vocab_size as u64;
    let largest_block = config.blocks.iter().map(|b| config.block_params(b)).max().unwrap_or(0) as u64;
    let stream = tokens * hidden * F32;
    // Measured on the 8B parent: a layer's work peaks near six layer-sized f32 copies (the
    // parent block and its tensors while built, the span's tensors, the block's weights, the
    // block and its transposed matrices while built), not the four that stay.
    let layer_work = 6 * largest_block * F32;
    let comparison = vocab * hidden * F32 + 4 * tokens * vocab * F32;
    let estimate = Estimate::new()
        .with(
            "the larger of a layer's work (a parent layer, a scored span's layers, weights and block, f32) and \
             the comparison (the LM head, one block's logits and log-probabilities)",
            layer_work.max(comparison),
        )
        .with(
            format!(
                "reference on {} windows (log-probabilities, last hidden state)",
                options.windows
            ),
            tokens * (vocab + hidden) * F32,
        )
        .with(
            format!("the parent's stream before {start_layers} layers, and one group's streams"),
            start_layers as u64 * stream + GROUP_BYTES.min(stream * 64),
        );
    match options.blocks {
        Some(ScoreMetric::Accuracy { .. }) => estimate.with(
            "the parent and one replaced model, whole (f32)",
            2 * config.num_params() as u64 * F32,
        ),
        _ => estimate,
    }
}

/// What to change when scoring does not fit.
pub const ADVICE: &str = "fewer held-out windows (--windows), fewer layers at once (--layers), or more memory";
