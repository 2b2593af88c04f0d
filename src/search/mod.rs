//! The search stage (DESIGN §1.7): pick one candidate per parent layer that loses the least
//! quality within the deployment's limits, as a mixed-integer program solved exactly by CBC,
//! with the baselines it must beat and sweeps for Pareto fronts. Reads only `block_library.json`
//! (and, for a tessera library, the parent's blocks and the profile's outside costs); knows
//! nothing of how blocks are trained, scored or assembled.

pub mod baselines;
pub mod bound;
pub mod check;
pub mod closed_loop;
pub mod constraints;
pub mod diagnose;
pub mod form;
pub mod heuristic;
pub mod limit;
pub mod mip;
pub mod outside;
pub mod problem;
pub mod run;
pub mod solutions;
pub mod sweep;
pub mod synthetic;

use std::path::PathBuf;

pub use baselines::{BASELINES, Baseline};
pub use check::{ChildCheck, ChildChecks, ParentTiming, check_on_cpu};
pub use closed_loop::{LoopRound, Measure, Verdict, close_loop};
pub use constraints::ConstraintFile;
pub use limit::{Limit, Objective, Sense, parse_limits};
pub use mip::{SolveOptions, Solved, SolverKind, Status, Warm, solve, solve_warm, verify};
pub use outside::{Outside, SearchInput};
pub use problem::{Candidate, Choice, Problem};
pub use run::{Limits, SearchReport, SearchSpec, SolutionReport, search, search_library, search_warm};
pub use solutions::{SavedSolution, SolutionRef};
pub use sweep::{Sweep, SweepPoint, sweep};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Library { path: PathBuf, problem: String },
    #[error("{}: {layer}, variant `{variant}`, has no numeric `{key}`", path.display())]
    MissingKey {
        path: PathBuf,
        layer: String,
        variant: String,
        key: String,
    },
    #[error("{cause}; profile that scenario first: {command}")]
    MissingScenario { cause: String, command: String },
    #[error("{}: `{key}`: {problem}", path.display())]
    Constraints {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("limit `{text}`: {problem}")]
    LimitSyntax { text: String, problem: String },
    #[error(
        "no choice meets every limit: `{limit}` ({origin}) cannot be met; the best value reachable for it {} is {best}",
        if *with_others { "while the other limits hold" } else { "alone" }
    )]
    Infeasible {
        limit: String,
        origin: String,
        best: f64,
        with_others: bool,
    },
    #[error("the solver stopped on its time limit without a feasible choice ({0}); allow more time")]
    NoSolutionInTime(String),
    #[error("the solver's answer fails the re-check: {0}")]
    Verification(String),
    #[error("solver: {0}")]
    Solver(String),
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryError),
}
