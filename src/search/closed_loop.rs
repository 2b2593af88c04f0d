//! The closed loop: a child chosen on block timings is assembled and timed on whole requests
//! against the parent; when it misses what the constraint file asks, the request-time
//! prediction is multiplied by what that child's measurement says it should have been and the
//! search runs again (reusing what it learnt), a bounded number of rounds, each kept. Only a
//! miss larger than the measurement's own interval counts, so noise does not decide; and a
//! child faster than asked by more than [`OVER_DELIVERY`] counts as a miss too (speed bought
//! with quality). Knows the search and the check; nothing of the pipeline.

use std::path::Path;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::SearchError;
use super::check::{ChildChecks, check_on_cpu};
use super::constraints::{ConstraintFile, is_request_limit};
use super::mip::Warm;
use super::outside::SearchInput;
use super::run::{Limits, SearchReport, SearchSpec, SolutionReport, search_warm};

/// How much faster than asked a child may measure before the loop trades speed back for
/// quality (measured over asked ≤ 1 + this).
pub const OVER_DELIVERY: f64 = 0.10;

/// Timing the chosen child on this machine, and how many times the loop may re-solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measure {
    /// Interleaved rounds of whole requests (parent and child) per timing.
    pub rounds: usize,
    /// Searches after the first at most (0: time the child, change nothing).
    pub re_solves: usize,
}

impl Measure {
    pub const DEFAULT_ROUNDS: usize = 30;
    pub const DEFAULT_RE_SOLVES: usize = 3;
}

impl Default for Measure {
    fn default() -> Self {
        Measure {
            rounds: Self::DEFAULT_ROUNDS,
            re_solves: Self::DEFAULT_RE_SOLVES,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within what was asked, up to the measurement's interval.
    Within,
    /// Slower than asked beyond the interval.
    TooSlow,
    /// Faster than asked by more than [`OVER_DELIVERY`] beyond the interval.
    TooFast,
    /// The file asks no request time: timed, nothing to correct.
    NothingAsked,
}

/// One search of the loop and its child's timing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoopRound {
    /// What this round's search multiplied the request-time prediction by.
    pub correction: f64,
    pub objective: f64,
    pub measured: ChildChecks,
    /// Measured over asked (≥ 1 meets the ask): the measured speedup over the asked one, or
    /// the asked request time over the measured one (none when no request time is asked).
    pub achieved: Option<f64>,
    /// ~95% interval of `achieved`.
    pub achieved_interval: Option<(f64, f64)>,
    pub verdict: Verdict,
}

/// What one timed child says: how it did against the ask and the correction it implies.
struct Reading {
    achieved: f64,
    achieved_interval: (f64, f64),
    /// Measured over predicted request time, on the prediction's scale.
    correction: f64,
}

/// A speedup is asked relative to the parent, so the child's measurement is read on the parent's
/// scale (the parent timed in the same rounds); an absolute latency or throughput is read as is.
fn read(file: &ConstraintFile, checks: &ChildChecks, bound_ms: f64) -> Reading {
    let child = &checks.children[0];
    let parent = checks
        .parents
        .iter()
        .find(|p| p.batch_size == child.batch_size)
        .expect("the parent is timed at every child's batch size");
    if file.limits.throughput_speedup.is_some() || file.limits.latency_speedup.is_some() {
        let asked = parent.predicted_ms / bound_ms;
        let (low, high) = child.speedup_interval;
        Reading {
            achieved: child.measured_speedup / asked,
            achieved_interval: (low / asked, high / asked),
            correction: child.predicted_speedup / child.measured_speedup,
        }
    } else {
        let (low, high) = child.ms_interval;
        Reading {
            achieved: bound_ms / child.measured.median_ms,
            achieved_interval: (bound_ms / high, bound_ms / low),
            correction: child.measured.median_ms / child.predicted_ms,
        }
    }
}

fn verdict((low, high): (f64, f64)) -> Verdict {
    if high < 1.0 {
        Verdict::TooSlow
    } else if low > 1.0 + OVER_DELIVERY {
        Verdict::TooFast
    } else {
        Verdict::Within
    }
}

/// Searches, times the child, and re-solves with the corrected prediction while the child
/// misses (at most `measure.re_solves` times, never for a child already timed, and not when the
/// corrected prediction leaves no child within the limits). The report
/// is the round whose child is best among those within the ask (else among those not too slow,
/// else the fastest), with every round in `closed_loop`.
pub fn search_measured(
    dir: &Path,
    input: &SearchInput,
    spec: &SearchSpec,
    measure: Measure,
    device: &Device,
) -> Result<SearchReport, SearchError> {
    let Limits::File(file) = &spec.limits else {
        return Err(SearchError::Options(
            "measuring the child needs a constraint file (its scenario)".into(),
        ));
    };
    close_loop(input, spec, file, measure.re_solves, &mut |best| {
        check_on_cpu(dir, file, &[best], measure.rounds, device)
    })
}

/// [`search_measured`] with the timing of a chosen child given as `time`.
pub fn close_loop(
    input: &SearchInput,
    spec: &SearchSpec,
    file: &ConstraintFile,
    re_solves: usize,
    time: &mut dyn FnMut(&SolutionReport) -> Result<ChildChecks, SearchError>,
) -> Result<SearchReport, SearchError> {
    let mut spec = spec.clone();
    let mut warm = Warm::default();
    let mut rounds: Vec<(SearchReport, LoopRound)> = Vec::new();
    for _ in 0..=re_solves {
        let report = match search_warm(input, &spec, &mut warm) {
            Ok(report) => report,
            // A correction under which nothing fits ends the loop with what it has timed.
            Err(SearchError::Infeasible { .. }) if !rounds.is_empty() => break,
            Err(e) => return Err(e),
        };
        let best = &report.solutions[0];
        if rounds.iter().any(|(r, _)| r.solutions[0].choice == best.choice) {
            break;
        }
        let measured = time(best)?;
        let bound = report
            .limits
            .iter()
            .filter(|l| is_request_limit(l))
            .map(|l| l.bound)
            .min_by(f64::total_cmp);
        let (reading, verdict) = match bound {
            Some(bound_ms) => {
                let reading = read(file, &measured, bound_ms);
                let verdict = verdict(reading.achieved_interval);
                (Some(reading), verdict)
            }
            None => (None, Verdict::NothingAsked),
        };
        let round = LoopRound {
            correction: spec.request_correction,
            objective: best.objective,
            achieved: reading.as_ref().map(|r| r.achieved),
            achieved_interval: reading.as_ref().map(|r| r.achieved_interval),
            measured,
            verdict,
        };
        rounds.push((report, round));
        match (verdict, reading) {
            (Verdict::TooSlow | Verdict::TooFast, Some(reading)) => spec.request_correction = reading.correction,
            _ => break,
        }
    }
    let objective = &spec.objective;
    let best_of = |keep: &dyn Fn(Verdict) -> bool| {
        rounds
            .iter()
            .enumerate()
            .filter(|(_, (_, round))| keep(round.verdict))
            .reduce(|a, b| {
                if objective.better(b.1.1.objective, a.1.1.objective) {
                    b
                } else {
                    a
                }
            })
            .map(|(k, _)| k)
    };
    let chosen = best_of(&|v| matches!(v, Verdict::Within | Verdict::NothingAsked))
        .or_else(|| best_of(&|v| v == Verdict::TooFast))
        .unwrap_or_else(|| {
            (0..rounds.len())
                .max_by(|&a, &b| {
                    let achieved = |k: usize| rounds[k].1.achieved.unwrap_or(f64::NEG_INFINITY);
                    achieved(a).total_cmp(&achieved(b))
                })
                .expect("at least one round ran")
        });
    let closed_loop: Vec<LoopRound> = rounds.iter().map(|(_, round)| round.clone()).collect();
    let (mut report, round) = rounds.swap_remove(chosen);
    report.measured = Some(round.measured);
    report.closed_loop = closed_loop;
    report.chosen_round = Some(chosen);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_miss_beyond_the_interval_counts() {
        assert_eq!(verdict((0.97, 1.01)), Verdict::Within);
        assert_eq!(verdict((0.95, 0.99)), Verdict::TooSlow);
        assert_eq!(verdict((1.09, 1.15)), Verdict::Within);
        assert_eq!(verdict((1.11, 1.15)), Verdict::TooFast);
    }
}
