//! Running the embarrassingly parallel stages (library building, scoring, profiling) as Slurm
//! array jobs: a stage's pending items are cut into tasks, submitted as arrays (split at the
//! cluster's `MaxArraySize`) with a merge job that depends on them, watched through `squeue`,
//! resumed by resubmitting only the tasks that failed or vanished, or cancelled. Everything a
//! task needs is in files under `<library>/slurm/` with absolute paths, so tasks run whatever
//! the submitting shell's directory and environment. Knows the stage functions and Slurm's
//! commands; nothing of later stages.

pub mod executor;
pub mod job;
pub mod options;
pub mod slurm;
pub mod status;
pub mod submission;

use std::path::{Path, PathBuf};

pub use executor::{Executor, Outcome};
pub use job::{StageJob, StageReport, StageWork};
pub use options::SlurmOptions;
pub use status::{StageStatus, TaskPhase};
pub use submission::{Resubmission, Submission, cancel, resume, stage_status, submit};

use crate::cost::profile::CostError;
use crate::library::LibraryError;
use crate::score::ScoreError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "`{command}` is not on PATH: tessera talks to Slurm through its commands (sbatch, squeue, scontrol, scancel); run where the Slurm client is installed"
    )]
    MissingCommand { command: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{stage} of {}: {tasks} task(s) left items undone: {items}", dir.display())]
    Incomplete {
        stage: &'static str,
        dir: PathBuf,
        tasks: usize,
        items: String,
    },
    #[error("{stage} did not finish on Slurm:\n{status}fix the cause, then run `tessera slurm resume {}`", dir.display())]
    Failed {
        stage: String,
        dir: PathBuf,
        status: String,
    },
    #[error("{}: no Slurm submission here (no slurm/*.submission.json in it or its folders)", path.display())]
    NoSubmission { path: PathBuf },
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Cost(#[from] CostError),
}

impl ClusterError {
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> ClusterError + '_ {
        move |cause| ClusterError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}
