//! The pipeline file (`pipelines/*.toml`): which run, and the settings of each stage, read and
//! checked before anything runs. `run.name`, `library.space` and `search.constraints` are
//! required; any other section or field left out takes the stage's own default. Paths are
//! relative to the pipeline file. Knows the stages' option types, not how they run.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config_file::toml_location;
use crate::cost::Target;
use crate::parent::ParentOptions;
use crate::posttrain::{DistillLoss, DistillOptions, RlOptions, SftOptions, SftStage};
use crate::search::{ConstraintFile, Sweep};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: {location}: {problem}", path.display())]
    Parse {
        path: PathBuf,
        location: String,
        problem: String,
    },
    #[error("{}: `{field}`: {problem}", path.display())]
    Field {
        path: PathBuf,
        field: &'static str,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    run: RawRun,
    #[serde(default)]
    parent: RawParent,
    library: RawLibrary,
    #[serde(default)]
    score: RawScore,
    #[serde(default)]
    profile: RawProfile,
    search: RawSearch,
    #[serde(default)]
    fuse: RawFuse,
    #[serde(default)]
    distill: RawDistill,
    #[serde(default)]
    sft: RawSft,
    #[serde(default)]
    rl: RawRl,
    #[serde(default)]
    eval: RawEval,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    layers: Option<usize>,
    steps: Option<usize>,
    batch_size: Option<usize>,
    seed: Option<u64>,
    train_tasks: Option<usize>,
    train_stories: Option<usize>,
    eval_stories: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLibrary {
    space: PathBuf,
    tokens: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScore {
    windows: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    repeats: Option<usize>,
    calibration_models: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    constraints: PathBuf,
    sweep: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFuse {
    max_dependency: Option<f64>,
    windows: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistill {
    tokens: Option<usize>,
    loss: Option<DistillLoss>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSft {
    stages: Option<Vec<String>>,
    batch_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRl {
    rounds: Option<usize>,
    survey_tasks: Option<usize>,
    prompts_per_round: Option<usize>,
    group_size: Option<usize>,
    max_new_tokens: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEval {
    tasks: Option<usize>,
    request_rounds: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct LibrarySettings {
    pub space: PathBuf,
    /// BLD training tokens per item.
    pub tokens: usize,
}

/// The profile's target, precision and scenarios are the constraint file's: the costs the
/// search needs.
#[derive(Clone, Debug)]
pub struct ProfileSettings {
    pub repeats: usize,
    pub calibration_models: usize,
}

#[derive(Clone, Debug)]
pub struct SearchSettings {
    pub constraints: ConstraintFile,
    /// Where to measure the costs (the constraint file's hardware).
    pub target: Target,
    pub sweep: Sweep,
}

#[derive(Clone, Debug)]
pub struct FuseSettings {
    /// Runs whose largest pairwise dependency exceeds this are not fused.
    pub max_dependency: f64,
    pub windows: usize,
}

#[derive(Clone, Debug)]
pub struct RlSettings {
    pub options: RlOptions,
    /// Training tasks surveyed for pass rates (RL keeps the unsolved ones).
    pub survey_tasks: usize,
}

#[derive(Clone, Debug)]
pub struct EvalSettings {
    /// Held-out tasks every model's accuracy is measured on.
    pub tasks: usize,
    /// Interleaved rounds when timing the final child against the parent.
    pub request_rounds: usize,
}

/// A checked pipeline: every stage's settings, resolved.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub path: PathBuf,
    pub name: String,
    pub parent: ParentOptions,
    pub library: LibrarySettings,
    pub score_windows: usize,
    pub profile: ProfileSettings,
    pub search: SearchSettings,
    pub fuse: FuseSettings,
    pub distill: DistillOptions,
    pub sft: SftOptions,
    pub rl: RlSettings,
    pub eval: EvalSettings,
}

impl Pipeline {
    pub fn read(path: &Path) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|cause| PipelineError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as if read from `path` (relative paths in it are relative to `path`).
    ///
    /// ```
    /// use std::path::Path;
    /// use tessera::pipeline::Pipeline;
    ///
    /// let error = Pipeline::parse(Path::new("p.toml"), "[run]\nname = \"x\"\n").unwrap_err();
    /// assert_eq!(error.to_string(), "p.toml: line 1: missing field `library`");
    /// ```
    pub fn parse(path: &Path, text: &str) -> Result<Self, PipelineError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| PipelineError::Parse {
            path: path.to_path_buf(),
            location: toml_location(text, &e),
            problem: e.message().to_string(),
        })?;
        let field = |field: &'static str, problem: String| PipelineError::Field {
            path: path.to_path_buf(),
            field,
            problem,
        };
        let positive = |field_name: &'static str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(field(field_name, "must be at least 1".into())),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let split_evenly = |field_name: &'static str, value: usize, micro_batches: usize| {
            if value.is_multiple_of(micro_batches) {
                Ok(())
            } else {
                Err(field(
                    field_name,
                    format!("{value} must be a multiple of {micro_batches} (the micro-batches)"),
                ))
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let existing = |field_name: &'static str, relative: &Path| {
            let resolved = base.join(relative);
            if resolved.is_file() {
                Ok(resolved)
            } else {
                Err(field(field_name, format!("{} is not a file", resolved.display())))
            }
        };

        let name = raw.run.name.trim().to_string();
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(field(
                "run.name",
                format!(
                    "`{}` must be a plain folder name (no slash, not empty, no leading dot)",
                    raw.run.name
                ),
            ));
        }

        let defaults = ParentOptions::default();
        let parent = ParentOptions {
            layers: positive("parent.layers", raw.parent.layers, defaults.layers)?,
            steps: positive("parent.steps", raw.parent.steps, defaults.steps)?,
            batch_size: positive("parent.batch_size", raw.parent.batch_size, defaults.batch_size)?,
            seed: raw.parent.seed.unwrap_or(defaults.seed),
            train_tasks: positive("parent.train_tasks", raw.parent.train_tasks, defaults.train_tasks)?,
            train_stories: positive("parent.train_stories", raw.parent.train_stories, defaults.train_stories)?,
            eval_stories: positive("parent.eval_stories", raw.parent.eval_stories, defaults.eval_stories)?,
            eval_tasks: positive("eval.tasks", raw.eval.tasks, 500)?,
            ..defaults
        };
        split_evenly("parent.batch_size", parent.batch_size, parent.micro_batches)?;

        let library = LibrarySettings {
            space: existing("library.space", &raw.library.space)?,
            tokens: positive("library.tokens", raw.library.tokens, 131_072)?,
        };

        let profile = ProfileSettings {
            repeats: positive("profile.repeats", raw.profile.repeats, 15)?,
            calibration_models: positive("profile.calibration_models", raw.profile.calibration_models, 16)?,
        };

        let sweep_text = raw.search.sweep.unwrap_or_else(|| "throughput_speedup=1..3:9".into());
        let constraints = ConstraintFile::read(&existing("search.constraints", &raw.search.constraints)?)
            .map_err(|e| field("search.constraints", e.to_string()))?;
        let target = constraints
            .target()
            .map_err(|e| field("search.constraints", format!("{}: {e}", constraints.path.display())))?;
        let search = SearchSettings {
            constraints,
            target,
            sweep: sweep_text
                .parse()
                .map_err(|e| field("search.sweep", format!("`{sweep_text}`: {e}")))?,
        };

        let max_dependency = raw.fuse.max_dependency.unwrap_or(0.5);
        if !(max_dependency.is_finite() && max_dependency >= 0.0) {
            return Err(field(
                "fuse.max_dependency",
                format!("must be a cosine distance ≥ 0, got {max_dependency}"),
            ));
        }
        let fuse = FuseSettings {
            max_dependency,
            windows: positive("fuse.windows", raw.fuse.windows, 32)?,
        };

        let distill_defaults = DistillOptions::default();
        let distill = DistillOptions {
            tokens: positive("distill.tokens", raw.distill.tokens, distill_defaults.tokens)?,
            loss: raw.distill.loss.unwrap_or(distill_defaults.loss),
            ..distill_defaults
        };

        let sft_defaults = SftOptions::default();
        let stages = match raw.sft.stages {
            Some(texts) if texts.is_empty() => return Err(field("sft.stages", "at least one stage is needed".into())),
            Some(texts) => texts
                .iter()
                .map(|t| t.parse::<SftStage>().map_err(|e| field("sft.stages", e)))
                .collect::<Result<Vec<_>, _>>()?,
            None => sft_defaults.stages.clone(),
        };
        let sft_batch = positive("sft.batch_size", raw.sft.batch_size, sft_defaults.batch_size)?;
        split_evenly("sft.batch_size", sft_batch, sft_defaults.micro_batches)?;
        let sft = SftOptions {
            stages,
            batch_size: sft_batch,
            ..sft_defaults
        };

        let rl_defaults = RlOptions::default();
        let prompts_per_round = positive(
            "rl.prompts_per_round",
            raw.rl.prompts_per_round,
            rl_defaults.prompts_per_round,
        )?;
        split_evenly("rl.prompts_per_round", prompts_per_round, rl_defaults.micro_batches)?;
        let group_size = positive("rl.group_size", raw.rl.group_size, rl_defaults.group_size)?;
        if group_size < 2 {
            return Err(field(
                "rl.group_size",
                "a group needs at least 2 samples to compare".into(),
            ));
        }
        let rl = RlSettings {
            options: RlOptions {
                rounds: positive("rl.rounds", raw.rl.rounds, rl_defaults.rounds)?,
                prompts_per_round,
                group_size,
                max_new_tokens: positive("rl.max_new_tokens", raw.rl.max_new_tokens, rl_defaults.max_new_tokens)?,
                ..rl_defaults
            },
            survey_tasks: positive("rl.survey_tasks", raw.rl.survey_tasks, 2000)?,
        };

        let eval = EvalSettings {
            tasks: parent.eval_tasks,
            request_rounds: positive("eval.request_rounds", raw.eval.request_rounds, 15)?,
        };

        Ok(Pipeline {
            path: path.to_path_buf(),
            name,
            parent,
            library,
            score_windows: positive("score.windows", raw.score.windows, 32)?,
            profile,
            search,
            fuse,
            distill,
            sft,
            rl,
            eval,
        })
    }
}
