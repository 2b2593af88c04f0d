//! One search as a user asks for it: an objective and limits, from a constraint file (swept over
//! its batch sizes, the best kept) or from raw `KEY<=V` limits; the MIP's diverse solutions and
//! the baselines, each with every constrained total, re-checked, ready for `--json`; and the
//! search stage, which also measures the best child when asked and writes `solutions.json`.

use std::path::Path;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::SearchError;
use super::baselines::BASELINES;
use super::check::ChildChecks;
use super::closed_loop::{LoopRound, Measure, search_measured};
use super::constraints::{ConstraintFile, is_request_limit};
use super::limit::{Limit, Objective};
use super::mip::{SolveOptions, Solved, SolverKind, Status, Warm, solve_warm, verify};
use super::outside::SearchInput;
use super::problem::Problem;
use crate::cost::keys;
use crate::library::ChildChoice;

/// Where the limits come from.
#[derive(Clone, Debug)]
pub enum Limits {
    File(Box<ConstraintFile>),
    Raw(Vec<Limit>),
}

#[derive(Clone, Debug)]
pub struct SearchSpec {
    pub objective: Objective,
    pub limits: Limits,
    pub options: SolveOptions,
    /// Also run the baselines.
    pub baselines: bool,
    /// Assemble the best child, time it against the parent on this machine and close the loop
    /// (a tessera library and a constraint file only; see `closed_loop`).
    pub measure: Option<Measure>,
    /// What the request-time prediction is multiplied by (the closed loop's correction; 1
    /// otherwise).
    pub request_correction: f64,
}

impl SearchSpec {
    /// The search a constraint file asks for.
    pub fn from_file(file: ConstraintFile, solver: SolverKind) -> Self {
        SearchSpec {
            objective: file.objective(),
            options: SolveOptions {
                solver,
                time_limit_s: file.time_limit_s,
                gap: file.gap,
                solutions: file.solutions,
                min_diff: file.min_diff,
            },
            limits: Limits::File(Box::new(file)),
            baselines: true,
            measure: None,
            request_correction: 1.0,
        }
    }

    /// An objective and raw limits on library keys.
    pub fn raw(objective: Objective, limits: Vec<Limit>) -> Self {
        SearchSpec {
            objective,
            limits: Limits::Raw(limits),
            options: SolveOptions::default(),
            baselines: true,
            measure: None,
            request_correction: 1.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolutionReport {
    /// `mip`, or the baseline's name.
    pub method: String,
    pub objective: f64,
    /// The objective's and every limit's total, by name.
    pub totals: Map<String, Value>,
    pub choice: ChildChoice,
    pub status: Status,
    pub solve_ms: f64,
    pub batch_size: Option<usize>,
}

/// What a search found: `solutions.json` (see `solutions`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchReport {
    pub objective: Objective,
    pub limits: Vec<Limit>,
    pub solutions: Vec<SolutionReport>,
    /// Baselines that found a feasible choice (the others are listed in `baselines_without`).
    pub baselines: Vec<SolutionReport>,
    pub baselines_without: Vec<String>,
    /// The best child timed against the parent, when asked.
    #[serde(default)]
    pub measured: Option<ChildChecks>,
    /// The closed loop's rounds, when the child was measured (see `closed_loop`).
    #[serde(default)]
    pub closed_loop: Vec<LoopRound>,
    /// Which of `closed_loop` these solutions are.
    #[serde(default)]
    pub chosen_round: Option<usize>,
}

fn report(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    method: &str,
    solved: &Solved,
    batch_size: Option<usize>,
) -> Result<SolutionReport, SearchError> {
    let choice = &solved.choice;
    let mut totals = Map::new();
    totals.insert(objective.key.clone(), json!(objective.value(problem, choice)?));
    for limit in limits {
        totals.insert(limit.name.clone(), json!(limit.total(problem, choice)?));
    }
    Ok(SolutionReport {
        method: method.to_string(),
        objective: objective.value(problem, choice)?,
        totals,
        choice: problem.describe(choice),
        status: solved.status,
        solve_ms: solved.solve_ms,
        batch_size,
    })
}

/// The limits at one batch size (none for raw limits).
type LimitSet = (Option<usize>, Vec<Limit>);

/// The limits of each batch size to try (one entry, without a batch size, for raw limits).
fn limit_sets(input: &SearchInput, spec: &SearchSpec) -> Result<Vec<LimitSet>, SearchError> {
    match &spec.limits {
        Limits::Raw(limits) => Ok(vec![(None, limits.clone())]),
        Limits::File(file) => {
            let target = file.target().map_err(|e| SearchError::Options(e.to_string()))?;
            let outside = input.outside(target.name(), file.target.dtype)?;
            let keys: Vec<String> = file
                .needed_scenarios()
                .iter()
                .map(|s| keys::stat(&keys::runtime_ms(target.name(), file.target.dtype, s)))
                .collect();
            for (key, scenario) in keys.iter().zip(file.needed_scenarios()) {
                input
                    .problem
                    .require(&[key])
                    .map_err(|e| SearchError::MissingScenario {
                        cause: e.to_string(),
                        command: format!(
                            "tessera profile --target {} --dtype {} --scenario {}",
                            target.name(),
                            file.target.dtype,
                            scenario.command_line()
                        ),
                    })?;
            }
            file.scenario
                .batch_sizes
                .iter()
                .map(|&b| {
                    let mut limits = file.limits_at(b, &input.problem, &outside)?;
                    for limit in limits.iter_mut().filter(|l| is_request_limit(l)) {
                        limit.scale_prediction(spec.request_correction);
                    }
                    Ok((Some(b), limits))
                })
                .collect()
        }
    }
}

/// Runs the search: for each batch size the MIP's solutions; those of the batch size whose best
/// solution is best are kept, and the baselines are run at that batch size.
pub fn search(input: &SearchInput, spec: &SearchSpec) -> Result<SearchReport, SearchError> {
    search_warm(input, spec, &mut Warm::default())
}

/// [`search`], starting from what earlier searches of the same library left in `warm` (a
/// sweep's points, the closed loop's rounds) and leaving what this one learns there.
pub fn search_warm(input: &SearchInput, spec: &SearchSpec, warm: &mut Warm) -> Result<SearchReport, SearchError> {
    let problem = &input.problem;
    let mut best: Option<(Option<usize>, Vec<Limit>, Vec<Solved>)> = None;
    let mut first_error = None;
    for (batch, limits) in limit_sets(input, spec)? {
        match solve_warm(problem, &spec.objective, &limits, &spec.options, None, warm) {
            Ok(found) => {
                let better = best
                    .as_ref()
                    .is_none_or(|(_, _, b)| spec.objective.better(found[0].objective, b[0].objective));
                if better {
                    best = Some((batch, limits, found));
                }
            }
            Err(e @ SearchError::Infeasible { .. }) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some((batch, limits, found)) = best else {
        return Err(first_error.expect("at least one batch size was tried"));
    };
    let solutions = found
        .iter()
        .map(|s| report(problem, &spec.objective, &limits, "mip", s, batch))
        .collect::<Result<Vec<_>, _>>()?;
    let mut baselines = Vec::new();
    let mut baselines_without = Vec::new();
    if spec.baselines {
        for baseline in BASELINES {
            let began = std::time::Instant::now();
            match baseline.choose_warm(problem, &spec.objective, &limits, 7, warm)? {
                Some(choice) => {
                    // Checked like the MIP's answers, on the library's own values.
                    verify(problem, &limits, &choice)
                        .map_err(|text| SearchError::Verification(format!("baseline {}: {text}", baseline.name())))?;
                    let solved = Solved {
                        objective: spec.objective.value(problem, &choice)?,
                        choice,
                        status: Status::Heuristic,
                        solve_ms: began.elapsed().as_secs_f64() * 1e3,
                        undominated: 0,
                        variables: 0,
                    };
                    baselines.push(report(
                        problem,
                        &spec.objective,
                        &limits,
                        baseline.name(),
                        &solved,
                        batch,
                    )?);
                }
                None => baselines_without.push(baseline.name().to_string()),
            }
        }
    }
    Ok(SearchReport {
        objective: spec.objective.clone(),
        limits,
        solutions,
        baselines,
        baselines_without,
        measured: None,
        closed_loop: Vec::new(),
        chosen_round: None,
    })
}

/// The search stage: searches the library (a library directory or any `block_library.json`),
/// measures the best child and closes the loop when `spec.measure` asks, and writes the report
/// to `out` (`solutions.json`) when given.
pub fn search_library(
    library: &Path,
    spec: &SearchSpec,
    out: Option<&Path>,
    device: &Device,
) -> Result<SearchReport, SearchError> {
    let input = SearchInput::open(library)?;
    let report = match spec.measure {
        Some(measure) => search_measured(library, &input, spec, measure, device)?,
        None => search(&input, spec)?,
    };
    if let Some(out) = out {
        report.write(out)?;
    }
    Ok(report)
}

impl std::fmt::Display for SolutionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let totals: Vec<String> = self
            .totals
            .iter()
            .map(|(k, v)| format!("{k} = {}", v.as_f64().map_or(v.to_string(), |x| format!("{x:.6}"))))
            .collect();
        write!(
            f,
            "{:<12} objective {:.6}  [{:?}{}, {:.1} ms]  {}",
            self.method,
            self.objective,
            self.status,
            self.batch_size.map_or(String::new(), |b| format!(", batch {b}")),
            self.solve_ms,
            totals.join(", ")
        )
    }
}

impl std::fmt::Display for SearchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for limit in &self.limits {
            writeln!(
                f,
                "limit: {} {} {:.6}  ({})",
                limit.name,
                limit.sense.symbol(),
                limit.bound,
                limit.origin
            )?;
        }
        for (k, solution) in self.solutions.iter().enumerate() {
            writeln!(f, "solution {k}:\n{solution}")?;
            for (span, name) in solution.choice.iter() {
                writeln!(f, "    {:<10} {name}", format!("layer_{span}"))?;
            }
        }
        for baseline in &self.baselines {
            writeln!(f, "{baseline}")?;
        }
        for name in &self.baselines_without {
            writeln!(f, "{name:<12} found no choice within the limits")?;
        }
        for (k, round) in self.closed_loop.iter().enumerate() {
            let child = &round.measured.children[0];
            let achieved = match (round.achieved, round.achieved_interval) {
                (Some(a), Some((low, high))) => format!(", {a:.3} of what is asked [{low:.3}, {high:.3}]"),
                _ => String::new(),
            };
            writeln!(
                f,
                "closed loop, round {k}: prediction ×{:.3}, predicted speedup {:.2}x ({:.2}x before the correction), measured {:.2}x [{:.2}, {:.2}]{achieved}: {:?}{}",
                round.correction,
                child.predicted_speedup / round.correction,
                child.predicted_speedup,
                child.measured_speedup,
                child.speedup_interval.0,
                child.speedup_interval.1,
                round.verdict,
                if self.chosen_round == Some(k) { " (chosen)" } else { "" }
            )?;
        }
        if let Some(check) = &self.measured {
            let child = &check.children[0];
            writeln!(
                f,
                "measured on this machine: child {:.2} ms (predicted {:.2}) vs parent {:.2} ms per request, speedup {:.2}x (predicted {:.2}x)",
                child.measured.median_ms,
                child.predicted_ms,
                check.parents[0].measured.median_ms,
                child.measured_speedup,
                child.predicted_speedup
            )?;
        }
        Ok(())
    }
}
