//! Checkpoints in and out: HF Llama and DeciLM directories (safetensors, single or sharded),
//! GGUF models (llama.cpp) and llama2.c `.bin` files. Every format converts to one in-memory form, [`Checkpoint`] (a
//! `ModelConfig` plus HF-named, rotate-half tensors); only `build` touches the burn model.

pub mod error;
pub mod export;
pub mod gguf;
pub mod gguf_model;
pub mod hf_config;
pub mod llama2c;
pub mod random_parent;
pub mod safetensors_dir;
pub mod splice;

use std::fs;
use std::path::Path;

use burn::prelude::Device;

pub use error::CheckpointError;
pub use export::{
    ExportDtype, ExportFormat, ExportRequest, GGUF_TOKENIZER_FILE, ModelSummary, TOKENIZER_FILE, export_model,
};
pub use hf_config::ConfigFlavor;
pub use llama2c::Llama2cVersion;
pub use random_parent::{RandomParentOptions, write_random_parent};
pub use safetensors_dir::{StoreDtype, read_tensor_file, write_tensor_file};
pub use splice::{LayerSpan, Replacement, SpliceError};

use crate::model::weights::{HostValues, TensorMap, check_weights};
use crate::model::{Llama, ModelConfig, build_model, model_weights};

/// Where a checkpoint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// An HF family's directory (Llama, Mistral, Qwen2, Qwen3).
    Hf,
    DeciLm,
    /// A GGUF model file (llama.cpp).
    Gguf,
    Llama2c,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: ModelConfig,
    pub weights: TensorMap,
    /// The parent layers each layer stands for, when layers were fused (`None`: one each).
    pub parent_layers: Option<Vec<LayerSpan>>,
}

/// How tensors are stored on export.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    pub dtype: StoreDtype,
    /// Split into shards of at most this many bytes (with an index file).
    pub max_shard_bytes: Option<usize>,
}

impl Checkpoint {
    /// Reads a checkpoint directory (HF or DeciLM), a GGUF model file or a llama2.c `.bin` file,
    /// and checks its tensors against its config.
    pub fn read(path: &Path) -> Result<(Self, SourceFormat), CheckpointError> {
        let (checkpoint, format) = if path.is_dir() {
            let config_path = path.join("config.json");
            let text = fs::read_to_string(&config_path).map_err(CheckpointError::io(&config_path))?;
            let (config, flavor) = hf_config::parse_config(&config_path, &text)?;
            let parent_layers = hf_config::parse_parent_layers(&config_path, &text, config.num_layers())?;
            let weights = safetensors_dir::read_tensors(path)?;
            let format = match flavor {
                ConfigFlavor::Hf(_) => SourceFormat::Hf,
                ConfigFlavor::DeciLm => SourceFormat::DeciLm,
            };
            (
                Self {
                    config,
                    weights,
                    parent_layers,
                },
                format,
            )
        } else if gguf_model::is_gguf(path) {
            let model = gguf_model::GgufModel::open(path)?;
            (model.to_checkpoint()?, SourceFormat::Gguf)
        } else {
            let (config, weights) = llama2c::read(path)?;
            (
                Self {
                    config,
                    weights,
                    parent_layers: None,
                },
                SourceFormat::Llama2c,
            )
        };
        check_weights(&checkpoint.config, &checkpoint.weights).map_err(|cause| CheckpointError::Weights {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok((checkpoint, format))
    }

    /// The configuration of the checkpoint at `path` without reading its weights (what a stage
    /// needs to tell, before loading them, whether it will fit in memory).
    pub fn read_config(path: &Path) -> Result<ModelConfig, CheckpointError> {
        if path.is_dir() {
            let config_path = path.join("config.json");
            let text = fs::read_to_string(&config_path).map_err(CheckpointError::io(&config_path))?;
            Ok(hf_config::parse_config(&config_path, &text)?.0)
        } else if gguf_model::is_gguf(path) {
            Ok(gguf_model::GgufModel::open(path)?.config().clone())
        } else {
            llama2c::read_config(path)
        }
    }

    /// FNV-1a over the config and every tensor (names, shapes, bytes), as 16 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(
            serde_json::to_string(&self.config)
                .expect("config serialises")
                .as_bytes(),
        );
        for (name, tensor) in &self.weights {
            feed(name.as_bytes());
            for &d in tensor.shape() {
                feed(&(d as u64).to_le_bytes());
            }
            feed(bytemuck::cast_slice(tensor.values()));
        }
        format!("{hash:016x}")
    }

    pub fn from_model(model: &Llama) -> Self {
        Self {
            config: model.config().clone(),
            weights: model_weights(model),
            parent_layers: None,
        }
    }

    pub fn build(&self, device: &Device) -> Result<Llama, crate::model::WeightError> {
        build_model(&self.config, &self.weights, device)
    }

    /// Gives the LM head its own copy of the embedding matrix.
    pub fn untied(mut self) -> Self {
        if self.config.tie_word_embeddings {
            let embed = self.weights["model.embed_tokens.weight"].clone();
            self.weights.insert("lm_head.weight".into(), embed);
            self.config.tie_word_embeddings = false;
        }
        self
    }

    /// Writes the directory of the parent's HF family (`LlamaForCausalLM`, `MistralForCausalLM`,
    /// `Qwen2ForCausalLM`, `Qwen3ForCausalLM`); the child must be homogeneous.
    pub fn write_hf(&self, dir: &Path, options: ExportOptions) -> Result<(), CheckpointError> {
        let config = hf_config::family_config_json(&self.config, options.dtype.torch_name()).ok_or_else(|| {
            CheckpointError::Unsupported {
                path: dir.to_path_buf(),
                problem: format!(
                    "an HF {:?} config needs every layer to be GQA + SwiGLU of one size (and the family's own \
                     biases and norms); export as DeciLM instead",
                    self.config.family
                ),
            }
        })?;
        self.write_dir(dir, &config, options)
    }

    /// Writes a DeciLM / `nemotron-nas` directory (any child).
    pub fn write_decilm(&self, dir: &Path, options: ExportOptions) -> Result<(), CheckpointError> {
        self.write_dir(
            dir,
            &hf_config::decilm_config_json(&self.config, options.dtype.torch_name()),
            options,
        )
    }

    /// Writes a GGUF model file: llama.cpp's `llama`, `qwen2` or `qwen3` architecture for a
    /// homogeneous model of that family, `deci` for a heterogeneous one; matrices in
    /// `matrix_type` (F32, F16, BF16 or Q8_0), with the `tokenizer.*` entries given.
    pub fn write_gguf(
        &self,
        path: &Path,
        matrix_type: gguf::GgmlType,
        tokenizer: &[(String, gguf::MetaValue)],
    ) -> Result<(), CheckpointError> {
        gguf_model::write_gguf(self, path, matrix_type, tokenizer)
    }

    pub fn write_llama2c(&self, path: &Path, version: Llama2cVersion) -> Result<(), CheckpointError> {
        llama2c::write(path, &self.config, &self.weights, version)
    }

    fn write_dir(&self, dir: &Path, config: &serde_json::Value, options: ExportOptions) -> Result<(), CheckpointError> {
        let mut config = config.clone();
        if let Some(spans) = &self.parent_layers {
            config[hf_config::PARENT_LAYERS_KEY] = serde_json::to_value(spans).expect("spans serialise");
        }
        safetensors_dir::write_checkpoint_dir(
            dir,
            &config,
            &safetensors_dir::pending_from_map(&self.weights),
            options.dtype,
            options.max_shard_bytes,
        )
    }
}

/// Reads any supported checkpoint and builds the model on `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<Llama, CheckpointError> {
    let (checkpoint, _) = Checkpoint::read(path)?;
    checkpoint.build(device).map_err(|cause| CheckpointError::Weights {
        path: path.to_path_buf(),
        cause,
    })
}
