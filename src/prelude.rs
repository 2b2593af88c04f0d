//! The names a notebook or a script needs to drive the pipeline stage by stage
//! (`use tessera::prelude::*;`). Re-exports only.

pub use burn::prelude::Device;

pub use crate::checkpoint::{Checkpoint, ExportOptions, LayerSpan, StoreDtype};
pub use crate::cost::measure::{request_runner, time_interleaved};
pub use crate::cost::{
    Precision, ProfileOptions, Target, kv_bytes_per_token, model_kv_bytes_per_token, profile_library,
};
pub use crate::device::DeviceChoice;
pub use crate::eval::switch_accuracy;
pub use crate::fusion::{FusionAnalysis, analyze, fuse_runs};
pub use crate::library::{BuildOptions, BuildReport, Library, Stage, block_name, build_library, choice_from_json};
pub use crate::model::{AttentionConfig, BlockConfig, FfnConfig, Llama};
pub use crate::parent::{ParentOptions, ParentReport, train_parent};
pub use crate::pipeline::{Pipeline, RunOptions, run_pipeline};
pub use crate::posttrain::{DistillOptions, RlOptions, SftOptions, distill, rl, sft};
pub use crate::report::{ParetoReport, architecture_svg, show_html, show_svg, write_dependency_heatmap, write_pareto};
pub use crate::score::{Reference, ScoreRow, Scores, Scoring, record_scores};
pub use crate::search::{
    ConstraintFile, SearchInput, SearchReport, SearchSpec, SolutionReport, SolverKind, Sweep, SweepPoint, search, sweep,
};
pub use crate::source::{TokenSource, Windows};
