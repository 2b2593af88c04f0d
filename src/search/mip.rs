//! The layer-selection mixed-integer program (DESIGN §1.7): one binary per candidate, every
//! parent layer covered exactly once, linear limits, an objective on one key, diversity cuts for
//! further solutions. Solved by COIN-OR CBC (compiled from source, linked statically) or by
//! microlp, the pure-Rust fallback. Before solving, candidates that another candidate of the same
//! span beats or equals on the objective and on every limit are dropped (they can never be
//! needed for the best solution), and a feasible starting solution may be handed to the solver.
//! Every answer is re-checked against every limit before it is returned.

use std::time::Instant;

use good_lp::solvers::{SolutionStatus, WithMipGap};
use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution as _, SolverModel, Variable, WithInitialSolution,
    constraint, variable,
};
use serde::{Deserialize, Serialize};

use super::SearchError;
use super::limit::{Limit, Objective, Sense};
use super::problem::{Choice, Problem};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverKind {
    #[default]
    Cbc,
    Microlp,
}

crate::named!(SolverKind { "cbc" => SolverKind::Cbc, "microlp" => SolverKind::Microlp });

#[derive(Clone, Debug)]
pub struct SolveOptions {
    pub solver: SolverKind,
    /// Stop after this long and return the best solution found (CBC only).
    pub time_limit_s: Option<f64>,
    /// Stop once the relative gap to the bound is at most this.
    pub gap: Option<f64>,
    /// How many solutions, each differing from every earlier one in at least `min_diff` choices.
    pub solutions: usize,
    pub min_diff: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            solver: SolverKind::Cbc,
            time_limit_s: None,
            gap: None,
            solutions: 1,
            min_diff: 1,
        }
    }
}

impl SolveOptions {
    /// Checks every value once, wherever the options came from (a constraint file, the command
    /// line, a notebook).
    pub fn check(&self) -> Result<(), SearchError> {
        let bad = |problem: &str| Err(SearchError::Options(problem.to_string()));
        if self.solutions == 0 {
            return bad("solutions must be at least 1");
        }
        if self.time_limit_s.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
            return bad("the time limit must be a positive number of seconds");
        }
        if self.gap.is_some_and(|g| !(g.is_finite() && g >= 0.0)) {
            return bad("the gap must be a non-negative number");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Proven optimal.
    Optimal,
    /// The best found when the time limit struck.
    TimeLimit,
    /// Within the requested gap of the bound.
    Gap,
    /// A baseline's answer: feasible, with no claim of optimality.
    Heuristic,
}

#[derive(Clone, Debug)]
pub struct Solved {
    pub choice: Choice,
    pub objective: f64,
    pub status: Status,
    pub solve_ms: f64,
    /// Candidates the solver saw (after dropping dominated ones).
    pub variables: usize,
}

/// The program in numbers: every coefficient gathered once (so every missing key is reported
/// before solving), limits with their constants moved to the bound.
pub struct Program {
    pub objective: Vec<f64>,
    pub maximize: bool,
    pub rows: Vec<Row>,
}

#[derive(Clone)]
pub struct Row {
    pub sense: Sense,
    pub bound: f64,
    pub coefficients: Vec<f64>,
}

impl Program {
    pub fn new(problem: &Problem, objective: &Objective, limits: &[Limit]) -> Result<Self, SearchError> {
        let n = problem.candidates.len();
        Ok(Program {
            objective: (0..n)
                .map(|c| problem.value(c, &objective.key))
                .collect::<Result<_, _>>()?,
            maximize: objective.maximize,
            rows: limits
                .iter()
                .map(|limit| {
                    Ok(Row {
                        sense: limit.sense,
                        bound: limit.bound - limit.constant,
                        coefficients: (0..n)
                            .map(|c| limit.coefficient(problem, c))
                            .collect::<Result<_, _>>()?,
                    })
                })
                .collect::<Result<_, SearchError>>()?,
        })
    }

    /// Whether candidate `a` is at least as good as `b` everywhere.
    fn covers_all(&self, a: usize, b: usize) -> bool {
        let objective_ok = if self.maximize {
            self.objective[a] >= self.objective[b]
        } else {
            self.objective[a] <= self.objective[b]
        };
        objective_ok
            && self.rows.iter().all(|row| match row.sense {
                Sense::AtMost => row.coefficients[a] <= row.coefficients[b],
                Sense::AtLeast => row.coefficients[a] >= row.coefficients[b],
            })
    }

    /// Candidates not dominated by another of the same span (of two equal ones the first stays).
    fn undominated(&self, problem: &Problem) -> Vec<usize> {
        let n = problem.candidates.len();
        let same_span = |a: usize, b: usize| {
            let (x, y) = (&problem.candidates[a], &problem.candidates[b]);
            x.first == y.first && x.last == y.last
        };
        (0..n)
            .filter(|&b| {
                !(0..n).any(|a| a != b && same_span(a, b) && self.covers_all(a, b) && (!self.covers_all(b, a) || a < b))
            })
            .collect()
    }
}

/// The best total of `coefficient` reachable by any cover of the layers (ignoring every other
/// limit): a shortest path over layer boundaries, exact also with multi-layer candidates.
pub fn best_alone(problem: &Problem, coefficient: &[f64], maximize: bool) -> f64 {
    let worst = if maximize { f64::NEG_INFINITY } else { f64::INFINITY };
    let mut best = vec![worst; problem.layers + 1];
    best[problem.layers] = 0.0;
    for layer in (0..problem.layers).rev() {
        for c in problem.starting_at(layer) {
            let next = best[problem.candidates[c].last + 1];
            let value = coefficient[c] + next;
            if next.is_finite()
                && (if maximize {
                    value > best[layer]
                } else {
                    value < best[layer]
                })
            {
                best[layer] = value;
            }
        }
    }
    best[0]
}

/// Solves for up to `options.solutions` diverse solutions, best first. `start`, when given and
/// feasible, seeds CBC's first solve.
pub fn solve(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    options: &SolveOptions,
    start: Option<&Choice>,
) -> Result<Vec<Solved>, SearchError> {
    options.check()?;
    let program = Program::new(problem, objective, limits)?;
    let mut found: Vec<Solved> = Vec::new();
    while found.len() < options.solutions.max(1) {
        // Dominance is only safe without diversity cuts: a cut may forbid the dominating one.
        let active: Vec<usize> = if found.is_empty() {
            program.undominated(problem)
        } else {
            (0..problem.candidates.len()).collect()
        };
        let start = start.filter(|s| found.is_empty() && s.iter().all(|c| active.contains(c)));
        match solve_program(problem, &program, options, &active, &found, start) {
            Ok((choice, status, variables, solve_ms)) => {
                verify(problem, limits, &choice).map_err(|text| match status {
                    // A CBC stop on time need not hold a feasible point at all.
                    Status::TimeLimit => SearchError::NoSolutionInTime(text),
                    _ => SearchError::Verification(text),
                })?;
                found.push(Solved {
                    objective: objective.value(problem, &choice)?,
                    choice,
                    status,
                    solve_ms,
                    variables,
                });
            }
            Err(ResolutionError::Infeasible) if !found.is_empty() => break,
            Err(ResolutionError::Infeasible) => return Err(super::diagnose::infeasible(problem, limits, &program)),
            Err(e) => return Err(SearchError::Solver(e.to_string())),
        }
    }
    Ok(found)
}

/// One solve over the `active` candidates, with a diversity cut per earlier solution: the
/// chosen candidates in layer order, the solver's status, how many variables it saw and the
/// milliseconds it took, building included.
pub fn solve_program(
    problem: &Problem,
    program: &Program,
    options: &SolveOptions,
    active: &[usize],
    earlier: &[Solved],
    start: Option<&Choice>,
) -> Result<(Choice, Status, usize, f64), ResolutionError> {
    let began = Instant::now();
    let mut variables = ProblemVariables::new();
    let x: Vec<Variable> = active.iter().map(|_| variables.add(variable().binary())).collect();
    let objective_expr: Expression = active.iter().zip(&x).map(|(&c, &v)| program.objective[c] * v).sum();
    let unsolved = if program.maximize {
        variables.maximise(objective_expr)
    } else {
        variables.minimise(objective_expr)
    };
    let mut constraints = Vec::new();
    for layer in 0..problem.layers {
        let cover: Expression = active
            .iter()
            .zip(&x)
            .filter(|(c, _)| problem.candidates[**c].covers(layer))
            .map(|(_, &v)| Expression::from(v))
            .sum();
        constraints.push(constraint!(cover == 1));
    }
    for row in &program.rows {
        let total: Expression = active.iter().zip(&x).map(|(&c, &v)| row.coefficients[c] * v).sum();
        let bound = row.bound;
        constraints.push(match row.sense {
            Sense::AtMost => constraint!(total <= bound),
            Sense::AtLeast => constraint!(total >= bound),
        });
    }
    for solution in earlier {
        let shared: Expression = active
            .iter()
            .zip(&x)
            .filter(|(c, _)| solution.choice.contains(c))
            .map(|(_, &v)| Expression::from(v))
            .sum();
        let most = solution.choice.len() as f64 - options.min_diff as f64;
        constraints.push(constraint!(shared <= most));
    }
    let outcome = match options.solver {
        SolverKind::Cbc => {
            let mut model = unsolved.using(good_lp::coin_cbc);
            model.set_parameter("log", "0");
            // One row per layer plus a few knapsack rows: the LP bound is already tight, and root
            // cuts, preprocessing and the feasibility pump cost more than they save (80 × 16
            // random libraries, two limits, 21 libraries, one sitting: median 46.7 ms per solve with
            // cuts and preprocessing off, 25.6 ms with the pump off as well).
            model.set_parameter("cuts", "off");
            model.set_parameter("preprocess", "off");
            model.set_parameter("feas", "off");
            if let Some(seconds) = options.time_limit_s {
                model.set_parameter("seconds", &seconds.to_string());
            }
            if let Some(start) = start {
                model = model.with_initial_solution(
                    active
                        .iter()
                        .zip(&x)
                        .map(|(c, &v)| (v, if start.contains(c) { 1.0 } else { 0.0 })),
                );
            }
            if let Some(gap) = options.gap {
                model = model
                    .with_mip_gap(gap as f32)
                    .map_err(|e| ResolutionError::Str(e.to_string()))?;
            }
            run(model, constraints, &x)
        }
        SolverKind::Microlp => run(unsolved.using(good_lp::microlp), constraints, &x),
    };
    let (values, status) = outcome?;
    let mut choice: Choice = active
        .iter()
        .zip(&values)
        .filter(|(_, v)| **v > 0.5)
        .map(|(&c, _)| c)
        .collect();
    choice.sort_by_key(|&c| problem.candidates[c].first);
    let status = match status {
        SolutionStatus::Optimal => Status::Optimal,
        SolutionStatus::TimeLimit => Status::TimeLimit,
        SolutionStatus::GapLimit => Status::Gap,
    };
    Ok((choice, status, active.len(), began.elapsed().as_secs_f64() * 1e3))
}

fn run<M: SolverModel<Error = ResolutionError>>(
    mut model: M,
    constraints: Vec<good_lp::Constraint>,
    x: &[Variable],
) -> Result<(Vec<f64>, SolutionStatus), ResolutionError> {
    for c in constraints {
        model.add_constraint(c);
    }
    let solution = model.solve()?;
    Ok((x.iter().map(|&v| solution.value(v)).collect(), solution.status()))
}

/// Checks that `choice` covers every layer once and meets every limit; says what fails.
pub fn verify(problem: &Problem, limits: &[Limit], choice: &Choice) -> Result<(), String> {
    if !problem.is_cover(choice) {
        return Err("the choice does not cover every layer exactly once".into());
    }
    for limit in limits {
        let total = limit.total(problem, choice).map_err(|e| e.to_string())?;
        if !limit.holds(total) {
            return Err(format!(
                "{} = {total} breaks {} {} {} ({})",
                limit.name,
                limit.name,
                limit.sense.symbol(),
                limit.bound,
                limit.origin
            ));
        }
    }
    Ok(())
}
