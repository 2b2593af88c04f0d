//! Task accuracy: greedy answers to verifiable tasks, scored by the verifier (the final answer
//! after `</think>` against the reference), with the reasoning switch on or off. Prompts are
//! written in the model's chat format (its chat template, or the built-in markers) and replies end
//! at EOS or the format's end-of-turn token. Prompts of equal token length are decoded together
//! in batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::verify::answer_correct;
use crate::model::{ForwardError, Llama, Sampling, generate_batch};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::world::{ChatFormat, ChatFormatError, Task, Thinking, format_matches};

#[derive(Debug, thiserror::Error)]
pub enum AccuracyError {
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Format(#[from] ChatFormatError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}:{line}: {problem}", path.display())]
    TaskFile {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: the task file holds no tasks", path.display())]
    NoTasks { path: PathBuf },
}

#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub question: String,
    pub expected: String,
    pub reply: String,
    pub correct: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct AccuracyReport {
    pub thinking: Thinking,
    pub tasks: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Share of replies whose think tags match the switch (present iff thinking is on).
    pub format_ok: f64,
    pub answers: Vec<Answer>,
}

/// Reads a task file: one JSON object per line with `question` and `answer` (and optionally
/// `thinking`, the worked solution); blank lines are skipped.
pub fn read_task_file(path: &Path) -> Result<Vec<Task>, AccuracyError> {
    let text = std::fs::read_to_string(path).map_err(|cause| AccuracyError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| AccuracyError::TaskFile {
            path: path.to_path_buf(),
            line: i + 1,
            problem,
        };
        let task: Task =
            serde_json::from_str(line).map_err(|e| bad(format!("expected {{\"question\": …, \"answer\": …}}: {e}")))?;
        if task.answer.trim().is_empty() {
            return Err(bad("`answer` is empty".into()));
        }
        tasks.push(task);
    }
    if tasks.is_empty() {
        return Err(AccuracyError::NoTasks {
            path: path.to_path_buf(),
        });
    }
    Ok(tasks)
}

/// Each prompt followed by its greedy continuation of at most `max_new_tokens` (fewer where the
/// model's context ends), ending at a stop token; prompts of equal length are decoded together
/// in batches of `batch_size`.
fn greedy_continuations(
    model: &Llama,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    batch_size: usize,
    stop: &[u32],
) -> Result<Vec<Vec<u32>>, ForwardError> {
    let mut by_length: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, prompt) in prompts.iter().enumerate() {
        by_length.entry(prompt.len()).or_default().push(i);
    }
    let max_new_tokens = max_new_tokens.min(
        model
            .config()
            .max_position_embeddings
            .saturating_sub(by_length.keys().last().copied().unwrap_or(0)),
    );
    let mut rows = vec![Vec::new(); prompts.len()];
    for group in by_length.values() {
        for chunk in group.chunks(batch_size.max(1)) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            for (&i, row) in chunk
                .iter()
                .zip(generate_batch(model, &batch, max_new_tokens, Sampling::Greedy, stop)?)
            {
                rows[i] = row;
            }
        }
    }
    Ok(rows)
}

/// A prompt followed by a model's reply to it.
pub struct Exchange {
    pub tokens: Vec<u32>,
    /// Where the reply begins.
    pub prompt_len: usize,
}

/// `tasks` asked with the switch set to `thinking`, in the chat format of `tokenizer`, each
/// with `model`'s greedy reply (see [`greedy_continuations`]).
pub fn ask_greedy(
    model: &Llama,
    tokenizer: &Tokenizer,
    tasks: &[Task],
    thinking: Thinking,
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<Vec<Exchange>, AccuracyError> {
    let format = ChatFormat::of(tokenizer)?;
    let prompts = tasks
        .iter()
        .map(|task| format.prompt(task, thinking))
        .collect::<Result<Vec<_>, _>>()?;
    let stop = format.stop_tokens(model.config().eos_token_id);
    let rows = greedy_continuations(model, &prompts, max_new_tokens, batch_size, &stop)?;
    Ok(prompts
        .iter()
        .zip(rows)
        .map(|(prompt, tokens)| Exchange {
            tokens,
            prompt_len: prompt.len(),
        })
        .collect())
}

/// Greedy replies of `model` to `tasks` with the switch set to `thinking`, each up to
/// `max_new_tokens` long, scored by the verifier.
pub fn task_accuracy(
    model: &Llama,
    tokenizer: &Tokenizer,
    tasks: &[Task],
    thinking: Thinking,
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<AccuracyReport, AccuracyError> {
    let replies = ask_greedy(model, tokenizer, tasks, thinking, max_new_tokens, batch_size)?
        .iter()
        .map(|exchange| tokenizer.decode(&exchange.tokens[exchange.prompt_len..]))
        .collect::<Result<Vec<_>, _>>()?;
    let answers: Vec<Answer> = tasks
        .iter()
        .zip(replies)
        .map(|(task, reply)| Answer {
            question: task.question.clone(),
            expected: task.answer.clone(),
            correct: answer_correct(&reply, &task.answer),
            reply,
        })
        .collect();
    let correct = answers.iter().filter(|a| a.correct).count();
    let format_ok = answers.iter().filter(|a| format_matches(&a.reply, thinking)).count();
    let total = tasks.len().max(1) as f64;
    Ok(AccuracyReport {
        thinking,
        tasks: tasks.len(),
        correct,
        accuracy: correct as f64 / total,
        format_ok: format_ok as f64 / total,
        answers,
    })
}

/// The longest reply the switch evaluations read: a worked solution of the built-in world's
/// longest chains takes about 50 tokens. Thinking-off replies get as long a budget, so that a
/// reply that wrongly opens a think block is seen closing it.
pub const SWITCH_REPLY_TOKENS: usize = 96;

/// Greedy answers with the switch on and off to multi-step tasks (where thinking helps), and
/// with it off to one-step tasks (where answering directly is right), when there are any.
pub struct SwitchAccuracy {
    pub on: AccuracyReport,
    pub off: AccuracyReport,
    pub off_direct: Option<AccuracyReport>,
}

/// Greedy accuracy and format compliance on `tasks` with thinking on, then off, and on `direct`
/// (one-step tasks; may be empty) with thinking off.
pub fn switch_accuracy(
    model: &Llama,
    tokenizer: &Tokenizer,
    tasks: &[Task],
    direct: &[Task],
) -> Result<SwitchAccuracy, AccuracyError> {
    let ask = |tasks: &[Task], thinking| task_accuracy(model, tokenizer, tasks, thinking, SWITCH_REPLY_TOKENS, 64);
    Ok(SwitchAccuracy {
        on: ask(tasks, Thinking::On)?,
        off: ask(tasks, Thinking::Off)?,
        off_direct: (!direct.is_empty()).then(|| ask(direct, Thinking::Off)).transpose()?,
    })
}

/// An accuracy report without the individual answers (but one example reply).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AccuracySummary {
    pub accuracy: f64,
    pub correct: usize,
    pub tasks: usize,
    pub format_ok: f64,
    pub example_reply: String,
}

impl From<&AccuracyReport> for AccuracySummary {
    fn from(r: &AccuracyReport) -> Self {
        Self {
            accuracy: r.accuracy,
            correct: r.correct,
            tasks: r.tasks,
            format_ok: r.format_ok,
            example_reply: r.answers.first().map(|a| a.reply.clone()).unwrap_or_default(),
        }
    }
}

/// [`SwitchAccuracy`] without the individual answers.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SwitchSummary {
    /// Multi-step tasks, thinking on.
    pub on: AccuracySummary,
    /// Multi-step tasks, thinking off.
    pub off: AccuracySummary,
    /// One-step tasks, thinking off.
    pub off_direct: Option<AccuracySummary>,
}

impl From<&SwitchAccuracy> for SwitchSummary {
    fn from(a: &SwitchAccuracy) -> Self {
        Self {
            on: (&a.on).into(),
            off: (&a.off).into(),
            off_direct: a.off_direct.as_ref().map(Into::into),
        }
    }
}

impl SwitchSummary {
    /// Each measurement with its label.
    pub fn labelled(&self) -> Vec<(&'static str, &AccuracySummary)> {
        let mut all = vec![("on", &self.on), ("off, multi-step", &self.off)];
        all.extend(self.off_direct.as_ref().map(|a| ("off, one-step", a)));
        all
    }

    /// Share of all replies whose format matches their switch.
    pub fn format_ok(&self) -> f64 {
        let all = self.labelled();
        let tasks: usize = all.iter().map(|(_, a)| a.tasks).sum();
        let ok: f64 = all.iter().map(|(_, a)| a.format_ok * a.tasks as f64).sum();
        ok / tasks.max(1) as f64
    }
}
