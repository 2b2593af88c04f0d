//! Pareto sweeps: the same search repeated while one limit moves over a range
//! (`KEY=FROM..TO:STEPS`). KEY is a human limit of the constraint file (`throughput_speedup`,
//! `memory_gib`, …) or a library key, which then gets an upper limit `KEY<=value`. Points where
//! nothing is feasible are kept, with the reason.

use serde::{Deserialize, Serialize};

use super::SearchError;
use super::limit::{Limit, Sense};
use super::mip::Warm;
use super::outside::SearchInput;
use super::run::{Limits, SearchReport, SearchSpec, search_warm};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub key: String,
    pub from: f64,
    pub to: f64,
    pub steps: usize,
}

impl std::str::FromStr for Sweep {
    type Err = SearchError;

    fn from_str(text: &str) -> Result<Self, SearchError> {
        let bad = |problem: &str| SearchError::LimitSyntax {
            text: text.to_string(),
            problem: format!("{problem} (write KEY=FROM..TO:STEPS)"),
        };
        let (key, range) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let (range, steps) = range.rsplit_once(':').ok_or_else(|| bad("no `:STEPS`"))?;
        let (from, to) = range.split_once("..").ok_or_else(|| bad("no `..` in the range"))?;
        let number = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
        let sweep = Sweep {
            key: key.trim().to_string(),
            from: number(from).ok_or_else(|| bad("FROM is not a number"))?,
            to: number(to).ok_or_else(|| bad("TO is not a number"))?,
            steps: steps.trim().parse().map_err(|_| bad("STEPS is not a whole number"))?,
        };
        if sweep.key.is_empty() {
            return Err(bad("no key"));
        }
        if sweep.steps == 0 {
            return Err(bad("STEPS must be at least 1"));
        }
        Ok(sweep)
    }
}

impl Sweep {
    pub fn values(&self) -> Vec<f64> {
        if self.steps == 1 {
            return vec![self.from];
        }
        (0..self.steps)
            .map(|i| self.from + (self.to - self.from) * i as f64 / (self.steps - 1) as f64)
            .collect()
    }

    /// `spec` with this sweep's key set to `value`.
    pub fn apply(&self, spec: &SearchSpec, value: f64) -> Result<SearchSpec, SearchError> {
        let mut spec = spec.clone();
        let raw = Limit::raw(&self.key, Sense::AtMost, value);
        match &mut spec.limits {
            Limits::File(file) => {
                if !file.limits.set(&self.key, value) {
                    if !self.key.contains('.') {
                        return Err(SearchError::LimitSyntax {
                            text: self.key.clone(),
                            problem: "not a limit of constraint files nor a library key (`stats.…`)".into(),
                        });
                    }
                    file.raw.retain(|r| !r.trim_start().starts_with(&self.key));
                    file.raw.push(format!("{}<={value}", self.key));
                }
            }
            Limits::Raw(limits) => {
                limits.retain(|l| !(l.name == self.key && l.sense == Sense::AtMost));
                limits.push(raw);
            }
        }
        Ok(spec)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepPoint {
    pub value: f64,
    pub report: Option<SearchReport>,
    /// Why nothing was found, when nothing was.
    pub infeasible: Option<String>,
}

/// Searches at every value of the sweep, each point starting from what the earlier ones learnt
/// (library values, answers, the bound's covers).
pub fn sweep(
    input: &SearchInput,
    spec: &SearchSpec,
    sweep: &Sweep,
    progress: bool,
) -> Result<Vec<SweepPoint>, SearchError> {
    let bar = crate::progress::bar(progress, "sweep points", 0, sweep.steps);
    bar.set_message(sweep.key.clone());
    let mut points = Vec::new();
    let mut warm = Warm::default();
    for value in sweep.values() {
        let point = match search_warm(input, &sweep.apply(spec, value)?, &mut warm) {
            Ok(report) => SweepPoint {
                value,
                report: Some(report),
                infeasible: None,
            },
            Err(e @ SearchError::Infeasible { .. }) => SweepPoint {
                value,
                report: None,
                infeasible: Some(e.to_string()),
            },
            Err(e) => return Err(e),
        };
        points.push(point);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(points)
}
