//! What the search optimises and what it must respect, as linear functions of the choice: an
//! objective on one library key, and limits `constant + Σ coefficient · value(key) ≤ or ≥ bound`
//! summed over the chosen candidates. Human constraints (throughput, memory, …) compile into these
//! (see `constraints.rs`); raw limits come from `--limit 'KEY<=V'`. Knows nothing of solvers.

use serde::{Deserialize, Serialize};

use super::SearchError;
use super::problem::{Choice, Problem};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sense {
    AtMost,
    AtLeast,
}

impl Sense {
    pub fn symbol(self) -> &'static str {
        match self {
            Sense::AtMost => "<=",
            Sense::AtLeast => ">=",
        }
    }
}

/// `constant + Σ_chosen Σ_terms coefficient · value(key)` compared with `bound`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// The total's name in reports, e.g. `stats.num_params` or `request_ms@b=8`.
    pub name: String,
    pub terms: Vec<(String, f64)>,
    /// What lies outside the blocks (embeddings, LM head, the whole-model correction).
    pub constant: f64,
    pub sense: Sense,
    pub bound: f64,
    /// Where the limit came from, in the user's units.
    pub origin: String,
}

/// Slack allowed when re-checking a solution, relative to the bound: solvers work in floating
/// point and a total equal to its bound must pass.
const TOLERANCE: f64 = 1e-7;

impl Limit {
    /// A limit on one library key as written on the command line.
    pub fn raw(key: &str, sense: Sense, bound: f64) -> Self {
        Limit {
            name: key.to_string(),
            terms: vec![(key.to_string(), 1.0)],
            constant: 0.0,
            sense,
            bound,
            origin: format!("{key} {} {bound}", sense.symbol()),
        }
    }

    /// Multiplies what the limit predicts (every term and the constant) by `factor`: the bound
    /// stays in the user's units.
    pub fn scale_prediction(&mut self, factor: f64) {
        for (_, weight) in &mut self.terms {
            *weight *= factor;
        }
        self.constant *= factor;
    }

    /// This limit's share of candidate `c`.
    pub fn coefficient(&self, problem: &Problem, c: usize) -> Result<f64, SearchError> {
        let mut sum = 0.0;
        for (key, weight) in &self.terms {
            sum += weight * problem.value(c, key)?;
        }
        Ok(sum)
    }

    pub fn total(&self, problem: &Problem, choice: &Choice) -> Result<f64, SearchError> {
        let mut sum = self.constant;
        for &c in choice {
            sum += self.coefficient(problem, c)?;
        }
        Ok(sum)
    }

    pub fn holds(&self, total: f64) -> bool {
        let slack = TOLERANCE * self.bound.abs().max(1.0);
        match self.sense {
            Sense::AtMost => total <= self.bound + slack,
            Sense::AtLeast => total >= self.bound - slack,
        }
    }

    /// How far `total` lies on the wrong side of the bound, relative to it (0 when it holds).
    pub fn violation(&self, total: f64) -> f64 {
        let excess = match self.sense {
            Sense::AtMost => total - self.bound,
            Sense::AtLeast => self.bound - total,
        };
        excess.max(0.0) / self.bound.abs().max(1e-12)
    }
}

/// Parses `KEY<=V`, `KEY>=V` or `KEY=A..B` (both bounds).
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, SearchError> {
    let bad = |problem: &str| SearchError::LimitSyntax {
        text: text.to_string(),
        problem: problem.to_string(),
    };
    let number = |s: &str| -> Result<f64, SearchError> {
        let value: f64 = s
            .trim()
            .parse()
            .map_err(|_| bad(&format!("`{}` is not a number", s.trim())))?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(bad("the bound must be finite"))
        }
    };
    let key_of = |s: &str| -> Result<String, SearchError> {
        let key = s.trim();
        if key.is_empty() {
            Err(bad("no key before the comparison"))
        } else {
            Ok(key.to_string())
        }
    };
    if let Some((key, value)) = text.split_once("<=") {
        return Ok(vec![Limit::raw(&key_of(key)?, Sense::AtMost, number(value)?)]);
    }
    if let Some((key, value)) = text.split_once(">=") {
        return Ok(vec![Limit::raw(&key_of(key)?, Sense::AtLeast, number(value)?)]);
    }
    if let Some((key, range)) = text.split_once('=') {
        let (low, high) = range
            .split_once("..")
            .ok_or_else(|| bad("a range is written `KEY=LOW..HIGH`"))?;
        let (key, low, high) = (key_of(key)?, number(low)?, number(high)?);
        if low > high {
            return Err(bad("the range's low end is above its high end"));
        }
        return Ok(vec![
            Limit::raw(&key, Sense::AtLeast, low),
            Limit::raw(&key, Sense::AtMost, high),
        ]);
    }
    Err(bad("expected `KEY<=V`, `KEY>=V` or `KEY=LOW..HIGH`"))
}

/// The quantity to minimise (or maximise): the sum of one key over the chosen candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub key: String,
    pub maximize: bool,
}

impl Objective {
    pub fn value(&self, problem: &Problem, choice: &Choice) -> Result<f64, SearchError> {
        choice.iter().map(|&c| problem.value(c, &self.key)).sum()
    }

    /// Whether objective value `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize { a > b } else { a < b }
    }
}
