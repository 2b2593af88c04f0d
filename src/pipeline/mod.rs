//! The whole pipeline as one job (`tessera run PIPELINE.toml`): a pipeline file names the
//! settings of every stage; the runner calls each stage's library code in order, skipping the
//! ones whose outputs are up to date. Sits above every stage; no stage knows it.

pub mod file;
pub mod plan;
pub mod run;
pub mod stamp;

pub use file::{ParentSource, Pipeline, PipelineError};
pub use plan::RunDirs;
pub use run::{RunOptions, RunReport, STAGES, run_pipeline};
pub use stamp::{Outcome, StageLog};
