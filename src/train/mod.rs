//! The training engine every stage shares (parent training, BLD, global distillation, SFT, RL):
//! AdamW, warm-up + cosine schedule, global-norm clipping, gradient accumulation, seeded
//! batches, checkpoint/resume and NaN/Inf stops. Knows models only as burn modules and losses
//! as closures; what a batch is belongs to the stage that calls it.

pub mod adamw;
pub mod clip;
pub mod footprint;
pub mod loss;
pub mod params;
pub mod schedule;
pub mod state;
pub mod trainer;

use std::path::PathBuf;

pub use adamw::{AdamW, AdamWConfig};
pub use loss::{cross_entropy, lm_micro_batch, next_token_loss};
pub use schedule::Schedule;
pub use state::{StepLog, TrainState, read_history};
pub use trainer::{BatchIndex, MicroBatch, RunControl, TrainConfig, TrainOutcome, train};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Forward(#[from] crate::model::ForwardError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{}: {cause}", path.display())]
    Checkpoint {
        path: PathBuf,
        cause: crate::checkpoint::CheckpointError,
    },
    #[error("{}: cannot resume, the checkpoint belongs to a different run: `{key}` is {there} in the checkpoint but {here} in this run", path.display())]
    Mismatch {
        path: PathBuf,
        key: String,
        there: String,
        here: String,
    },
    #[error("training stopped at step {step}: the {what} is {value}; {kept}")]
    NonFinite {
        step: usize,
        what: &'static str,
        value: f64,
        kept: String,
    },
    #[error("invalid training settings: {0}")]
    Settings(String),
    /// A stage's own batch preparation failed (sampling, decoding, …).
    #[error("preparing a batch failed: {0}")]
    Batch(String),
}
