//! Fusing runs of a checkpoint: each run becomes one layer with the first member's attention
//! (or none) and every member's SwiGLU FFN read in parallel as one wide SwiGLU, each member's
//! RMSNorm folded into its rows (`model::parallel_ffn`). Exact as a parallel sum; the only
//! change to the model is "parallel instead of sequential".

use super::FusionError;
use super::runs::check_run;
use crate::checkpoint::{Checkpoint, LayerSpan, Replacement};
use crate::model::parallel_ffn::{FfnMember, fuse_ffns};
use crate::model::{BlockConfig, FfnConfig, TensorMap, block_tensors};

/// `checkpoint` with every run of `runs` (in its own layer numbers) fused into one layer.
pub fn fuse_runs(checkpoint: &Checkpoint, runs: &[LayerSpan]) -> Result<Checkpoint, FusionError> {
    let config = &checkpoint.config;
    let mut fused: Vec<Replacement> = Vec::new();
    for &span in runs {
        check_run(config, span)?;
        let first = config.blocks[span.first];
        let attention_only = BlockConfig {
            attention: first.attention,
            ffn: FfnConfig::NoOp,
        };
        let mut weights: TensorMap = block_tensors(config, span.first, &attention_only)
            .into_iter()
            .map(|(name, _)| {
                let tensor = checkpoint.weights[&name].clone();
                (name, tensor)
            })
            .collect();
        let members: Vec<FfnMember> = (span.first..=span.last)
            .filter_map(|layer| FfnMember::of_layer(&checkpoint.weights, layer))
            .collect();
        let (ffn, tensors) = fuse_ffns(&members, span.first);
        weights.extend(tensors);
        fused.push(Replacement {
            span,
            block: BlockConfig {
                attention: first.attention,
                ffn,
            },
            weights,
        });
    }
    Ok(checkpoint.splice(&fused)?)
}
