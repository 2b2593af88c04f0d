//! Model parts built from a [`StoredCheckpoint`] one at a time, for passes that hold one layer
//! of the parent at once: the embeddings of given tokens (only their rows are read), one block,
//! the final norm and LM head. Each part computes exactly what the whole model's does. Knows
//! the model's building blocks and the stored checkpoint; nothing of the stages.

use burn::prelude::*;

use super::{CheckpointError, StoredCheckpoint};
use crate::model::llama::check_token_rows;
use crate::model::rope::{Rope, RopeTables};
use crate::model::{Block, ForwardError, Head, build_block, build_head, to_burn};

fn weights_error(stored: &StoredCheckpoint) -> impl FnOnce(crate::model::WeightError) -> CheckpointError + '_ {
    |cause| CheckpointError::Weights {
        path: stored.path().to_path_buf(),
        cause,
    }
}

/// A stored parent on a device, built part by part.
pub struct StreamedParent<'a> {
    pub stored: &'a StoredCheckpoint,
    rope: Rope,
    device: Device,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("the parent's stream entering layer {layer} was not kept by the walk")]
    NotKept { layer: usize },
}

impl<'a> StreamedParent<'a> {
    pub fn new(stored: &'a StoredCheckpoint, device: &Device) -> Self {
        Self {
            stored,
            rope: Rope::for_config(stored.config()),
            device: device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_layers(&self) -> usize {
        self.stored.config().num_layers()
    }

    /// The embeddings of `windows` (equal lengths): `[windows, seq, hidden]`.
    pub fn embed(&self, windows: &[Vec<u32>]) -> Result<Tensor<3>, StreamError> {
        let seq = check_token_rows(windows, self.stored.config().vocab_size)?;
        let ids: Vec<usize> = windows.iter().flatten().map(|&t| t as usize).collect();
        let rows = self.stored.rows("model.embed_tokens.weight", &ids)?;
        let hidden = rows.shape()[1];
        Ok(to_burn::<2>(rows, &self.device).reshape([windows.len(), seq, hidden]))
    }

    /// Layer `layer` of the parent.
    pub fn block(&self, layer: usize) -> Result<Block, CheckpointError> {
        let config = self.stored.config();
        let tensors = self.stored.layer(layer)?;
        build_block(config, layer, &config.blocks[layer], &tensors, &self.device).map_err(weights_error(self.stored))
    }

    /// The final norm and LM head.
    pub fn head(&self) -> Result<Head, CheckpointError> {
        let config = self.stored.config();
        let head_name = if config.tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        let tensors = self.stored.tensors(["model.norm.weight", head_name])?;
        build_head(config, tensors, &self.device).map_err(weights_error(self.stored))
    }

    /// The rotary tables of positions `0..seq`.
    pub fn rope_tables(&self, seq: usize) -> RopeTables {
        self.rope.tables(0, seq, &self.device)
    }
}
