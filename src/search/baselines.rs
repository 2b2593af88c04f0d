//! Baselines judged by the same scores, costs and limits as the MIP: greedy (give up, first,
//! what costs most per unit of score), random draws from the library, the most parameters that
//! fit (the MIP with `stats.num_params` maximised), homogeneous (one variant name in every layer,
//! Minitron-like) and depth-only (whole layers removed in order of least block influence —
//! the objective of the layer's zero-parameter variant — ShortGPT-like). Each returns a feasible
//! choice or none.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::SearchError;
use super::limit::{Limit, Objective};
use super::mip::{SolveOptions, solve, verify};
use super::problem::{Choice, Problem};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    Greedy,
    Random,
    MaxParams,
    Homogeneous,
    DepthOnly,
}

pub const BASELINES: [Baseline; 5] = [
    Baseline::Greedy,
    Baseline::Random,
    Baseline::MaxParams,
    Baseline::Homogeneous,
    Baseline::DepthOnly,
];

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Greedy => "greedy",
            Baseline::Random => "random",
            Baseline::MaxParams => "max_params",
            Baseline::Homogeneous => "homogeneous",
            Baseline::DepthOnly => "depth_only",
        }
    }

    /// A feasible choice by this baseline, if it finds one.
    pub fn choose(
        self,
        problem: &Problem,
        objective: &Objective,
        limits: &[Limit],
        seed: u64,
    ) -> Result<Option<Choice>, SearchError> {
        match self {
            Baseline::Greedy => greedy(problem, objective, limits),
            Baseline::Random => random(problem, objective, limits, seed),
            Baseline::MaxParams => max_params(problem, limits),
            Baseline::Homogeneous => homogeneous(problem, objective, limits),
            Baseline::DepthOnly => depth_only(problem, objective, limits),
        }
    }
}

fn feasible(problem: &Problem, limits: &[Limit], choice: &Choice) -> bool {
    verify(problem, limits, choice).is_ok()
}

/// Single-layer candidates per layer.
fn per_layer(problem: &Problem) -> Vec<Vec<usize>> {
    (0..problem.layers)
        .map(|layer| {
            problem
                .starting_at(layer)
                .filter(|&c| problem.candidates[c].is_single_layer())
                .collect()
        })
        .collect()
}

fn sum_violation(problem: &Problem, limits: &[Limit], choice: &Choice) -> Result<f64, SearchError> {
    let mut sum = 0.0;
    for limit in limits {
        sum += limit.violation(limit.total(problem, choice)?);
    }
    Ok(sum)
}

/// From the best-scoring block in every layer, repeatedly take the single-layer change that
/// removes the most violation per unit of objective given up.
pub fn greedy(problem: &Problem, objective: &Objective, limits: &[Limit]) -> Result<Option<Choice>, SearchError> {
    let layers = per_layer(problem);
    let sign = if objective.maximize { -1.0 } else { 1.0 };
    let score = |c: usize| problem.value(c, &objective.key).map(|v| sign * v);
    let mut choice: Choice = Vec::new();
    for list in &layers {
        let mut best = None;
        for &c in list {
            let s = score(c)?;
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((c, s));
            }
        }
        match best {
            Some((c, _)) => choice.push(c),
            None => return Ok(None),
        }
    }
    let mut violation = sum_violation(problem, limits, &choice)?;
    while violation > 0.0 {
        let mut best: Option<(usize, usize, f64, f64)> = None;
        for (layer, list) in layers.iter().enumerate() {
            for &c in list {
                if c == choice[layer] {
                    continue;
                }
                let mut trial = choice.clone();
                trial[layer] = c;
                let after = sum_violation(problem, limits, &trial)?;
                let removed = violation - after;
                if removed <= 0.0 {
                    continue;
                }
                let cost = (score(c)? - score(choice[layer])?).max(0.0);
                let ratio = removed / (cost + 1e-12);
                if best.is_none_or(|(.., r, _)| ratio > r) {
                    best = Some((layer, c, ratio, after));
                }
            }
        }
        match best {
            Some((layer, c, _, after)) => {
                choice[layer] = c;
                violation = after;
            }
            None => return Ok(None),
        }
    }
    Ok(feasible(problem, limits, &choice).then_some(choice))
}

/// The best feasible of 2000 uniform draws.
fn random(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    seed: u64,
) -> Result<Option<Choice>, SearchError> {
    let layers = per_layer(problem);
    if layers.iter().any(|l| l.is_empty()) {
        return Ok(None);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let draws: Vec<Choice> = (0..2000)
        .map(|_| layers.iter().map(|l| l[rng.random_range(0..l.len())]).collect())
        .collect();
    best_feasible(problem, objective, limits, draws)
}

/// The best of `choices` that meets every limit.
fn best_feasible(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    choices: impl IntoIterator<Item = Choice>,
) -> Result<Option<Choice>, SearchError> {
    let mut best: Option<(Choice, f64)> = None;
    for choice in choices {
        if !feasible(problem, limits, &choice) {
            continue;
        }
        let value = objective.value(problem, &choice)?;
        if best.as_ref().is_none_or(|(_, b)| objective.better(value, *b)) {
            best = Some((choice, value));
        }
    }
    Ok(best.map(|(c, _)| c))
}

/// Parameters nearly tie between many choices, which makes proving the optimum a subset-sum
/// hunt (minutes on 40 × 10 random libraries); as a baseline, within 0.1% of the bound or the
/// best after a few seconds is enough.
fn max_params(problem: &Problem, limits: &[Limit]) -> Result<Option<Choice>, SearchError> {
    let objective = Objective {
        key: crate::cost::keys::stat(crate::cost::keys::NUM_PARAMS),
        maximize: true,
    };
    let options = SolveOptions {
        gap: Some(1e-3),
        time_limit_s: Some(5.0),
        ..SolveOptions::default()
    };
    match solve(problem, &objective, limits, &options, None) {
        Ok(mut found) => Ok(found.pop().map(|s| s.choice)),
        Err(SearchError::Infeasible { .. } | SearchError::NoSolutionInTime(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn homogeneous(problem: &Problem, objective: &Objective, limits: &[Limit]) -> Result<Option<Choice>, SearchError> {
    let layers = per_layer(problem);
    let uniform = layers.first().into_iter().flatten().filter_map(|&first| {
        let name = &problem.candidates[first].name;
        layers
            .iter()
            .map(|list| list.iter().copied().find(|&c| &problem.candidates[c].name == name))
            .collect::<Option<Choice>>()
    });
    best_feasible(problem, objective, limits, uniform)
}

fn depth_only(problem: &Problem, objective: &Objective, limits: &[Limit]) -> Result<Option<Choice>, SearchError> {
    let mut choice = problem.parent_choice()?;
    let layers = per_layer(problem);
    let mut removals = Vec::new();
    for (layer, list) in layers.iter().enumerate() {
        for &c in list {
            if problem.value(c, &crate::cost::keys::stat(crate::cost::keys::NUM_PARAMS))? == 0.0 {
                let harm = problem.value(c, &objective.key)?;
                removals.push((if objective.maximize { -harm } else { harm }, layer, c));
                break;
            }
        }
    }
    removals.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, layer, c) in removals {
        if feasible(problem, limits, &choice) {
            break;
        }
        choice[layer] = c;
    }
    Ok(feasible(problem, limits, &choice).then_some(choice))
}
