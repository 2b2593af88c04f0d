//! The report stage: what a user reads — Pareto tables, plots and pages built from search
//! results. Runs nothing itself; knows the shapes of earlier stages' results, not how they were
//! computed.

pub mod heatmap;
pub mod pareto;
pub mod plot;

pub use heatmap::{HeatMap, write_heatmap};
pub use pareto::{ParetoReport, ReportError, write_pareto};
