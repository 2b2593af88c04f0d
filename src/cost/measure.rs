//! Measured latency on the running backend: a whole model under a prefill or decode scenario,
//! timed in rounds interleaved with other models (the cost stage builds blocks into models to
//! time them in context). The median over rounds after a warm-up is reported with the spread.

use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::scenario::Scenario;
use crate::model::{ForwardError, KvCache, Llama, ModelConfig};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

const WARMUP: usize = 2;

/// A decode scenario is timed as this many consecutive steps through one cache, centred on its
/// context, and reported per step. One step timed alone, after other models ran, was measured
/// at 2.4× the per-step time inside a real generation (default parent, b=1, c=192: caches and
/// worker threads cold), which made whole-request predictions twice too slow.
pub const DECODE_STEPS: usize = 16;

/// One timed unit of work, ready to run again and again on the same inputs.
pub type Runner<'a> = Box<dyn Fn() + 'a>;

pub fn summarise(ms: Vec<f64>) -> Timing {
    Timing {
        median_ms: crate::stats::median(&ms),
        min_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: ms.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        runs: ms.len(),
    }
}

fn once(run: &dyn Fn()) -> f64 {
    let start = Instant::now();
    run();
    1e3 * start.elapsed().as_secs_f64()
}

/// Times every runner once per round, for `rounds` rounds (after a warm-up of each): each
/// runner's figures are spread over the same stretch of time, so a machine whose speed drifts
/// (this one does, by up to 1.5× within minutes) shifts all of them alike.
pub fn time_interleaved(runners: &[Runner], rounds: usize) -> Vec<Timing> {
    time_rounds(runners, rounds).into_iter().map(summarise).collect()
}

/// [`time_interleaved`]'s milliseconds round by round, one list per runner: the k-th entries of
/// two lists were timed in the same round, so their ratio is free of the machine's drift.
pub fn time_rounds(runners: &[Runner], rounds: usize) -> Vec<Vec<f64>> {
    for run in runners {
        (0..WARMUP).for_each(|_| run());
    }
    let mut ms = vec![Vec::new(); runners.len()];
    for _ in 0..rounds.max(1) {
        for (times, run) in ms.iter_mut().zip(runners) {
            times.push(once(run.as_ref()));
        }
    }
    ms
}

/// One forward pass through `cache`, waited for: reading one element forces every op before it.
/// Positions are checked when a runner is built, so the pass cannot fail.
fn pass(model: &Llama, tokens: &Tensor<2, Int>, cache: &mut KvCache) {
    let out = model
        .forward(tokens.clone(), Some(cache), false)
        .expect("positions checked");
    let _ = out.logits.slice([0..1, 0..1, 0..1]).into_data();
}

fn token_rows(config: &ModelConfig, batch: usize, len: usize) -> Vec<Vec<u32>> {
    let vocab = config.vocab_size as u32;
    (0..batch)
        .map(|row| (0..len as u32).map(|i| (i * 7 + row as u32 * 13 + 3) % vocab).collect())
        .collect()
}

impl Timing {
    /// The timing of one of `n` equal parts of each run.
    pub fn per(self, n: usize) -> Timing {
        let n = n.max(1) as f64;
        Timing {
            median_ms: self.median_ms / n,
            min_ms: self.min_ms / n,
            max_ms: self.max_ms / n,
            runs: self.runs,
        }
    }
}

/// Checked before a runner is built, so the forward passes inside it cannot fail.
fn fits(config: &ModelConfig, end: usize) -> Result<(), ForwardError> {
    if end > config.max_position_embeddings {
        return Err(ForwardError::ContextTooLong {
            start: 0,
            end,
            max: config.max_position_embeddings,
        });
    }
    Ok(())
}

/// How many units of `scenario` one run of its runner performs (see [`DECODE_STEPS`]).
pub fn units_per_run(scenario: &Scenario) -> usize {
    match scenario {
        Scenario::Prefill { .. } => 1,
        Scenario::Decode { .. } => DECODE_STEPS,
    }
}

/// A runner for `model` end to end under `scenario`: a prefill into an empty cache, or
/// [`DECODE_STEPS`] consecutive decode steps centred on `context` cached positions (the cache
/// filled once, here, untimed); divide its timings by [`units_per_run`].
pub fn model_runner<'a>(model: &'a Llama, scenario: &Scenario) -> Result<Runner<'a>, ForwardError> {
    let config = model.config();
    let layers = config.num_layers();
    // The positions are checked here, so the forward passes inside the runner cannot fail.
    let end = scenario.positions();
    fits(config, end)?;
    match *scenario {
        Scenario::Prefill { batch, seq } => {
            let tokens = model.tokens_tensor(&token_rows(config, batch, seq))?;
            Ok(Box::new(move || pass(model, &tokens, &mut KvCache::new(layers))))
        }
        Scenario::Decode { batch, context } => {
            let mut filled = KvCache::new(layers);
            let start = super::scenario::decode_start(context);
            model.forward(
                model.tokens_tensor(&token_rows(config, batch, start))?,
                Some(&mut filled),
                false,
            )?;
            let next = model.tokens_tensor(&token_rows(config, batch, 1))?;
            Ok(Box::new(move || {
                let mut cache = filled.clone();
                for _ in 0..DECODE_STEPS {
                    pass(model, &next, &mut cache);
                }
            }))
        }
    }
}

/// A runner for one whole request: a prefill of `batch` prompts of `prompt` tokens, then
/// `generated` decode steps, each feeding one token per row through the growing cache — what the
/// throughput and latency limits of a constraint file model as `prefill + generated · decode`.
pub fn request_runner<'a>(
    model: &'a Llama,
    batch: usize,
    prompt: usize,
    generated: usize,
) -> Result<Runner<'a>, ForwardError> {
    let config = model.config();
    let layers = config.num_layers();
    let end = prompt + generated;
    fits(config, end)?;
    let tokens = model.tokens_tensor(&token_rows(config, batch, prompt))?;
    let next = model.tokens_tensor(&token_rows(config, batch, 1))?;
    Ok(Box::new(move || {
        let mut cache = KvCache::new(layers);
        pass(model, &tokens, &mut cache);
        for _ in 0..generated {
            pass(model, &next, &mut cache);
        }
    }))
}
