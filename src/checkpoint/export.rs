//! Writing a model out: the export stage (`tessera export`, the pipeline's last model stage) in
//! any checkpoint format, and the one way every stage writes the model it made (a DeciLM
//! directory, replacing what was there, with the tokenizer and chat template of the model it came
//! from). Knows checkpoint formats; nothing of the stages.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Checkpoint, CheckpointError, ExportOptions, LayerSpan, Llama2cVersion, StoreDtype};
use crate::tokenizer::chat_template;

/// The tokenizer file a checkpoint directory carries.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// HF `LlamaForCausalLM` (homogeneous models).
    Hf,
    /// DeciLM / `nemotron-nas` (any child).
    Decilm,
    /// llama2.c `.bin`, legacy header.
    Llama2c,
    /// llama2.c `.bin`, version 1 header.
    Llama2cV1,
}

crate::named!(ExportFormat {
    "hf" => ExportFormat::Hf,
    "decilm" => ExportFormat::Decilm,
    "llama2c" => ExportFormat::Llama2c,
    "llama2c-v1" => ExportFormat::Llama2cV1,
});

#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub format: ExportFormat,
    pub options: ExportOptions,
    /// Give the LM head its own copy of tied embeddings.
    pub untie: bool,
}

/// What a stage wrote: a model directory and its shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub model: PathBuf,
    pub layers: usize,
    pub params: usize,
    /// The parent layers each layer stands for.
    pub parent_layers: Vec<LayerSpan>,
    /// Bytes on disk.
    pub bytes: u64,
}

impl std::fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} layers, {} parameters, {:.1} MB",
            self.model.display(),
            self.layers,
            self.params,
            self.bytes as f64 / 1e6
        )
    }
}

/// Bytes of the files in `path` (a directory) or of the file itself.
fn bytes_on_disk(path: &Path) -> Result<u64, CheckpointError> {
    if path.is_file() {
        return Ok(fs::metadata(path).map_err(CheckpointError::io(path))?.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(CheckpointError::io(path))? {
        let entry = entry.map_err(CheckpointError::io(path))?;
        total += entry.metadata().map_err(CheckpointError::io(entry.path()))?.len();
    }
    Ok(total)
}

impl Checkpoint {
    /// Writes the checkpoint as a DeciLM directory at `out` (replacing what was there) with the
    /// tokenizer found beside `source`, when it has one.
    pub fn write_model_dir(
        &self,
        out: &Path,
        dtype: StoreDtype,
        source: &Path,
    ) -> Result<ModelSummary, CheckpointError> {
        if out.exists() {
            fs::remove_dir_all(out).map_err(CheckpointError::io(out))?;
        }
        self.write_decilm(
            out,
            ExportOptions {
                dtype,
                ..ExportOptions::default()
            },
        )?;
        copy_tokenizer(source, out)?;
        self.summary(out)
    }

    pub fn summary(&self, written: &Path) -> Result<ModelSummary, CheckpointError> {
        Ok(ModelSummary {
            model: written.to_path_buf(),
            layers: self.config.num_layers(),
            params: self.config.num_params(),
            parent_layers: self.layer_spans(),
            bytes: bytes_on_disk(written)?,
        })
    }
}

/// Copies the tokenizer files from beside `source` (a model directory) into `out`: those of
/// `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` that are there (the latter
/// two carry the model's chat template).
fn copy_tokenizer(source: &Path, out: &Path) -> Result<(), CheckpointError> {
    for name in [TOKENIZER_FILE, chat_template::CONFIG_FILE, chat_template::TEMPLATE_FILE] {
        let from = source.join(name);
        if from.is_file() {
            let to = out.join(name);
            fs::copy(&from, &to).map_err(CheckpointError::io(&to))?;
        }
    }
    Ok(())
}

/// The export stage: reads the model at `model` and writes it at `out` as `request` asks (a
/// directory for HF / DeciLM, with the tokenizer; a `.bin` file for llama2.c).
pub fn export_model(model: &Path, request: &ExportRequest, out: &Path) -> Result<ModelSummary, CheckpointError> {
    let (mut checkpoint, _) = Checkpoint::read(model)?;
    if request.untie {
        checkpoint = checkpoint.untied();
    }
    match request.format {
        ExportFormat::Hf => checkpoint.write_hf(out, request.options)?,
        ExportFormat::Decilm => checkpoint.write_decilm(out, request.options)?,
        ExportFormat::Llama2c => checkpoint.write_llama2c(out, Llama2cVersion::Legacy)?,
        ExportFormat::Llama2cV1 => checkpoint.write_llama2c(out, Llama2cVersion::V1)?,
    }
    if out.is_dir() {
        copy_tokenizer(model, out)?;
    }
    checkpoint.summary(out)
}
