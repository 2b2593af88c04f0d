//! The training loop: for each step, `grad_accum` micro-batches (each drawn from a generator
//! seeded by (seed, step, micro-batch), so a resumed run sees the same data), one global-norm
//! clip, one AdamW update at the scheduled rate; a checkpoint every `checkpoint_every` steps
//! and at the end; a stop with a clear error on a non-finite loss or gradient.
//!
//! Micro-batches of a step run on parallel threads: burn-flex runs element-wise ops on one
//! core, so two micro-batches side by side keep both cores busy where one batch of twice the
//! size would not. Gradients are summed in micro-batch order, so the result does not depend on
//! the number of threads. The threads are one pool kept for the whole run: threads started
//! afresh each step begin with empty allocator heaps and fault in fresh zeroed pages for every
//! activation (measured: the pool trains the default parent about 25% faster).

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::clip::{clip_scale, global_norm};
use super::params::{self, ParamInfo};
use super::state::{self, StepLog, TrainState, first_difference};
use super::{AdamW, AdamWConfig, Schedule, TrainError};
use crate::model::{TensorMap, from_burn, to_burn};

/// How a long run is driven, never what it computes, so no resume fingerprint holds it: how
/// often to checkpoint, where to stop early, whether to draw a progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunControl {
    /// Save a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Stop (with a checkpoint) after this many steps, as if killed there.
    pub stop_after: Option<usize>,
    pub progress: bool,
}

impl RunControl {
    /// This control with a progress bar or without.
    pub fn with_progress(self, progress: bool) -> Self {
        RunControl { progress, ..self }
    }

    /// This control stopping after `stop_after` steps (as if killed there) when given.
    pub fn stopping_after(self, stop_after: Option<usize>) -> Self {
        RunControl { stop_after, ..self }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    pub grad_accum: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub adamw: AdamWConfig,
    /// Global gradient-norm limit; `None` = no clipping.
    pub clip_norm: Option<f64>,
    pub seed: u64,
    #[serde(skip)]
    pub control: RunControl,
    /// Threads for the micro-batches of a step (0 = one per core); never changes the result.
    #[serde(skip)]
    pub workers: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            grad_accum: 1,
            peak_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            adamw: AdamWConfig::default(),
            clip_norm: Some(1.0),
            seed: 0,
            control: RunControl::default(),
            workers: 0,
        }
    }
}

impl TrainConfig {
    /// The schedule every stage starts from: warm-up over 5% of the steps (at least one), cosine
    /// decay to a tenth of `peak_lr`, global-norm clipping at 1.
    pub fn warmup_cosine(steps: usize, grad_accum: usize, peak_lr: f64, seed: u64, control: RunControl) -> Self {
        Self {
            steps,
            grad_accum,
            peak_lr,
            min_lr: peak_lr / 10.0,
            warmup_steps: (steps / 20).max(1),
            clip_norm: Some(1.0),
            seed,
            control,
            ..Self::default()
        }
    }

    pub fn schedule(&self) -> Schedule {
        Schedule {
            peak_lr: self.peak_lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
        }
    }

    fn check(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Settings(what));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.grad_accum == 0 {
            return bad("grad_accum must be at least 1".into());
        }
        if !(self.peak_lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.peak_lr) {
            return bad(format!(
                "need 0 <= min_lr <= peak_lr and peak_lr > 0, got {} and {}",
                self.min_lr, self.peak_lr
            ));
        }
        if self.clip_norm.is_some_and(|c| c <= 0.0 || c.is_nan()) {
            return bad(format!("clip_norm must be positive, got {:?}", self.clip_norm));
        }
        Ok(())
    }
}

/// Which micro-batch of which (0-based) step the closure is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchIndex {
    pub step: usize,
    pub micro: usize,
}

/// A micro-batch's mean loss (a scalar on the model's autodiff device) and its token count.
pub struct MicroBatch {
    pub loss: Tensor<1>,
    pub tokens: usize,
}

pub struct TrainOutcome<M> {
    pub model: M,
    pub steps_done: usize,
    pub tokens_seen: u64,
    pub history: Vec<StepLog>,
    /// The step a checkpoint was resumed from, if any.
    pub resumed_from: Option<usize>,
    pub finished: bool,
}

struct MicroResult {
    loss: f64,
    tokens: usize,
    grads: Vec<Option<Tensor<1>>>,
}

/// Runs the micro-batches of `step` on the threads of `workers` (one after another on this
/// thread when there is no pool); results come back in micro-batch order.
fn run_micro_batches<M, F>(
    model: &M,
    config: &TrainConfig,
    workers: Option<&rayon::ThreadPool>,
    step: usize,
    micro_batch: &F,
) -> Vec<Result<MicroResult, TrainError>>
where
    M: Module + Sync,
    F: Fn(&M, BatchIndex, &mut StdRng) -> Result<MicroBatch, TrainError> + Sync,
{
    let one = |model: &M, micro: usize| -> Result<MicroResult, TrainError> {
        let mut rng = StdRng::seed_from_u64(batch_seed(config.seed, step, micro));
        let batch = micro_batch(model, BatchIndex { step, micro }, &mut rng)?;
        let loss = batch.loss.clone().into_scalar::<f32>() as f64;
        // A non-finite loss is reported by the caller; its gradient is not worth computing.
        let grads = if loss.is_finite() {
            params::gradients(model, &batch.loss.backward())
        } else {
            Vec::new()
        };
        Ok(MicroResult {
            loss,
            tokens: batch.tokens,
            grads,
        })
    };
    let Some(pool) = workers else {
        return (0..config.grad_accum).map(|micro| one(model, micro)).collect();
    };
    let workers = pool.current_num_threads();
    // Each thread works on its own replica: the same parameter values behind fresh autodiff
    // leaves, so the threads' graphs share no node (burn's tape is not safe to consume
    // concurrently from shared leaves).
    let replicas: Vec<M> = (0..workers)
        .map(|_| params::map_values(model.clone(), |_, v| v))
        .collect();
    let results = std::sync::Mutex::new(Vec::with_capacity(config.grad_accum));
    pool.scope(|scope| {
        for (w, replica) in replicas.iter().enumerate() {
            let (one, results) = (&one, &results);
            scope.spawn(move |_| {
                for micro in (w..config.grad_accum).step_by(workers) {
                    let result = one(replica, micro);
                    results.lock().expect("no worker panicked").push((micro, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no worker panicked");
    results.sort_by_key(|(micro, _)| *micro);
    results.into_iter().map(|(_, r)| r).collect()
}

/// SplitMix64: independent-looking seeds for each (seed, step, micro-batch).
fn batch_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let mut z = seed ^ ((step as u64) << 20 | micro as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn snapshot(layout: &[ParamInfo], values: Vec<Tensor<1>>, optimizer: &AdamW) -> TensorMap {
    let mut tensors = optimizer.state(layout);
    for (info, value) in layout.iter().zip(values) {
        tensors.insert(format!("param.{}", info.path), from_burn(value));
    }
    tensors
}

/// Where a run stands: the step it starts from, what it has seen, and its last checkpoint.
#[derive(Default)]
struct RunState {
    start: usize,
    tokens_seen: u64,
    history: Vec<StepLog>,
    resumed_from: Option<usize>,
    last_checkpoint: Option<(std::path::PathBuf, usize)>,
}

impl RunState {
    /// What a non-finite loss or gradient leaves behind, for the error message.
    fn kept(&self) -> String {
        match &self.last_checkpoint {
            Some((path, step)) => format!("the last good checkpoint (step {step}) is kept at {}", path.display()),
            None => "no checkpoint had been written yet".to_string(),
        }
    }
}

/// Loads the latest checkpoint in `dir`, when there is one, into `model` and `optimizer`, after
/// checking that it belongs to this run (`fingerprint` and parameter layout).
fn resume<M: Module>(
    model: M,
    optimizer: &mut AdamW,
    layout: &[ParamInfo],
    dir: Option<&Path>,
    fingerprint: &Value,
) -> Result<(M, RunState), TrainError> {
    let Some(checkpoint) = dir.and_then(state::latest) else {
        return Ok((model, RunState::default()));
    };
    let (saved, tensors) = state::load(&checkpoint)?;
    let layout_here = serde_json::to_value(layout).expect("layout serialises");
    let layout_there = serde_json::to_value(&saved.layout).expect("layout serialises");
    let difference = first_difference(&saved.fingerprint, fingerprint, "")
        .or_else(|| first_difference(&layout_there, &layout_here, "parameters"));
    if let Some((key, there, here)) = difference {
        return Err(TrainError::Mismatch {
            path: checkpoint,
            key,
            there: there.to_string(),
            here: here.to_string(),
        });
    }
    let device = params::values(&model)
        .first()
        .map(Tensor::device)
        .unwrap_or_else(Device::flex);
    if let Some(missing) = layout
        .iter()
        .find(|p| !tensors.contains_key(&format!("param.{}", p.path)))
    {
        return Err(TrainError::Format {
            path: checkpoint,
            problem: format!("parameter `{}` is missing", missing.path),
        });
    }
    let model = params::map_values(model, |i, _| {
        to_burn(tensors[&format!("param.{}", layout[i].path)].clone(), &device)
    });
    optimizer.load_state(layout, &tensors, &device);
    let state = RunState {
        start: saved.step,
        tokens_seen: saved.tokens_seen,
        history: saved.history,
        resumed_from: Some(saved.step),
        last_checkpoint: Some((checkpoint, saved.step)),
    };
    Ok((model, state))
}

/// The step's gradients summed over its micro-batches (`None` where a parameter got none), the
/// sum of their losses and their tokens.
type Accumulated = (Vec<Option<Tensor<1>>>, f64, usize);

fn accumulate<M, F>(
    model: &M,
    config: &TrainConfig,
    pool: Option<&rayon::ThreadPool>,
    step: usize,
    parameters: usize,
    micro_batch: &F,
    state: &RunState,
) -> Result<Accumulated, TrainError>
where
    M: Module + Sync,
    F: Fn(&M, BatchIndex, &mut StdRng) -> Result<MicroBatch, TrainError> + Sync,
{
    let mut accumulated: Vec<Option<Tensor<1>>> = vec![None; parameters];
    let (mut loss_sum, mut tokens) = (0.0f64, 0usize);
    for result in run_micro_batches(model, config, pool, step, micro_batch) {
        let result = result?;
        if !result.loss.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                what: "loss",
                value: result.loss,
                kept: state.kept(),
            });
        }
        for (sum, grad) in accumulated.iter_mut().zip(result.grads) {
            *sum = match (sum.take(), grad) {
                (Some(s), Some(g)) => Some(s + g),
                (s, g) => s.or(g),
            };
        }
        loss_sum += result.loss;
        tokens += result.tokens;
    }
    Ok((accumulated, loss_sum, tokens))
}

/// Trains `model` (built on an autodiff device) with `micro_batch`, which returns the loss of
/// one micro-batch (the given one of its step) drawn with the given generator (and may be called
/// from several threads). With `checkpoint_dir`, an existing
/// checkpoint there is resumed (after checking it belongs to this run: `fingerprint` and the
/// training settings must match) and new ones are written there.
pub fn train<M, F>(
    model: M,
    config: &TrainConfig,
    checkpoint_dir: Option<&Path>,
    fingerprint: Value,
    micro_batch: F,
) -> Result<TrainOutcome<M>, TrainError>
where
    M: Module + Sync,
    F: Fn(&M, BatchIndex, &mut StdRng) -> Result<MicroBatch, TrainError> + Sync,
{
    config.check()?;
    let fingerprint = json!({ "run": fingerprint, "train": config });
    let layout = params::layout(&model);
    let mut optimizer = AdamW::new(config.adamw, &layout);
    let (mut model, mut state) = resume(model, &mut optimizer, &layout, checkpoint_dir, &fingerprint)?;
    let start = state.start;
    let end = config.control.stop_after.map_or(config.steps, |s| s.min(config.steps));
    let schedule = config.schedule();
    let bar = crate::progress::bar(config.control.progress, "steps", start, end);
    let workers = crate::parallel::thread_count(config.workers, config.grad_accum);
    let pool = (workers > 1)
        .then(|| rayon::ThreadPoolBuilder::new().num_threads(workers).build())
        .transpose()
        .map_err(|e| TrainError::Settings(format!("starting {workers} training threads: {e}")))?;
    for step in start..end {
        let began = Instant::now();
        let (mut accumulated, loss_sum, tokens) =
            accumulate(&model, config, pool.as_ref(), step, layout.len(), &micro_batch, &state)?;
        let present: Vec<Tensor<1>> = accumulated.iter().flatten().cloned().collect();
        let grad_norm = global_norm(&present) / config.grad_accum as f64;
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                what: "gradient norm",
                value: grad_norm,
                kept: state.kept(),
            });
        }
        let scale = clip_scale(grad_norm, config.clip_norm.unwrap_or(f64::INFINITY)) / config.grad_accum as f64;
        let lr = schedule.lr(step);
        model = params::map_values(model, |i, value| match accumulated[i].take() {
            Some(grad) => optimizer.update(i, value, grad * scale, lr, step + 1),
            None => value,
        });
        let loss = loss_sum / config.grad_accum as f64;
        let seconds = began.elapsed().as_secs_f64();
        state.tokens_seen += tokens as u64;
        state.history.push(StepLog {
            step: step + 1,
            loss,
            lr,
            grad_norm,
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds,
        });
        bar.set_position((step + 1) as u64);
        bar.set_message(format!("loss {loss:.4}  {:.0} tok/s", tokens as f64 / seconds));
        let every = config.control.checkpoint_every;
        let due = every > 0 && (step + 1) % every == 0;
        if let Some(dir) = checkpoint_dir
            && (due || step + 1 == end)
        {
            let saved = TrainState {
                step: step + 1,
                tokens_seen: state.tokens_seen,
                fingerprint: fingerprint.clone(),
                layout: layout.clone(),
                history: state.history.clone(),
            };
            let path = state::save(dir, &saved, &snapshot(&layout, params::values(&model), &optimizer))?;
            state.last_checkpoint = Some((path, step + 1));
        }
    }
    bar.finish_and_clear();
    Ok(TrainOutcome {
        model,
        steps_done: end.max(start),
        tokens_seen: state.tokens_seen,
        history: state.history,
        resumed_from: state.resumed_from,
        finished: end.max(start) >= config.steps,
    })
}
