//! `tessera run PIPELINE.toml`: parent → library → score → profile → search → assemble → fuse →
//! distill → sft → rl → export → report, each one stage function called with the options the
//! pipeline file gives (`plan`), each skipped while its stamp is up to date (`stamp`), each
//! resuming its own work after a kill. Library, score and profile run where the run's executor
//! says (here, or as Slurm array jobs that the run waits for). Outputs go to `<runs>/<name>/` (one folder per stage) and
//! the report to `<reports>/<name>/`.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use serde::Serialize;

use super::file::{ParentSource, Pipeline};
use super::plan::RunDirs;
use super::stamp::{Outcome, StageLog, Stages};
use crate::assemble::assemble_child;
use crate::checkpoint::export_models;
use crate::cluster::Executor;
use crate::fusion::fuse_model;
use crate::parent::{adopt_parent, train_parent};
use crate::posttrain::{distill_fused, rl_model, sft_model};
use crate::report::{RunInputs, Summary, pareto_front, write_run_report};
use crate::search::search_library;

/// Where a run writes, and whether it shows progress.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `<runs>/<name>/` holds the stages' outputs.
    pub runs_dir: PathBuf,
    /// `<reports>/<name>/index.html` is the report.
    pub reports_dir: PathBuf,
    /// Where library building, scoring and profiling run (the rest runs here).
    pub executor: Executor,
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            runs_dir: "runs".into(),
            reports_dir: "reports".into(),
            executor: Executor::Local,
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

/// Runs (or brings up to date) every stage of `pipeline`.
pub fn run_pipeline(p: &Pipeline, options: &RunOptions, device: &Device) -> Result<RunReport> {
    let dirs = RunDirs::new(&options.runs_dir, p);
    let report_dir = options.reports_dir.join(&p.name);
    let show = options.progress;
    let mut stages = Stages::open(&dirs.root, STAGES.len(), true)?;
    macro_rules! stage {
        ($name:literal, $work_dirs:expr, $work:expr) => {{
            let inputs = p.stage_inputs($name, |s| stages.id(s).to_string())?;
            stages.run($name, inputs, $work_dirs, || Ok($work?))?
        }};
    }
    let parent = stage!(
        "parent",
        &[&dirs.parent()],
        match &p.parent_source {
            ParentSource::Train => train_parent(&dirs.parent(), &p.parent_options(show), device),
            ParentSource::Checkpoint(checkpoint) => adopt_parent(checkpoint, &dirs.parent(), &p.parent_eval(), device),
        }
    );
    let executor = &options.executor;
    let library = stage!("library", &[&dirs.library()], {
        executor.build_library(&dirs.library(), &p.build_options(&parent.model_dir, show), device)
    });
    let score = stage!(
        "score",
        &[],
        executor.score_library(&dirs.library(), &p.score_options(show), device)
    );
    let profile = stage!(
        "profile",
        &[],
        executor.profile_library(&dirs.library(), &p.profile_options(show), device)
    );
    let (search, pareto) = stage!("search", &[&dirs.pareto()], {
        let spec = p.search_spec();
        let search = search_library(&dirs.library(), &spec, Some(&dirs.solutions()), device)?;
        pareto_front(&dirs.library(), &spec, &p.search.sweep, &dirs.pareto(), show).map(|front| (search, front))
    });
    let assembled = stage!(
        "assemble",
        &[],
        assemble_child(&dirs.child(), &p.assemble_options(&dirs))
    );
    let fused = stage!("fuse", &[&dirs.fuse()], {
        fuse_model(&assembled.child.model, &dirs.fuse(), &p.fuse_options(), device)
    });
    let (distilled, distilled_unfused) = stage!("distill", &[&dirs.distill()], {
        distill_fused(
            &fused.child.model,
            (!fused.runs.is_empty()).then_some(assembled.child.model.as_path()),
            &dirs.distill(),
            &p.distill_options(&parent.model_dir, show),
            device,
        )
    });
    let eval = p.chat_eval();
    let tuned = stage!("sft", &[&dirs.sft()], {
        sft_model(
            &distilled.child.model,
            &dirs.sft(),
            &p.sft_chats(),
            &p.sft_options(show),
            &eval,
            device,
        )
    });
    let reinforced = stage!("rl", &[&dirs.rl()], {
        rl_model(
            &tuned.child.model,
            &dirs.rl(),
            &p.rl_prompts(),
            &p.rl_options(show),
            &eval,
            device,
        )
    });
    let exports = p.exports(&dirs);
    let exported = stage!(
        "export",
        &[&dirs.export(), &dirs.gguf_dir()],
        export_models(&reinforced.child.model, &exports)
    );
    let stage_rows: Vec<(String, f64)> = stages.log.iter().map(|l| (l.stage.clone(), l.work_seconds)).collect();
    let run = RunInputs {
        name: &p.name,
        parent: &parent,
        library: &library,
        score: &score,
        profile: &profile,
        search: &search,
        pareto: &pareto,
        assembled: &assembled,
        fused: &fused,
        distilled: &distilled,
        distilled_unfused: distilled_unfused.as_ref(),
        tuned: &tuned,
        reinforced: &reinforced,
        exported: &exported[0],
        exported_gguf: exported.get(1),
        stages: &stage_rows,
    };
    let page = stage!(
        "report",
        &[&report_dir],
        write_run_report(&report_dir, &run, &p.run_eval(), device)
    );
    Ok(RunReport {
        name: p.name.clone(),
        run_dir: dirs.root,
        report: page.page,
        stages: stages.log,
        summary: page.summary,
        notes: page.notes,
    })
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "stage        outcome      seconds")?;
        for stage in &self.stages {
            let outcome = match stage.outcome {
                Outcome::Ran => "ran",
                Outcome::UpToDate => "up to date",
            };
            writeln!(f, "{:<12} {outcome:<12} {:>7.1}", stage.stage, stage.seconds)?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        writeln!(f, "{}", self.summary)?;
        writeln!(f, "outputs: {}/ (one folder per stage)", self.run_dir.display())?;
        write!(f, "report:  {}", self.report.display())
    }
}
