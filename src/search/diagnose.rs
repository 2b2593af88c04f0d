//! Why a search has no solution: the limit that cannot be met and the best value reachable for
//! it — alone (a shortest path over the layers), or, when each limit alone can be met, with all
//! the other limits in force (one solve per limit, its total as the objective).

use super::SearchError;
use super::limit::{Limit, Sense};
use super::mip::{Program, SolveOptions, best_alone, solve_program};
use super::problem::Problem;

pub fn infeasible(problem: &Problem, limits: &[Limit], program: &Program) -> SearchError {
    let best_of = |limit: &Limit, coefficients: &[f64]| {
        best_alone(problem, coefficients, limit.sense == Sense::AtLeast) + limit.constant
    };
    for (limit, row) in limits.iter().zip(&program.rows) {
        let best = best_of(limit, &row.coefficients);
        if !limit.holds(best) {
            return SearchError::Infeasible {
                limit: limit.name.clone(),
                origin: limit.origin.clone(),
                best,
                with_others: false,
            };
        }
    }
    let everyone: Vec<usize> = (0..problem.candidates.len()).collect();
    for (k, limit) in limits.iter().enumerate() {
        let others = Program {
            objective: program.rows[k].coefficients.clone(),
            maximize: limit.sense == Sense::AtLeast,
            rows: program
                .rows
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, row)| row.clone())
                .collect(),
        };
        if let Ok((choice, ..)) = solve_program(problem, &others, &SolveOptions::default(), &everyone, &[], None) {
            let best = limit.constant + choice.iter().map(|&c| others.objective[c]).sum::<f64>();
            return SearchError::Infeasible {
                limit: limit.name.clone(),
                origin: limit.origin.clone(),
                best,
                with_others: true,
            };
        }
    }
    SearchError::Infeasible {
        limit: limits.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "),
        origin: "no single limit, dropped, makes the rest feasible".into(),
        best: f64::NAN,
        with_others: true,
    }
}
