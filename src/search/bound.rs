//! Lower bounds on the layer-selection program, and the candidates they rule out. Moving the
//! limits into the objective with multipliers λ ≥ 0 gives, for every feasible cover x,
//! `cost(x) ≥ L(λ) = min over covers Σ (cost + λ·a) − λ·b`: a shortest path over the layer
//! boundaries. Covers form an integral polytope, so the best λ gives the LP relaxation's bound;
//! it is found by Kelley's cutting planes (each cover met is a plane; the master problem, a
//! linear program in λ and one more variable, is solved by microlp). Whatever λ is reached,
//! a candidate whose cheapest cover under the Lagrangian weights already exceeds a known
//! feasible cost cannot be in a better cover, and is dropped exactly (reduced-cost fixing).
//! Knows the program's shape (`Form`), not the library.

use good_lp::{Expression, ProblemVariables, Solution as _, SolverModel, constraint, variable};

use super::form::Form;

/// The best bound reached and what reached it.
pub struct Dual {
    /// No feasible cover costs less.
    pub bound: f64,
    pub multipliers: Vec<f64>,
    /// Every cover met on the way, each cheapest under some multipliers.
    pub covers: Vec<Vec<usize>>,
}

/// At most this many planes; Kelley's method converges in a few dozen on one to three limits.
const ROUNDS: usize = 150;

fn weights(form: &Form, multipliers: &[f64]) -> Vec<f64> {
    let mut weight = form.cost.clone();
    for (row, &l) in form.rows.iter().zip(multipliers) {
        if l != 0.0 {
            weight.iter_mut().zip(row).for_each(|(w, a)| *w += l * a);
        }
    }
    weight
}

fn lambda_b(form: &Form, multipliers: &[f64]) -> f64 {
    multipliers.iter().zip(&form.bounds).map(|(l, b)| l * b).sum()
}

/// `L(λ)` and the cover that attains it (none when nothing covers the layers).
pub fn evaluate(form: &Form, multipliers: &[f64]) -> Option<(f64, Vec<usize>)> {
    let (value, cover) = form.cheapest(&weights(form, multipliers))?;
    Some((value - lambda_b(form, multipliers), cover))
}

/// A plane of the master problem: `θ ≤ cost + Σ λ_r · (total_r − bound_r)`.
struct Plane {
    cost: f64,
    excess: Vec<f64>,
}

impl Plane {
    fn new(form: &Form, cover: &[usize]) -> Self {
        Plane {
            cost: form.cost_of(cover),
            excess: form
                .totals(cover)
                .iter()
                .zip(&form.bounds)
                .map(|(t, b)| t - b)
                .collect(),
        }
    }
}

/// Maximises `L(λ)` from the covers in `seeds` (earlier solves' answers: planes at no cost).
/// None when the candidates in play cover nothing.
pub fn dual(form: &Form, seeds: &[Vec<usize>]) -> Option<Dual> {
    let k = form.rows.len();
    let (mut best, first) = evaluate(form, &vec![0.0; k])?;
    let mut multipliers = vec![0.0; k];
    let mut covers = vec![first];
    let feasible_at_zero = form.feasible(&form.totals(&covers[0]));
    if k == 0 || feasible_at_zero {
        // The cheapest cover holds every limit: it is optimal and the bound is its cost.
        return Some(Dual {
            bound: best,
            multipliers,
            covers,
        });
    }
    let mut planes: Vec<Plane> = seeds.iter().chain(&covers).map(|c| Plane::new(form, c)).collect();
    // A box on λ keeps the master bounded; multipliers beyond it would only matter where a
    // limit can barely be met, and the bound stays valid with any λ.
    let spread: f64 = form
        .starts
        .iter()
        .flatten()
        .map(|&p| form.cost[p].abs())
        .fold(0.0, f64::max)
        * form.layers as f64;
    let cap: Vec<f64> = form
        .rows
        .iter()
        .zip(&form.bounds)
        .map(|(row, b)| {
            let unit = row.iter().map(|a| a.abs()).fold(b.abs(), f64::max).max(1e-12);
            1e4 * spread.max(1e-12) / unit
        })
        .collect();
    for _ in 0..ROUNDS {
        let (theta, lambda) = master(&planes, &cap)?;
        let (value, cover) = evaluate(form, &lambda)?;
        if value > best {
            best = value;
            multipliers = lambda;
        }
        let tolerance = 1e-9 * best.abs().max(1.0);
        if theta - best <= tolerance || covers.contains(&cover) {
            break;
        }
        planes.push(Plane::new(form, &cover));
        covers.push(cover);
    }
    Some(Dual {
        bound: best,
        multipliers,
        covers,
    })
}

/// The master problem: `max θ` over λ in its box and θ under every plane. None if microlp fails.
fn master(planes: &[Plane], cap: &[f64]) -> Option<(f64, Vec<f64>)> {
    let mut vars = ProblemVariables::new();
    let theta = vars.add(variable());
    let lambda: Vec<_> = cap.iter().map(|&u| vars.add(variable().min(0.0).max(u))).collect();
    let mut model = vars.maximise(theta).using(good_lp::microlp);
    for plane in planes {
        let slope: Expression = lambda.iter().zip(&plane.excess).map(|(&l, &e)| e * l).sum();
        model.add_constraint(constraint!(theta - slope <= plane.cost));
    }
    let solution = model.solve().ok()?;
    Some((
        solution.value(theta),
        lambda.iter().map(|&l| solution.value(l).max(0.0)).collect(),
    ))
}

/// Positions that may be in a cover costing at most `ceiling`: under multipliers λ, the cheapest
/// cover through a position, less λ·b, bounds every feasible cover through it from below.
pub fn keep(form: &Form, multipliers: &[f64], ceiling: f64) -> Vec<usize> {
    let weight = weights(form, multipliers);
    let (before, _) = form.forward(&weight);
    let (after, _) = form.backward(&weight);
    let offset = lambda_b(form, multipliers);
    let tolerance = 1e-9 * ceiling.abs().max(1.0);
    (0..form.len())
        .filter(|&p| before[form.first[p]] + weight[p] + after[form.last[p] + 1] - offset <= ceiling + tolerance)
        .collect()
}

/// For each position in `positions`, the cheapest cover through it under the Lagrangian weights
/// of `multipliers`: covers near the LP optimum that take each of those blocks.
pub fn covers_through(form: &Form, multipliers: &[f64], positions: &[usize]) -> Vec<Vec<usize>> {
    let weight = weights(form, multipliers);
    let (_, arrive) = form.forward(&weight);
    let (_, take) = form.backward(&weight);
    positions
        .iter()
        .filter_map(|&p| form.through(p, &arrive, &take))
        .collect()
}
