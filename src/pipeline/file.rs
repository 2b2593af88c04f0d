//! The pipeline file (`pipelines/*.toml`): which run, and the settings of each stage, read and
//! checked before anything runs. `run.name`, `library.space` and `search.constraints` are
//! required; any other section or field left out takes the stage's own default. Paths are
//! relative to the pipeline file. Knows the stages' option types, not how they run.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::checkpoint::ExportDtype;
use crate::cluster::SlurmOptions;
use crate::config_file::toml_location;
use crate::cost::Target;
use crate::fusion::FuseOptions;
use crate::library::BldSettings;
use crate::parent::ParentOptions;
use crate::posttrain::{
    DEFAULT_EVAL_TASKS, DEFAULT_RL_TASKS, DistillLoss, DistillOptions, RlOptions, SftOptions, SftStage,
};
use crate::score::ScoreOptions;
use crate::search::{ConstraintFile, Measure, Sweep};

/// Held-out windows the report measures NLL and KL on unless `eval.windows` says otherwise.
pub const DEFAULT_EVAL_WINDOWS: usize = 32;

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
    #[serde(default)]
    data: RawData,
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
    export: RawExport,
    #[serde(default)]
    eval: RawEval,
    #[serde(default)]
    slurm: SlurmOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    checkpoint: Option<PathBuf>,
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
struct RawData {
    text: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    gguf: Option<String>,
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
    /// Rounds of whole requests the chosen child is timed over (0: not timed, no closed loop).
    measure_rounds: Option<usize>,
    re_solves: Option<usize>,
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
    lr: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSft {
    stages: Option<Vec<String>>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRl {
    rounds: Option<usize>,
    survey_tasks: Option<usize>,
    direct_tasks: Option<bool>,
    prompts_per_round: Option<usize>,
    group_size: Option<usize>,
    max_new_tokens: Option<usize>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEval {
    text: Option<PathBuf>,
    windows: Option<usize>,
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
    /// The closed loop (a `cpu` target only: the child is timed on this machine).
    pub measure: Option<Measure>,
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
    /// Also one-step tasks asked with thinking off (default), beside the multi-step ones asked
    /// with it on.
    pub direct_tasks: bool,
}

/// Where the parent comes from.
#[derive(Clone, Debug)]
pub enum ParentSource {
    /// Trained here on the built-in world, as `Pipeline::parent` says.
    Train,
    /// A pretrained checkpoint (directory, GGUF or llama2.c file), taken as it is.
    Checkpoint(PathBuf),
}

#[derive(Clone, Debug)]
pub struct EvalSettings {
    /// Held-out tasks every model's accuracy is measured on.
    pub tasks: usize,
    /// Interleaved rounds when timing the final child against the parent.
    pub request_rounds: usize,
    /// The text whose held-out windows the report measures NLL and KL on (default: `data`).
    pub text: Option<PathBuf>,
    /// How many of its held-out windows.
    pub windows: usize,
}

/// A checked pipeline: every stage's settings, resolved.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub path: PathBuf,
    pub name: String,
    pub parent_source: ParentSource,
    /// The built-in world's seed, the number of held-out tasks and, when the parent is trained
    /// here, how.
    pub parent: ParentOptions,
    /// The text BLD, scoring, fusion and distillation read (default: the built-in world).
    pub text: Option<PathBuf>,
    pub library: LibrarySettings,
    pub score_windows: usize,
    pub profile: ProfileSettings,
    pub search: SearchSettings,
    pub fuse: FuseSettings,
    pub distill: DistillOptions,
    pub sft: SftOptions,
    pub rl: RlSettings,
    pub eval: EvalSettings,
    /// Besides the DeciLM export, a GGUF file of this tensor type.
    pub export_gguf: Option<ExportDtype>,
    /// How library, score and profile tasks are asked of Slurm when the run goes through it.
    pub slurm: SlurmOptions,
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
        let check = Checker { path };
        let name = raw.run.name.trim().to_string();
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(check.field(
                "run.name",
                format!(
                    "`{}` must be a plain folder name (no slash, not empty, no leading dot)",
                    raw.run.name
                ),
            ));
        }
        let parent = check.parent(&raw.parent, &raw.eval)?;
        let parent_source = match &raw.parent.checkpoint {
            Some(checkpoint) => check.pretrained_parent(&raw.parent, checkpoint)?,
            None => ParentSource::Train,
        };
        Ok(Pipeline {
            path: path.to_path_buf(),
            name,
            parent_source,
            text: raw
                .data
                .text
                .as_ref()
                .map(|t| check.existing("data.text", t))
                .transpose()?,
            export_gguf: raw
                .export
                .gguf
                .as_ref()
                .map(|t| t.parse().map_err(|e| check.field("export.gguf", format!("`{t}`: {e}"))))
                .transpose()?,
            library: LibrarySettings {
                space: check.existing("library.space", &raw.library.space)?,
                tokens: check.positive("library.tokens", raw.library.tokens, BldSettings::default().tokens)?,
            },
            score_windows: check.positive("score.windows", raw.score.windows, ScoreOptions::default().windows)?,
            profile: ProfileSettings {
                repeats: check.positive("profile.repeats", raw.profile.repeats, 15)?,
                calibration_models: check.positive("profile.calibration_models", raw.profile.calibration_models, 16)?,
            },
            search: check.search(&raw.search)?,
            fuse: check.fuse(&raw.fuse)?,
            distill: DistillOptions {
                tokens: check.positive("distill.tokens", raw.distill.tokens, DistillOptions::default().tokens)?,
                loss: raw.distill.loss.unwrap_or(DistillOptions::default().loss),
                peak_lr: check.rate("distill.lr", raw.distill.lr, DistillOptions::default().peak_lr)?,
                ..DistillOptions::default()
            },
            sft: check.sft(&raw.sft)?,
            rl: check.rl(&raw.rl)?,
            eval: EvalSettings {
                tasks: parent.eval_tasks,
                request_rounds: check.positive("eval.request_rounds", raw.eval.request_rounds, 15)?,
                text: raw
                    .eval
                    .text
                    .as_ref()
                    .map(|t| check.existing("eval.text", t))
                    .transpose()?,
                windows: check.positive("eval.windows", raw.eval.windows, DEFAULT_EVAL_WINDOWS)?,
            },
            slurm: check.slurm(raw.slurm)?,
            parent,
        })
    }
}

/// Checks the fields of one pipeline file, naming the file and the field in every error.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn field(&self, field: &'static str, problem: String) -> PipelineError {
        PipelineError::Field {
            path: self.path.to_path_buf(),
            field,
            problem,
        }
    }

    fn positive(&self, field: &'static str, value: Option<usize>, default: usize) -> Result<usize, PipelineError> {
        match value {
            Some(0) => Err(self.field(field, "must be at least 1".into())),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }

    /// A learning rate: finite and above zero.
    fn rate(&self, field: &'static str, value: Option<f64>, default: f64) -> Result<f64, PipelineError> {
        match value {
            Some(v) if !(v.is_finite() && v > 0.0) => {
                Err(self.field(field, format!("a learning rate must be above 0, got {v}")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }

    fn split_evenly(&self, field: &'static str, value: usize, micro_batches: usize) -> Result<(), PipelineError> {
        if value.is_multiple_of(micro_batches) {
            Ok(())
        } else {
            Err(self.field(
                field,
                format!("{value} must be a multiple of {micro_batches} (the micro-batches)"),
            ))
        }
    }

    fn resolve(&self, relative: &Path) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(relative)
    }

    /// A file named relative to the pipeline file.
    fn existing(&self, field: &'static str, relative: &Path) -> Result<PathBuf, PipelineError> {
        let resolved = self.resolve(relative);
        if resolved.is_file() {
            Ok(resolved)
        } else {
            Err(self.field(field, format!("{} is not a file", resolved.display())))
        }
    }

    /// `parent.checkpoint`: a file or directory that exists, and no training field beside it.
    fn pretrained_parent(&self, raw: &RawParent, checkpoint: &Path) -> Result<ParentSource, PipelineError> {
        let training = [
            ("layers", raw.layers.is_some()),
            ("steps", raw.steps.is_some()),
            ("batch_size", raw.batch_size.is_some()),
            ("train_tasks", raw.train_tasks.is_some()),
            ("train_stories", raw.train_stories.is_some()),
            ("eval_stories", raw.eval_stories.is_some()),
        ];
        if let Some((name, _)) = training.iter().find(|(_, set)| *set) {
            return Err(self.field(
                "parent.checkpoint",
                format!("a pretrained parent is not trained here: remove `parent.{name}`"),
            ));
        }
        let resolved = self.resolve(checkpoint);
        if resolved.exists() {
            Ok(ParentSource::Checkpoint(resolved))
        } else {
            Err(self.field("parent.checkpoint", format!("{} does not exist", resolved.display())))
        }
    }

    /// `[slurm]`, its binary relative to the pipeline file.
    fn slurm(&self, raw: SlurmOptions) -> Result<SlurmOptions, PipelineError> {
        raw.check().map_err(|e| self.field("slurm", e.to_string()))?;
        let binary = raw
            .binary
            .as_ref()
            .map(|b| self.path.parent().unwrap_or(Path::new(".")).join(b));
        Ok(SlurmOptions { binary, ..raw })
    }

    fn parent(&self, raw: &RawParent, eval: &RawEval) -> Result<ParentOptions, PipelineError> {
        let defaults = ParentOptions::default();
        let parent = ParentOptions {
            layers: self.positive("parent.layers", raw.layers, defaults.layers)?,
            steps: self.positive("parent.steps", raw.steps, defaults.steps)?,
            batch_size: self.positive("parent.batch_size", raw.batch_size, defaults.batch_size)?,
            seed: raw.seed.unwrap_or(defaults.seed),
            train_tasks: self.positive("parent.train_tasks", raw.train_tasks, defaults.train_tasks)?,
            train_stories: self.positive("parent.train_stories", raw.train_stories, defaults.train_stories)?,
            eval_stories: self.positive("parent.eval_stories", raw.eval_stories, defaults.eval_stories)?,
            eval_tasks: self.positive("eval.tasks", eval.tasks, DEFAULT_EVAL_TASKS)?,
            ..defaults
        };
        self.split_evenly("parent.batch_size", parent.batch_size, parent.micro_batches)?;
        Ok(parent)
    }

    fn search(&self, raw: &RawSearch) -> Result<SearchSettings, PipelineError> {
        let sweep_text = raw.sweep.clone().unwrap_or_else(|| "throughput_speedup=1..3:9".into());
        let constraints = ConstraintFile::read(&self.existing("search.constraints", &raw.constraints)?)
            .map_err(|e| self.field("search.constraints", e.to_string()))?;
        let target = constraints
            .target()
            .map_err(|e| self.field("search.constraints", format!("{}: {e}", constraints.path.display())))?;
        let defaults = Measure::default();
        let measure = match (&target, raw.measure_rounds.unwrap_or(defaults.rounds)) {
            (_, 0) => None,
            (Target::Cpu, rounds) => Some(Measure {
                rounds,
                re_solves: raw.re_solves.unwrap_or(defaults.re_solves),
            }),
            (Target::Gpu(hw), _) if raw.measure_rounds.is_some() || raw.re_solves.is_some() => {
                return Err(self.field(
                    "search.measure_rounds",
                    format!(
                        "the chosen child is timed on this machine's CPU, but the constraint file targets {}",
                        hw.name
                    ),
                ));
            }
            (Target::Gpu(_), _) => None,
        };
        Ok(SearchSettings {
            constraints,
            target,
            measure,
            sweep: sweep_text
                .parse()
                .map_err(|e| self.field("search.sweep", format!("`{sweep_text}`: {e}")))?,
        })
    }

    fn fuse(&self, raw: &RawFuse) -> Result<FuseSettings, PipelineError> {
        let defaults = FuseOptions::default();
        let max_dependency = raw.max_dependency.unwrap_or(defaults.max_dependency);
        if !(max_dependency.is_finite() && max_dependency >= 0.0) {
            return Err(self.field(
                "fuse.max_dependency",
                format!("must be a cosine distance ≥ 0, got {max_dependency}"),
            ));
        }
        Ok(FuseSettings {
            max_dependency,
            windows: self.positive("fuse.windows", raw.windows, defaults.windows.held_out)?,
        })
    }

    fn sft(&self, raw: &RawSft) -> Result<SftOptions, PipelineError> {
        let defaults = SftOptions::default();
        let stages = match &raw.stages {
            Some(texts) if texts.is_empty() => {
                return Err(self.field("sft.stages", "at least one stage is needed".into()));
            }
            Some(texts) => texts
                .iter()
                .map(|t| t.parse::<SftStage>().map_err(|e| self.field("sft.stages", e)))
                .collect::<Result<Vec<_>, _>>()?,
            None => defaults.stages.clone(),
        };
        let batch_size = self.positive("sft.batch_size", raw.batch_size, defaults.batch_size)?;
        self.split_evenly("sft.batch_size", batch_size, defaults.micro_batches)?;
        Ok(SftOptions {
            stages,
            batch_size,
            peak_lr: self.rate("sft.lr", raw.lr, defaults.peak_lr)?,
            seed: raw.seed.unwrap_or(defaults.seed),
            ..defaults
        })
    }

    fn rl(&self, raw: &RawRl) -> Result<RlSettings, PipelineError> {
        let defaults = RlOptions::default();
        let prompts_per_round = self.positive(
            "rl.prompts_per_round",
            raw.prompts_per_round,
            defaults.prompts_per_round,
        )?;
        self.split_evenly("rl.prompts_per_round", prompts_per_round, defaults.micro_batches)?;
        let group_size = self.positive("rl.group_size", raw.group_size, defaults.group_size)?;
        if group_size < 2 {
            return Err(self.field("rl.group_size", "a group needs at least 2 samples to compare".into()));
        }
        Ok(RlSettings {
            options: RlOptions {
                rounds: self.positive("rl.rounds", raw.rounds, defaults.rounds)?,
                prompts_per_round,
                group_size,
                max_new_tokens: self.positive("rl.max_new_tokens", raw.max_new_tokens, defaults.max_new_tokens)?,
                seed: raw.seed.unwrap_or(defaults.seed),
                ..defaults
            },
            survey_tasks: self.positive("rl.survey_tasks", raw.survey_tasks, DEFAULT_RL_TASKS)?,
            direct_tasks: raw.direct_tasks.unwrap_or(true),
        })
    }
}
