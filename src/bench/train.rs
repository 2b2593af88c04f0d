//! Training throughput: tokens per second of the shared training engine (forward, backward,
//! global clip, AdamW) on a given shape, fed from a token shard on disk like a real run. The
//! PyTorch reference in `scripts/bench_train_torch.py` trains the same shapes the same way.

use std::sync::Mutex;

use burn::prelude::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use crate::data::{ShardWriter, TokenWindows};
use crate::model::{ModelConfig, build_model, random_weights};
use crate::train::{TrainConfig, TrainError, lm_micro_batch, train};

/// About 8M parameters on the world vocabulary: 10 layers, d_model 256, 8 heads / 4 KV heads,
/// SwiGLU 768.
pub fn shape_8m(vocab: usize) -> ModelConfig {
    ModelConfig::uniform(vocab, 256, 10, 8, 4, 768, 256)
}

#[derive(Debug, Serialize)]
pub struct TrainBench {
    pub params: usize,
    pub batch_size: usize,
    pub micro_batches: usize,
    pub seq_len: usize,
    pub steps_timed: usize,
    pub median_step_ms: f64,
    pub median_tokens_per_s: f64,
    /// Model FLOPs of a training step (3 × the forward's) per second at the median step.
    pub gflops: f64,
}

/// Times `steps` training steps after `warmup` untimed ones, on uniformly random tokens; each
/// step's `batch_size` sequences are split into `micro_batches` (run on parallel threads).
pub fn bench_train(
    config: &ModelConfig,
    batch_size: usize,
    micro_batches: usize,
    seq_len: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> Result<TrainBench, TrainError> {
    if micro_batches == 0 || !batch_size.is_multiple_of(micro_batches) {
        return Err(TrainError::Settings(format!(
            "batch size {batch_size} must be a positive multiple of the {micro_batches} micro-batches"
        )));
    }
    let dir = tempfile::tempdir().map_err(|cause| TrainError::Io {
        path: std::env::temp_dir(),
        cause,
    })?;
    let shard = dir.path().join("random.tokens");
    let mut writer = ShardWriter::create(&shard, config.vocab_size)?;
    let mut rng = StdRng::seed_from_u64(0);
    let tokens: Vec<u32> = (0..(batch_size * (seq_len + 1) * 8).max(1 << 16))
        .map(|_| rng.random_range(0..config.vocab_size as u32))
        .collect();
    writer.push(&tokens)?;
    writer.finish()?;
    let windows = Mutex::new(TokenWindows::open(&shard)?);
    let model = build_model(config, &random_weights(config, 0), &device.clone().autodiff())?;
    let train_config = TrainConfig {
        steps: warmup + steps,
        grad_accum: micro_batches,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    let micro_size = batch_size / micro_batches;
    let outcome = train(model, &train_config, None, Value::Null, |model, _, rng| {
        lm_micro_batch(model, &windows, rng, micro_size, seq_len)
    })?;
    let mut timed: Vec<f64> = outcome.history[warmup..].iter().map(|h| h.seconds * 1e3).collect();
    timed.sort_by(f64::total_cmp);
    let median_step_ms = timed.get(timed.len() / 2).copied().unwrap_or(f64::NAN);
    let tokens = (batch_size * seq_len) as f64;
    Ok(TrainBench {
        params: config.num_params(),
        batch_size,
        micro_batches,
        seq_len,
        steps_timed: timed.len(),
        median_step_ms,
        median_tokens_per_s: tokens / (median_step_ms / 1e3),
        gflops: 3.0 * config.flops_per_token(seq_len) * tokens / (median_step_ms / 1e3) / 1e9,
    })
}
