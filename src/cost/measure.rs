//! Measured latency on the running backend: one block, what lies outside the blocks
//! (embedding, final norm, LM head), or a whole model, under a prefill or decode scenario.
//! Timing does not depend on weight values, so blocks get random weights; the median over
//! repeats after a warm-up is reported with the spread.

use std::time::Instant;

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::scenario::Scenario;
use crate::model::rope::Rope;
use crate::model::{
    AttentionConfig, Block, BlockConfig, ForwardError, HostTensor, KvCache, Llama, ModelConfig, TensorMap,
    block_tensors, build_block,
};

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

const WARMUP: usize = 2;

/// One timed unit of work (a block, the outside part, a whole model), ready to run again and
/// again on the same inputs.
pub type Runner<'a> = Box<dyn Fn() + 'a>;

fn summarise(mut ms: Vec<f64>) -> Timing {
    ms.sort_by(f64::total_cmp);
    Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        runs: ms.len(),
    }
}

fn once(run: &dyn Fn()) -> f64 {
    let start = Instant::now();
    run();
    1e3 * start.elapsed().as_secs_f64()
}

/// Times `run` `repeats` times (at least 1) after a warm-up.
pub fn time(repeats: usize, run: &dyn Fn()) -> Timing {
    (0..WARMUP).for_each(|_| run());
    summarise((0..repeats.max(1)).map(|_| once(run)).collect())
}

/// Times every runner once per round, for `rounds` rounds (after a warm-up of each): each
/// runner's figures are spread over the same stretch of time, so a machine whose speed drifts
/// (this one does, by up to 1.5× within minutes) shifts all of them alike.
pub fn time_interleaved(runners: &[Runner], rounds: usize) -> Vec<Timing> {
    for run in runners {
        (0..WARMUP).for_each(|_| run());
    }
    let mut ms = vec![Vec::new(); runners.len()];
    for _ in 0..rounds.max(1) {
        for (times, run) in ms.iter_mut().zip(runners) {
            times.push(once(run.as_ref()));
        }
    }
    ms.into_iter().map(summarise).collect()
}

/// Waits for a result: reading one element forces every op before it.
fn finish(x: Tensor<3>) {
    let _ = x.slice([0..1, 0..1, 0..1]).into_data();
}

fn random_tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).expect("valid normal");
    let data: Vec<f32> = (0..shape.iter().product()).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// `block` at layer 0 with random weights.
pub fn random_block(config: &ModelConfig, block: &BlockConfig, device: &Device) -> Block {
    let mut rng = StdRng::seed_from_u64(7);
    let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
    let weights: TensorMap = block_tensors(config, 0, block)
        .into_iter()
        .map(|(name, shape)| {
            let data = (0..shape.iter().product()).map(|_| normal.sample(&mut rng)).collect();
            (name, HostTensor::new(shape, data))
        })
        .collect();
    build_block(config, 0, block, &weights, device).expect("random weights have the block's shapes")
}

/// A cache holding `context` random positions for a one-layer model with `attention`.
fn filled_cache(
    config: &ModelConfig,
    attention: &AttentionConfig,
    batch: usize,
    context: usize,
    device: &Device,
) -> KvCache {
    let mut cache = KvCache::new(1);
    if let AttentionConfig::Gqa { kv_heads } = *attention {
        let shape = [batch, kv_heads, context, config.head_dim];
        cache.append(0, random_tensor(shape, 1, device), random_tensor(shape, 2, device));
    }
    cache.advance(context);
    cache
}

/// A runner for one block under `scenario`, with random weights and inputs.
pub fn block_runner<'a>(config: &ModelConfig, block: &BlockConfig, scenario: &Scenario, device: &Device) -> Runner<'a> {
    let built = random_block(config, block, device);
    let rope = Rope::new(config.head_dim, scenario.positions(), config.rope_theta, device);
    let h = config.hidden_size;
    match *scenario {
        Scenario::Prefill { batch, seq } => {
            let x = random_tensor([batch, seq, h], 3, device);
            Box::new(move || {
                let mut cache = KvCache::new(1);
                finish(built.forward(x.clone(), 0, 0, &rope, Some(&mut cache)));
            })
        }
        Scenario::Decode { batch, context } => {
            let x = random_tensor([batch, 1, h], 3, device);
            let filled = filled_cache(config, &block.attention, batch, context, device);
            Box::new(move || {
                let mut cache = filled.clone();
                finish(built.forward(x.clone(), 0, context, &rope, Some(&mut cache)));
            })
        }
    }
}

/// Latency of one block under `scenario`.
pub fn time_block(
    config: &ModelConfig,
    block: &BlockConfig,
    scenario: &Scenario,
    repeats: usize,
    device: &Device,
) -> Timing {
    time(repeats, block_runner(config, block, scenario, device).as_ref())
}

fn token_rows(config: &ModelConfig, batch: usize, len: usize) -> Vec<Vec<u32>> {
    let vocab = config.vocab_size as u32;
    (0..batch)
        .map(|row| (0..len as u32).map(|i| (i * 7 + row as u32 * 13 + 3) % vocab).collect())
        .collect()
}

/// A runner for the embedding lookup, final norm and LM head of `model` under `scenario`.
pub fn outside_runner<'a>(model: &'a Llama, scenario: &Scenario) -> Result<Runner<'a>, ForwardError> {
    let len = match *scenario {
        Scenario::Prefill { seq, .. } => seq,
        Scenario::Decode { .. } => 1,
    };
    let tokens = model.tokens_tensor(&token_rows(model.config(), scenario.batch(), len))?;
    Ok(Box::new(move || finish(model.head(model.embed(tokens.clone())))))
}

/// A runner for `model` end to end under `scenario`: a prefill into an empty cache, or one
/// decode step after `context` cached positions (filled once, here, untimed).
pub fn model_runner<'a>(model: &'a Llama, scenario: &Scenario) -> Result<Runner<'a>, ForwardError> {
    let config = model.config();
    let layers = config.num_layers();
    // The positions are checked here, so the forward passes inside the runner cannot fail.
    let end = scenario.positions();
    if end > config.max_position_embeddings {
        return Err(ForwardError::ContextTooLong {
            start: 0,
            end,
            max: config.max_position_embeddings,
        });
    }
    match *scenario {
        Scenario::Prefill { batch, seq } => {
            let tokens = model.tokens_tensor(&token_rows(config, batch, seq))?;
            Ok(Box::new(move || {
                let mut cache = KvCache::new(layers);
                let out = model
                    .forward(tokens.clone(), Some(&mut cache), false)
                    .expect("positions checked");
                finish(out.logits);
            }))
        }
        Scenario::Decode { batch, context } => {
            let mut filled = KvCache::new(layers);
            model.forward(
                model.tokens_tensor(&token_rows(config, batch, context))?,
                Some(&mut filled),
                false,
            )?;
            let next = model.tokens_tensor(&token_rows(config, batch, 1))?;
            Ok(Box::new(move || {
                let mut cache = filled.clone();
                let out = model
                    .forward(next.clone(), Some(&mut cache), false)
                    .expect("positions checked");
                finish(out.logits);
            }))
        }
    }
}
