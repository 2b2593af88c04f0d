//! The layer-selection program in the one shape its fast paths need: minimise, every limit
//! written `Σ a·x ≤ b`, over the candidates still in play, with the candidates leaving each
//! layer boundary. A cover of the layers is a path from boundary 0 to boundary `layers`; the
//! cheapest cover under any weights is a shortest path. Used by the Lagrangian bound, the
//! heuristics and the baselines; knows nothing of solvers or of library files.

use super::limit::Sense;
use super::mip::Program;
use super::problem::{Choice, Problem};

/// Relative slack when comparing a total with its bound (as `Limit::holds`).
pub const TOLERANCE: f64 = 1e-7;

pub struct Form {
    pub layers: usize,
    /// Candidate index in the problem, per position.
    pub candidates: Vec<usize>,
    pub first: Vec<usize>,
    pub last: Vec<usize>,
    /// What each position adds to the objective, to be minimised (negated when maximising).
    pub cost: Vec<f64>,
    /// Per limit, what each position adds; each limit reads `Σ ≤ bound`.
    pub rows: Vec<Vec<f64>>,
    pub bounds: Vec<f64>,
    /// Slack allowed on each bound.
    pub slack: Vec<f64>,
    /// Positions whose span starts at each layer.
    pub starts: Vec<Vec<usize>>,
    /// 1 when minimising, −1 when maximising: `cost = sign · objective`.
    pub sign: f64,
    /// The position of each candidate of the problem, when in play.
    position: Vec<Option<usize>>,
}

impl Form {
    /// The program over `active` candidates (indices into the problem).
    pub fn new(problem: &Problem, program: &Program, active: &[usize]) -> Self {
        let sign = if program.maximize { -1.0 } else { 1.0 };
        let mut starts = vec![Vec::new(); problem.layers];
        for (p, &c) in active.iter().enumerate() {
            starts[problem.candidates[c].first].push(p);
        }
        let mut position = vec![None; problem.candidates.len()];
        for (p, &c) in active.iter().enumerate() {
            position[c] = Some(p);
        }
        let flip = |sense: Sense| if sense == Sense::AtLeast { -1.0 } else { 1.0 };
        Form {
            layers: problem.layers,
            candidates: active.to_vec(),
            first: active.iter().map(|&c| problem.candidates[c].first).collect(),
            last: active.iter().map(|&c| problem.candidates[c].last).collect(),
            cost: active.iter().map(|&c| sign * program.objective[c]).collect(),
            rows: program
                .rows
                .iter()
                .map(|row| active.iter().map(|&c| flip(row.sense) * row.coefficients[c]).collect())
                .collect(),
            bounds: program.rows.iter().map(|row| flip(row.sense) * row.bound).collect(),
            slack: program
                .rows
                .iter()
                .map(|row| TOLERANCE * row.bound.abs().max(1.0))
                .collect(),
            starts,
            sign,
            position,
        }
    }

    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    pub fn cost_of(&self, cover: &[usize]) -> f64 {
        cover.iter().map(|&p| self.cost[p]).sum()
    }

    /// Each limit's total over `cover`.
    pub fn totals(&self, cover: &[usize]) -> Vec<f64> {
        self.rows
            .iter()
            .map(|row| cover.iter().map(|&p| row[p]).sum())
            .collect()
    }

    /// How far `totals` break their bounds, each relative to its bound (0 when all hold).
    pub fn violation(&self, totals: &[f64]) -> f64 {
        totals
            .iter()
            .zip(&self.bounds)
            .zip(&self.slack)
            .map(|((t, b), s)| if t - b > *s { (t - b) / b.abs().max(1e-12) } else { 0.0 })
            .sum()
    }

    pub fn feasible(&self, totals: &[f64]) -> bool {
        self.violation(totals) == 0.0
    }

    /// The candidates of the problem a cover names, in layer order.
    pub fn choice(&self, cover: &[usize]) -> Choice {
        let mut cover = cover.to_vec();
        cover.sort_by_key(|&p| self.first[p]);
        cover.iter().map(|&p| self.candidates[p]).collect()
    }

    /// The cover of a choice, if every candidate of it is in play.
    pub fn cover(&self, choice: &Choice) -> Option<Vec<usize>> {
        choice
            .iter()
            .map(|&c| self.position.get(c).copied().flatten())
            .collect()
    }

    /// Cheapest path from each boundary to the end under `weight` (`+∞` where none), and the
    /// position taken from each boundary on it.
    pub fn backward(&self, weight: &[f64]) -> (Vec<f64>, Vec<Option<usize>>) {
        let mut best = vec![f64::INFINITY; self.layers + 1];
        let mut take = vec![None; self.layers];
        best[self.layers] = 0.0;
        for layer in (0..self.layers).rev() {
            for &p in &self.starts[layer] {
                let value = weight[p] + best[self.last[p] + 1];
                if value < best[layer] {
                    best[layer] = value;
                    take[layer] = Some(p);
                }
            }
        }
        (best, take)
    }

    /// Cheapest path from the start to each boundary under `weight` (`+∞` where none), and the
    /// position that ends the path at each boundary.
    pub fn forward(&self, weight: &[f64]) -> (Vec<f64>, Vec<Option<usize>>) {
        let mut best = vec![f64::INFINITY; self.layers + 1];
        let mut arrive = vec![None; self.layers + 1];
        best[0] = 0.0;
        for layer in 0..self.layers {
            let here = best[layer];
            if !here.is_finite() {
                continue;
            }
            for &p in &self.starts[layer] {
                let end = self.last[p] + 1;
                if here + weight[p] < best[end] {
                    best[end] = here + weight[p];
                    arrive[end] = Some(p);
                }
            }
        }
        (best, arrive)
    }

    /// The cheapest cover through position `p` under `weight`, from the paths `forward` and
    /// `backward` found (none if there is none).
    pub fn through(&self, p: usize, arrive: &[Option<usize>], take: &[Option<usize>]) -> Option<Vec<usize>> {
        let mut cover = Vec::new();
        let mut boundary = self.first[p];
        while boundary > 0 {
            let q = arrive[boundary]?;
            cover.push(q);
            boundary = self.first[q];
        }
        cover.reverse();
        cover.push(p);
        let mut layer = self.last[p] + 1;
        while layer < self.layers {
            let q = take[layer]?;
            cover.push(q);
            layer = self.last[q] + 1;
        }
        Some(cover)
    }

    /// The cheapest cover under `weight`, or none when the candidates in play cover nothing.
    pub fn cheapest(&self, weight: &[f64]) -> Option<(f64, Vec<usize>)> {
        let (best, take) = self.backward(weight);
        if !best[0].is_finite() {
            return None;
        }
        let mut cover = Vec::new();
        let mut layer = 0;
        while layer < self.layers {
            let p = take[layer].expect("a finite path takes a step at every boundary on it");
            cover.push(p);
            layer = self.last[p] + 1;
        }
        Some((best[0], cover))
    }

    /// Single-layer positions at each layer (the moves of the heuristics and baselines).
    pub fn single_layer(&self) -> Vec<Vec<usize>> {
        self.starts
            .iter()
            .map(|list| {
                list.iter()
                    .copied()
                    .filter(|&p| self.first[p] == self.last[p])
                    .collect()
            })
            .collect()
    }
}
