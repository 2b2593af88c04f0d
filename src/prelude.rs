//! The names a notebook or a script needs to drive the pipeline stage by stage
//! (`use tessera::prelude::*;`). Re-exports only.

pub use crate::checkpoint::{Checkpoint, ExportOptions, LayerSpan, StoreDtype};
pub use crate::cost::measure::{request_runner, time_interleaved};
pub use crate::cost::{Precision, ProfileOptions, Target, kv_bytes_per_token, profile_library};
pub use crate::device::DeviceChoice;
pub use crate::eval::switch_accuracy;
pub use crate::fusion::{analyze, fuse_runs};
pub use crate::library::{BuildOptions, Library, Stage, build_library, choice_from_json};
pub use crate::parent::{ParentOptions, train_parent};
pub use crate::pipeline::{Pipeline, RunOptions, run_pipeline};
pub use crate::posttrain::{DistillOptions, RlOptions, SftOptions, distill, rl, sft};
pub use crate::report::{architecture_svg, show_svg, write_dependency_heatmap, write_pareto};
pub use crate::score::{Reference, Scoring, record_scores};
pub use crate::search::{ConstraintFile, SearchInput, SearchSpec, SolverKind, Sweep, search, sweep};
pub use crate::source::TokenSource;
