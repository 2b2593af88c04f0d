//! The options each stage runs with under a pipeline file: what `tessera run` passes to the
//! stage functions, and what a notebook passes to run the same pipeline stage by stage. One
//! place turns the file's settings into stage options; knows the stages' option types and the
//! folder each stage writes in a run, not how the stages work.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::file::{ParentSource, Pipeline, PipelineError};
use crate::assemble::AssembleOptions;
use crate::checkpoint::{ExportDtype, ExportFormat, ExportRequest};
use crate::cost::ProfileOptions;
use crate::eval::TaskSet;
use crate::fusion::{FuseOptions, RunChoice};
use crate::library::BuildOptions;
use crate::parent::ParentEval;
use crate::posttrain::{
    ChatEval, ChatSource, DEFAULT_SFT_TASKS, DEFAULT_TRAIN_WINDOWS, DistillOptions, DistillStageOptions, PromptSet,
    RlOptions, SftOptions,
};
use crate::report::RunEval;
use crate::score::{ScoreMetric, ScoreOptions};
use crate::search::{SearchSpec, SolverKind};
use crate::source::{TokenSource, WindowSpec};
use crate::world::{Split, TaskKind, Thinking};

/// Held-out windows distillation measures KL on.
const DISTILL_KL_WINDOWS: usize = 32;

/// Where each stage of a run writes: one folder per stage under the run's folder.
#[derive(Clone, Debug)]
pub struct RunDirs {
    pub root: PathBuf,
}

impl RunDirs {
    pub fn new(runs_dir: &Path, pipeline: &Pipeline) -> Self {
        Self {
            root: runs_dir.join(&pipeline.name),
        }
    }

    pub fn parent(&self) -> PathBuf {
        self.root.join("parent-run")
    }
    pub fn library(&self) -> PathBuf {
        self.root.join("library")
    }
    pub fn solutions(&self) -> PathBuf {
        self.root.join("solutions.json")
    }
    pub fn pareto(&self) -> PathBuf {
        self.root.join("pareto")
    }
    pub fn child(&self) -> PathBuf {
        self.root.join("child")
    }
    pub fn fuse(&self) -> PathBuf {
        self.root.join("fuse")
    }
    pub fn distill(&self) -> PathBuf {
        self.root.join("distill")
    }
    pub fn sft(&self) -> PathBuf {
        self.root.join("sft")
    }
    pub fn rl(&self) -> PathBuf {
        self.root.join("rl")
    }
    pub fn export(&self) -> PathBuf {
        self.root.join("export")
    }
    pub fn gguf_dir(&self) -> PathBuf {
        self.root.join("gguf")
    }
    pub fn gguf(&self) -> PathBuf {
        self.gguf_dir().join("child.gguf")
    }
}

impl Pipeline {
    /// The text every stage after the parent reads: `data.text`, else the built-in world of the
    /// parent's seed.
    pub fn data(&self) -> TokenSource {
        match &self.text {
            Some(path) => TokenSource::Text { path: path.clone() },
            None => TokenSource::Builtin { seed: self.parent.seed },
        }
    }

    /// `count` held-out windows of the distillation's length from [`Self::data`].
    pub fn windows(&self, count: usize) -> WindowSpec {
        self.windows_of(self.data(), count)
    }

    fn windows_of(&self, data: TokenSource, count: usize) -> WindowSpec {
        WindowSpec {
            data,
            tokenizer: None,
            seq_len: self.distill.seq_len,
            held_out: count,
            train: DEFAULT_TRAIN_WINDOWS,
        }
    }

    /// The held-out windows the report measures every model's NLL and KL on: `eval.text`'s,
    /// else [`Self::data`]'s.
    pub fn eval_windows(&self) -> WindowSpec {
        let data = match &self.eval.text {
            Some(path) => TokenSource::Text { path: path.clone() },
            None => self.data(),
        };
        self.windows_of(data, self.eval.windows)
    }

    /// How a pretrained parent is measured (a trained one is measured by its training).
    pub fn parent_eval(&self) -> ParentEval {
        ParentEval {
            windows: self.eval_windows(),
            tasks: self.eval_tasks(TaskKind::Chains),
            direct: Some(self.eval_tasks(TaskKind::OneStep)),
        }
    }

    pub fn parent_options(&self, progress: bool) -> crate::parent::ParentOptions {
        crate::parent::ParentOptions {
            control: self.parent.control.with_progress(progress),
            ..self.parent.clone()
        }
    }

    pub fn build_options(&self, parent_model: &Path, progress: bool) -> BuildOptions {
        let mut options = BuildOptions {
            progress,
            ..BuildOptions::new(parent_model, &self.library.space, self.data())
        };
        options.bld.tokens = self.library.tokens;
        options
    }

    /// Every block of the space, and the library's items before and after BLD.
    pub fn score_options(&self, progress: bool) -> ScoreOptions {
        ScoreOptions {
            windows: self.score_windows,
            blocks: Some(ScoreMetric::Divergence),
            compare_items: true,
            progress,
            ..ScoreOptions::default()
        }
    }

    /// The constraint file's target, precision and scenarios: the costs its search needs.
    pub fn profile_options(&self, progress: bool) -> ProfileOptions {
        let constraints = &self.search.constraints;
        ProfileOptions {
            target: self.search.target.clone(),
            precision: constraints.target.dtype,
            scenarios: constraints.needed_scenarios(),
            repeats: self.profile.repeats,
            calibration_models: self.profile.calibration_models,
            progress,
            ..ProfileOptions::default()
        }
    }

    pub fn search_spec(&self) -> SearchSpec {
        SearchSpec {
            measure: self.search.measure,
            ..SearchSpec::from_file(self.search.constraints.clone(), SolverKind::Cbc)
        }
    }

    pub fn assemble_options(&self, dirs: &RunDirs) -> AssembleOptions {
        AssembleOptions {
            library: dirs.library(),
            solution: dirs
                .solutions()
                .display()
                .to_string()
                .parse()
                .expect("a path names a solution"),
            parent: None,
            dtype: AssembleOptions::DTYPE,
        }
    }

    pub fn fuse_options(&self) -> FuseOptions {
        FuseOptions {
            windows: self.windows(self.fuse.windows),
            max_dependency: self.fuse.max_dependency,
            runs: RunChoice::Auto,
        }
    }

    pub fn distill_options(&self, teacher: &Path, progress: bool) -> DistillStageOptions {
        DistillStageOptions {
            teacher: teacher.to_path_buf(),
            data: self.windows(DISTILL_KL_WINDOWS),
            train: DistillOptions {
                control: self.distill.control.with_progress(progress),
                ..self.distill.clone()
            },
        }
    }

    pub fn sft_chats(&self) -> ChatSource {
        ChatSource::Builtin {
            seed: self.parent.seed,
            tasks: DEFAULT_SFT_TASKS,
        }
    }

    pub fn sft_options(&self, progress: bool) -> SftOptions {
        SftOptions {
            control: self.sft.control.with_progress(progress),
            ..self.sft.clone()
        }
    }

    /// The held-out tasks SFT and GRPO are measured on (after training only: the report
    /// measures the models before).
    pub fn chat_eval(&self) -> ChatEval {
        ChatEval {
            tasks: self.eval_tasks(TaskKind::Chains),
            direct: Some(self.eval_tasks(TaskKind::OneStep)),
            before: false,
        }
    }

    fn eval_tasks(&self, task_kind: TaskKind) -> TaskSet {
        TaskSet::Builtin {
            seed: self.parent.seed,
            split: Split::HeldOut,
            count: self.eval.tasks,
            task_kind,
        }
    }

    /// The training tasks GRPO surveys (and keeps the unsolved ones of): multi-step tasks with
    /// thinking on and, unless `rl.direct_tasks = false`, one-step tasks with it off, so that
    /// both modes are trained.
    pub fn rl_prompts(&self) -> Vec<PromptSet> {
        let tasks = |task_kind| TaskSet::Builtin {
            seed: self.parent.seed,
            split: Split::Train,
            count: self.rl.survey_tasks,
            task_kind,
        };
        PromptSet::with_direct(
            tasks(TaskKind::Chains),
            vec![Thinking::On],
            self.rl.direct_tasks.then(|| tasks(TaskKind::OneStep)),
        )
    }

    pub fn rl_options(&self, progress: bool) -> RlOptions {
        RlOptions {
            control: self.rl.options.control.with_progress(progress),
            ..self.rl.options.clone()
        }
    }

    /// The exports of a run and where each goes: the DeciLM directory (bf16), then the GGUF
    /// file `export.gguf` asks for, if any.
    pub fn exports(&self, dirs: &RunDirs) -> Vec<(ExportRequest, PathBuf)> {
        let request = |format, dtype| ExportRequest {
            format,
            dtype,
            max_shard_bytes: None,
            untie: false,
        };
        std::iter::once((request(ExportFormat::Decilm, ExportDtype::Bf16), dirs.export()))
            .chain(
                self.export_gguf
                    .map(|dtype| (request(ExportFormat::Gguf, dtype), dirs.gguf())),
            )
            .collect()
    }

    pub fn run_eval(&self) -> RunEval {
        RunEval {
            tasks: self.eval_tasks(TaskKind::Chains),
            direct: Some(self.eval_tasks(TaskKind::OneStep)),
            windows: self.eval_windows(),
            request_rounds: self.eval.request_rounds,
        }
    }

    /// What `stage`'s outputs depend on, as its stamp records it: the run ids of the earlier
    /// stages it reads (`id` gives them) and its own settings (file contents, not paths).
    pub fn stage_inputs(&self, stage: &str, id: impl Fn(&str) -> String) -> Result<Value, PipelineError> {
        let text = |path: &Path| {
            std::fs::read_to_string(path).map_err(|cause| PipelineError::Io {
                path: path.to_path_buf(),
                cause,
            })
        };
        let profile = self.profile_options(false);
        Ok(match stage {
            "parent" => match &self.parent_source {
                ParentSource::Train => json!({ "options": self.parent_options(false) }),
                ParentSource::Checkpoint(path) => json!({ "checkpoint": path, "eval": self.parent_eval() }),
            },
            "library" => {
                json!({ "parent": id("parent"), "space": text(&self.library.space)?, "tokens": self.library.tokens })
            }
            "score" => json!({ "library": id("library"), "windows": self.score_windows }),
            "profile" => json!({
                "library": id("library"),
                "target": profile.target.name(),
                "precision": profile.precision,
                "scenarios": profile.scenarios,
                "repeats": profile.repeats,
                "calibration_models": profile.calibration_models,
            }),
            "search" => json!({
                "score": id("score"),
                "profile": id("profile"),
                "constraints": text(&self.search.constraints.path)?,
                "sweep": self.search.sweep,
                "measure": self.search.measure,
            }),
            "assemble" => json!({ "search": id("search") }),
            "fuse" => {
                json!({ "assemble": id("assemble"), "max_dependency": self.fuse.max_dependency, "windows": self.fuse.windows })
            }
            "distill" => json!({ "fuse": id("fuse"), "options": self.distill }),
            "sft" => {
                json!({ "distill": id("distill"), "options": self.sft, "chats": self.sft_chats(), "eval": self.chat_eval() })
            }
            "rl" => {
                json!({ "sft": id("sft"), "options": self.rl.options, "tasks": self.rl_prompts(), "eval": self.chat_eval() })
            }
            "export" => json!({ "rl": id("rl"), "dtype": "bf16", "gguf": self.export_gguf.map(|d| d.to_string()) }),
            "report" => json!({ "export": id("export"), "eval": self.run_eval() }),
            other => unreachable!("no stage `{other}`"),
        })
    }
}
