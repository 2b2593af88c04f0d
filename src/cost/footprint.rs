//! What profiling on the CPU holds at its peak, from the parent's configuration and the
//! profile's options alone, so that it can be refused before anything is built
//! (`memory_budget`): for one scenario at a time, every distinct block as a stack of the
//! parent's depth and an empty stack (random f32 weights, made on the host one part at a time
//! and copied into the model, so the largest part counts twice more while it is built), the
//! calibration models (the parent and random children, each at most the parent's size), the
//! allocator's slack over all of them, each runner's KV cache at the scenario's positions, and
//! one forward pass's logits. Knows how `predict` builds what it times, nothing of timing.

use super::memory::{kv_bytes_per_token, model_kv_bytes_per_token, outside_params};
use super::{Precision, Scenario};
use crate::memory_budget::Estimate;
use crate::model::weights::expected_tensors;
use crate::model::{BlockConfig, ModelConfig};

const F32: u64 = 4;

/// What the allocator holds beyond the models' tensors, as a share of them. Measured: profiling
/// SmolLM2-135M's 12 distinct blocks (`scripts/memory_follows_the_work.sh smollm2`, `--calibrate
/// 0`) held 5.61–5.65 GiB while timing, 0.15 GiB (2.9%) above the stacks' 5.21 GiB of f32
/// weights, the runtime and the caches.
const ALLOCATOR_SLACK: f64 = 0.04;

/// The peak of profiling `distinct` blocks of `parent` under the worst of `scenarios`, with
/// `calibration_models` models timed end to end (0: none).
pub fn profile_estimate(
    parent: &ModelConfig,
    distinct: &[BlockConfig],
    scenarios: &[Scenario],
    calibration_models: usize,
) -> Estimate {
    let layers = parent.num_layers() as u64;
    let outside = outside_params(parent) as u64;
    let stacks: u64 = outside
        + distinct
            .iter()
            .map(|b| outside + layers * parent.block_params(b) as u64)
            .sum::<u64>();
    let largest_part = expected_tensors(parent)
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>() as u64)
        .max()
        .unwrap_or(0)
        .max(
            distinct
                .iter()
                .chain(&parent.blocks)
                .map(|b| parent.block_params(b) as u64)
                .max()
                .unwrap_or(0),
        );
    let models = calibration_models as u64 * parent.num_params() as u64;
    let widest_kv = distinct
        .iter()
        .map(|b| kv_bytes_per_token(parent, &b.attention, Precision::F32) as u64 * layers)
        .chain([model_kv_bytes_per_token(parent, Precision::F32) as u64])
        .max()
        .unwrap_or(0);
    let runners = 1 + distinct.len() as u64 + calibration_models as u64;
    let (caches, logits) = scenarios
        .iter()
        .map(|s| {
            let positions = (s.batch() * s.positions()) as u64;
            let tokens = (s.batch() * s.tokens()) as u64;
            (runners * positions * widest_kv, tokens * parent.vocab_size as u64 * F32)
        })
        .fold((0, 0), |(c, l), (c2, l2)| (c.max(c2), l.max(l2)));
    Estimate::new()
        .with(
            format!("{} block stacks of the parent's depth (f32)", distinct.len() + 1),
            stacks * F32,
        )
        .with("the largest part twice more while it is built", 2 * largest_part * F32)
        .with(format!("{calibration_models} calibration models (f32)"), models * F32)
        .with(
            "the allocator's slack",
            ((stacks + models) as f64 * F32 as f64 * ALLOCATOR_SLACK) as u64,
        )
        .with("KV caches", caches)
        .with("logits", logits)
}

/// What to change when a profile does not fit.
pub const ADVICE: &str = "fewer blocks at once (--layers or --items: each block is timed in a stack of the \
parent's depth), --calibrate 0, smaller scenarios, or more memory";
