//! The fuse stage as one call (`tessera fuse analyze|apply`, `tessera run`, notebooks): the
//! dependency matrix of a model on held-out windows, written as tables, `analysis.json` and a
//! heat map; and the model with the chosen runs (the automatic choice, or given ones) fused,
//! written with what fusion changed (KL to the unfused model).

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::FusionError;
use super::analysis::{FusionAnalysis, analyze, write_analysis};
use super::apply::fuse_runs;
use super::runs::parse_runs;
use crate::checkpoint::{Checkpoint, CheckpointError, LayerSpan, ModelSummary, StoreDtype, TensorSource};
use crate::memory_budget::Estimate;
use crate::model::ModelConfig;
use crate::score::{Reference, Scores};
use crate::source::{SourceError, WindowSpec};

/// Which runs to fuse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RunChoice {
    /// The longest runs whose largest dependency is at most the threshold (possibly none).
    Auto,
    Given(Vec<LayerSpan>),
}

impl std::str::FromStr for RunChoice {
    type Err = FusionError;

    /// `auto`, or inclusive layer ranges such as `2-4,6-7`.
    fn from_str(text: &str) -> Result<Self, FusionError> {
        match text {
            "auto" => Ok(RunChoice::Auto),
            _ => Ok(RunChoice::Given(parse_runs(text)?)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// Held-out windows the dependencies (and the change fusion makes) are measured on.
    pub windows: WindowSpec,
    /// The automatic choice fuses runs whose largest pairwise dependency is at most this.
    pub max_dependency: f64,
    pub runs: RunChoice,
}

impl Default for FuseOptions {
    fn default() -> Self {
        Self {
            windows: WindowSpec::default(),
            max_dependency: 0.5,
            runs: RunChoice::Auto,
        }
    }
}

/// The peak of fusing a model of `config` measured on `windows`, known before it is read: the
/// model as f32 four times (the checkpoint, the fused one, and both built to compare them) and,
/// on every held-out window, the residual stream before each layer (the dependency analysis)
/// and two models' logits with their log-probabilities.
pub fn fuse_estimate(config: &ModelConfig, windows: &WindowSpec) -> Estimate {
    let params = config.num_params() as u64;
    let tokens = (windows.held_out * windows.seq_len) as u64;
    let per_token = (config.num_layers() as u64 + 1) * config.hidden_size as u64 + 4 * config.vocab_size as u64;
    Estimate::new()
        .with(
            "the model as f32 four times (checkpoint, fused, both built)",
            4 * 4 * params,
        )
        .with(
            format!(
                "{} held-out windows (the stream before each layer, logits)",
                windows.held_out
            ),
            4 * tokens * per_token,
        )
}

/// What to change when fusion does not fit.
pub const FUSE_ADVICE: &str = "fewer held-out windows (--windows) or more memory: fusion holds the model whole";

#[derive(Debug, thiserror::Error)]
pub enum FuseStageError {
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryError),
    #[error(transparent)]
    Fusion(#[from] FusionError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
    #[error(transparent)]
    Forward(#[from] crate::model::ForwardError),
    #[error("{}: {problem}", path.display())]
    Write { path: PathBuf, problem: String },
}

/// What `analyze_fusion` wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnalysisReport {
    pub dir: PathBuf,
    /// The heat map (SVG; a PNG beside it).
    pub heatmap: PathBuf,
    pub analysis: FusionAnalysis,
}

/// Analyses the model at `model` and writes the analysis and its heat map into `out`.
pub fn analyze_fusion(
    model: &Path,
    out: &Path,
    options: &FuseOptions,
    device: &Device,
) -> Result<AnalysisReport, FuseStageError> {
    let (checkpoint, _) = Checkpoint::read(model)?;
    analyze_into(&checkpoint, model, out, options, device)
}

fn analyze_into(
    checkpoint: &Checkpoint,
    model: &Path,
    out: &Path,
    options: &FuseOptions,
    device: &Device,
) -> Result<AnalysisReport, FuseStageError> {
    let built = checkpoint.build(device)?;
    let windows = options.windows.windows(&built, model)?;
    let analysis = analyze(&built, &windows.held_out_inputs(), options.max_dependency)?;
    let write_error = |path: &Path, problem: String| FuseStageError::Write {
        path: path.to_path_buf(),
        problem,
    };
    write_analysis(out, &analysis).map_err(|e| write_error(&e.path, e.problem))?;
    let stem = out.join("dependency");
    crate::plot::write_dependency_heatmap(&stem, analysis.matrix.values.view()).map_err(|e| write_error(&stem, e))?;
    Ok(AnalysisReport {
        dir: out.to_path_buf(),
        heatmap: stem.with_extension("svg"),
        analysis,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FuseReport {
    pub child: ModelSummary,
    /// The unfused model's layers.
    pub layers_before: usize,
    /// Fused runs, as parent-layer spans of the unfused model.
    pub runs: Vec<LayerSpan>,
    /// The analysis (when the runs were chosen automatically).
    pub analysis: Option<AnalysisReport>,
    /// What "parallel instead of sequential" changed: the fused model against the unfused one.
    pub change: Scores,
    pub held_out_windows: usize,
}

/// Fuses the runs `options.runs` names in the model at `model` and writes the result to
/// `out/model` (the analysis, when automatic, to `out/analysis`).
pub fn fuse_model(
    model: &Path,
    out: &Path,
    options: &FuseOptions,
    device: &Device,
) -> Result<FuseReport, FuseStageError> {
    crate::memory_budget::check(
        "fuse",
        &fuse_estimate(&Checkpoint::read_config(model)?, &options.windows),
        FUSE_ADVICE,
    )?;
    let (checkpoint, _) = Checkpoint::read(model)?;
    let (runs, analysis) = match &options.runs {
        RunChoice::Given(spans) => (spans.clone(), None),
        RunChoice::Auto => {
            let report = analyze_into(&checkpoint, model, &out.join("analysis"), options, device)?;
            (report.analysis.chosen.iter().map(|r| r.span()).collect(), Some(report))
        }
    };
    let fused = fuse_runs(&checkpoint, &runs)?;
    let child = fused.write_model_dir(&out.join("model"), StoreDtype::F32, model)?;
    let unfused = checkpoint.build(device)?;
    let windows = options.windows.windows(&unfused, model)?;
    let change = Reference::new(&unfused, &windows.held_out)?.score_model(&fused.build(device)?)?;
    Ok(FuseReport {
        child,
        layers_before: checkpoint.config.num_layers(),
        runs,
        analysis,
        change,
        held_out_windows: windows.held_out.len(),
    })
}

impl std::fmt::Display for AnalysisReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let analysis = &self.analysis;
        let n = analysis.matrix.layers;
        write!(f, "{:>6}", "i \\\\ j")?;
        for j in 0..n {
            write!(f, "{j:>7}")?;
        }
        writeln!(f)?;
        for i in 0..n {
            write!(f, "{i:>6}")?;
            for j in 0..n {
                match j > i {
                    true => write!(f, "{:>7.3}", analysis.matrix.get(i, j))?,
                    false => write!(f, "{:>7}", "")?,
                }
            }
            writeln!(f)?;
        }
        writeln!(f, "{:<8} {:>8} {:>8} {:>7}", "run", "M_max", "M_sum", "chosen")?;
        for run in &analysis.candidates {
            let chosen = analysis.chosen.iter().any(|c| c.span() == run.span());
            writeln!(
                f,
                "{:<8} {:>8.4} {:>8.4} {:>7}",
                run.span().to_string(),
                run.m_max,
                run.m_sum,
                if chosen { "yes" } else { "" }
            )?;
        }
        if analysis.candidates.is_empty() {
            writeln!(
                f,
                "no run to fuse: every layer after the first of a run must have no attention"
            )?;
        }
        writeln!(
            f,
            "wrote {}/{{dependency.csv, dependency.svg, dependency.png, runs.csv, runs.parquet, analysis.json}}",
            self.dir.display()
        )
    }
}

impl std::fmt::Display for FuseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.runs.is_empty() {
            writeln!(
                f,
                "no run qualifies for fusion (see the analysis); the model is written unfused to {}",
                self.child.model.display()
            )?;
        } else {
            let names: Vec<String> = self.runs.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "fused runs [{}]: {} layers -> {}, written to {}",
                names.join(", "),
                self.layers_before,
                self.child.layers,
                self.child.model.display()
            )?;
        }
        write!(
            f,
            "parallel instead of sequential, against the unfused model on {} held-out windows: KL {:.5}, cosine distance of the last hidden state {:.5}",
            self.held_out_windows, self.change.kl_div, self.change.cosine_distance
        )
    }
}
