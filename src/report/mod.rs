//! The report stage: what a user reads — Pareto tables, plots, the architecture drawing and the
//! run's page, built from earlier stages' results. Runs nothing itself; knows the shapes of
//! earlier stages' results, not how they were computed.

pub mod architecture;
pub mod notebook;
pub mod pareto;
pub mod run_page;
pub mod run_report;
pub mod summary;

pub use architecture::architecture_svg;
pub use notebook::{show_html, show_svg};
pub use pareto::{ParetoFront, ParetoReport, ReportError, pareto_front, write_pareto};
pub use run_page::{Curve, RunPage, write_run_page};
pub use run_report::{ReportPage, RunEval, RunInputs, RunReportError, compare_models, notes, write_run_report};
pub use summary::{ModelRow, Summary};
