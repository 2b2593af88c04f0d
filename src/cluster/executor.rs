//! Where library building, scoring and profiling run: here (the default), or on Slurm, where
//! the stage is submitted (or its earlier submission continued), waited for while the queue
//! is polled, and its merged report read back, so that callers (`tessera run`, the CLI, a
//! notebook) get the same report either way. Knows the stage functions and the submission.

use std::path::Path;
use std::time::Duration;

use burn::prelude::Device;

use super::ClusterError;
use super::job::{StageJob, StageReport, StageWork, read_json};
use super::options::SlurmOptions;
use super::status::{MergePhase, StageStatus, TaskPhase};
use super::submission::{Resubmission, Submission, find_submissions, submit};
use crate::cost::{ProfileOptions, ProfileReport, profile_library};
use crate::device::DeviceChoice;
use crate::library::{BuildOptions, BuildReport, build_library};
use crate::names::Named;
use crate::score::{ScoreOptions, ScoreReport, score_library};

/// Consecutive failed looks at the queue tolerated while waiting (a controller restarting).
const QUEUE_RETRIES: usize = 5;

/// What [`Executor::run_or_submit`] did: the stage's report, or the jobs it submitted.
#[derive(Debug)]
pub enum Outcome {
    Ran(StageReport),
    Submitted(Resubmission),
}

#[derive(Clone, Debug, Default)]
pub enum Executor {
    #[default]
    Local,
    /// Through Slurm; tasks run on `device`.
    Slurm {
        options: SlurmOptions,
        device: DeviceChoice,
    },
}

impl Executor {
    /// Runs `work` on the library in `dir` and returns its report.
    pub fn run(
        &self,
        dir: &Path,
        work: StageWork,
        device: &Device,
        progress: bool,
    ) -> Result<StageReport, ClusterError> {
        match self {
            Executor::Local => Ok(match work {
                StageWork::Library(o) => StageReport::Library(Box::new(build_library(dir, &o, device)?)),
                StageWork::Score(o) => StageReport::Score(score_library(dir, &o, device)?),
                StageWork::Profile(o) => StageReport::Profile(profile_library(dir, &o, device)?),
            }),
            Executor::Slurm { options, device } => {
                let (submission, _) = submit(dir, work, options, device.name())?;
                wait(&submission, progress)
            }
        }
    }

    /// [`Executor::run`], except that through Slurm with `wait` false the stage is only
    /// submitted (or its earlier submission continued) and what was submitted is returned.
    pub fn run_or_submit(
        &self,
        dir: &Path,
        work: StageWork,
        wait: bool,
        device: &Device,
        progress: bool,
    ) -> Result<Outcome, ClusterError> {
        match self {
            Executor::Slurm { options, device } if !wait => {
                Ok(Outcome::Submitted(submit(dir, work, options, device.name())?.1))
            }
            _ => Ok(Outcome::Ran(self.run(dir, work, device, progress)?)),
        }
    }

    pub fn build_library(
        &self,
        dir: &Path,
        options: &BuildOptions,
        device: &Device,
    ) -> Result<BuildReport, ClusterError> {
        match self.run(dir, StageWork::Library(options.clone()), device, options.progress)? {
            StageReport::Library(report) => Ok(*report),
            other => Err(wrong_report(dir, &other)),
        }
    }

    pub fn score_library(
        &self,
        dir: &Path,
        options: &ScoreOptions,
        device: &Device,
    ) -> Result<ScoreReport, ClusterError> {
        match self.run(dir, StageWork::Score(options.clone()), device, options.progress)? {
            StageReport::Score(report) => Ok(report),
            other => Err(wrong_report(dir, &other)),
        }
    }

    pub fn profile_library(
        &self,
        dir: &Path,
        options: &ProfileOptions,
        device: &Device,
    ) -> Result<ProfileReport, ClusterError> {
        match self.run(dir, StageWork::Profile(options.clone()), device, options.progress)? {
            StageReport::Profile(report) => Ok(report),
            other => Err(wrong_report(dir, &other)),
        }
    }
}

fn wrong_report(dir: &Path, report: &StageReport) -> ClusterError {
    let stage = match report {
        StageReport::Library(_) => "library",
        StageReport::Score(_) => "score",
        StageReport::Profile(_) => "profile",
    };
    ClusterError::Format {
        path: dir.to_path_buf(),
        problem: format!("the merged report is a {stage} report"),
    }
}

/// Waits for every stage submitted under `dir` (a library, or a pipeline run) in turn, and
/// returns their merged reports.
pub fn wait_all(dir: &Path, progress: bool) -> Result<Vec<StageReport>, ClusterError> {
    find_submissions(dir)?
        .iter()
        .map(|path| wait(&Submission::read(path)?, progress))
        .collect()
}

/// Polls the queue until the submission's merge job has run, and returns its report; fails
/// with every task's state and log once the merge can no longer run.
pub fn wait(submission: &Submission, progress: bool) -> Result<StageReport, ClusterError> {
    let job = StageJob::read(&submission.job)?;
    let bar = crate::progress::bar(
        progress,
        &format!("{} tasks on Slurm", submission.stage),
        0,
        job.groups.len(),
    );
    let pause = Duration::from_secs_f64(submission.options.poll_seconds);
    let mut failures = 0;
    loop {
        let status = match StageStatus::read(submission, &job) {
            Ok(status) => status,
            Err(error @ ClusterError::Command { .. }) => {
                failures += 1;
                if failures > QUEUE_RETRIES {
                    return Err(error);
                }
                std::thread::sleep(pause);
                continue;
            }
            Err(other) => return Err(other),
        };
        failures = 0;
        bar.set_position(status.count(TaskPhase::Done) as u64);
        bar.set_message(format!(
            "{} running, {} pending, {} failed",
            status.count(TaskPhase::Running),
            status.count(TaskPhase::Pending),
            status.count(TaskPhase::Failed)
        ));
        if status.merge.phase == MergePhase::Done {
            bar.finish_and_clear();
            return read_json(&job.report_path());
        }
        if status.stuck() {
            bar.finish_and_clear();
            return Err(ClusterError::Failed {
                stage: submission.stage.clone(),
                dir: job.dir.clone(),
                status: status.to_string(),
            });
        }
        std::thread::sleep(pause);
    }
}
