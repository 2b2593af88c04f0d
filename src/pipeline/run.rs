//! `tessera run PIPELINE.toml`: parent → library → score → profile → search → assemble → fuse →
//! distill → sft → rl → export → report, each a call into its stage's library code, each
//! skipped while its stamp is up to date (see `stamp`), each resuming its own work after a kill.
//! Outputs go to `<runs>/<name>/` (one folder per stage) and the report to `<reports>/<name>/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::file::Pipeline;
use super::stamp::{StageLog, Stages};
use crate::checkpoint::{Checkpoint, ExportOptions, StoreDtype};
use crate::cost::measure::{request_runner, time_interleaved};
use crate::cost::{Precision, ProfileOptions, model_kv_bytes_per_token, profile_library};
use crate::eval::{AccuracySummary, switch_accuracy};
use crate::fusion::{analyze, fuse_runs, write_analysis};
use crate::library::{BuildOptions, Library, Stage, build_library, choice_from_json};
use crate::model::Llama;
use crate::parent::{ParentReport, train_parent};
use crate::posttrain::{builtin_chats, distill, rl, sft};
use crate::report::{
    Curve, ModelRow, ParetoReport, RunPage, Summary, write_dependency_heatmap, write_pareto, write_run_page,
};
use crate::score::{ComparisonSummary, Reference, Scores, Scoring, compare_items, record_scores};
use crate::search::{SearchInput, SearchSpec, SolverKind, search, sweep};
use crate::source::{TokenSource, Windows};
use crate::tokenizer::Tokenizer;
use crate::train::{RunControl, read_history};
use crate::world::{Split, Task, World};

/// Where a run writes, and whether it shows progress.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `<runs>/<name>/` holds the stages' outputs.
    pub runs_dir: PathBuf,
    /// `<reports>/<name>/index.html` is the report.
    pub reports_dir: PathBuf,
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            runs_dir: "runs".into(),
            reports_dir: "reports".into(),
            progress: true,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub name: String,
    pub run_dir: PathBuf,
    pub report: PathBuf,
    pub stages: Vec<StageLog>,
    pub summary: Summary,
    /// What each stage found, a sentence each (as in the report).
    pub notes: Vec<String>,
}

/// The stages in order, for the `[k/n]` lines.
pub const STAGES: [&str; 12] = [
    "parent", "library", "score", "profile", "search", "assemble", "fuse", "distill", "sft", "rl", "export", "report",
];

#[derive(Serialize, Deserialize)]
struct LibraryResult {
    dir: PathBuf,
    trainable: usize,
    seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct ScoreResult {
    blocks: usize,
    bld: ComparisonSummary,
}

#[derive(Serialize, Deserialize)]
struct ProfileResult {
    /// Per scenario: mean |error| of whole-model latencies predicted from blocks, %.
    calibration: Vec<(String, f64)>,
}

#[derive(Serialize, Deserialize)]
struct SearchResult {
    solutions: PathBuf,
    objective: f64,
    choice: serde_json::Map<String, serde_json::Value>,
    totals: serde_json::Map<String, serde_json::Value>,
    pareto: ParetoReport,
}

#[derive(Serialize, Deserialize)]
struct ModelResult {
    model: PathBuf,
    layers: usize,
    params: usize,
}

#[derive(Serialize, Deserialize)]
struct FuseResult {
    model: PathBuf,
    analysis: PathBuf,
    heatmap: PathBuf,
    /// Fused runs, as parent-layer spans (`a-b`).
    runs: Vec<String>,
    layers: usize,
}

#[derive(Serialize, Deserialize)]
struct DistillResult {
    model: PathBuf,
    before: Scores,
    after: Scores,
    tokens: u64,
    seconds: f64,
    curve: Vec<(f64, f64)>,
}

#[derive(Serialize, Deserialize)]
struct ChatResult {
    model: PathBuf,
    /// Thinking on, off.
    after: [AccuracySummary; 2],
    seconds: f64,
    /// Named curves (SFT: loss per stage; RL: reward, pass rate, KL).
    curves: Vec<(String, Vec<(f64, f64)>)>,
    max_kl: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct ExportResult {
    dir: PathBuf,
    bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct ReportResult {
    page: PathBuf,
    summary: Summary,
    notes: Vec<String>,
}

/// Writes `checkpoint` as a DeciLM directory with the built-in tokenizer, replacing `dir`.
fn write_model(checkpoint: &Checkpoint, dir: &Path, dtype: StoreDtype) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    checkpoint.write_decilm(
        dir,
        ExportOptions {
            dtype,
            ..ExportOptions::default()
        },
    )?;
    crate::world::tokenizer::write_tokenizer(dir)
        .with_context(|| format!("writing the tokenizer into {}", dir.display()))?;
    Ok(())
}

fn read_model(dir: &Path) -> Result<Checkpoint> {
    Ok(Checkpoint::read(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .0)
}

fn model_result(checkpoint: &Checkpoint, dir: &Path) -> ModelResult {
    ModelResult {
        model: dir.to_path_buf(),
        layers: checkpoint.config.num_layers(),
        params: checkpoint.config.num_params(),
    }
}

fn loss_curve(history: &[crate::train::StepLog]) -> Vec<(f64, f64)> {
    history.iter().map(|s| (s.step as f64, s.loss)).collect()
}

fn with_progress(mut control: RunControl, progress: bool) -> RunControl {
    control.progress = progress;
    control
}

/// Runs (or brings up to date) every stage of `pipeline`.
pub fn run_pipeline(pipeline: &Pipeline, options: &RunOptions, device: &Device) -> Result<RunReport> {
    let out = options.runs_dir.join(&pipeline.name);
    let report_dir = options.reports_dir.join(&pipeline.name);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let progress = options.progress;
    let mut stages = Stages::open(&out, STAGES.len(), true)?;
    let data = TokenSource::Builtin {
        seed: pipeline.parent.seed,
    };
    let eval_tasks: Vec<Task> = World::new(pipeline.parent.seed).tasks(Split::HeldOut, pipeline.eval.tasks);

    let parent_options = crate::parent::ParentOptions {
        control: with_progress(pipeline.parent.control, progress),
        ..pipeline.parent.clone()
    };
    let parent_run = out.join("parent-run");
    let parent: ParentReport = stages.run("parent", json!({ "options": &parent_options }), &[&parent_run], || {
        train_parent(&parent_run, &parent_options, device)
    })?;
    let tokenizer = Tokenizer::read(&parent.model_dir.join("tokenizer.json"))?;

    let library_dir = out.join("library");
    let space = std::fs::read_to_string(&pipeline.library.space)
        .with_context(|| format!("reading {}", pipeline.library.space.display()))?;
    let library_result: LibraryResult = stages.run(
        "library",
        json!({ "parent": stages.id("parent"), "space": space, "tokens": pipeline.library.tokens }),
        &[&library_dir],
        || {
            let mut build = BuildOptions {
                progress,
                ..BuildOptions::new(&parent.model_dir, &pipeline.library.space, data.clone())
            };
            build.bld.tokens = pipeline.library.tokens;
            let report = build_library(&library_dir, &build, device)?;
            Ok(LibraryResult {
                dir: library_dir.clone(),
                trainable: report.trainable,
                seconds: report.seconds,
            })
        },
    )?;

    let score: ScoreResult = stages.run(
        "score",
        json!({ "library": stages.id("library"), "windows": pipeline.score_windows }),
        &[],
        || {
            let library = Library::open(&library_dir)?;
            let scoring = Scoring::new(&library, None, &data, None, pipeline.score_windows, device)?;
            let (bld, _) = compare_items(&library, &scoring, progress)?;
            let rows = scoring.score(&library, &library.candidates(), Stage::Trained, progress)?;
            record_scores(&library_dir, &rows)?;
            Ok(ScoreResult {
                blocks: rows.len(),
                bld,
            })
        },
    )?;

    let profile_settings = &pipeline.profile;
    let constraints = &pipeline.search.constraints;
    let profile_options = ProfileOptions {
        target: pipeline.search.target.clone(),
        precision: constraints.target.dtype,
        scenarios: constraints.needed_scenarios(),
        repeats: profile_settings.repeats,
        calibration_models: profile_settings.calibration_models,
        progress,
    };
    let profile: ProfileResult = stages.run(
        "profile",
        json!({
            "library": stages.id("library"),
            "target": profile_options.target.name(),
            "precision": profile_options.precision,
            "scenarios": &profile_options.scenarios,
            "repeats": profile_settings.repeats,
            "calibration_models": profile_settings.calibration_models,
        }),
        &[],
        || {
            let library = Library::open(&library_dir)?;
            let report = profile_library(&library, &profile_options, device)?;
            Ok(ProfileResult {
                calibration: report
                    .calibration
                    .iter()
                    .map(|c| (c.latency.scenario.to_string(), c.mean_abs_error_pct))
                    .collect(),
            })
        },
    )?;

    let constraints_text = std::fs::read_to_string(&constraints.path)
        .with_context(|| format!("reading {}", constraints.path.display()))?;
    let pareto_dir = out.join("pareto");
    let searched: SearchResult = stages.run(
        "search",
        json!({
            "score": stages.id("score"),
            "profile": stages.id("profile"),
            "constraints": constraints_text,
            "sweep": &pipeline.search.sweep,
        }),
        &[&pareto_dir],
        || {
            let input = SearchInput::open(&library_dir)?;
            let spec = SearchSpec::from_file(constraints.clone(), SolverKind::Cbc);
            let report = search(&input, &spec)?;
            let solutions = out.join("solutions.json");
            std::fs::write(&solutions, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", solutions.display()))?;
            let points = sweep(&input, &spec, &pipeline.search.sweep, progress)?;
            let pareto = write_pareto(&pareto_dir, &pipeline.search.sweep, &points)?;
            let best = report
                .solutions
                .first()
                .with_context(|| format!("{} allows no child", constraints.path.display()))?;
            Ok(SearchResult {
                solutions,
                objective: best.objective,
                choice: best.choice.clone(),
                totals: best.totals.clone(),
                pareto,
            })
        },
    )?;

    let child_dir = out.join("child");
    let assembled: ModelResult = stages.run("assemble", json!({ "search": stages.id("search") }), &[], || {
        let library = Library::open(&library_dir)?;
        let spans = choice_from_json(&searched.choice).map_err(anyhow::Error::msg)?;
        let child = library.assemble_spans(&library.parent(None)?, &spans)?;
        write_model(&child, &child_dir, StoreDtype::F32)?;
        Ok(model_result(&child, &child_dir))
    })?;

    let teacher = read_model(&parent.model_dir)?;
    let teacher_model = teacher.build(device)?;
    let held_out = |count: usize| -> Result<Windows> {
        Ok(data.windows(&teacher_model, None, pipeline.distill.seq_len + 1, 2048, count)?)
    };
    let fuse_dir = out.join("fuse");
    let fused: FuseResult = stages.run(
        "fuse",
        json!({
            "assemble": stages.id("assemble"),
            "max_dependency": pipeline.fuse.max_dependency,
            "windows": pipeline.fuse.windows,
        }),
        &[&fuse_dir],
        || {
            let child = read_model(&child_dir)?;
            let windows = held_out(pipeline.fuse.windows)?;
            let inputs: Vec<Vec<u32>> = windows.held_out.iter().map(|w| w[..w.len() - 1].to_vec()).collect();
            let analysis = analyze(&child.build(device)?, &inputs, pipeline.fuse.max_dependency)?;
            let analysis_dir = fuse_dir.join("analysis");
            write_analysis(&analysis_dir, &analysis)?;
            let heatmap = analysis_dir.join("dependency");
            write_dependency_heatmap(&heatmap, &analysis.matrix.values).map_err(anyhow::Error::msg)?;
            let spans: Vec<_> = analysis.chosen.iter().map(|r| r.span()).collect();
            let model_dir = fuse_dir.join("model");
            let result = fuse_runs(&child, &spans)?;
            write_model(&result, &model_dir, StoreDtype::F32)?;
            Ok(FuseResult {
                model: model_dir,
                analysis: analysis_dir,
                heatmap: heatmap.with_extension("svg"),
                runs: spans.iter().map(ToString::to_string).collect(),
                layers: result.config.num_layers(),
            })
        },
    )?;

    let distill_dir = out.join("distill");
    let distill_options = crate::posttrain::DistillOptions {
        control: with_progress(pipeline.distill.control, progress),
        ..pipeline.distill.clone()
    };
    let distilled: DistillResult = stages.run(
        "distill",
        json!({ "fuse": stages.id("fuse"), "options": &distill_options }),
        &[&distill_dir],
        || {
            let student = read_model(&fused.model)?;
            let windows = held_out(32)?;
            let (model, report) = distill(
                &student,
                &teacher_model,
                &windows,
                &distill_options,
                &distill_dir.join("train"),
            )?;
            anyhow::ensure!(report.finished, "distillation stopped early");
            let model_dir = distill_dir.join("model");
            write_model(&model, &model_dir, StoreDtype::F32)?;
            Ok(DistillResult {
                model: model_dir,
                before: report.before,
                after: report.after,
                tokens: report.tokens_seen,
                seconds: report.seconds,
                curve: loss_curve(&report.history),
            })
        },
    )?;

    let sft_dir = out.join("sft");
    let sft_options = crate::posttrain::SftOptions {
        control: with_progress(pipeline.sft.control, progress),
        ..pipeline.sft.clone()
    };
    let sft_chats = 20_000;
    let tuned: ChatResult = stages.run(
        "sft",
        json!({ "distill": stages.id("distill"), "options": &sft_options, "chats": sft_chats, "eval": eval_tasks.len() }),
        &[&sft_dir],
        || {
            let start = read_model(&distilled.model)?;
            let chats = builtin_chats(pipeline.parent.seed, sft_chats);
            let (model, report) = sft(&start, &chats, &tokenizer, &sft_options, &sft_dir.join("train"), device)?;
            anyhow::ensure!(report.finished, "SFT stopped early");
            let model_dir = sft_dir.join("model");
            write_model(&model, &model_dir, StoreDtype::F32)?;
            let seconds = report.stages.iter().map(|s| s.seconds).sum();
            Ok(ChatResult {
                after: accuracy(&model, &tokenizer, &eval_tasks, device)?,
                model: model_dir,
                seconds,
                curves: report
                    .stages
                    .iter()
                    .enumerate()
                    .scan(0.0, |offset, (k, s)| {
                        // Stages follow one another: each stage's steps continue the previous one's.
                        let curve = loss_curve(&s.history).into_iter().map(|(x, y)| (x + *offset, y)).collect();
                        *offset += s.steps as f64;
                        Some((format!("SFT stage {} ({:?} chats)", k + 1, s.chats).to_lowercase(), curve))
                    })
                    .collect(),
                max_kl: None,
            })
        },
    )?;

    let rl_dir = out.join("rl");
    let rl_options = crate::posttrain::RlOptions {
        control: with_progress(pipeline.rl.options.control, progress),
        ..pipeline.rl.options.clone()
    };
    let reinforced: ChatResult = stages.run(
        "rl",
        json!({ "sft": stages.id("sft"), "options": &rl_options, "survey": pipeline.rl.survey_tasks, "eval": eval_tasks.len() }),
        &[&rl_dir],
        || {
            let start = read_model(&tuned.model)?;
            let tasks = World::new(pipeline.parent.seed).tasks(Split::Train, pipeline.rl.survey_tasks);
            let (model, report) = rl(&start, &tasks, &tokenizer, &rl_options, &rl_dir.join("train"), device)?;
            anyhow::ensure!(report.finished, "RL stopped early");
            let model_dir = rl_dir.join("model");
            write_model(&model, &model_dir, StoreDtype::F32)?;
            let by_round = |value: fn(&crate::posttrain::RlStepLog) -> f64| -> Vec<(f64, f64)> {
                report.history.iter().map(|s| (s.step as f64, value(s))).collect()
            };
            Ok(ChatResult {
                after: accuracy(&model, &tokenizer, &eval_tasks, device)?,
                model: model_dir,
                seconds: report.seconds,
                curves: vec![
                    ("GRPO reward".into(), by_round(|s| s.reward)),
                    ("GRPO pass rate".into(), by_round(|s| s.accuracy)),
                    ("GRPO KL to the start".into(), by_round(|s| s.kl)),
                ],
                max_kl: Some(report.max_kl),
            })
        },
    )?;

    let export_dir = out.join("export");
    let exported: ExportResult =
        stages.run("export", json!({ "rl": stages.id("rl"), "dtype": "bf16" }), &[], || {
            let model = read_model(&reinforced.model)?;
            write_model(&model, &export_dir, StoreDtype::Bf16)?;
            Ok(ExportResult {
                dir: export_dir.clone(),
                bytes: folder_bytes(&export_dir)?,
            })
        })?;

    let stage_rows: Vec<(String, f64)> = stages.log.iter().map(|l| (l.stage.clone(), l.work_seconds)).collect();
    let page: ReportResult = stages.run(
        "report",
        json!({ "export": stages.id("export"), "rounds": pipeline.eval.request_rounds }),
        &[&report_dir],
        || {
            let assembled_checkpoint = read_model(&assembled.model)?;
            let distilled_checkpoint = read_model(&distilled.model)?;
            let final_checkpoint = read_model(&reinforced.model)?;
            let models = [
                &teacher,
                &assembled_checkpoint,
                &distilled_checkpoint,
                &final_checkpoint,
            ];
            let built = models.iter().map(|c| c.build(device)).collect::<Result<Vec<_>, _>>()?;
            let timings = time_requests(&built, pipeline.eval.request_rounds)?;
            let reference = Reference::new(&teacher_model, &held_out(32)?.held_out)?;
            let accuracies = [
                [parent.thinking_on.clone(), parent.thinking_off.clone()],
                accuracy(&assembled_checkpoint, &tokenizer, &eval_tasks, device)?,
                accuracy(&distilled_checkpoint, &tokenizer, &eval_tasks, device)?,
                reinforced.after.clone(),
            ];
            let labels = [
                "parent",
                "child, assembled",
                "child, distilled",
                "child, after SFT + GRPO",
            ];
            let mut rows = Vec::new();
            for (k, (label, checkpoint)) in labels.iter().zip(models).enumerate() {
                let accuracy = &accuracies[k];
                rows.push(ModelRow {
                    model: label.to_string(),
                    layers: checkpoint.config.num_layers(),
                    params: checkpoint.config.num_params(),
                    kv_bytes_per_token: model_kv_bytes_per_token(&checkpoint.config, Precision::Bf16),
                    request_ms: timings[k],
                    speedup: timings[0] / timings[k],
                    kl_to_parent: reference.score_model(&built[k])?.kl_div,
                    accuracy_on: accuracy[0].accuracy,
                    accuracy_off: accuracy[1].accuracy,
                });
            }
            let summary = Summary {
                rows,
                eval_tasks: eval_tasks.len(),
                request: "prompt 128 + 128 generated tokens, batch 1, this machine's CPU".into(),
            };
            let mut curves = vec![Curve {
                title: "parent training loss".into(),
                y_label: "loss".into(),
                series: vec![("parent".into(), loss_curve(&read_history(&parent_run.join("train"))?))],
            }];
            curves.push(Curve {
                title: "global distillation loss".into(),
                y_label: "loss".into(),
                series: vec![("distillation".into(), distilled.curve.clone())],
            });
            curves.push(Curve {
                title: "SFT loss (assistant tokens)".into(),
                y_label: "loss".into(),
                series: tuned.curves.clone(),
            });
            let (kl, rewards): (Vec<_>, Vec<_>) = reinforced
                .curves
                .iter()
                .cloned()
                .partition(|(name, _)| name.contains("KL"));
            curves.push(Curve {
                title: "GRPO reward and pass rate per step".into(),
                y_label: "mean over the round's samples".into(),
                series: rewards,
            });
            curves.push(Curve {
                title: "GRPO KL to the starting model".into(),
                y_label: "KL per reply token (k3)".into(),
                series: kl,
            });
            let mut notes = vec![parent_note(&parent), library_result.note(), score.note()];
            notes.extend(profile.notes());
            notes.extend([
                searched.note(),
                fused.note(),
                distilled.note(),
                tuned.note("SFT"),
                reinforced.note("GRPO"),
                exported.note(),
            ]);
            let page = write_run_page(
                &report_dir,
                &RunPage {
                    name: &pipeline.name,
                    summary: &summary,
                    stages: &stage_rows,
                    parent: &teacher.config,
                    child: &final_checkpoint.config,
                    child_spans: &final_checkpoint.layer_spans(),
                    fused_runs: &fused.runs,
                    pareto_plots: &searched.pareto.plots,
                    heatmap: &fused.heatmap,
                    curves: &curves,
                    notes: &notes,
                },
            )?;
            Ok(ReportResult { page, summary, notes })
        },
    )?;
    Ok(RunReport {
        name: pipeline.name.clone(),
        run_dir: out,
        report: page.page,
        stages: stages.log,
        summary: page.summary,
        notes: page.notes,
    })
}

fn accuracy(
    model: &Checkpoint,
    tokenizer: &Tokenizer,
    tasks: &[Task],
    device: &Device,
) -> Result<[AccuracySummary; 2]> {
    let [on, off] = switch_accuracy(&model.build(device)?, tokenizer, tasks)?;
    Ok([AccuracySummary::from(&on), AccuracySummary::from(&off)])
}

/// Median whole-request times (ms), the models interleaved round by round.
fn time_requests(models: &[Llama], rounds: usize) -> Result<Vec<f64>> {
    let runners = models
        .iter()
        .map(|m| request_runner(m, 1, 128, 128))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(time_interleaved(&runners, rounds).iter().map(|t| t.median_ms).collect())
}

fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

fn parent_note(parent: &ParentReport) -> String {
    format!(
        "Parent: {} layers, {:.2}M parameters, {} steps in {:.0} s; held-out NLL {:.4} nats/token against the corpus's unigram entropy {:.4}.",
        parent.layers,
        parent.params as f64 / 1e6,
        parent.steps,
        parent.train_seconds,
        parent.held_out_nll,
        parent.unigram_entropy
    )
}

impl LibraryResult {
    fn note(&self) -> String {
        format!(
            "Block library in {}: {} items trained by blockwise local distillation in {:.0} s.",
            self.dir.display(),
            self.trainable,
            self.seconds
        )
    }
}

impl ScoreResult {
    fn note(&self) -> String {
        let bld = &self.bld;
        format!(
            "BLD lowered held-out nMSE for {}/{} trained items and replace-1-block KL for {}/{}; {} blocks scored.",
            bld.nmse_lower_after_bld, bld.trainable, bld.kl_lower_after_bld, bld.trainable, self.blocks
        )
    }
}

impl ProfileResult {
    fn notes(&self) -> Vec<String> {
        self.calibration
            .iter()
            .map(|(scenario, error)| {
                format!("Latency, {scenario}: whole models predicted from their blocks within {error:.1}% on average.")
            })
            .collect()
    }
}

impl SearchResult {
    fn note(&self) -> String {
        let totals: Vec<String> = self
            .totals
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_f64().map_or(v.to_string(), |x| format!("{x:.4}"))))
            .collect();
        format!("Search (CBC): objective {:.5}; {}.", self.objective, totals.join(", "))
    }
}

impl FuseResult {
    fn note(&self) -> String {
        if self.runs.is_empty() {
            "Fusion: no run of consecutive attention-free layers qualifies; the child is not fused.".into()
        } else {
            format!(
                "Fusion: runs {} fused; {} blocks remain.",
                self.runs.join(", "),
                self.layers
            )
        }
    }
}

impl DistillResult {
    fn note(&self) -> String {
        format!(
            "Distillation ({} tokens, {:.0} s): held-out KL to the parent {:.4} → {:.4}.",
            self.tokens, self.seconds, self.before.kl_div, self.after.kl_div
        )
    }
}

impl ChatResult {
    fn note(&self, stage: &str) -> String {
        let kl = self.max_kl.map_or(String::new(), |kl| {
            format!("; largest KL to its start {kl:.4} per token")
        });
        format!(
            "{stage} ({:.0} s): accuracy thinking on {:.1}%, off {:.1}%, answer format {:.1}% / {:.1}%{kl}.",
            self.seconds,
            100.0 * self.after[0].accuracy,
            100.0 * self.after[1].accuracy,
            100.0 * self.after[0].format_ok,
            100.0 * self.after[1].format_ok
        )
    }
}

impl ExportResult {
    fn note(&self) -> String {
        format!(
            "Export: DeciLM, bf16, {:.1} MB in {}.",
            self.bytes as f64 / 1e6,
            self.dir.display()
        )
    }
}
