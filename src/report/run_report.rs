//! The report stage of a whole run: the parent against the child as assembled, fused,
//! distilled and finally post-trained — measured request time, KL to the parent on held-out
//! windows, task accuracy with thinking on and off — plus what each stage found (a sentence
//! each) and the training curves, written as `index.html`. Measures the models it compares;
//! everything else it reads from the earlier stages' reports.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::pareto::{ParetoFront, ReportError};
use super::run_page::{Curve, RunPage, write_run_page};
use super::summary::{FusionSummary, ModelRow, Summary};
use crate::assemble::AssembleReport;
use crate::checkpoint::{Checkpoint, ModelSummary, StoredCheckpoint, TensorSource, load_model};
use crate::cost::measure::{request_runner, time_interleaved};
use crate::cost::{Precision, ProfileReport, model_kv_bytes_per_token};
use crate::eval::{ChatKl, ParentChats, SwitchSummary, TaskSet, switch_accuracy};
use crate::fusion::FuseReport;
use crate::library::BuildReport;
use crate::memory_budget::Estimate;
use crate::model::{Llama, ModelConfig};
use crate::parent::ParentReport;
use crate::posttrain::{ChatStageReport, DistillStageReport, RlReport, RlStepLog, SftReport};
use crate::score::{Reference, ScoreReport};
use crate::search::SearchReport;
use crate::source::WindowSpec;
use crate::tokenizer::Tokenizer;
use crate::train::{StepLog, read_history};
use crate::world::{Task, Thinking};

/// How the run's models are compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEval {
    /// Held-out multi-step tasks every model answers, thinking on and off.
    pub tasks: TaskSet,
    /// Held-out one-step tasks every model answers with thinking off.
    pub direct: Option<TaskSet>,
    /// Held-out windows KL to the parent is measured on.
    pub windows: WindowSpec,
    /// Interleaved rounds of whole requests (prompt 128, 128 generated, batch 1).
    pub request_rounds: usize,
}

/// Every earlier stage's report.
pub struct RunInputs<'a> {
    pub name: &'a str,
    pub parent: &'a ParentReport,
    pub library: &'a BuildReport,
    pub score: &'a ScoreReport,
    pub profile: &'a ProfileReport,
    pub search: &'a SearchReport,
    pub pareto: &'a ParetoFront,
    pub assembled: &'a AssembleReport,
    pub fused: &'a FuseReport,
    pub distilled: &'a DistillStageReport,
    /// The unfused child distilled the same way (when the child was fused): what fusion costs
    /// after distillation.
    pub distilled_unfused: Option<&'a DistillStageReport>,
    pub tuned: &'a ChatStageReport<SftReport>,
    pub reinforced: &'a ChatStageReport<RlReport>,
    pub exported: &'a ModelSummary,
    /// The GGUF export, when one was asked for.
    pub exported_gguf: Option<&'a ModelSummary>,
    /// Each stage and the seconds its work took.
    pub stages: &'a [(String, f64)],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportPage {
    pub page: PathBuf,
    pub summary: Summary,
    /// What each stage found, a sentence each.
    pub notes: Vec<String>,
}

/// The peak of comparing `models` (the parent first, then each child), known before any is
/// read: every model built as f32 (all held at once) and the largest one's checkpoint while it
/// is built, and the larger of the two measuring phases: KL on the held-out windows (the parent's logits
/// and log-probabilities, and one child's with their products) and KL on chats (batches of
/// `eval::chat_kl::BATCH` replies of up to `CHAT_TOKENS` tokens, parent and child, in five
/// forms).
pub fn report_estimate(models: &[ModelConfig], eval: &RunEval) -> Estimate {
    let params: u64 = models.iter().map(|c| c.num_params() as u64).sum();
    let largest = models.iter().map(|c| c.num_params() as u64).max().unwrap_or(0);
    let vocab = models.first().map_or(0, |c| c.vocab_size) as u64;
    let window_tokens = (eval.windows.held_out * eval.windows.seq_len) as u64;
    let windows = 6 * window_tokens * vocab * F32;
    let chats = 5 * (crate::eval::chat_kl::BATCH * CHAT_TOKENS) as u64 * vocab * F32;
    Estimate::new()
        .with(
            format!(
                "{} models built as f32, and one checkpoint while it is built",
                models.len()
            ),
            (params + largest) * F32,
        )
        .with(
            format!(
                "the larger of KL on {} windows and KL on chats (logits and log-probabilities)",
                eval.windows.held_out
            ),
            windows.max(chats),
        )
}

const F32: u64 = 4;

/// The tokens a scored chat may hold: a prompt of at most 128 tokens and the reply.
const CHAT_TOKENS: usize = 128 + crate::eval::SWITCH_REPLY_TOKENS;

/// What to change when the report does not fit.
pub const REPORT_ADVICE: &str =
    "fewer held-out windows ([eval] windows) or more memory: the report holds every model whole";

#[derive(Debug, thiserror::Error)]
pub enum RunReportError {
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
    #[error(transparent)]
    Forward(#[from] crate::model::ForwardError),
    #[error(transparent)]
    Accuracy(#[from] crate::eval::AccuracyError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
}

const REQUEST: (usize, usize, usize) = (1, 128, 128);

/// Measures the run's models and writes the report into `dir`.
pub fn write_run_report(
    dir: &Path,
    run: &RunInputs,
    eval: &RunEval,
    device: &Device,
) -> Result<ReportPage, RunReportError> {
    let summary = compare_models(run, eval, device)?;
    let notes = notes(run);
    let final_child = StoredCheckpoint::open(&run.reinforced.child.model)?;
    let parent_config = Checkpoint::read_config(&run.parent.model_dir)?;
    let fused_runs: Vec<String> = run.fused.runs.iter().map(ToString::to_string).collect();
    let heatmap = run
        .fused
        .analysis
        .as_ref()
        .map(|a| a.heatmap.clone())
        .unwrap_or_default();
    let page = write_run_page(
        dir,
        &RunPage {
            name: run.name,
            summary: &summary,
            stages: run.stages,
            parent: &parent_config,
            child: final_child.config(),
            child_spans: &final_child.layer_spans(),
            fused_runs: &fused_runs,
            pareto_plots: &run.pareto.report.plots,
            heatmap: &heatmap,
            curves: &curves(run)?,
            notes: &notes,
        },
    )?;
    Ok(ReportPage { page, summary, notes })
}

/// Prompts of each task kind the parent answers with each switch for the KL on chats.
const CHAT_KL_PROMPTS: usize = 200;

/// The parent and the child as assembled, fused, distilled and post-trained, side by side.
pub fn compare_models(run: &RunInputs, eval: &RunEval, device: &Device) -> Result<Summary, RunReportError> {
    let tokenizer = Tokenizer::read(
        &Tokenizer::beside_model(&run.parent.model_dir)
            .unwrap_or_else(|| run.parent.model_dir.join(crate::checkpoint::TOKENIZER_FILE)),
    )?;
    let tasks = eval.tasks.tasks()?;
    let direct = TaskSet::tasks_if_any(eval.direct.as_ref())?;
    let fused = !run.fused.runs.is_empty();
    let mut labelled = vec![
        ("parent", &run.parent.model_dir),
        ("child, assembled", &run.assembled.child.model),
    ];
    if fused {
        labelled.push(("child, fused", &run.fused.child.model));
    }
    labelled.push(("child, distilled", &run.distilled.child.model));
    labelled.push(("child, after SFT + GRPO", &run.reinforced.child.model));
    let configs = labelled
        .iter()
        .map(|(_, dir)| Checkpoint::read_config(dir))
        .collect::<Result<Vec<_>, _>>()?;
    crate::memory_budget::check("report", &report_estimate(&configs, eval), REPORT_ADVICE)?;
    let built = labelled
        .iter()
        .map(|(_, dir)| load_model(dir, device))
        .collect::<Result<Vec<_>, _>>()?;
    let timings = time_requests(&built, eval.request_rounds)?;
    let parent = &built[0];
    let held_out = eval.windows.windows(parent, &run.parent.model_dir)?.held_out;
    let reference = Reference::new(parent, &held_out)?;
    let prompts: Vec<Task> = [&tasks, &direct]
        .iter()
        .flat_map(|set| set.iter().take(CHAT_KL_PROMPTS).cloned())
        .collect();
    let kl_on = ParentChats::generate(parent, &tokenizer, &prompts, Thinking::On)?.kl(parent, &built)?;
    let kl_off = ParentChats::generate(parent, &tokenizer, &prompts, Thinking::Off)?.kl(parent, &built)?;
    let last = built.len() - 1;
    let mut rows = Vec::new();
    for (k, ((label, _), config)) in labelled.iter().zip(&configs).enumerate() {
        let scores = reference.score_model(&built[k])?;
        let accuracy = match k {
            0 => run.parent.accuracy.clone(),
            k if k == last => run.reinforced.after.clone(),
            k => SwitchSummary::from(&switch_accuracy(&built[k], &tokenizer, &tasks, &direct)?),
        };
        rows.push(ModelRow {
            model: label.to_string(),
            layers: config.num_layers(),
            params: config.num_params(),
            kv_bytes_per_token: model_kv_bytes_per_token(config, Precision::Bf16),
            request_ms: timings[k],
            speedup: timings[0] / timings[k],
            held_out_nll: scores.lm_loss,
            kl_to_parent: scores.kl_div,
            kl_chats: ChatKl {
                on: kl_on[k],
                off: kl_off[k],
            },
            accuracy_on: accuracy.on.accuracy,
            accuracy_off: accuracy.off.accuracy,
            accuracy_off_direct: accuracy.off_direct.as_ref().map(|a| a.accuracy),
            format_ok: accuracy.format_ok(),
        });
    }
    let fusion = match (fused, run.distilled_unfused) {
        (true, Some(unfused)) => Some(FusionSummary {
            layers_before: rows[1].layers,
            layers_after: rows[2].layers,
            speedup: timings[1] / timings[2],
            kl_before_distillation: [rows[1].kl_to_parent, rows[2].kl_to_parent],
            kl_after_distillation: [
                reference
                    .score_model(&load_model(&unfused.child.model, device)?)?
                    .kl_div,
                rows[3].kl_to_parent,
            ],
        }),
        _ => None,
    };
    let (batch, prompt, generated) = REQUEST;
    Ok(Summary {
        rows,
        eval_tasks: tasks.len(),
        request: format!("prompt {prompt} + {generated} generated tokens, batch {batch}, this machine's CPU"),
        windows: format!(
            "{} held-out windows of {} tokens from {}",
            held_out.len(),
            eval.windows.seq_len,
            eval.windows.data
        ),
        fusion,
    })
}

/// Median whole-request times (ms), the models interleaved round by round.
fn time_requests(models: &[Llama], rounds: usize) -> Result<Vec<f64>, RunReportError> {
    let (batch, prompt, generated) = REQUEST;
    let runners = models
        .iter()
        .map(|m| request_runner(m, batch, prompt, generated))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(time_interleaved(&runners, rounds).iter().map(|t| t.median_ms).collect())
}

fn loss_curve(history: &[StepLog]) -> Vec<(f64, f64)> {
    history.iter().map(|s| (s.step as f64, s.loss)).collect()
}

fn curve(title: &str, y_label: &str, series: Vec<(String, Vec<(f64, f64)>)>) -> Curve {
    Curve {
        title: title.into(),
        y_label: y_label.into(),
        series,
    }
}

/// The training curves: parent (when trained here), distillation, SFT stage by stage, GRPO
/// reward and KL.
fn curves(run: &RunInputs) -> Result<Vec<Curve>, RunReportError> {
    let parent_curve = match &run.parent.training {
        Some(training) => vec![curve(
            "parent training loss",
            "loss",
            vec![("parent".into(), loss_curve(&read_history(&training.train_dir)?))],
        )],
        None => Vec::new(),
    };
    let sft_stages = run
        .tuned
        .training
        .stages
        .iter()
        .enumerate()
        .scan(0.0, |offset, (k, s)| {
            // Stages follow one another: each stage's steps continue the previous one's.
            let curve = loss_curve(&s.history)
                .into_iter()
                .map(|(x, y)| (x + *offset, y))
                .collect();
            *offset += s.steps as f64;
            Some((
                format!("SFT stage {} ({:?} chats)", k + 1, s.chats).to_lowercase(),
                curve,
            ))
        })
        .collect();
    let by_step = |value: fn(&RlStepLog) -> f64| -> Vec<(f64, f64)> {
        run.reinforced
            .training
            .history
            .iter()
            .map(|s| (s.step as f64, value(s)))
            .collect()
    };
    Ok(parent_curve
        .into_iter()
        .chain([
            curve(
                "global distillation loss",
                "loss",
                vec![("distillation".into(), loss_curve(&run.distilled.distill.history))],
            ),
            curve("SFT loss (assistant tokens)", "loss", sft_stages),
            curve(
                "GRPO reward and pass rate per step",
                "mean over the round's samples",
                vec![
                    ("GRPO reward".into(), by_step(|s| s.reward)),
                    ("GRPO pass rate".into(), by_step(|s| s.accuracy)),
                ],
            ),
            curve(
                "GRPO KL to the starting model",
                "KL per reply token (k3)",
                vec![("GRPO KL to the start".into(), by_step(|s| s.kl))],
            ),
        ])
        .collect())
}

/// What each stage found, a sentence each (the report's and `tessera run`'s notes).
pub fn notes(run: &RunInputs) -> Vec<String> {
    let p = run.parent;
    let origin = match &p.training {
        Some(t) => format!("{} steps in {:.0} s", t.steps, t.train_seconds),
        None => format!("pretrained, read from {}", p.model_dir.display()),
    };
    let mut notes = vec![format!(
        "Parent: {} layers, {:.2}M parameters, {origin}; held-out NLL {:.4} nats/token against the corpus's unigram entropy {:.4}.",
        p.layers,
        p.params as f64 / 1e6,
        p.held_out_nll,
        p.unigram_entropy
    )];
    notes.push(format!(
        "Block library in {}: {} items trained by blockwise local distillation in {:.0} s.",
        run.library.dir.display(),
        run.library.trainable,
        run.library.seconds
    ));
    if let Some(items) = &run.score.items {
        let bld = &items.summary;
        notes.push(format!(
            "BLD lowered held-out nMSE for {}/{} trained items and replace-1-block KL for {}/{}; {} blocks scored.",
            bld.nmse_lower_after_bld,
            bld.trainable,
            bld.kl_lower_after_bld,
            bld.trainable,
            run.score.blocks.len()
        ));
    }
    notes.extend(run.profile.calibration.iter().map(|c| {
        format!(
            "Latency, {}: whole models predicted from their blocks within {:.1}% on average.",
            c.latency.scenario, c.mean_abs_error_pct
        )
    }));
    if let Some(best) = run.search.solutions.first() {
        let totals: Vec<String> = best
            .totals
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_f64().map_or(v.to_string(), |x| format!("{x:.4}"))))
            .collect();
        notes.push(format!(
            "Search (CBC): objective {:.5}; {}.",
            best.objective,
            totals.join(", ")
        ));
    }
    if let Some(chosen) = run.search.chosen_round {
        let rounds: Vec<String> = run
            .search
            .closed_loop
            .iter()
            .map(|r| {
                let child = &r.measured.children[0];
                format!(
                    "×{:.3} → {:.2}x measured ({:.2}x predicted, {:?})",
                    r.correction,
                    child.measured_speedup,
                    child.predicted_speedup / r.correction,
                    r.verdict
                )
            })
            .collect();
        notes.push(format!(
            "Closed loop: {} round(s), {}; round {chosen} kept.",
            rounds.len(),
            rounds.join("; ")
        ));
    }
    notes.push(match run.fused.runs.is_empty() {
        true => "Fusion: no run of consecutive attention-free layers qualifies; the child is not fused.".into(),
        false => {
            let runs: Vec<String> = run.fused.runs.iter().map(ToString::to_string).collect();
            format!(
                "Fusion: runs {} fused; {} blocks remain.",
                runs.join(", "),
                run.fused.child.layers
            )
        }
    });
    let d = &run.distilled.distill;
    notes.push(format!(
        "Distillation ({} tokens, {:.0} s): held-out KL to the parent {:.4} → {:.4}.",
        d.tokens_seen, d.seconds, d.before.kl_div, d.after.kl_div
    ));
    let sft_seconds = run.tuned.training.stages.iter().map(|s| s.seconds).sum();
    notes.push(chat_note("SFT", sft_seconds, &run.tuned.after, None));
    let rl = &run.reinforced.training;
    notes.push(chat_note("GRPO", rl.seconds, &run.reinforced.after, Some(rl.max_kl)));
    notes.push(format!(
        "Export: DeciLM, bf16, {:.1} MB in {}.",
        run.exported.bytes as f64 / 1e6,
        run.exported.model.display()
    ));
    if let Some(gguf) = run.exported_gguf {
        notes.push(format!(
            "Export: GGUF, {:.1} MB in {}.",
            gguf.bytes as f64 / 1e6,
            gguf.model.display()
        ));
    }
    notes
}

fn chat_note(stage: &str, seconds: f64, after: &SwitchSummary, max_kl: Option<f64>) -> String {
    let kl = max_kl.map_or(String::new(), |kl| {
        format!("; largest KL to its start {kl:.4} per token")
    });
    let accuracies: Vec<String> = after
        .labelled()
        .iter()
        .map(|(label, a)| format!("{label} {:.1}%", 100.0 * a.accuracy))
        .collect();
    format!(
        "{stage} ({seconds:.0} s): accuracy thinking {}; answer format {:.1}%{kl}.",
        accuracies.join(", "),
        100.0 * after.format_ok()
    )
}
