//! One search as a user asks for it: an objective and limits, from a constraint file (swept over
//! its batch sizes, the best kept) or from raw `KEY<=V` limits; the MIP's diverse solutions and
//! the baselines, each with every constrained total, re-checked, ready for `--json`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::SearchError;
use super::baselines::BASELINES;
use super::constraints::ConstraintFile;
use super::limit::{Limit, Objective};
use super::mip::{SolveOptions, Solved, Status, solve};
use super::outside::SearchInput;
use super::problem::Problem;

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
}

impl SearchSpec {
    /// The search a constraint file asks for.
    pub fn from_file(file: ConstraintFile, solver: super::mip::SolverKind) -> Self {
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
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SolutionReport {
    /// `mip`, or the baseline's name.
    pub method: String,
    pub objective: f64,
    pub totals: Map<String, Value>,
    pub choice: Map<String, Value>,
    pub status: Status,
    pub solve_ms: f64,
    pub batch_size: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    pub objective: Objective,
    pub limits: Vec<Limit>,
    pub solutions: Vec<SolutionReport>,
    /// Baselines that found a feasible choice (the others are listed in `baselines_without`).
    pub baselines: Vec<SolutionReport>,
    pub baselines_without: Vec<String>,
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
        choice: problem
            .describe(choice)
            .into_iter()
            .map(|(layer, name)| (layer, Value::String(name)))
            .collect(),
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
                .map(|s| format!("stats.runtime_ms_{}_{}_{s}", target.name(), file.target.dtype.name()))
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
                            file.target.dtype.name(),
                            scenario.command_line()
                        ),
                    })?;
            }
            file.scenario
                .batch_sizes
                .iter()
                .map(|&b| Ok((Some(b), file.limits_at(b, &input.problem, &outside)?)))
                .collect()
        }
    }
}

/// Runs the search: for each batch size the MIP's solutions; those of the batch size whose best
/// solution is best are kept, and the baselines are run at that batch size.
pub fn search(input: &SearchInput, spec: &SearchSpec) -> Result<SearchReport, SearchError> {
    let problem = &input.problem;
    let mut best: Option<(Option<usize>, Vec<Limit>, Vec<Solved>)> = None;
    let mut first_error = None;
    for (batch, limits) in limit_sets(input, spec)? {
        match solve(problem, &spec.objective, &limits, &spec.options, None) {
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
            match baseline.choose(problem, &spec.objective, &limits, 7)? {
                Some(choice) => {
                    let solved = Solved {
                        objective: spec.objective.value(problem, &choice)?,
                        choice,
                        status: Status::Heuristic,
                        solve_ms: began.elapsed().as_secs_f64() * 1e3,
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
    })
}
