//! What scoring holds at its peak, from the parent's configuration and the score options alone,
//! so that it can be refused before the parent is loaded (`memory_budget`): the parent twice as
//! f32 (the checkpoint, whose tensors the blocks replace, and the model), the reference on every
//! held-out window (the hidden state before each layer and the parent's log-probabilities), and
//! for task accuracy one more parent-sized model with the block in place. Measured on SmolLM2
//! (`--layers 29-29`): 8 windows 1.27 GiB, 32 windows 1.64 GiB, about half of what the reference
//! counts per window, so the estimate is an upper bound there. Knows the reference's layout only.

use super::stage::{ScoreMetric, ScoreOptions};
use crate::memory_budget::Estimate;
use crate::model::ModelConfig;

const F32: u64 = 4;

/// The peak of scoring with `options` a library of `config`'s parent whose windows are
/// `seq_len` tokens.
pub fn score_estimate(config: &ModelConfig, seq_len: usize, options: &ScoreOptions) -> Estimate {
    let params = config.num_params() as u64;
    let per_window =
        seq_len as u64 * ((config.num_layers() as u64 + 1) * config.hidden_size as u64 + config.vocab_size as u64);
    let estimate = Estimate::new()
        .with("parent weights (f32, checkpoint and model)", 2 * params * F32)
        .with(
            format!(
                "reference on {} windows (hidden states, log-probabilities)",
                options.windows
            ),
            options.windows as u64 * per_window * F32,
        );
    match options.blocks {
        Some(ScoreMetric::Accuracy { .. }) => estimate.with("the parent with a block in place (f32)", params * F32),
        _ => estimate,
    }
}

/// What to change when scoring does not fit.
pub const ADVICE: &str = "fewer held-out windows (--windows) or more memory; the parent is loaded whole as f32 \
whatever --layers selects";
