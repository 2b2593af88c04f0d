//! The names a notebook or a script needs to drive the pipeline stage by stage
//! (`use tessera::prelude::*;`): every stage function with its options and report, and the types
//! notebooks look inside. Re-exports only.

pub use burn::prelude::Device;

pub use crate::assemble::{AssembleOptions, AssembleReport, assemble_child};
pub use crate::checkpoint::{
    Checkpoint, ExportDtype, ExportFormat, ExportOptions, ExportRequest, LayerSpan, ModelSummary, RandomParentOptions,
    StoreDtype, StoredCheckpoint, TensorSource, export_model, export_models, write_random_parent,
};
pub use crate::cost::measure::{request_runner, time_interleaved};
pub use crate::cost::{
    Precision, ProfileOptions, ProfileReport, Target, kv_bytes_per_token, model_kv_bytes_per_token, profile_library,
};
pub use crate::device::DeviceChoice;
pub use crate::eval::{TaskSet, switch_accuracy};
pub use crate::fusion::{
    AnalysisReport, FuseOptions, FuseReport, FusionAnalysis, RunChoice, analyze, analyze_fusion, fuse_model, fuse_runs,
};
pub use crate::library::{BuildOptions, BuildReport, ChildChoice, Library, Stage, block_name, build_library};
pub use crate::model::{AttentionConfig, BlockConfig, FfnConfig, Llama};
pub use crate::parent::{ParentEval, ParentOptions, ParentReport, adopt_parent, train_parent};
pub use crate::pipeline::{Pipeline, RunDirs, RunOptions, run_pipeline};
pub use crate::plot::write_dependency_heatmap;
pub use crate::posttrain::{
    ChatEval, ChatSource, ChatStageReport, DistillOptions, DistillStageOptions, DistillStageReport, PromptSet,
    RlOptions, SftOptions, distill_fused, distill_model, rl_model, sft_model,
};
pub use crate::report::{
    ParetoFront, ParetoReport, ReportPage, RunEval, RunInputs, architecture_svg, pareto_front, show_html, show_svg,
    write_run_report,
};
pub use crate::score::{Reference, ScoreMetric, ScoreOptions, ScoreReport, ScoreRow, Scores, score_library};
pub use crate::search::{
    ConstraintFile, Measure, SearchInput, SearchReport, SearchSpec, SolutionRef, SolutionReport, SolverKind, Sweep,
    SweepPoint, search, search_library, sweep,
};
pub use crate::selection::Selection;
pub use crate::source::{TokenSource, WindowSpec, Windows};
