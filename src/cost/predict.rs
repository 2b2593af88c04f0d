//! Whole-model latency as the sum of its blocks plus what lies outside them (embedding, final
//! norm, LM head), and the calibration that makes the sum honest: a few assembled models are
//! measured end to end and the part that does not add up is fitted as
//! `measured ≈ scale · (Σ blocks + outside) + offset`; other models then check the prediction.

use burn::prelude::Device;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::measure::{Runner, block_runner, model_runner, outside_runner, time_interleaved};
use super::scenario::Scenario;
use crate::model::{BlockConfig, ForwardError, Llama, ModelConfig, build_model, random_weights};

/// Per-block latencies of one target and scenario, with the outside part and the fitted
/// correction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    pub scenario: Scenario,
    /// Milliseconds per distinct block.
    pub blocks: Vec<(BlockConfig, f64)>,
    pub outside_ms: f64,
    pub scale: f64,
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
        self.raw_ms(config).map(|raw| self.scale * raw + self.offset_ms)
    }
}

/// One model in the calibration: what the latency model predicted and what was measured.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCheck {
    pub name: String,
    /// Used to fit the correction, or only to check it.
    pub fitted: bool,
    pub raw_ms: f64,
    pub predicted_ms: f64,
    pub measured_ms: f64,
    pub error_pct: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CalibrationReport {
    pub latency: LatencyModel,
    pub models: Vec<ModelCheck>,
    /// Mean |predicted − measured| / measured over the checked (not fitted) models, in %.
    pub mean_abs_error_pct: f64,
    /// The same before the correction (Σ blocks + outside alone).
    pub raw_mean_abs_error_pct: f64,
}

/// Least squares for `y ≈ scale · x + offset`; with fewer than two distinct x, scale only.
fn fit_line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if sxx <= 1e-12 * mx.abs().max(1.0) {
        return (my / mx, 0.0);
    }
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let scale = sxy / sxx;
    (scale, my - scale * mx)
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
    let build = |config: &ModelConfig| {
        build_model(config, &random_weights(config, 0), device).expect("random weights fit the config")
    };
    let parent_model = build(parent);
    let built: Vec<Llama> = models.iter().map(|(_, config)| build(config)).collect();
    let mut runners: Vec<Runner> = distinct
        .iter()
        .map(|b| block_runner(parent, b, scenario, device))
        .collect();
    runners.push(outside_runner(&parent_model, scenario)?);
    for model in &built {
        runners.push(model_runner(model, scenario)?);
    }
    let timings = time_interleaved(&runners, rounds);
    let mut latency = LatencyModel {
        scenario: *scenario,
        blocks: distinct
            .iter()
            .copied()
            .zip(timings.iter().map(|t| t.median_ms))
            .collect(),
        outside_ms: timings[distinct.len()].median_ms,
        scale: 1.0,
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
        (latency.scale, latency.offset_ms) = fit_line(&points);
    }
    let checks: Vec<ModelCheck> = measured
        .into_iter()
        .enumerate()
        .map(|(i, (name, raw_ms, measured_ms))| {
            let predicted_ms = latency.scale * raw_ms + latency.offset_ms;
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
    Ok(CalibrationReport {
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
    fn line_fit_recovers_scale_and_offset() {
        let (scale, offset) = fit_line(&[(1.0, 2.5), (2.0, 4.5), (4.0, 8.5)]);
        assert!((scale - 2.0).abs() < 1e-9 && (offset - 0.5).abs() < 1e-9);
        let (scale, offset) = fit_line(&[(2.0, 3.0), (2.0, 3.0)]);
        assert!((scale - 1.5).abs() < 1e-9 && offset == 0.0);
    }
}
