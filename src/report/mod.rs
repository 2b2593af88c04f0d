//! The report stage: what a user reads — Pareto tables, plots, the architecture drawing and the
//! run's page, built from earlier stages' results. Runs nothing itself; knows the shapes of
//! earlier stages' results, not how they were computed.

pub mod architecture;
pub mod heatmap;
pub mod notebook;
pub mod pareto;
pub mod plot;
pub mod run_page;
pub mod summary;

pub use architecture::architecture_svg;
pub use heatmap::{HeatMap, write_dependency_heatmap, write_heatmap};
pub use notebook::{show_html, show_svg};
pub use pareto::{ParetoReport, ReportError, write_pareto};
pub use run_page::{Curve, RunPage, write_run_page};
pub use summary::{ModelRow, Summary};
