//! The layer-selection mixed-integer program (DESIGN §1.7): one binary per candidate, every
//! parent layer covered exactly once, linear limits, an objective on one key, diversity cuts for
//! further solutions. Solved by COIN-OR CBC (compiled from source, linked statically) or by
//! microlp, the pure-Rust fallback, after three exact reductions for the first solution:
//!
//! 1. candidates that another candidate of the same span beats or equals on the objective and on
//!    every limit are dropped (never needed for the best solution);
//! 2. a feasible answer is found without search (earlier answers, the covers met while bounding,
//!    each repaired and improved by single-layer changes: `heuristic`);
//! 3. the LP bound (the Lagrangian dual, `bound`) rules out every candidate that cannot be in a
//!    cover better than that answer. If the bound meets the answer, it is proven optimal with no
//!    branching; otherwise the solver gets the rest, with the answer's cost as its cutoff and
//!    rows that keep, of the many ways to place the same block types over the layers, only the
//!    cheapest order (`exchanges`), and "no better cover" proves the answer optimal.
//!
//! What one solve learns (library values by key, the answers and covers met) is kept in a
//! [`Warm`] for the next solve on the same library: a sweep's points, a search's batch sizes.
//! Every answer is re-checked against every limit before it is returned.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use good_lp::solvers::{SolutionStatus, WithMipGap};
use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution as _, SolverModel, Variable, constraint, variable,
};
use serde::{Deserialize, Serialize};

use super::SearchError;
use super::bound::{covers_through, dual, keep};
use super::form::Form;
use super::heuristic::Walk;
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
    /// Candidates left after dropping dominated ones.
    pub undominated: usize,
    /// Candidates the MIP solver saw: 0 when the bound proved the first answer optimal.
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
        Self::with(problem, objective, limits, &mut Warm::default())
    }

    /// The program, taking library values from `warm` when gathered before.
    pub fn with(
        problem: &Problem,
        objective: &Objective,
        limits: &[Limit],
        warm: &mut Warm,
    ) -> Result<Self, SearchError> {
        let n = problem.candidates.len();
        let mut rows = Vec::new();
        for limit in limits {
            let mut coefficients = vec![0.0; n];
            for (key, weight) in &limit.terms {
                let column = warm.column(problem, key)?;
                coefficients.iter_mut().zip(column).for_each(|(c, v)| *c += weight * v);
            }
            rows.push(Row {
                sense: limit.sense,
                bound: limit.bound - limit.constant,
                coefficients,
            });
        }
        Ok(Program {
            objective: warm.column(problem, &objective.key)?.to_vec(),
            maximize: objective.maximize,
            rows,
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
    pub fn undominated(&self, problem: &Problem) -> Vec<usize> {
        let mut spans: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (c, candidate) in problem.candidates.iter().enumerate() {
            spans.entry((candidate.first, candidate.last)).or_default().push(c);
        }
        let mut kept: Vec<usize> = spans
            .values()
            .flat_map(|group| {
                group.iter().copied().filter(|&b| {
                    !group
                        .iter()
                        .any(|&a| a != b && self.covers_all(a, b) && (!self.covers_all(b, a) || a < b))
                })
            })
            .collect();
        kept.sort_unstable();
        kept
    }
}

/// What solves on one library pass on to the next: its values gathered by key, and the covers
/// met (answers, and covers cheapest under some multipliers), which seed the next bound and its
/// starting answers. Use one per library.
#[derive(Debug, Default)]
pub struct Warm {
    columns: HashMap<String, Vec<f64>>,
    covers: Vec<Choice>,
}

/// Covers kept between solves, the most recent.
const WARM_COVERS: usize = 64;

impl Warm {
    /// The value of `key` for every candidate (an error names the first that lacks it).
    fn column(&mut self, problem: &Problem, key: &str) -> Result<&[f64], SearchError> {
        if !self.columns.contains_key(key) {
            let column = (0..problem.candidates.len())
                .map(|c| problem.value(c, key))
                .collect::<Result<Vec<_>, _>>()?;
            self.columns.insert(key.to_string(), column);
        }
        Ok(&self.columns[key])
    }

    fn remember(&mut self, choices: impl IntoIterator<Item = Choice>) {
        for choice in choices {
            if !self.covers.contains(&choice) {
                self.covers.push(choice);
            }
        }
        let excess = self.covers.len().saturating_sub(WARM_COVERS);
        self.covers.drain(..excess);
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
/// feasible, is one more starting answer.
pub fn solve(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    options: &SolveOptions,
    start: Option<&Choice>,
) -> Result<Vec<Solved>, SearchError> {
    solve_warm(problem, objective, limits, options, start, &mut Warm::default())
}

/// [`solve`], starting from what earlier solves on the same library left in `warm`, and
/// leaving what this one learns there.
pub fn solve_warm(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    options: &SolveOptions,
    start: Option<&Choice>,
    warm: &mut Warm,
) -> Result<Vec<Solved>, SearchError> {
    options.check()?;
    let program = Program::with(problem, objective, limits, warm)?;
    let mut found: Vec<Solved> = Vec::new();
    while found.len() < options.solutions.max(1) {
        let outcome = if found.is_empty() {
            solve_first(problem, &program, options, start, warm)
        } else {
            // Dominance and fixing are only safe without diversity cuts: a cut may forbid the
            // candidate that rules another out.
            let everyone: Vec<usize> = (0..problem.candidates.len()).collect();
            solve_program(problem, &program, options, &everyone, &found, None).map(|(choice, status, ms)| Reached {
                choice,
                status,
                solve_ms: ms,
                undominated: everyone.len(),
                variables: everyone.len(),
            })
        };
        match outcome {
            Ok(reached) => {
                verify(problem, limits, &reached.choice).map_err(|text| match reached.status {
                    // A CBC stop on time need not hold a feasible point at all.
                    Status::TimeLimit => SearchError::NoSolutionInTime(text),
                    _ => SearchError::Verification(text),
                })?;
                found.push(Solved {
                    objective: objective.value(problem, &reached.choice)?,
                    choice: reached.choice,
                    status: reached.status,
                    solve_ms: reached.solve_ms,
                    undominated: reached.undominated,
                    variables: reached.variables,
                });
            }
            Err(ResolutionError::Infeasible) if !found.is_empty() => break,
            Err(ResolutionError::Infeasible) => return Err(super::diagnose::infeasible(problem, limits, &program)),
            Err(e) => return Err(SearchError::Solver(e.to_string())),
        }
    }
    warm.remember(found.iter().map(|s| s.choice.clone()));
    Ok(found)
}

/// One solve's answer before it is re-checked.
struct Reached {
    choice: Choice,
    status: Status,
    solve_ms: f64,
    undominated: usize,
    variables: usize,
}

/// A cover within this share of a bound (at least this much in absolute terms) is optimal.
const OPTIMALITY: f64 = 1e-9;

/// The first (best) solution: dominance, a starting answer, the bound and what it rules out,
/// then the MIP solver on the rest with the answer's cost as cutoff.
fn solve_first(
    problem: &Problem,
    program: &Program,
    options: &SolveOptions,
    start: Option<&Choice>,
    warm: &mut Warm,
) -> Result<Reached, ResolutionError> {
    let began = Instant::now();
    let active = program.undominated(problem);
    let reached = |choice: Choice, status: Status, variables: usize| Reached {
        choice,
        status,
        solve_ms: began.elapsed().as_secs_f64() * 1e3,
        undominated: active.len(),
        variables,
    };
    let form = Form::new(problem, program, &active);
    let seeds: Vec<Vec<usize>> = warm
        .covers
        .iter()
        .chain(start)
        .filter_map(|choice| form.cover(choice))
        .collect();
    let Some(bound) = dual(&form, &seeds) else {
        return Err(ResolutionError::Infeasible);
    };
    warm.remember(bound.covers.iter().map(|c| form.choice(c)));
    let moves = form.single_layer();
    let Some(mut answer) = starting_answer(&form, &moves, &seeds, &bound.covers) else {
        // Nothing feasible was met: the solver decides, over every undominated candidate.
        let (choice, status, _) = solve_program(problem, program, options, &active, &[], None)?;
        return Ok(reached(choice, status, active.len()));
    };
    let mut cost = form.cost_of(&answer.cover);
    let mut kept = keep(&form, &bound.multipliers, cost);
    // What the bound leaves is small: polish the answer there (from the cheapest cover under
    // the multipliers through each block still in play, then two layers at a time), and rule
    // out more with the better answer.
    let mut in_play = vec![false; form.len()];
    kept.iter().for_each(|&p| in_play[p] = true);
    let near: Vec<Vec<usize>> = moves
        .iter()
        .map(|list| list.iter().copied().filter(|&p| in_play[p]).collect())
        .collect();
    let others: Vec<usize> = kept.iter().copied().filter(|p| !answer.cover.contains(p)).collect();
    for cover in covers_through(&form, &bound.multipliers, &others) {
        let mut walk = Walk::new(&form, cover);
        if walk.repair(&form, &near) {
            walk.improve(&form, &near);
            if form.cost_of(&walk.cover) < form.cost_of(&answer.cover) {
                answer = walk;
            }
        }
    }
    while answer.improve(&form, &near) | answer.improve_pairs(&form, &near) {}
    if form.cost_of(&answer.cover) < cost {
        cost = form.cost_of(&answer.cover);
        kept = keep(&form, &bound.multipliers, cost);
    }
    let gap = cost - bound.bound;
    if gap <= OPTIMALITY * cost.abs().max(1.0) {
        return Ok(reached(form.choice(&answer.cover), Status::Optimal, 0));
    }
    if options.gap.is_some_and(|g| gap <= g * cost.abs()) {
        return Ok(reached(form.choice(&answer.cover), Status::Gap, 0));
    }
    let rest: Vec<usize> = kept.into_iter().map(|p| form.candidates[p]).collect();
    match solve_program(problem, program, options, &rest, &[], Some(cost)) {
        Ok((choice, status, _)) => {
            let better = form
                .cover(&choice)
                .filter(|c| problem.is_cover(&choice) && form.feasible(&form.totals(c)))
                .is_some_and(|c| form.cost_of(&c) < cost);
            // No better cover found: the answer is optimal unless the solver stopped early.
            let choice = if better { choice } else { form.choice(&answer.cover) };
            Ok(reached(choice, status, rest.len()))
        }
        // Nothing beats the cutoff: the answer is optimal.
        Err(ResolutionError::Infeasible) => Ok(reached(form.choice(&answer.cover), Status::Optimal, rest.len())),
        Err(e) => Err(e),
    }
}

/// The cheapest feasible cover found from `seeds` (earlier answers) and the covers the bound
/// met: the cheapest feasible one improved, and the last infeasible ones met (those nearest the
/// best multipliers) repaired and improved.
fn starting_answer(form: &Form, moves: &[Vec<usize>], seeds: &[Vec<usize>], met: &[Vec<usize>]) -> Option<Walk> {
    let walks = seeds.iter().chain(met).map(|cover| Walk::new(form, cover.clone()));
    let (feasible, infeasible): (Vec<Walk>, Vec<Walk>) = walks.partition(|w| w.feasible(form));
    let cheapest = feasible
        .into_iter()
        .min_by(|a, b| form.cost_of(&a.cover).total_cmp(&form.cost_of(&b.cover)));
    let mut best: Option<Walk> = None;
    for mut walk in cheapest.into_iter().chain(infeasible.into_iter().rev().take(2)) {
        if !walk.repair(form, moves) {
            continue;
        }
        walk.improve(form, moves);
        if best
            .as_ref()
            .is_none_or(|b| form.cost_of(&walk.cover) < form.cost_of(&b.cover))
        {
            best = Some(walk);
        }
    }
    best
}

/// Candidates that must be chosen because they alone can cover some layer (and, in turn,
/// whatever that rules out): `(forced, free)`, or none when some layer cannot be covered.
fn presolve(problem: &Problem, active: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    let mut forced: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = active.to_vec();
    let mut covered = vec![false; problem.layers];
    loop {
        let mut coverers: Vec<Vec<usize>> = vec![Vec::new(); problem.layers];
        for &c in &free {
            let candidate = &problem.candidates[c];
            (candidate.first..=candidate.last).for_each(|layer| coverers[layer].push(c));
        }
        let mut lone: Vec<usize> = Vec::new();
        for (layer, list) in coverers.iter().enumerate() {
            match list.as_slice() {
                [] if !covered[layer] => return None,
                [c] if !lone.contains(c) => lone.push(*c),
                _ => {}
            }
        }
        if lone.is_empty() {
            return Some((forced, free));
        }
        for &c in &lone {
            let candidate = &problem.candidates[c];
            covered[candidate.first..=candidate.last]
                .iter_mut()
                .for_each(|x| *x = true);
        }
        // Everything overlapping a forced candidate is out, the forced ones included.
        free.retain(|&c| {
            let candidate = &problem.candidates[c];
            !covered[candidate.first..=candidate.last].iter().any(|&x| x)
        });
        forced.extend(lone);
    }
}

/// CBC's strong branching (trying candidate branches before choosing one) pays only on larger
/// programs. Measured on real-shaped libraries with the answer's cutoff: the ten settings of
/// `tessera bench search` at 80 × 16 (37 to 69 binaries left to CBC) took 114-126 ms in total
/// without it and 153-161 ms with it (three runs each); at 126 × 54 the programs of 6 to 75
/// binaries were as fast or faster without, and the one of 181 took 966 ms without and 190 ms
/// with.
const STRONG_BRANCHING_FROM: usize = 100;

/// Exchange constraints: two layers that both offer blocks of types A and B (the same
/// coefficient in every limit) can swap them without changing any limit's total, so the swap
/// that lowers the objective never hurts. Order the layers offering both by what moving from A
/// to B costs them (ties by layer); then no layer may take A while a later one takes B. Some
/// optimum always obeys every such rule (break ties by an infinitesimal cost that grows with
/// the layer: every forbidden pattern is then a strict loss), so the optimum is kept, while
/// the solver no longer branches over the many ways to spread the same types over layers
/// (measured on a `paper`-shaped library, 126 layers × 54 blocks, KL with runtime ≤ 0.9× the
/// parent's: CBC took 190 ms with these rows and 775 ms without; on 80 × 16 the difference was
/// within the machine's noise).
/// Encoded per pair of types as a chain: `seen_k ≥ x[l_1..l_k, A]`, `x[l_(k+1), B] + seen_k ≤ 1`.
fn exchanges(
    problem: &Problem,
    program: &Program,
    free: &[usize],
    x: &[Variable],
    variables: &mut ProblemVariables,
) -> Vec<good_lp::Constraint> {
    let sign = if program.maximize { -1.0 } else { 1.0 };
    let mut types: Vec<Vec<u64>> = Vec::new();
    // Per layer, its single-layer blocks as (type, cost, variable).
    let mut layers: BTreeMap<usize, Vec<(usize, f64, Variable)>> = BTreeMap::new();
    for (&c, &v) in free.iter().zip(x) {
        let candidate = &problem.candidates[c];
        if !candidate.is_single_layer() {
            continue;
        }
        let key: Vec<u64> = program.rows.iter().map(|row| row.coefficients[c].to_bits()).collect();
        let t = types.iter().position(|k| *k == key).unwrap_or_else(|| {
            types.push(key);
            types.len() - 1
        });
        layers
            .entry(candidate.first)
            .or_default()
            .push((t, sign * program.objective[c], v));
    }
    // Per pair of types, the layers offering both: (cost of moving from the first to the second,
    // layer, the two variables).
    type Chain = Vec<(f64, usize, Variable, Variable)>;
    let mut pairs: BTreeMap<(usize, usize), Chain> = BTreeMap::new();
    for (&layer, blocks) in &layers {
        for &(a, cost_a, var_a) in blocks {
            for &(b, cost_b, var_b) in blocks {
                if a < b {
                    pairs
                        .entry((a, b))
                        .or_default()
                        .push((cost_b - cost_a, layer, var_a, var_b));
                }
            }
        }
    }
    let mut rows = Vec::new();
    for mut chain in pairs.into_values().filter(|chain| chain.len() > 1) {
        chain.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
        let mut seen: Option<Variable> = None;
        for &(_, _, var_a, var_b) in &chain {
            if let Some(before) = seen {
                rows.push(constraint!(var_b + before <= 1.0));
            }
            let now = variables.add(variable().min(0.0).max(1.0));
            rows.push(constraint!(now - var_a >= 0.0));
            if let Some(before) = seen {
                rows.push(constraint!(now - before >= 0.0));
            }
            seen = Some(now);
        }
    }
    rows
}

/// One solve over the `active` candidates, with a diversity cut per earlier solution and, when
/// given, a cutoff: only covers cheaper than it (in the minimising sense) are sought. Layers
/// that only one candidate can cover are settled before the solver sees the rest. Returns the
/// chosen candidates in layer order, the solver's status and the milliseconds it took, building
/// included.
pub fn solve_program(
    problem: &Problem,
    program: &Program,
    options: &SolveOptions,
    active: &[usize],
    earlier: &[Solved],
    cutoff: Option<f64>,
) -> Result<(Choice, Status, f64), ResolutionError> {
    let began = Instant::now();
    let sign = if program.maximize { -1.0 } else { 1.0 };
    let (forced, free) = presolve(problem, active).ok_or(ResolutionError::Infeasible)?;
    let settled = |coefficient: &[f64]| forced.iter().map(|&c| coefficient[c]).sum::<f64>();
    let finish = |mut choice: Choice, status: Status| {
        choice.extend(&forced);
        choice.sort_by_key(|&c| problem.candidates[c].first);
        Ok((choice, status, began.elapsed().as_secs_f64() * 1e3))
    };
    let mut variables = ProblemVariables::new();
    let x: Vec<Variable> = free.iter().map(|_| variables.add(variable().binary())).collect();
    // Always minimised, so that a cutoff means the same to every solver.
    let objective_expr: Expression = free
        .iter()
        .zip(&x)
        .map(|(&c, &v)| sign * program.objective[c] * v)
        .sum();
    // Only covers better by more than the tolerance of "optimal" are sought: one that merely
    // ties would be searched for and then proven optimal, at no gain.
    let cutoff = cutoff.map(|cut| cut - OPTIMALITY * cut.abs().max(1.0) - sign * settled(&program.objective));
    let mut constraints = Vec::new();
    let mut covering: Vec<Option<Expression>> = vec![None; problem.layers];
    for (&c, &v) in free.iter().zip(&x) {
        let candidate = &problem.candidates[c];
        for cover in &mut covering[candidate.first..=candidate.last] {
            *cover.get_or_insert_with(Expression::default) += v;
        }
    }
    constraints.extend(covering.into_iter().flatten().map(|cover| constraint!(cover == 1)));
    if earlier.is_empty() {
        constraints.extend(exchanges(problem, program, &free, &x, &mut variables));
    }
    for row in &program.rows {
        let total: Expression = free.iter().zip(&x).map(|(&c, &v)| row.coefficients[c] * v).sum();
        let bound = row.bound - settled(&row.coefficients);
        constraints.push(match row.sense {
            Sense::AtMost => constraint!(total <= bound),
            Sense::AtLeast => constraint!(total >= bound),
        });
    }
    for solution in earlier {
        let shared: Expression = free
            .iter()
            .zip(&x)
            .filter(|(c, _)| solution.choice.contains(c))
            .map(|(_, &v)| Expression::from(v))
            .sum();
        let already = forced.iter().filter(|c| solution.choice.contains(c)).count();
        let most = solution.choice.len() as f64 - options.min_diff as f64 - already as f64;
        constraints.push(constraint!(shared <= most));
    }
    if free.is_empty() {
        return if forced_answer_holds(program, options, &forced, earlier, cutoff) {
            finish(Vec::new(), Status::Optimal)
        } else {
            Err(ResolutionError::Infeasible)
        };
    }
    let (values, status) = run_solver(options, variables, objective_expr, constraints, &x, cutoff)?;
    let choice: Choice = free
        .iter()
        .zip(&values)
        .filter(|(_, v)| **v > 0.5)
        .map(|(&c, _)| c)
        .collect();
    let status = match status {
        SolutionStatus::Optimal => Status::Optimal,
        SolutionStatus::TimeLimit => Status::TimeLimit,
        SolutionStatus::GapLimit => Status::Gap,
    };
    finish(choice, status)
}

/// With nothing left to choose: whether the `forced` candidates hold every row, differ enough
/// from the `earlier` solutions and beat the `cutoff` (already net of what they settle).
fn forced_answer_holds(
    program: &Program,
    options: &SolveOptions,
    forced: &[usize],
    earlier: &[Solved],
    cutoff: Option<f64>,
) -> bool {
    let rows_hold = program.rows.iter().all(|row| {
        let total: f64 = forced.iter().map(|&c| row.coefficients[c]).sum();
        let slack = 1e-9 * row.bound.abs().max(1.0);
        match row.sense {
            Sense::AtMost => total <= row.bound + slack,
            Sense::AtLeast => total >= row.bound - slack,
        }
    });
    let differs = earlier.iter().all(|solution| {
        let shared = forced.iter().filter(|c| solution.choice.contains(c)).count();
        shared + options.min_diff <= solution.choice.len()
    });
    rows_hold && differs && cutoff.is_none_or(|cut| 0.0 < cut)
}

/// Minimises `objective` over `constraints` with the solver `options` name; with a `cutoff`,
/// only answers below it are sought.
fn run_solver(
    options: &SolveOptions,
    variables: ProblemVariables,
    objective: Expression,
    mut constraints: Vec<good_lp::Constraint>,
    x: &[Variable],
    cutoff: Option<f64>,
) -> Result<(Vec<f64>, SolutionStatus), ResolutionError> {
    let unsolved = variables.minimise(objective.clone());
    match options.solver {
        SolverKind::Cbc => {
            let mut model = unsolved.using(good_lp::coin_cbc);
            model.set_parameter("log", "0");
            // One row per layer plus a few knapsack rows: the LP bound is already tight, and root
            // cuts, preprocessing and the feasibility pump cost more than they save (80 × 16
            // random libraries, two limits, 21 libraries, one sitting: median 46.7 ms per solve with
            // cuts and preprocessing off, 25.6 ms with the pump off as well). With a cutoff the
            // solve is mostly a proof that nothing beats the answer, and there preprocessing pays:
            // the ten real-shaped settings' MIP solves (those that reach CBC, summed) at 80 × 16
            // took 70 ms before and 55 ms after, at 126 × 54 239 and 143 ms (the hardest 163 → 84),
            // random 80 × 16 38 → 35 ms; knapsack or probing cuts made it slower (112 and 75 ms
            // at 80 × 16).
            model.set_parameter("cuts", "off");
            if cutoff.is_none() {
                model.set_parameter("preprocess", "off");
            }
            model.set_parameter("feas", "off");
            if let Some(seconds) = options.time_limit_s {
                model.set_parameter("seconds", &seconds.to_string());
            }
            if let Some(cutoff) = cutoff {
                // A near-optimal answer is known: only better covers are sought, and CBC's
                // heuristics, which hunt for a first good answer, have nothing left to do.
                model.set_parameter("cutoff", &cutoff.to_string());
                model.set_parameter("heuristicsOnOff", "off");
            }
            if x.len() < STRONG_BRANCHING_FROM {
                model.set_parameter("strongBranching", "0");
            }
            if let Some(gap) = options.gap {
                model = model
                    .with_mip_gap(gap as f32)
                    .map_err(|e| ResolutionError::Str(e.to_string()))?;
            }
            run(model, constraints, x)
        }
        SolverKind::Microlp => {
            if let Some(cutoff) = cutoff {
                constraints.push(constraint!(objective <= cutoff));
            }
            run(unsolved.using(good_lp::microlp), constraints, x)
        }
    }
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
