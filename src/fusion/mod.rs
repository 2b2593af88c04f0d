//! The fusion stage (DESIGN §1.9): after the search removed attention, runs of consecutive FFNs
//! remain. `dependency` measures how much each layer depends on the layers before it, `runs`
//! (and `analysis`, which writes both out) turns that into the runs worth fusing, and `apply` rewrites a checkpoint so that each run is
//! one wide SwiGLU layer reading the run's input once. Reads checkpoints; knows nothing of the
//! library or the search (it scores a fused model against the unfused one with `score`'s
//! reference), nor of later stages.

pub mod analysis;
pub mod apply;
pub mod dependency;
pub mod runs;
pub mod stage;

pub use analysis::{FusionAnalysis, analyze, write_analysis};
pub use apply::fuse_runs;
pub use dependency::{DependencyMatrix, dependency_matrix};
pub use runs::{RunStats, choose_runs, eligible_runs, parse_runs, run_stats};
pub use stage::{AnalysisReport, FuseOptions, FuseReport, FuseStageError, RunChoice, analyze_fusion, fuse_model};

use crate::checkpoint::{LayerSpan, SpliceError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FusionError {
    #[error("--runs `{spec}`: {problem}")]
    Spec { spec: String, problem: String },
    #[error("run {span}: {problem}")]
    Run { span: LayerSpan, problem: String },
    #[error(transparent)]
    Splice(#[from] SpliceError),
}
