//! Global knowledge distillation (DESIGN §1.10): the child (student) learns the parent's
//! (teacher's) next-token distribution (KL) and its hidden states at matched layers (cosine
//! distance), or the next tokens themselves (LM loss, for the ablation). Layer `k` of the
//! student matches the last parent layer it stands for, so a fused layer matches the last layer
//! of its run. The teacher runs outside autodiff.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::checkpoint::TensorSource;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::model::{Llama, ModelConfig, WeightError};
use crate::score::{Reference, Scores};
use crate::source::Windows;
use crate::train::{MicroBatch, RunControl, StepLog, TrainConfig, TrainError, cross_entropy, train};

/// What the student learns from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistillLoss {
    /// Cosine distance of hidden states at matched layers plus KL of the logits (Puzzle's best).
    #[serde(rename = "cosine+kl")]
    CosineKl,
    #[serde(rename = "kl")]
    Kl,
    #[serde(rename = "cosine")]
    Cosine,
    /// Next-token cross-entropy on the data, no teacher.
    #[serde(rename = "lm")]
    Lm,
}

crate::named!(DistillLoss {
    "cosine+kl" => DistillLoss::CosineKl,
    "kl" => DistillLoss::Kl,
    "cosine" => DistillLoss::Cosine,
    "lm" => DistillLoss::Lm,
});

impl DistillLoss {
    fn uses_kl(self) -> bool {
        matches!(self, Self::CosineKl | Self::Kl)
    }

    fn uses_cosine(self) -> bool {
        matches!(self, Self::CosineKl | Self::Cosine)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillOptions {
    pub loss: DistillLoss,
    /// Training tokens (student inputs) in all.
    pub tokens: usize,
    /// Windows per optimizer step.
    pub batch_size: usize,
    /// Micro-batches per step (run side by side).
    pub micro_batches: usize,
    pub seq_len: usize,
    pub peak_lr: f64,
    pub seed: u64,
    #[serde(skip)]
    pub control: RunControl,
}

impl Default for DistillOptions {
    fn default() -> Self {
        Self {
            loss: DistillLoss::CosineKl,
            tokens: 200_000,
            batch_size: 16,
            micro_batches: 2,
            seq_len: 64,
            peak_lr: 1e-3,
            seed: 0,
            control: RunControl {
                checkpoint_every: 20,
                stop_after: None,
                progress: false,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("the student's vocabulary has {student} tokens but the teacher's has {teacher}: they must share one")]
    Vocabulary { student: usize, teacher: usize },
    #[error(
        "the student's hidden size is {student} but the teacher's is {teacher}: the cosine loss compares hidden states; use --loss kl or lm"
    )]
    Hidden { student: usize, teacher: usize },
    #[error(
        "the student's layers stand for parent layers 0..={covered} but the teacher has {teacher} layers: is this the student's parent?"
    )]
    Layers { covered: usize, teacher: usize },
    #[error("invalid distillation settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Forward(#[from] crate::model::ForwardError),
}

/// `(student layer, teacher layer)` pairs whose outputs are compared: each student layer with
/// the last parent layer it stands for. Checks that the two models fit together.
pub fn layer_matches(student: &Checkpoint, teacher: &ModelConfig) -> Result<Vec<(usize, usize)>, DistillError> {
    let (s, t) = (&student.config, teacher);
    if s.vocab_size != t.vocab_size {
        return Err(DistillError::Vocabulary {
            student: s.vocab_size,
            teacher: t.vocab_size,
        });
    }
    let spans = student.layer_spans();
    let covered = spans.last().map_or(0, |span| span.last);
    if covered + 1 != t.num_layers() {
        return Err(DistillError::Layers {
            covered,
            teacher: t.num_layers(),
        });
    }
    Ok(spans.iter().enumerate().map(|(k, span)| (k, span.last)).collect())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DistillReport {
    pub loss: DistillLoss,
    pub steps: usize,
    pub tokens_seen: u64,
    pub seconds: f64,
    /// Held-out scores of the student against the teacher before and after.
    pub before: Scores,
    pub after: Scores,
    pub held_out_windows: usize,
    /// False when stopped early as asked (`control.stop_after`); running again resumes.
    pub finished: bool,
    pub history: Vec<StepLog>,
}

/// Mean over tokens and matched layers of `1 - cos` between student and teacher hidden states.
fn hidden_cosine(student: &[Tensor<3>], teacher: &[Tensor<3>], matches: &[(usize, usize)]) -> Tensor<1> {
    let terms: Vec<Tensor<1>> = matches
        .iter()
        .map(|&(s, t)| {
            let (a, b) = (student[s + 1].clone(), teacher[t + 1].clone());
            let dot = (a.clone() * b.clone()).sum_dim(2);
            let norms = (a.powi_scalar(2).sum_dim(2) * b.powi_scalar(2).sum_dim(2)).sqrt();
            (dot / norms.clamp_min(1e-6)).mean().neg() + 1.0
        })
        .collect();
    let count = terms.len() as f64;
    Tensor::cat(terms, 0).sum() / count
}

/// Mean over tokens of KL(teacher ‖ student) of the next-token distributions.
fn logits_kl(student_logits: Tensor<3>, teacher_logits: Tensor<3>) -> Tensor<1> {
    let [batch, seq, _] = student_logits.dims();
    let log_p = log_softmax(teacher_logits, 2);
    let log_q = log_softmax(student_logits, 2);
    (log_p.clone().exp() * (log_p - log_q)).sum() / (batch * seq) as f64
}

/// Both window sets present, every window `seq_len + 1` long, the batch split evenly.
fn check_settings(windows: &Windows, options: &DistillOptions) -> Result<(), DistillError> {
    let window_len = options.seq_len + 1;
    if windows.train.is_empty() || windows.held_out.is_empty() {
        return Err(DistillError::Settings(
            "the data gave no training or no held-out windows".into(),
        ));
    }
    if let Some(w) = windows
        .train
        .iter()
        .chain(&windows.held_out)
        .find(|w| w.len() != window_len)
    {
        return Err(DistillError::Settings(format!(
            "a window has {} tokens, --seq-len {} needs {window_len}",
            w.len(),
            options.seq_len
        )));
    }
    if options.micro_batches == 0 || !options.batch_size.is_multiple_of(options.micro_batches) {
        return Err(DistillError::Settings(format!(
            "the batch size {} must be a positive multiple of the {} micro-batches",
            options.batch_size, options.micro_batches
        )));
    }
    Ok(())
}

/// The loss of one micro-batch of windows (`rows`, each `seq_len + 1` tokens): the chosen mix of
/// KL to the teacher's logits and cosine distance of matched hidden states, or plain LM loss.
fn micro_batch_loss(
    model: &Llama,
    teacher: &Llama,
    rows: &[Vec<u32>],
    matches: &[(usize, usize)],
    options: &DistillOptions,
) -> Result<Tensor<1>, crate::model::ForwardError> {
    let inputs: Vec<Vec<u32>> = rows.iter().map(|w| w[..options.seq_len].to_vec()).collect();
    let out = model.forward(model.tokens_tensor(&inputs)?, None, options.loss.uses_cosine())?;
    if options.loss == DistillLoss::Lm {
        let targets: Vec<Vec<u32>> = rows.iter().map(|w| w[1..].to_vec()).collect();
        return Ok(cross_entropy(out.logits, model.tokens_tensor(&targets)?, None));
    }
    let taught = teacher.forward(teacher.tokens_tensor(&inputs)?, None, options.loss.uses_cosine())?;
    let mut loss = Tensor::<1>::zeros([1], &out.logits.device());
    if options.loss.uses_kl() {
        loss = loss + logits_kl(out.logits, taught.logits);
    }
    if options.loss.uses_cosine() {
        loss = loss + hidden_cosine(&out.hidden_states, &taught.hidden_states, matches);
    }
    Ok(loss)
}

/// Distils `student` from `teacher` (built on the device to train on, outside autodiff) on
/// `windows` (each `options.seq_len + 1` tokens), keeping resumable training state in
/// `work_dir`; returns the trained student (with its layer spans) and a report with held-out
/// scores before and after.
pub fn distill(
    student: &Checkpoint,
    teacher: &Llama,
    windows: &Windows,
    options: &DistillOptions,
    work_dir: &Path,
) -> Result<(Checkpoint, DistillReport), DistillError> {
    let device = teacher.device();
    let matches = layer_matches(student, teacher.config())?;
    if options.loss.uses_cosine() && student.config.hidden_size != teacher.config().hidden_size {
        return Err(DistillError::Hidden {
            student: student.config.hidden_size,
            teacher: teacher.config().hidden_size,
        });
    }
    check_settings(windows, options)?;
    let reference = Reference::new(teacher, &windows.held_out)?;
    let before = reference.score_model(&student.build(&device)?)?;

    let steps = (options.tokens / (options.batch_size * options.seq_len)).max(1);
    let config = TrainConfig::warmup_cosine(
        steps,
        options.micro_batches,
        options.peak_lr,
        options.seed,
        options.control,
    );
    let micro = options.batch_size / options.micro_batches;
    // A resumed run must see the same data: FNV-1a over every training token.
    let data_checksum = windows.train.iter().flatten().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        (h ^ t as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let fingerprint = json!({
        "student": student.config,
        "student_layers": student.layer_spans(),
        "teacher": teacher.config(),
        "options": options,
        "data": { "train_windows": windows.train.len(), "checksum": format!("{data_checksum:016x}") },
    });
    let started = Instant::now();
    let outcome = train(
        student.build(&device.clone().autodiff())?,
        &config,
        Some(work_dir),
        fingerprint,
        |model: &Llama, _, rng| {
            let all = &windows.train;
            let rows: Vec<Vec<u32>> = (0..micro)
                .map(|_| all[rng.random_range(0..all.len())].clone())
                .collect();
            Ok(MicroBatch {
                loss: micro_batch_loss(model, teacher, &rows, &matches, options)?,
                tokens: micro * options.seq_len,
            })
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let trained = outcome.model.valid();
    let after = reference.score_model(&trained)?;
    let mut child = Checkpoint::from_model(&trained);
    child.parent_layers = student.parent_layers.clone();
    let report = DistillReport {
        loss: options.loss,
        steps: outcome.steps_done,
        tokens_seen: outcome.tokens_seen,
        seconds,
        before,
        after,
        held_out_windows: windows.held_out.len(),
        finished: outcome.finished,
        history: outcome.history,
    };
    Ok((child, report))
}
