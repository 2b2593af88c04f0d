//! Where the tensors of a checkpoint being written or built come from: a checkpoint in memory,
//! a stored one read tensor by tensor, a child assembled on the way, or any of them with the LM
//! head untied. Every writer (HF and DeciLM directories, GGUF, llama2.c) asks its source for one
//! tensor at a time just before writing it, so writing a model never needs it whole in memory
//! (llama2.c, small by nature, collects it first); a model is built from it one layer at a
//! time. Knows the formats' writers; nothing of where a child's blocks come from.

use std::path::Path;

use burn::prelude::Device;

use super::gguf::{GgmlType, MetaValue};
use super::safetensors_dir::{self, PendingTensor};
use super::{
    Checkpoint, CheckpointError, ExportOptions, LayerSpan, Llama2cVersion, ModelSummary, StoreDtype, StoredCheckpoint,
    gguf_model, hf_config, llama2c,
};
use crate::model::weights::{build_model_in_parts, expected_tensors};
use crate::model::{HostTensor, Llama, ModelConfig, TensorMap, WeightError};

/// A model to write: its config and, one at a time, its tensors.
pub trait TensorSource {
    fn config(&self) -> &ModelConfig;

    /// The parent layers each layer stands for, when layers were fused.
    fn parent_layers(&self) -> Option<&[LayerSpan]>;

    /// The tensor called `name`, as f32 in tessera's layout.
    fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError>;

    /// The parent layers each layer stands for (one each, unless layers were fused).
    fn layer_spans(&self) -> Vec<LayerSpan> {
        self.parent_layers()
            .map(<[LayerSpan]>::to_vec)
            .unwrap_or_else(|| (0..self.config().num_layers()).map(LayerSpan::single).collect())
    }

    /// Writes the directory of the parent's HF family (`LlamaForCausalLM`, `MistralForCausalLM`,
    /// `Qwen2ForCausalLM`, `Qwen3ForCausalLM`); the child must be homogeneous.
    fn write_hf(&self, dir: &Path, options: ExportOptions) -> Result<(), CheckpointError>
    where
        Self: Sized,
    {
        let config = hf_config::family_config_json(self.config(), options.dtype.torch_name()).ok_or_else(|| {
            CheckpointError::Unsupported {
                path: dir.to_path_buf(),
                problem: format!(
                    "an HF {:?} config needs every layer to be GQA + SwiGLU of one size (and the family's own \
                     biases and norms); export as DeciLM instead",
                    self.config().family
                ),
            }
        })?;
        write_dir(self, dir, config, options)
    }

    /// Writes a DeciLM / `nemotron-nas` directory (any child).
    fn write_decilm(&self, dir: &Path, options: ExportOptions) -> Result<(), CheckpointError>
    where
        Self: Sized,
    {
        let config = hf_config::decilm_config_json(self.config(), options.dtype.torch_name());
        write_dir(self, dir, config, options)
    }

    /// Writes a GGUF model file: llama.cpp's `llama`, `qwen2` or `qwen3` architecture for a
    /// homogeneous model of that family, `deci` for a heterogeneous one; matrices in
    /// `matrix_type` (F32, F16, BF16 or Q8_0), with the `tokenizer.*` entries given.
    fn write_gguf(
        &self,
        path: &Path,
        matrix_type: GgmlType,
        tokenizer: &[(String, MetaValue)],
    ) -> Result<(), CheckpointError>
    where
        Self: Sized,
    {
        gguf_model::write_gguf(self, path, matrix_type, tokenizer)
    }

    /// Writes a DeciLM directory at `out` (replacing what was there) with the tokenizer found
    /// beside `source`, when it has one.
    fn write_model_dir(&self, out: &Path, dtype: StoreDtype, source: &Path) -> Result<ModelSummary, CheckpointError>
    where
        Self: Sized,
    {
        super::export::write_model_dir(self, out, dtype, source)
    }

    /// What was written at `written`.
    fn summary(&self, written: &Path) -> Result<ModelSummary, CheckpointError>
    where
        Self: Sized,
    {
        super::export::summary(self, written)
    }

    fn write_llama2c(&self, path: &Path, version: Llama2cVersion) -> Result<(), CheckpointError>
    where
        Self: Sized,
    {
        let names = expected_tensors(self.config());
        let tensors: TensorMap = names
            .into_iter()
            .map(|(name, _)| Ok((name.clone(), self.tensor(&name)?)))
            .collect::<Result<_, CheckpointError>>()?;
        llama2c::write(path, self.config(), &tensors, version)
    }

    /// The model on `device`, built one layer at a time from this source: one layer's host
    /// tensors are held beside the model, never the whole checkpoint as f32.
    fn build_model(&self, device: &Device) -> Result<Llama, CheckpointError>
    where
        Self: Sized,
    {
        enum Failure {
            Read(CheckpointError),
            Shape(WeightError),
        }
        impl From<WeightError> for Failure {
            fn from(cause: WeightError) -> Self {
                Failure::Shape(cause)
            }
        }
        build_model_in_parts(self.config(), device, |part| {
            part.iter()
                .map(|(name, _)| Ok((name.clone(), self.tensor(name).map_err(Failure::Read)?)))
                .collect()
        })
        .map_err(|failure| match failure {
            Failure::Read(error) => error,
            Failure::Shape(cause) => CheckpointError::Weights {
                path: Default::default(),
                cause,
            },
        })
    }
}

/// Writes `config` (with the parent layers, when fused) and the source's tensors, each made
/// when the file reaches it.
fn write_dir(
    source: &impl TensorSource,
    dir: &Path,
    mut config: serde_json::Value,
    options: ExportOptions,
) -> Result<(), CheckpointError> {
    if let Some(spans) = source.parent_layers() {
        config[hf_config::PARENT_LAYERS_KEY] = serde_json::to_value(spans).expect("spans serialise");
    }
    let mut names = expected_tensors(source.config());
    names.sort();
    let pending: Vec<PendingTensor> = names
        .into_iter()
        .map(|(name, shape)| {
            let read = name.clone();
            PendingTensor::new(name, shape, move |dtype: StoreDtype, out: &mut [u8]| {
                dtype.encode_into(crate::model::HostValues::values(&source.tensor(&read)?), out);
                Ok(())
            })
        })
        .collect();
    safetensors_dir::write_checkpoint_dir(dir, &config, &pending, options.dtype, options.max_shard_bytes)
}

impl TensorSource for Checkpoint {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn parent_layers(&self) -> Option<&[LayerSpan]> {
        self.parent_layers.as_deref()
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        self.weights.get(name).cloned().ok_or_else(|| CheckpointError::Weights {
            path: Default::default(),
            cause: crate::model::WeightError::Missing { name: name.to_string() },
        })
    }
}

impl TensorSource for StoredCheckpoint {
    fn config(&self) -> &ModelConfig {
        StoredCheckpoint::config(self)
    }

    fn parent_layers(&self) -> Option<&[LayerSpan]> {
        StoredCheckpoint::parent_layers(self)
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        StoredCheckpoint::tensor(self, name)
    }
}

/// A source with its LM head untied: `lm_head.weight` is a copy of the embedding matrix.
pub struct Untied<'a, S> {
    source: &'a S,
    config: ModelConfig,
}

impl<'a, S: TensorSource> Untied<'a, S> {
    pub fn new(source: &'a S) -> Self {
        let mut config = source.config().clone();
        config.tie_word_embeddings = false;
        Self { source, config }
    }
}

impl<S: TensorSource> TensorSource for Untied<'_, S> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn parent_layers(&self) -> Option<&[LayerSpan]> {
        self.source.parent_layers()
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        if name == "lm_head.weight" && self.source.config().tie_word_embeddings {
            return self.source.tensor("model.embed_tokens.weight");
        }
        self.source.tensor(name)
    }
}
