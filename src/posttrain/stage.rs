//! The post-training stages as one call each (`tessera distill|sft|rl`, `tessera run`,
//! notebooks): read the starting model, train it (resuming from `out/train`), measure it, and
//! write `out/model` (DeciLM, with the starting model's tokenizer) and `out/<stage>.json`. SFT
//! and GRPO measure held-out task accuracy with thinking on and off after training (and before,
//! when asked).

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::chat_data::{ChatDataError, builtin_chats, read_chat_file};
use super::distill::{DistillError, DistillOptions, DistillReport, distill, layer_matches};
use super::footprint::{DISTILL_ADVICE, distill_estimate};
use super::rl::{RlError, RlOptions, RlReport, rl};
use super::sft::{SftError, SftOptions, SftReport, sft};
use crate::checkpoint::TensorSource;
use crate::checkpoint::{Checkpoint, CheckpointError, ModelSummary, StoreDtype, TOKENIZER_FILE};
use crate::eval::{AccuracyError, SwitchSummary, TaskSet, switch_accuracy};
use crate::source::{SourceError, WindowSpec};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::world::{Chat, Task, Thinking};

#[derive(Debug, thiserror::Error)]
pub enum PosttrainError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Distill(#[from] DistillError),
    #[error(transparent)]
    Sft(#[from] SftError),
    #[error(transparent)]
    Rl(#[from] RlError),
    #[error(transparent)]
    Accuracy(#[from] AccuracyError),
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Chats(#[from] ChatDataError),
    #[error("{} has no {TOKENIZER_FILE}; chat training needs one (with the model's chat template beside it, or the built-in chat markers)", .0.display())]
    NoTokenizer(PathBuf),
    #[error("stopped after step {0} as asked; run the same command again to resume")]
    Stopped(usize),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PosttrainError> {
    let text = serde_json::to_string_pretty(value).expect("a report serialises");
    std::fs::write(path, text).map_err(|cause| PosttrainError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

#[derive(Clone, Debug)]
pub struct DistillStageOptions {
    /// The parent the child is distilled from.
    pub teacher: PathBuf,
    /// Training and held-out windows (their length is `train.seq_len + 1`).
    pub data: WindowSpec,
    pub train: DistillOptions,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DistillStageReport {
    pub child: ModelSummary,
    pub distill: DistillReport,
}

/// Distils the model at `student` from `options.teacher` into `out`.
pub fn distill_model(
    student: &Path,
    out: &Path,
    options: &DistillStageOptions,
    device: &Device,
) -> Result<DistillStageReport, PosttrainError> {
    let estimate = distill_estimate(
        &Checkpoint::read_config(&options.teacher)?,
        &Checkpoint::read_config(student)?,
        &options.train,
    );
    crate::memory_budget::check("distillation", &estimate, DISTILL_ADVICE)?;
    let (checkpoint, _) = Checkpoint::read(student)?;
    let teacher = Checkpoint::read(&options.teacher)?.0.build(device)?;
    layer_matches(&checkpoint, teacher.config())?;
    let spec = WindowSpec {
        seq_len: options.train.seq_len,
        ..options.data.clone()
    };
    let windows = spec.windows(&teacher, &options.teacher)?;
    let (child, report) = distill(&checkpoint, &teacher, &windows, &options.train, &out.join("train"))?;
    if !report.finished {
        return Err(PosttrainError::Stopped(report.steps));
    }
    let report = DistillStageReport {
        child: child.write_model_dir(&out.join("model"), StoreDtype::F32, student)?,
        distill: report,
    };
    write_json(&out.join("distill.json"), &report)?;
    Ok(report)
}

/// Distils the fused child at `child` into `out` and, when given, the same child `unfused` into
/// `out/unfused` the same way: what fusion costs once both are distilled.
pub fn distill_fused(
    child: &Path,
    unfused: Option<&Path>,
    out: &Path,
    options: &DistillStageOptions,
    device: &Device,
) -> Result<(DistillStageReport, Option<DistillStageReport>), PosttrainError> {
    let fused = distill_model(child, out, options, device)?;
    let unfused = unfused
        .map(|unfused| distill_model(unfused, &out.join(UNFUSED_DIR), options, device))
        .transpose()?;
    Ok((fused, unfused))
}

/// Where [`distill_fused`] puts the unfused child's distillation, inside its output folder.
pub const UNFUSED_DIR: &str = "unfused";

/// Built-in tasks SFT turns into chats by default (each with thinking on and off).
pub const DEFAULT_SFT_TASKS: usize = 20_000;
/// Built-in training tasks GRPO surveys by default (the solved ones are dropped).
pub const DEFAULT_RL_TASKS: usize = 2000;
/// Held-out tasks SFT and GRPO are measured on by default.
pub const DEFAULT_EVAL_TASKS: usize = 500;
/// Training windows distillation draws from its data by default.
pub const DEFAULT_TRAIN_WINDOWS: usize = 2048;

/// Chats to fine-tune on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatSource {
    /// The built-in world's first `tasks` training tasks, each as a chat with thinking on and off.
    Builtin { seed: u64, tasks: usize },
    /// JSONL: `{"system", "user", "assistant"}` or `{"messages": [...]}` per line.
    File { path: PathBuf },
}

impl ChatSource {
    pub fn chats(&self) -> Result<Vec<Chat>, ChatDataError> {
        match self {
            ChatSource::Builtin { seed, tasks } => Ok(builtin_chats(*seed, *tasks)),
            ChatSource::File { path } => read_chat_file(path),
        }
    }
}

/// Tasks GRPO asks, each with the switch settings of `modes` in turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptSet {
    pub tasks: TaskSet,
    pub modes: Vec<Thinking>,
}

impl PromptSet {
    /// `tasks` asked with the switch settings of `modes`, and beside them, when given, `direct`
    /// tasks asked with thinking off (where answering directly is right): both modes trained.
    pub fn with_direct(tasks: TaskSet, modes: Vec<Thinking>, direct: Option<TaskSet>) -> Vec<PromptSet> {
        let mut sets = vec![PromptSet { tasks, modes }];
        sets.extend(direct.map(|tasks| PromptSet {
            tasks,
            modes: vec![Thinking::Off],
        }));
        sets
    }

    /// Every task of every set with its switch setting.
    pub fn asked(sets: &[PromptSet]) -> Result<Vec<(Task, Thinking)>, PosttrainError> {
        let mut asked = Vec::new();
        for set in sets {
            if set.modes.is_empty() {
                return Err(
                    RlError::Settings(format!("the tasks {} are asked with no switch setting", set.tasks)).into(),
                );
            }
            let tasks = set.tasks.tasks()?;
            asked.extend(
                tasks
                    .into_iter()
                    .zip(set.modes.iter().cycle())
                    .map(|(task, &thinking)| (task, thinking)),
            );
        }
        Ok(asked)
    }
}

/// What SFT and GRPO share: the held-out tasks measured after training (and before), with
/// thinking on and off, and the one-step tasks answered with it off.
#[derive(Clone, Debug, Serialize)]
pub struct ChatEval {
    pub tasks: TaskSet,
    pub direct: Option<TaskSet>,
    pub before: bool,
}

/// A chat-training stage's outcome; `training` is the stage's own report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatStageReport<R> {
    pub child: ModelSummary,
    pub eval_tasks: usize,
    /// Before training, when measured.
    pub before: Option<SwitchSummary>,
    pub after: SwitchSummary,
    pub training: R,
}

fn accuracy(
    model: &Checkpoint,
    tokenizer: &Tokenizer,
    [tasks, direct]: [&[Task]; 2],
    device: &Device,
) -> Result<SwitchSummary, PosttrainError> {
    Ok((&switch_accuracy(&model.build(device)?, tokenizer, tasks, direct)?).into())
}

/// Reads the model at `model` (with its tokenizer), measures it when asked, trains it with
/// `train`, measures it, and writes `out/model` and `out/<name>.json`.
fn run_chat_stage<R: Serialize + DeserializeOwned>(
    name: &str,
    model: &Path,
    out: &Path,
    eval: &ChatEval,
    device: &Device,
    train: impl FnOnce(&Checkpoint, &Tokenizer) -> Result<(Checkpoint, R, Option<usize>), PosttrainError>,
) -> Result<ChatStageReport<R>, PosttrainError> {
    let (start, _) = Checkpoint::read(model)?;
    let tokenizer_path =
        Tokenizer::beside_model(model).ok_or_else(|| PosttrainError::NoTokenizer(model.to_path_buf()))?;
    let tokenizer = Tokenizer::read(&tokenizer_path)?;
    let tasks = eval.tasks.tasks()?;
    let direct = TaskSet::tasks_if_any(eval.direct.as_ref())?;
    let before = eval
        .before
        .then(|| accuracy(&start, &tokenizer, [&tasks, &direct], device))
        .transpose()?;
    let (trained, training, stopped) = train(&start, &tokenizer)?;
    if let Some(step) = stopped {
        return Err(PosttrainError::Stopped(step));
    }
    let report = ChatStageReport {
        after: accuracy(&trained, &tokenizer, [&tasks, &direct], device)?,
        child: trained.write_model_dir(&out.join("model"), StoreDtype::F32, model)?,
        eval_tasks: tasks.len(),
        before,
        training,
    };
    write_json(&out.join(format!("{name}.json")), &report)?;
    Ok(report)
}

/// Fine-tunes the model at `model` on `chats` into `out`.
pub fn sft_model(
    model: &Path,
    out: &Path,
    chats: &ChatSource,
    options: &SftOptions,
    eval: &ChatEval,
    device: &Device,
) -> Result<ChatStageReport<SftReport>, PosttrainError> {
    let chats = chats.chats()?;
    run_chat_stage("sft", model, out, eval, device, |start, tokenizer| {
        let (tuned, report) = sft(start, &chats, tokenizer, options, &out.join("train"), device)?;
        let stopped = (!report.finished).then(|| report.stages.iter().map(|s| s.steps).sum());
        Ok((tuned, report, stopped))
    })
}

/// Trains the model at `model` with GRPO on the tasks of `prompts` into `out`.
pub fn rl_model(
    model: &Path,
    out: &Path,
    prompts: &[PromptSet],
    options: &RlOptions,
    eval: &ChatEval,
    device: &Device,
) -> Result<ChatStageReport<RlReport>, PosttrainError> {
    let tasks = PromptSet::asked(prompts)?;
    run_chat_stage("rl", model, out, eval, device, |start, tokenizer| {
        let (trained, report) = rl(start, &tasks, tokenizer, options, &out.join("train"), device)?;
        let stopped = (!report.finished).then_some(report.steps);
        Ok((trained, report, stopped))
    })
}

fn write_switch_change(
    f: &mut std::fmt::Formatter<'_>,
    before: Option<&SwitchSummary>,
    after: &SwitchSummary,
) -> std::fmt::Result {
    let earlier = before.map(SwitchSummary::labelled);
    for (k, (label, a)) in after.labelled().into_iter().enumerate() {
        let (acc_before, fmt_before) = match earlier.as_ref().and_then(|e| e.get(k)) {
            Some((_, b)) => (
                format!("{:5.1}% -> ", 100.0 * b.accuracy),
                format!("{:5.1}% -> ", 100.0 * b.format_ok),
            ),
            None => (String::new(), String::new()),
        };
        writeln!(
            f,
            "  thinking {label:<15}  accuracy {acc_before}{:5.1}%   format ok {fmt_before}{:5.1}%",
            100.0 * a.accuracy,
            100.0 * a.format_ok
        )?;
    }
    Ok(())
}

impl<R> ChatStageReport<R> {
    fn write_accuracy(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "held-out tasks ({}), greedy:", self.eval_tasks)?;
        write_switch_change(f, self.before.as_ref(), &self.after)?;
        write!(f, "wrote {}", self.child.model.display())
    }
}

impl std::fmt::Display for DistillStageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.distill;
        writeln!(
            f,
            "{:?} distillation, {} steps, {} tokens in {:.1} s; held-out ({} windows) vs the teacher:",
            r.loss, r.steps, r.tokens_seen, r.seconds, r.held_out_windows
        )?;
        writeln!(
            f,
            "  KL {:.4} -> {:.4}   LM loss {:.4} -> {:.4}   cosine distance {:.4} -> {:.4}",
            r.before.kl_div,
            r.after.kl_div,
            r.before.lm_loss,
            r.after.lm_loss,
            r.before.cosine_distance,
            r.after.cosine_distance
        )?;
        write!(f, "wrote {}", self.child.model.display())
    }
}

impl std::fmt::Display for ChatStageReport<SftReport> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, stage) in self.training.stages.iter().enumerate() {
            writeln!(
                f,
                "stage {} ({:?} chats, {} in the pool): {} steps, {} assistant tokens in {:.1} s, loss {:.4} -> {:.4}",
                k + 1,
                stage.chats,
                stage.pool,
                stage.steps,
                stage.tokens_seen,
                stage.seconds,
                stage.first_loss,
                stage.final_loss
            )?;
        }
        self.write_accuracy(f)
    }
}

impl std::fmt::Display for ChatStageReport<RlReport> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let report = &self.training;
        writeln!(
            f,
            "{} prompts, {} already solved dropped; the rest start at pass rate {:.3}",
            report.prompts, report.solved, report.kept_pass_rate
        )?;
        writeln!(
            f,
            "{:>5} {:>6} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7}",
            "round", "step", "reward", "pass", "format", "KL", "entropy", "clipped"
        )?;
        let every = (report.steps / report.rounds.max(1)).max(1) * 10;
        for h in report
            .history
            .iter()
            .filter(|h| h.step % every == 0 || h.step == report.steps)
        {
            writeln!(
                f,
                "{:>5} {:>6} {:>8.3} {:>8.3} {:>7.3} {:>8.5} {:>8.4} {:>7.4}",
                h.round, h.step, h.reward, h.accuracy, h.format, h.kl, h.entropy, h.clipped
            )?;
        }
        writeln!(
            f,
            "{} rounds, {} steps in {:.1} s; largest KL to the start {:.5}",
            report.rounds, report.steps, report.seconds, report.max_kl
        )?;
        self.write_accuracy(f)
    }
}
