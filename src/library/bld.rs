//! Blockwise local distillation of one work item (DESIGN §1.4): the item's sub-blocks receive
//! the parent's input activations of their layer and learn to reproduce the parent block's
//! output under the normalised MSE `L = MSE(y_parent, y_child) / MSE(y_parent, 0)`, on the
//! shared training engine. An attention variant trained alone runs before the parent's frozen
//! FFN; an FFN variant alone reads the parent's stream after its attention. Knows one layer's
//! activations and weights; nothing of the library directory or of other layers.

use burn::prelude::*;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::LibraryError;
use super::activations::{CachedActivations, LayerActivations};
use super::variant::WorkItem;
use crate::model::rope::Rope;
use crate::model::{Block, BlockConfig, ModelConfig, TensorMap, WeightError, block_weights, build_block};
use crate::train::{MicroBatch, RunControl, TrainConfig, TrainError, train};

/// How each item is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BldSettings {
    /// Training tokens per item.
    pub tokens: usize,
    /// Windows per optimizer step.
    pub batch_windows: usize,
    pub peak_lr: f64,
    pub seed: u64,
}

impl Default for BldSettings {
    fn default() -> Self {
        Self {
            tokens: 131_072,
            batch_windows: 8,
            peak_lr: 1e-3,
            seed: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BldOutcome {
    pub steps: usize,
    pub tokens_seen: u64,
    /// Mean training loss over the last tenth of the steps.
    pub final_train_loss: f64,
    pub seconds: f64,
    /// The step a training checkpoint was resumed from, if any.
    pub resumed_from: Option<usize>,
}

/// An item ready to run at its layer: its own sub-blocks and, for an attention variant trained
/// alone, the parent's FFN after it.
pub struct ItemNet {
    pub item: WorkItem,
    frozen_ffn: Option<Block>,
    rope: Rope,
    device: Device,
}

fn normalized_mse(child: Tensor<3>, parent: Tensor<3>) -> Tensor<1> {
    (child - parent.clone()).powi_scalar(2).sum() / parent.powi_scalar(2).sum()
}

impl ItemNet {
    /// `parent` holds the parent layer's tensors (at least the sub-block the item leaves in
    /// place); `device` is where the item will run (an autodiff device to train).
    pub fn new(
        config: &ModelConfig,
        parent_block: &BlockConfig,
        item: WorkItem,
        parent: &TensorMap,
        device: &Device,
    ) -> Result<Self, WeightError> {
        let frozen_ffn = match (item.attention, item.ffn) {
            (Some(_), None) => {
                let ffn_only = BlockConfig {
                    attention: crate::model::AttentionConfig::NoOp,
                    ffn: parent_block.ffn,
                };
                let wanted = crate::model::block_tensors(config, item.layer, &ffn_only);
                let tensors = wanted.iter().map(|(n, _)| (n.clone(), parent[n].clone())).collect();
                Some(build_block(config, item.layer, &ffn_only, &tensors, device)?.no_grad())
            }
            _ => None,
        };
        Ok(Self {
            item,
            frozen_ffn,
            rope: Rope::for_config(config),
            device: device.clone(),
        })
    }

    /// Builds the item's own sub-blocks from `weights` on the item's device.
    pub fn own_block(&self, config: &ModelConfig, weights: &TensorMap) -> Result<Block, WeightError> {
        build_block(config, self.item.layer, &self.item.own_block(), weights, &self.device)
    }

    /// The parent activation the item reads: the stream after the parent's attention for an
    /// FFN variant alone, the block input otherwise.
    fn input<'t>(&self, acts: &'t LayerActivations) -> &'t CachedActivations {
        if self.item.attention.is_none() {
            &acts.h
        } else {
            &acts.x
        }
    }

    /// The block output the item produces from `input`.
    pub fn forward(&self, own: &Block, input: Tensor<3>) -> Tensor<3> {
        let rope = self.rope.tables(0, input.dims()[1], &self.device);
        let out = own.forward(input, self.item.layer, 0, &rope, None);
        match &self.frozen_ffn {
            Some(ffn) => ffn.forward_ffn(out),
            None => out,
        }
    }

    /// Normalised MSE against the parent's block output over all of `acts`, as the ratio of
    /// the summed squared error to the summed squared target.
    pub fn evaluate(&self, own: &Block, acts: &LayerActivations) -> Result<f64, LibraryError> {
        let n = acts.windows();
        let (mut error, mut reference) = (0.0f64, 0.0f64);
        for start in (0..n).step_by(16) {
            let len = 16.min(n - start);
            let out = self.forward(own, self.input(acts).range(start, len, &self.device)?);
            let target = acts.y.range(start, len, &self.device)?;
            error += (out - target.clone()).powi_scalar(2).sum().into_scalar::<f32>() as f64;
            reference += target.powi_scalar(2).sum().into_scalar::<f32>() as f64;
        }
        Ok(error / reference)
    }

    /// Trains the item from `init` on `acts` and returns its trained tensors (the item must
    /// have been made on an autodiff device). With `checkpoints`, training resumes from the
    /// last checkpoint there and saves one as `control` says.
    pub fn train(
        &self,
        config: &ModelConfig,
        init: &TensorMap,
        acts: &LayerActivations,
        settings: &BldSettings,
        control: RunControl,
        checkpoints: Option<&std::path::Path>,
    ) -> Result<(TensorMap, BldOutcome), TrainError> {
        let own = self.own_block(config, init)?;
        let seq = acts.x.seq();
        let steps = settings.tokens.div_ceil(settings.batch_windows * seq).max(1);
        let train_config = TrainConfig {
            workers: 1,
            ..TrainConfig::warmup_cosine(
                steps,
                1,
                settings.peak_lr,
                item_seed(settings.seed, &self.item.key()),
                control,
            )
        };
        let windows = acts.windows();
        let input = self.input(acts);
        let started = std::time::Instant::now();
        let outcome = train(
            own,
            &train_config,
            checkpoints,
            json!({ "item": self.item.key() }),
            |own: &Block, _, rng: &mut StdRng| {
                let picks: Vec<usize> = (0..settings.batch_windows)
                    .map(|_| rng.random_range(0..windows))
                    .collect();
                let read = |cache: &CachedActivations| {
                    cache.select(&picks, &self.device).map_err(|cause| TrainError::Io {
                        path: cache.path().to_path_buf(),
                        cause,
                    })
                };
                let x = read(input)?;
                let y = read(&acts.y)?;
                Ok(MicroBatch {
                    loss: normalized_mse(self.forward(own, x), y),
                    tokens: settings.batch_windows * seq,
                })
            },
        )?;
        let tail = (outcome.history.len() / 10).max(1);
        let final_train_loss = outcome.history.iter().rev().take(tail).map(|h| h.loss).sum::<f64>()
            / tail.min(outcome.history.len()).max(1) as f64;
        let weights = block_weights(&outcome.model.valid(), self.item.layer);
        Ok((
            weights,
            BldOutcome {
                steps: outcome.steps_done,
                tokens_seen: outcome.tokens_seen,
                final_train_loss,
                seconds: started.elapsed().as_secs_f64(),
                resumed_from: outcome.resumed_from,
            },
        ))
    }
}

/// A seed of its own for each item, so an item trains the same whichever machine, shard or
/// thread runs it.
pub fn item_seed(seed: u64, key: &str) -> u64 {
    key.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
