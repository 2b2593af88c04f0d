//! The training engine on a tiny Llama fed from built-in-world shards: resume equals an
//! uninterrupted run, a foreign checkpoint is refused, a NaN stops training and keeps the last
//! good checkpoint, the global gradient norm matches a hand computation, and loss goes down.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;
use burn::prelude::*;
use serde_json::json;
use tessera::data::TokenWindows;
use tessera::model::{Llama, ModelConfig, build_model, model_weights, random_weights};
use tessera::parent::{ParentOptions, write_world_shards};
use tessera::tokenizer::Tokenizer;
use tessera::train::clip::global_norm;
use tessera::train::{
    MicroBatch, RunControl, TrainConfig, TrainError, TrainOutcome, lm_micro_batch, next_token_loss, params, train,
};
use tessera::world::World;
use tessera::world::tokenizer::{VOCAB_SIZE, write_tokenizer};

fn tiny_config(layers: usize) -> ModelConfig {
    ModelConfig::uniform(VOCAB_SIZE, 32, layers, 4, 2, 64, 64)
}

fn world_shards(dir: &std::path::Path) -> std::path::PathBuf {
    let options = ParentOptions {
        train_tasks: 400,
        train_stories: 60,
        eval_stories: 10,
        ..ParentOptions::default()
    };
    let tokenizer = Tokenizer::read(&write_tokenizer(dir).unwrap()).unwrap();
    write_world_shards(&World::new(5), &options, &tokenizer, &dir.join("data"))
        .unwrap()
        .0
}

fn settings(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        grad_accum: 2,
        peak_lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 2,
        clip_norm: Some(0.5),
        seed: 9,
        control: RunControl {
            checkpoint_every: 2,
            ..RunControl::default()
        },
        ..TrainConfig::default()
    }
}

fn run(
    shard: &std::path::Path,
    config: &TrainConfig,
    layers: usize,
    checkpoint: Option<&std::path::Path>,
) -> Result<TrainOutcome<Llama>, TrainError> {
    let model_config = tiny_config(layers);
    let model = build_model(
        &model_config,
        &random_weights(&model_config, 3),
        &Device::flex().autodiff(),
    )
    .unwrap();
    let windows = Mutex::new(TokenWindows::open(shard).unwrap());
    train(
        model,
        config,
        checkpoint,
        json!({ "model": model_config }),
        |model, _, rng| lm_micro_batch(model, &windows, rng, 4, 32),
    )
}

fn max_weight_diff(a: &Llama, b: &Llama) -> f32 {
    let (a, b) = (model_weights(&a.valid()), model_weights(&b.valid()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .flat_map(|(name, t)| t.iter().zip(b[name].iter()).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn stopped_and_resumed_run_ends_where_an_uninterrupted_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let shard = world_shards(dir.path());
    let straight = run(&shard, &settings(6), 2, None).unwrap();
    assert!(straight.finished);
    let one_thread = run(
        &shard,
        &TrainConfig {
            workers: 1,
            ..settings(6)
        },
        2,
        None,
    )
    .unwrap();
    assert_eq!(
        max_weight_diff(&straight.model, &one_thread.model),
        0.0,
        "threads must not change the result"
    );

    let checkpoints = dir.path().join("run");
    let half = run(
        &shard,
        &TrainConfig {
            control: RunControl {
                stop_after: Some(3),
                ..settings(6).control
            },
            ..settings(6)
        },
        2,
        Some(&checkpoints),
    )
    .unwrap();
    assert!(!half.finished);
    assert_eq!(half.steps_done, 3);
    let resumed = run(&shard, &settings(6), 2, Some(&checkpoints)).unwrap();
    assert_eq!(resumed.resumed_from, Some(3));
    assert!(resumed.finished);
    assert_eq!(resumed.history.len(), 6, "history carries over the first half");

    let diff = max_weight_diff(&straight.model, &resumed.model);
    println!("max |Δweight| between uninterrupted and resumed runs: {diff:e}");
    assert!(diff <= 1e-6, "resumed run drifted by {diff}");
    let losses = |o: &TrainOutcome<Llama>| o.history.iter().map(|h| h.loss).collect::<Vec<_>>();
    assert_eq!(losses(&straight), losses(&resumed));
}

#[test]
fn resuming_a_checkpoint_of_a_different_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shard = world_shards(dir.path());
    let checkpoints = dir.path().join("run");
    run(&shard, &settings(2), 2, Some(&checkpoints)).unwrap();
    let err = run(&shard, &settings(4), 3, Some(&checkpoints))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("different run"), "{err}");
    assert!(err.contains("checkpoint"), "names the checkpoint: {err}");
    assert!(err.contains("run.model.blocks"), "names the key that differs: {err}");
    let err = run(
        &shard,
        &TrainConfig {
            peak_lr: 1e-2,
            ..settings(2)
        },
        2,
        Some(&checkpoints),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("train.peak_lr") && err.contains("0.003") && err.contains("0.01"),
        "{err}"
    );
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let shard = world_shards(dir.path());
    let model_config = tiny_config(1);
    let model = build_model(
        &model_config,
        &random_weights(&model_config, 3),
        &Device::flex().autodiff(),
    )
    .unwrap();
    let windows = Mutex::new(TokenWindows::open(&shard).unwrap());
    let calls = AtomicUsize::new(0);
    let config = TrainConfig {
        grad_accum: 1,
        control: RunControl {
            checkpoint_every: 1,
            ..RunControl::default()
        },
        ..settings(10)
    };
    let checkpoints = dir.path().join("run");
    let err = train(model, &config, Some(&checkpoints), json!(null), |model, _, rng| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let batch = lm_micro_batch(model, &windows, rng, 2, 16)?;
        let loss = if call == 3 { batch.loss * f32::NAN } else { batch.loss };
        Ok(MicroBatch { loss, ..batch })
    })
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(matches!(err, TrainError::NonFinite { step: 3, .. }), "{text}");
    assert!(text.contains("step 3") && text.contains("loss is NaN"), "{text}");
    assert!(text.contains("last good checkpoint (step 2)"), "{text}");
    let saved = std::fs::read_to_string(checkpoints.join("checkpoint/train_state.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["step"], 2);
}

#[test]
fn global_gradient_norm_matches_a_hand_computation_on_real_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let shard = world_shards(dir.path());
    let config = tiny_config(2);
    let model = build_model(&config, &random_weights(&config, 4), &Device::flex().autodiff()).unwrap();
    let mut windows = TokenWindows::open(&shard).unwrap();
    let batch: Vec<Vec<u32>> = (0..2).map(|i| windows.consecutive(33, 2).unwrap()[i].clone()).collect();
    let grads = next_token_loss(&model, &batch).unwrap().backward();
    let grads: Vec<Tensor<1>> = params::gradients(&model, &grads).into_iter().flatten().collect();
    assert_eq!(
        grads.len(),
        params::layout(&model).len(),
        "every parameter gets a gradient"
    );
    let by_hand: f64 = grads
        .iter()
        .flat_map(|g| g.clone().into_data().try_to_vec::<f32>().unwrap())
        .map(|g| (g as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = global_norm(&grads);
    println!("global norm {norm} vs by hand {by_hand}");
    assert!((norm - by_hand).abs() <= 1e-6 * by_hand, "{norm} vs {by_hand}");
}

#[test]
fn training_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let shard = world_shards(dir.path());
    let config = TrainConfig {
        grad_accum: 1,
        peak_lr: 1e-2,
        min_lr: 1e-3,
        ..settings(40)
    };
    let outcome = run(&shard, &config, 2, None).unwrap();
    let first = outcome.history[0].loss;
    let last: f64 = outcome.history[35..].iter().map(|h| h.loss).sum::<f64>() / 5.0;
    println!("loss of the first step {first:.3}, mean of the last 5 {last:.3}");
    let uniform = (VOCAB_SIZE as f64).ln();
    assert!(
        (first - uniform).abs() < 0.3,
        "a random model starts near ln(vocab) = {uniform:.2}: {first}"
    );
    assert!(last < first - 1.5, "loss went from {first} to {last}");
}
