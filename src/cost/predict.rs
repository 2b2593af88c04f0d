//! Whole-model latency as the sum of its blocks plus what lies outside them (embedding, final
//! norm, LM head), and the calibration that makes the sum honest: a few assembled models are
//! measured end to end and the part that does not add up is fitted as
//! `measured ≈ Σ blocks + outside + offset`; other models then check the prediction. The offset
//! is kept only when it predicts fitted models it was not fitted to better than the plain sum
//! does, it never takes away more than half of what lies outside the blocks (so no prediction
//! reaches zero), and timings whose rounds spread widely are flagged as too noisy to trust.

use burn::prelude::Device;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::measure::{Runner, model_runner, time_interleaved, units_per_run};
use super::scenario::Scenario;
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, ForwardError, Llama, ModelConfig, random_model};

/// Per-block latencies of one target and scenario, with the outside part and the fitted
/// correction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    pub scenario: Scenario,
    /// Milliseconds per distinct block.
    pub blocks: Vec<(BlockConfig, f64)>,
    pub outside_ms: f64,
    /// What a whole model spends beyond its parts.
    pub offset_ms: f64,
}

impl LatencyModel {
    pub fn block_ms(&self, block: &BlockConfig) -> Option<f64> {
        self.blocks.iter().find(|(b, _)| b == block).map(|(_, ms)| *ms)
    }

    /// Σ blocks + outside, before the correction.
    pub fn raw_ms(&self, config: &ModelConfig) -> Option<f64> {
        config
            .blocks
            .iter()
            .map(|b| self.block_ms(b))
            .sum::<Option<f64>>()
            .map(|sum| sum + self.outside_ms)
    }

    pub fn predict_ms(&self, config: &ModelConfig) -> Option<f64> {
        self.raw_ms(config).map(|raw| raw + self.offset_ms)
    }
}

/// One model in the calibration: what the latency model predicted and what was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelCheck {
    pub name: String,
    /// Used to fit the correction, or only to check it.
    pub fitted: bool,
    pub raw_ms: f64,
    pub predicted_ms: f64,
    pub measured_ms: f64,
    pub error_pct: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationReport {
    pub latency: LatencyModel,
    pub models: Vec<ModelCheck>,
    /// Mean |predicted − measured| / measured over the checked (not fitted) models, in %.
    pub mean_abs_error_pct: f64,
    /// The same before the correction (Σ blocks + outside alone).
    pub raw_mean_abs_error_pct: f64,
    /// Median over everything timed of (slowest − fastest round) / median, in %.
    #[serde(default)]
    pub spread_pct: f64,
}

/// Rounds that spread more than this (in % of their median) make a calibration untrustworthy.
pub const NOISY_SPREAD_PCT: f64 = 25.0;

impl CalibrationReport {
    /// Whether the timings varied too much between rounds to be trusted.
    pub fn is_noisy(&self) -> bool {
        self.spread_pct > NOISY_SPREAD_PCT
    }
}

/// The correction `y ≈ x + offset`: the median of what the measured models spend beyond their
/// parts. A scale was tried too (a line, least squares and Theil–Sen): fitted on five of 16
/// children it made the checked predictions worse more often than better, because the blocks
/// are timed in context and what remains is mostly noise.
fn fit_offset(points: &[(f64, f64)]) -> f64 {
    crate::stats::median(&points.iter().map(|(x, y)| y - x).collect::<Vec<_>>())
}

/// The offset the fitted `points` (plain sum, measured) support, or none. It must be systematic:
/// every fitted model spends more than its parts (or every one less) — noise around the plain
/// sum passes that with probability 2/2ⁿ — and, fitted on all but one point at a time, it must
/// predict the one left out better than the plain sum does, summed over the points
/// (leave-one-out); otherwise the plain sum wins. Never below −½·`outside_ms`, so that a
/// prediction stays above the blocks plus half of what lies outside them.
fn choose_offset(points: &[(f64, f64)], outside_ms: f64) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let all_above = points.iter().all(|(raw, measured)| measured > raw);
    let all_below = points.iter().all(|(raw, measured)| measured < raw);
    if !(all_above || all_below) {
        return 0.0;
    }
    let relative = |predicted: f64, measured: f64| (predicted - measured).abs() / measured;
    let held_out: f64 = (0..points.len())
        .map(|i| {
            let rest: Vec<(f64, f64)> = points
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, p)| *p)
                .collect();
            let (raw, measured) = points[i];
            relative(raw + fit_offset(&rest).max(-0.5 * outside_ms), measured)
        })
        .sum();
    let plain: f64 = points.iter().map(|&(raw, measured)| relative(raw, measured)).sum();
    if held_out < plain {
        fit_offset(points).max(-0.5 * outside_ms)
    } else {
        0.0
    }
}

/// Children of `parent` with each layer's block drawn from `choices[layer]`: `count` random
/// ones, named `random-k`.
pub fn random_children(
    parent: &ModelConfig,
    choices: &[Vec<BlockConfig>],
    count: usize,
    seed: u64,
) -> Vec<(String, ModelConfig)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|k| {
            let blocks = choices
                .iter()
                .map(|c| {
                    // Lean towards the parent's block now and then, so children span cheap and dear.
                    if rng.random_bool(0.2) {
                        c[0]
                    } else {
                        *c.choose(&mut rng).expect("a layer has choices")
                    }
                })
                .collect();
            (
                format!("random-{k}"),
                ModelConfig {
                    blocks,
                    ..parent.clone()
                },
            )
        })
        .collect()
}

/// Measures every distinct block of `blocks`, the outside part and each of `models` end to
/// end under `scenario`, interleaved over `rounds` rounds; the first `fit` models set the
/// correction, the rest check it (no models: no correction).
pub fn measure_and_calibrate(
    parent: &ModelConfig,
    blocks: &[BlockConfig],
    models: &[(String, ModelConfig)],
    fit: usize,
    scenario: &Scenario,
    rounds: usize,
    device: &Device,
) -> Result<CalibrationReport, ForwardError> {
    let mut distinct: Vec<BlockConfig> = Vec::new();
    for block in blocks {
        if !distinct.contains(block) {
            distinct.push(*block);
        }
    }
    let build = |config: &ModelConfig| random_model(config, 0, device);
    // Each block is timed in context: as every layer of a model of the parent's depth, less that
    // model with every layer removed (the outside part), per layer. Timed alone, one block's
    // weights and cache stay hot in the CPU caches, and a whole model of such blocks ran up to
    // 25% slower than their sum (decode, batch 8).
    let stack = |block: BlockConfig| ModelConfig {
        blocks: vec![block; parent.num_layers()],
        ..parent.clone()
    };
    let empty = BlockConfig {
        attention: AttentionConfig::NoOp,
        ffn: FfnConfig::NoOp,
    };
    let stacks: Vec<Llama> = std::iter::once(empty)
        .chain(distinct.iter().copied())
        .map(|b| build(&stack(b)))
        .collect();
    let built: Vec<Llama> = models.iter().map(|(_, config)| build(config)).collect();
    let runners = stacks
        .iter()
        .chain(&built)
        .map(|model| model_runner(model, scenario))
        .collect::<Result<Vec<Runner>, _>>()?;
    let units = units_per_run(scenario);
    let timings: Vec<_> = time_interleaved(&runners, rounds)
        .into_iter()
        .map(|t| t.per(units))
        .collect();
    let outside_ms = timings[0].median_ms;
    let layers = parent.num_layers() as f64;
    let mut latency = LatencyModel {
        scenario: *scenario,
        blocks: distinct
            .iter()
            .zip(&timings[1..])
            .map(|(b, t)| (*b, ((t.median_ms - outside_ms) / layers).max(0.0)))
            .collect(),
        outside_ms,
        offset_ms: 0.0,
    };
    let measured: Vec<(String, f64, f64)> = models
        .iter()
        .zip(&timings[distinct.len() + 1..])
        .map(|((name, config), t)| {
            let raw = latency.raw_ms(config).expect("every block of the models was measured");
            (name.clone(), raw, t.median_ms)
        })
        .collect();
    let fit = fit.min(measured.len());
    if fit > 0 {
        let points: Vec<(f64, f64)> = measured[..fit].iter().map(|(_, r, m)| (*r, *m)).collect();
        latency.offset_ms = choose_offset(&points, latency.outside_ms);
    }
    let checks: Vec<ModelCheck> = measured
        .into_iter()
        .enumerate()
        .map(|(i, (name, raw_ms, measured_ms))| {
            let predicted_ms = raw_ms + latency.offset_ms;
            ModelCheck {
                name,
                fitted: i < fit,
                raw_ms,
                predicted_ms,
                measured_ms,
                error_pct: 100.0 * (predicted_ms - measured_ms) / measured_ms,
            }
        })
        .collect();
    let checked: Vec<&ModelCheck> = checks.iter().filter(|c| !c.fitted).collect();
    let mean =
        |f: &dyn Fn(&ModelCheck) -> f64| checked.iter().map(|c| f(c).abs()).sum::<f64>() / checked.len().max(1) as f64;
    let spreads: Vec<f64> = timings
        .iter()
        .map(|t| 100.0 * (t.max_ms - t.min_ms) / t.median_ms.max(f64::MIN_POSITIVE))
        .collect();
    Ok(CalibrationReport {
        spread_pct: crate::stats::median(&spreads),
        mean_abs_error_pct: mean(&|c| c.error_pct),
        raw_mean_abs_error_pct: mean(&|c| 100.0 * (c.raw_ms - c.measured_ms) / c.measured_ms),
        latency,
        models: checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_kept_only_when_it_predicts_models_it_was_not_fitted_to() {
        // A steady excess of 0.5 ms: every left-out model is predicted exactly.
        let steady = [(1.0, 1.5), (2.0, 2.5), (4.0, 4.5)];
        assert!((choose_offset(&steady, 1.0) - 0.5).abs() < 1e-12);
        // Noise around the plain sum: the fitted offset only moves predictions away.
        let noise = [(10.0, 10.6), (12.0, 11.4), (14.0, 14.0)];
        assert_eq!(choose_offset(&noise, 1.0), 0.0);
        // Mostly above, once below: not systematic, even though leave-one-out alone would keep it.
        let mixed = [(1.0, 1.5), (2.0, 2.5), (3.0, 3.5), (4.0, 4.5), (5.0, 4.99)];
        assert_eq!(choose_offset(&mixed, 1.0), 0.0);
        let above = [(1.0, 1.5), (2.0, 2.5), (3.0, 3.5), (4.0, 4.5), (5.0, 5.01)];
        assert!((choose_offset(&above, 1.0) - 0.5).abs() < 1e-12);
        // One model cannot check its own correction.
        assert_eq!(choose_offset(&[(1.0, 2.0)], 1.0), 0.0);
        // A large negative excess is held at half of what lies outside the blocks: the smallest
        // model (no blocks at all) is still predicted at half its outside part, never ≤ 0.
        let slower_sum = [(10.0, 4.0), (12.0, 6.0), (14.0, 8.0)];
        assert_eq!(choose_offset(&slower_sum, 2.0), -1.0);
    }

    #[test]
    fn offset_is_the_median_excess_and_ignores_an_outlier() {
        let offset = fit_offset(&[(1.0, 1.5), (2.0, 2.5), (4.0, 4.5), (5.0, 30.0)]);
        assert!((offset - 0.5).abs() < 1e-12, "{offset}");
    }
}
