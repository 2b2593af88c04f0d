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
pub mod source;
pub mod splice;
pub mod stored;
pub mod streamed;

use std::fs;
use std::path::Path;

use burn::prelude::Device;

pub use error::CheckpointError;
pub use export::{
    ExportDtype, ExportFormat, ExportRequest, GGUF_TOKENIZER_FILE, ModelSummary, TOKENIZER_FILE, export_model,
    export_models,
};
pub use hf_config::ConfigFlavor;
pub use llama2c::Llama2cVersion;
pub use random_parent::{RandomParentOptions, write_random_parent};
pub use safetensors_dir::{StoreDtype, read_tensor_file, write_tensor_file};
pub use source::TensorSource;
pub use splice::{LayerOrigin, LayerSpan, Replacement, SpliceError, SplicePlan, layer_of, plan_splice};
pub use stored::StoredCheckpoint;
pub use streamed::{StreamError, StreamedParent};

use crate::model::weights::{HostTensor, HostValues, TensorMap};
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

/// A checkpoint's fingerprint, fed the config and then each tensor in name order: one
/// definition whether the tensors are in memory or read one at a time.
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    pub(crate) fn new(config: &ModelConfig) -> Self {
        let mut hash = Self(0xcbf2_9ce4_8422_2325);
        hash.feed(serde_json::to_string(config).expect("config serialises").as_bytes());
        hash
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn tensor(&mut self, name: &str, tensor: &HostTensor) {
        self.feed(name.as_bytes());
        for &d in tensor.shape() {
            self.feed(&(d as u64).to_le_bytes());
        }
        self.feed(bytemuck::cast_slice(tensor.values()));
    }

    pub(crate) fn finish(self) -> String {
        format!("{:016x}", self.0)
    }
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
    /// and checks its tensors against its config: the whole model in memory as f32
    /// ([`StoredCheckpoint`] reads it tensor by tensor instead).
    pub fn read(path: &Path) -> Result<(Self, SourceFormat), CheckpointError> {
        let stored = StoredCheckpoint::open(path)?;
        Ok((stored.load()?, stored.format()))
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
        let mut hash = Fingerprint::new(&self.config);
        for (name, tensor) in &self.weights {
            hash.tensor(name, tensor);
        }
        hash.finish()
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
}

/// Reads any supported checkpoint and builds the model on `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<Llama, CheckpointError> {
    let (checkpoint, _) = Checkpoint::read(path)?;
    checkpoint.build(device).map_err(|cause| CheckpointError::Weights {
        path: path.to_path_buf(),
        cause,
    })
}
