//! Looking at one model, as `tessera generate`, `eval` and `info` do: generate text, the NLL of
//! a text or id file, greedy task accuracy with thinking on and off, a model against its parent
//! (KL, LM loss, cosine), and its configuration. Each is one call from paths to a report. Sits
//! above checkpoints, tokenizers and evaluation; knows no pipeline stage.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError, load_model};
use crate::data::{DataError, read_documents};
use crate::eval::{AccuracyError, AccuracyReport, NllReport, TaskSet, mean_nll, task_accuracy};
use crate::model::{ForwardError, Llama, ModelConfig, Sampling, generate};
use crate::score::{Reference, Scores};
use crate::source::{SourceError, WindowSpec};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::world::Thinking;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Accuracy(#[from] AccuracyError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{what} needs a tokenizer: pass --tokenizer (or put tokenizer.json beside the model)")]
    NoTokenizer { what: &'static str },
    #[error("{}: line {line}: `{word}` is not a token id", path.display())]
    IdFile { path: PathBuf, line: usize, word: String },
    #[error("{}: {problem}", path.display())]
    Input { path: PathBuf, problem: String },
    #[error("evaluating {}: {cause}", path.display())]
    Evaluating { path: PathBuf, cause: ForwardError },
}

/// A model and the tokenizer to read and write its text with.
#[derive(Clone, Debug)]
pub struct ModelSource {
    /// A checkpoint directory (HF or DeciLM) or a llama2.c `.bin`.
    pub model: PathBuf,
    /// `tokenizer.json` or a llama2.c `tokenizer.bin` (default: the model directory's).
    pub tokenizer: Option<PathBuf>,
}

impl ModelSource {
    pub fn load(&self, device: &Device) -> Result<(Llama, Option<Tokenizer>), InspectError> {
        let model = load_model(&self.model, device)?;
        let path = self.tokenizer.clone().or_else(|| Tokenizer::beside_model(&self.model));
        Ok((model, path.map(|p| Tokenizer::read(&p)).transpose()?))
    }
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Text to continue (encoded with BOS); `None` starts from BOS alone.
    pub prompt: Option<String>,
    pub max_tokens: usize,
    pub sampling: Sampling,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            prompt: None,
            max_tokens: 256,
            sampling: Sampling::TopP {
                temperature: Sampling::DEFAULT_TEMPERATURE,
                top_p: Sampling::DEFAULT_TOP_P,
                seed: 0,
            },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Generated {
    /// BOS (or the prompt) first.
    pub ids: Vec<u32>,
    /// The ids decoded, when there is a tokenizer.
    pub text: Option<String>,
}

/// Generates from the model until EOS, BOS or `max_tokens`.
pub fn generate_text(
    source: &ModelSource,
    options: &GenerateOptions,
    device: &Device,
) -> Result<Generated, InspectError> {
    let (model, tokenizer) = source.load(device)?;
    let bos = model.config().bos_token_id;
    let prompt = match (&tokenizer, &options.prompt) {
        (Some(t), Some(text)) => t.encode(text, true)?,
        (None, Some(_)) => return Err(InspectError::NoTokenizer { what: "--prompt" }),
        (_, None) => vec![bos],
    };
    let stop = [model.config().eos_token_id, bos];
    let ids = generate(&model, &prompt, options.max_tokens, options.sampling, &stop)?;
    let text = tokenizer.map(|t| t.decode(&ids)).transpose()?;
    Ok(Generated { ids, text })
}

/// What to measure the NLL of.
#[derive(Clone, Debug)]
pub enum NllInput {
    /// A text file, split into independent pieces on `split_on`; each piece encoded with BOS.
    Text { path: PathBuf, split_on: Option<String> },
    /// One whitespace-separated token id sequence per line, evaluated as given.
    Ids { path: PathBuf },
}

fn read_id_file(path: &Path) -> Result<Vec<Vec<u32>>, InspectError> {
    let text = std::fs::read_to_string(path).map_err(|cause| InspectError::Input {
        path: path.to_path_buf(),
        problem: cause.to_string(),
    })?;
    let mut sequences = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let ids = line
            .split_whitespace()
            .map(|word| {
                word.parse::<u32>().map_err(|_| InspectError::IdFile {
                    path: path.to_path_buf(),
                    line: n + 1,
                    word: word.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        sequences.push(ids);
    }
    Ok(sequences)
}

/// Mean NLL (nats per predicted token) of the model on `input`.
pub fn text_nll(source: &ModelSource, input: &NllInput, device: &Device) -> Result<NllReport, InspectError> {
    let (model, tokenizer) = source.load(device)?;
    let (path, sequences) = match input {
        NllInput::Text { path, split_on } => {
            let tokenizer = tokenizer.ok_or(InspectError::NoTokenizer { what: "--text" })?;
            let sequences = read_documents(path, split_on.as_deref())?
                .iter()
                .map(|piece| tokenizer.encode(piece, true))
                .collect::<Result<Vec<_>, _>>()?;
            (path, sequences)
        }
        NllInput::Ids { path } => (path, read_id_file(path)?),
    };
    let report = mean_nll(&model, &sequences).map_err(|cause| InspectError::Evaluating {
        path: path.clone(),
        cause,
    })?;
    if report.tokens == 0 {
        return Err(InspectError::Input {
            path: path.clone(),
            problem: "no sequence of two or more tokens to evaluate".into(),
        });
    }
    Ok(report)
}

#[derive(Clone, Debug)]
pub struct AccuracyOptions {
    pub tasks: TaskSet,
    pub modes: Vec<Thinking>,
    pub max_tokens: usize,
    pub batch_size: usize,
}

impl AccuracyOptions {
    /// Built-in held-out tasks asked for when no count is given.
    pub const DEFAULT_TASK_COUNT: usize = 200;
    pub const DEFAULT_MAX_TOKENS: usize = 96;
    pub const DEFAULT_BATCH_SIZE: usize = 64;
}

#[derive(Clone, Debug, Serialize)]
pub struct AccuracyReports {
    pub tasks: String,
    pub results: Vec<AccuracyReport>,
}

/// Greedy task accuracy of the model in each thinking mode.
pub fn model_accuracy(
    source: &ModelSource,
    options: &AccuracyOptions,
    device: &Device,
) -> Result<AccuracyReports, InspectError> {
    let (model, tokenizer) = source.load(device)?;
    let tokenizer = tokenizer.ok_or(InspectError::NoTokenizer { what: "task accuracy" })?;
    let tasks = options.tasks.tasks()?;
    let results = options
        .modes
        .iter()
        .map(|&mode| task_accuracy(&model, &tokenizer, &tasks, mode, options.max_tokens, options.batch_size))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AccuracyReports {
        tasks: options.tasks.to_string(),
        results,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub model: PathBuf,
    pub parent: PathBuf,
    pub windows: usize,
    pub seq_len: usize,
    pub scores: Scores,
}

/// The model against `parent` on held-out windows: KL of next-token distributions, LM loss,
/// cosine distance of the last hidden state.
pub fn compare_to_parent(
    model: &Path,
    parent: &Path,
    windows: &WindowSpec,
    device: &Device,
) -> Result<Comparison, InspectError> {
    let parent_model = load_model(parent, device)?;
    let child = load_model(model, device)?;
    if child.config().vocab_size != parent_model.config().vocab_size {
        return Err(InspectError::Input {
            path: model.to_path_buf(),
            problem: format!(
                "has {} tokens in its vocabulary but the parent {} has {}",
                child.config().vocab_size,
                parent.display(),
                parent_model.config().vocab_size
            ),
        });
    }
    let data = windows.windows(&parent_model, parent)?;
    let scores = Reference::new(&parent_model, &data.held_out)?.score_model(&child)?;
    Ok(Comparison {
        model: model.to_path_buf(),
        parent: parent.to_path_buf(),
        windows: data.held_out.len(),
        seq_len: windows.seq_len,
        scores,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub format: String,
    pub params: usize,
    pub config: ModelConfig,
}

/// The checkpoint's format, parameter count and configuration.
pub fn model_info(model: &Path) -> Result<ModelInfo, InspectError> {
    let (checkpoint, format) = Checkpoint::read(model)?;
    Ok(ModelInfo {
        format: format!("{format:?}"),
        params: checkpoint.config.num_params(),
        config: checkpoint.config,
    })
}

impl std::fmt::Display for AccuracyReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.results {
            writeln!(
                f,
                "thinking {:?}: accuracy {:.1}% ({}/{}), format ok {:.1}%",
                r.thinking,
                100.0 * r.accuracy,
                r.correct,
                r.tasks,
                100.0 * r.format_ok
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vs {} on {} held-out windows of {} tokens: KL {:.5}  LM loss {:.4}  cosine distance {:.5}",
            self.model.display(),
            self.parent.display(),
            self.windows,
            self.seq_len,
            self.scores.kl_div,
            self.scores.lm_loss,
            self.scores.cosine_distance
        )
    }
}
