//! Baselines judged by the same scores, costs and limits as the MIP, each a few passes over
//! the library (none solves a program):
//!
//! - greedy: from the best-scoring block in every layer, repeatedly make the single-layer change
//!   that removes the most limit violation per unit of score given up;
//! - random: the best feasible of 2000 uniform draws of one block per layer;
//! - max-params: the same greedy walk on parameters, from the parent: give up parameters where
//!   that removes the most violation per parameter (the most parameters that fit, greedily);
//! - homogeneous: one variant name in every layer, the best that fits (Minitron-like);
//! - depth-only: whole layers removed in order of least block influence — the objective of the
//!   layer's zero-parameter variant — until the limits hold (ShortGPT-like).
//!
//! Each returns a feasible choice or none; the search re-checks it like the MIP's answers.
//! Knows the program's shape (`Form`), not the MIP solvers.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::SearchError;
use super::form::Form;
use super::heuristic::Walk;
use super::limit::{Limit, Objective};
use super::mip::{Program, Warm};
use super::problem::{Choice, Problem};
use crate::cost::keys;

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
        self.choose_warm(problem, objective, limits, seed, &mut Warm::default())
    }

    /// [`Baseline::choose`], taking library values from `warm` when gathered before.
    pub fn choose_warm(
        self,
        problem: &Problem,
        objective: &Objective,
        limits: &[Limit],
        seed: u64,
        warm: &mut Warm,
    ) -> Result<Option<Choice>, SearchError> {
        let everyone: Vec<usize> = (0..problem.candidates.len()).collect();
        let form = |objective: &Objective, warm: &mut Warm| -> Result<Form, SearchError> {
            let program = Program::with(problem, objective, limits, warm)?;
            Ok(Form::new(problem, &program, &everyone))
        };
        let params = Objective {
            key: keys::stat(keys::NUM_PARAMS),
            maximize: true,
        };
        Ok(match self {
            Baseline::Greedy => {
                let form = form(objective, warm)?;
                best_per_layer(&form).and_then(|cover| greedy(&form, cover))
            }
            Baseline::Random => random(&form(objective, warm)?, seed),
            Baseline::MaxParams => {
                let form = form(&params, warm)?;
                form.cover(&problem.parent_choice()?)
                    .and_then(|cover| greedy(&form, cover))
            }
            Baseline::Homogeneous => homogeneous(problem, &form(objective, warm)?),
            Baseline::DepthOnly => {
                let removals = Program::with(problem, &params, &[], warm)?.objective;
                depth_only(problem, &form(objective, warm)?, &removals)?
            }
        })
    }
}

/// The cheapest single-layer candidate of every layer (none if a layer has none).
fn best_per_layer(form: &Form) -> Option<Vec<usize>> {
    form.single_layer()
        .iter()
        .map(|list| {
            list.iter()
                .copied()
                .min_by(|&a, &b| form.cost[a].total_cmp(&form.cost[b]))
        })
        .collect()
}

/// Repairs `cover` by single-layer changes; the choice if every limit then holds.
fn greedy(form: &Form, cover: Vec<usize>) -> Option<Choice> {
    let mut walk = Walk::new(form, cover);
    walk.repair(form, &form.single_layer())
        .then(|| form.choice(&walk.cover))
}

/// The cheapest feasible of `covers`.
fn cheapest_feasible(form: &Form, covers: impl IntoIterator<Item = Vec<usize>>) -> Option<Choice> {
    covers
        .into_iter()
        .filter(|cover| form.feasible(&form.totals(cover)))
        .min_by(|a, b| form.cost_of(a).total_cmp(&form.cost_of(b)))
        .map(|cover| form.choice(&cover))
}

fn random(form: &Form, seed: u64) -> Option<Choice> {
    let layers = form.single_layer();
    if layers.iter().any(|l| l.is_empty()) {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // Drawn and judged one at a time: nothing is kept but the best so far.
    let draws = (0..2000).map(|_| layers.iter().map(|l| l[rng.random_range(0..l.len())]).collect());
    cheapest_feasible(form, draws)
}

fn homogeneous(problem: &Problem, form: &Form) -> Option<Choice> {
    let layers = form.single_layer();
    let by_name: Vec<HashMap<&str, usize>> = layers
        .iter()
        .map(|list| {
            list.iter()
                .map(|&p| (problem.candidates[form.candidates[p]].name.as_str(), p))
                .collect()
        })
        .collect();
    let uniform = layers.first().into_iter().flatten().filter_map(|&first| {
        let name = problem.candidates[form.candidates[first]].name.as_str();
        by_name
            .iter()
            .map(|names| names.get(name).copied())
            .collect::<Option<Vec<_>>>()
    });
    cheapest_feasible(form, uniform)
}

/// `params[c]`: candidate c's parameters; a layer is removed by its zero-parameter variant.
fn depth_only(problem: &Problem, form: &Form, params: &[f64]) -> Result<Option<Choice>, SearchError> {
    let Some(cover) = form.cover(&problem.parent_choice()?) else {
        return Ok(None);
    };
    let mut walk = Walk::new(form, cover);
    let mut removals: Vec<(f64, usize, usize)> = Vec::new();
    for (layer, list) in form.single_layer().iter().enumerate() {
        if let Some(&p) = list.iter().find(|&&p| params[form.candidates[p]] == 0.0) {
            removals.push((form.cost[p], layer, p));
        }
    }
    removals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut removals = removals.into_iter();
    while !walk.feasible(form) {
        let Some((_, layer, p)) = removals.next() else {
            return Ok(None);
        };
        walk.set_layer(form, layer, p);
    }
    Ok(Some(form.choice(&walk.cover)))
}
