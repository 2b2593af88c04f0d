//! Writing a model out: the export stage (`tessera export`, the pipeline's last model stage) in
//! any checkpoint format, and the one way every stage writes the model it made (a DeciLM
//! directory, replacing what was there, with the tokenizer and chat template of the model it came
//! from). Knows checkpoint formats; nothing of the stages.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gguf::{GgmlType, GgufFile, MetaValue};
use super::gguf_model::is_gguf;
use super::source::Untied;
use super::{
    Checkpoint, CheckpointError, ExportOptions, LayerSpan, Llama2cVersion, StoreDtype, StoredCheckpoint, TensorSource,
};
use crate::memory_budget::Estimate;
use crate::model::ModelConfig;
use crate::model::weights::expected_tensors;
use crate::tokenizer::chat_template;
use crate::tokenizer::gguf::{entries_from_hf, gguf_entries, write_hf_files};

/// The tokenizer file a checkpoint directory carries.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The vocabulary-only GGUF file beside `tokenizer.json` in a directory made from a GGUF model:
/// the parent's `tokenizer.*` entries, copied into a later GGUF export unchanged.
pub const GGUF_TOKENIZER_FILE: &str = "tokenizer.gguf";

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
    /// A GGUF file for llama.cpp (`llama`, `qwen2`, `qwen3`, or `deci` for a heterogeneous child).
    Gguf,
}

crate::named!(ExportFormat {
    "hf" => ExportFormat::Hf,
    "decilm" => ExportFormat::Decilm,
    "llama2c" => ExportFormat::Llama2c,
    "llama2c-v1" => ExportFormat::Llama2cV1,
    "gguf" => ExportFormat::Gguf,
});

/// How an export stores its tensors: f32, f16 or bf16 in any format (llama2.c: f32 only),
/// q8_0 in GGUF only. GGUF keeps 1-D tensors (norms, biases) in f32 whatever is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExportDtype {
    #[default]
    F32,
    F16,
    Bf16,
    Q8_0,
}

crate::named!(ExportDtype {
    "f32" => ExportDtype::F32,
    "f16" => ExportDtype::F16,
    "bf16" => ExportDtype::Bf16,
    "q8_0" => ExportDtype::Q8_0,
});

impl ExportDtype {
    /// The safetensors dtype, for the formats that store safetensors.
    pub fn store_dtype(self) -> Option<StoreDtype> {
        match self {
            ExportDtype::F32 => Some(StoreDtype::F32),
            ExportDtype::F16 => Some(StoreDtype::F16),
            ExportDtype::Bf16 => Some(StoreDtype::Bf16),
            ExportDtype::Q8_0 => None,
        }
    }

    /// The ggml type of GGUF matrices.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            ExportDtype::F32 => GgmlType::F32,
            ExportDtype::F16 => GgmlType::F16,
            ExportDtype::Bf16 => GgmlType::BF16,
            ExportDtype::Q8_0 => GgmlType::Q8_0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub format: ExportFormat,
    pub dtype: ExportDtype,
    /// Split safetensors into shards of at most this many bytes (HF / DeciLM).
    pub max_shard_bytes: Option<usize>,
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
pub(crate) fn bytes_on_disk(path: &Path) -> Result<u64, CheckpointError> {
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

/// Writes `model` as a DeciLM directory at `out` (replacing what was there) with the tokenizer
/// found beside `source`, when it has one.
pub(crate) fn write_model_dir(
    model: &impl TensorSource,
    out: &Path,
    dtype: StoreDtype,
    source: &Path,
) -> Result<ModelSummary, CheckpointError> {
    if out.exists() {
        fs::remove_dir_all(out).map_err(CheckpointError::io(out))?;
    }
    model.write_decilm(
        out,
        ExportOptions {
            dtype,
            ..ExportOptions::default()
        },
    )?;
    copy_tokenizer(source, out)?;
    summary(model, out)
}

/// What was written at `written`.
pub(crate) fn summary(model: &impl TensorSource, written: &Path) -> Result<ModelSummary, CheckpointError> {
    Ok(ModelSummary {
        model: written.to_path_buf(),
        layers: model.config().num_layers(),
        params: model.config().num_params(),
        parent_layers: model.layer_spans(),
        bytes: bytes_on_disk(written)?,
    })
}

/// Gives `out` the tokenizer of `source`: `tokenizer.json`, `tokenizer_config.json` and
/// `chat_template.jinja` (the chat template) and the GGUF vocabulary file, those that are there,
/// copied from beside a model directory; for a GGUF model, its tokenizer rebuilt as
/// `tokenizer.json` + `tokenizer_config.json` (chat template, BOS/EOS) and its `tokenizer.*`
/// entries kept as [`GGUF_TOKENIZER_FILE`]. Nothing when the source has no tokenizer.
fn copy_tokenizer(source: &Path, out: &Path) -> Result<(), CheckpointError> {
    if is_gguf(source) {
        let file = GgufFile::open(source)?;
        if file.get("tokenizer.ggml.model").is_some() {
            write_hf_files(&file, out, GGUF_TOKENIZER_FILE)
                .map_err(|e| CheckpointError::format(source, e.to_string()))?;
        }
        return Ok(());
    }
    let names = [
        TOKENIZER_FILE,
        GGUF_TOKENIZER_FILE,
        chat_template::CONFIG_FILE,
        chat_template::TEMPLATE_FILE,
    ];
    for name in names {
        let tokenizer = source.join(name);
        if tokenizer.is_file() {
            let to = out.join(name);
            fs::copy(&tokenizer, &to).map_err(CheckpointError::io(&to))?;
        }
    }
    Ok(())
}

/// The `tokenizer.*` entries a GGUF export of the model at `source` carries: a GGUF model's own
/// (or those its directory kept from one), else made from its `tokenizer.json`; none without a
/// tokenizer.
fn gguf_tokenizer(source: &Path, config: &ModelConfig) -> Result<Vec<(String, MetaValue)>, CheckpointError> {
    let kept = source.join(GGUF_TOKENIZER_FILE);
    let gguf = if is_gguf(source) {
        Some(source)
    } else {
        kept.is_file().then_some(kept.as_path())
    };
    if let Some(path) = gguf {
        return Ok(gguf_entries(&GgufFile::open(path)?));
    }
    let json = source.join(TOKENIZER_FILE);
    if !json.is_file() {
        return Ok(Vec::new());
    }
    let c = config;
    entries_from_hf(&json, c.vocab_size, c.bos_token_id, c.eos_token_id).map_err(|e| CheckpointError::Unsupported {
        path: json.clone(),
        problem: e.to_string(),
    })
}

/// The peak of exporting a model of `config` as `dtype`, known before it is read: the model is
/// read and written one tensor at a time, so the largest tensor as f32 twice (as read, and as
/// reordered or copied on its way out) and once in the output dtype.
pub fn export_estimate(config: &ModelConfig, dtype: ExportDtype) -> Estimate {
    let largest = expected_tensors(config)
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>() as u64)
        .max()
        .unwrap_or(0);
    let output = match dtype {
        ExportDtype::F32 => 4 * largest,
        ExportDtype::F16 | ExportDtype::Bf16 => 2 * largest,
        // 32 weights in 34 bytes: 32 int8 and an f16 scale.
        ExportDtype::Q8_0 => largest * 34 / 32,
    };
    Estimate::new()
        .with("the largest tensor as f32, read and reordered", 2 * 4 * largest)
        .with(format!("the largest tensor in the output ({dtype})"), output)
}

/// What to change when an export does not fit.
pub const EXPORT_ADVICE: &str = "more memory: one tensor at a time is the least an export holds";

/// The export stage: reads the model at `model` and writes it at `out` as `request` asks (a
/// directory for HF / DeciLM, with the tokenizer; a `.bin` file for llama2.c; a `.gguf` file,
/// tokenizer inside). Refused before reading when it will not fit in memory.
pub fn export_model(model: &Path, request: &ExportRequest, out: &Path) -> Result<ModelSummary, CheckpointError> {
    let estimate = export_estimate(&Checkpoint::read_config(model)?, request.dtype);
    crate::memory_budget::check("export", &estimate, EXPORT_ADVICE)?;
    let stored = StoredCheckpoint::open(model)?;
    if request.untie {
        write_export(&Untied::new(&stored), model, request, out)
    } else {
        write_export(&stored, model, request, out)
    }
}

fn write_export(
    checkpoint: &impl TensorSource,
    model: &Path,
    request: &ExportRequest,
    out: &Path,
) -> Result<ModelSummary, CheckpointError> {
    let options = || {
        let dtype = request
            .dtype
            .store_dtype()
            .ok_or_else(|| CheckpointError::Unsupported {
                path: out.to_path_buf(),
                problem: format!(
                    "{} is a GGUF tensor type; safetensors take f32, f16 or bf16",
                    request.dtype
                ),
            })?;
        Ok::<_, CheckpointError>(ExportOptions {
            dtype,
            max_shard_bytes: request.max_shard_bytes,
        })
    };
    match request.format {
        ExportFormat::Hf => checkpoint.write_hf(out, options()?)?,
        ExportFormat::Decilm => checkpoint.write_decilm(out, options()?)?,
        ExportFormat::Llama2c => checkpoint.write_llama2c(out, Llama2cVersion::Legacy)?,
        ExportFormat::Llama2cV1 => checkpoint.write_llama2c(out, Llama2cVersion::V1)?,
        ExportFormat::Gguf => {
            let tokenizer = gguf_tokenizer(model, checkpoint.config())?;
            checkpoint.write_gguf(out, request.dtype.ggml_type(), &tokenizer)?
        }
    }
    if out.is_dir() {
        copy_tokenizer(model, out)?;
    }
    summary(checkpoint, out)
}

/// Exports the model at `model` once per `(request, out)`, in order, each output replacing what
/// was there (a file, or a directory) so that a rerun starts clean.
pub fn export_models(model: &Path, exports: &[(ExportRequest, PathBuf)]) -> Result<Vec<ModelSummary>, CheckpointError> {
    exports
        .iter()
        .map(|(request, out)| {
            if out.is_dir() {
                fs::remove_dir_all(out).map_err(CheckpointError::io(out))?;
            } else if out.exists() {
                fs::remove_file(out).map_err(CheckpointError::io(out))?;
            }
            if let Some(folder) = out.parent().filter(|f| !f.as_os_str().is_empty()) {
                fs::create_dir_all(folder).map_err(CheckpointError::io(folder))?;
            }
            export_model(model, request, out)
        })
        .collect()
}
