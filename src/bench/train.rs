//! Training throughput: tokens per second of the shared training engine (forward, backward,
//! global clip, AdamW) on a given shape, fed from a token shard on disk like a real run. The
//! PyTorch reference in `scripts/bench_train_torch.py` trains the same shapes the same way.

use std::sync::Mutex;

use burn::prelude::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::{ShardWriter, TokenWindows};
use crate::model::{ModelConfig, build_model, random_weights};
use crate::train::{TrainConfig, TrainError, lm_micro_batch, train};

/// About 8M parameters on the world vocabulary: 10 layers, d_model 256, 8 heads / 4 KV heads,
/// SwiGLU 768.
pub fn shape_8m(vocab: usize) -> ModelConfig {
    ModelConfig::uniform(vocab, 256, 10, 8, 4, 768, 256)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    let timed: Vec<f64> = outcome.history[warmup..].iter().map(|h| h.seconds * 1e3).collect();
    let median_step_ms = crate::stats::median(&timed);
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

/// The shapes `tessera bench train` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainShape {
    /// The default parent.
    Parent,
    /// About 8M parameters.
    #[serde(rename = "8m")]
    EightM,
}

crate::named!(TrainShape { "parent" => TrainShape::Parent, "8m" => TrainShape::EightM });

/// Batch and step counts of a training benchmark.
#[derive(Clone, Copy, Debug)]
pub struct TrainSizes {
    /// Sequences per step, split into `micro_batches` run on parallel threads.
    pub batch_size: usize,
    pub micro_batches: usize,
    pub seq_len: usize,
    pub warmup: usize,
    pub steps: usize,
}

impl Default for TrainSizes {
    fn default() -> Self {
        Self {
            batch_size: 16,
            micro_batches: 2,
            seq_len: 128,
            warmup: 2,
            steps: 8,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShapeResult {
    pub shape: TrainShape,
    pub result: TrainBench,
}

/// What `scripts/bench_train_torch.py` compares against: `engine` names who measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub engine: String,
    pub shapes: Vec<ShapeResult>,
    pub sizes_note: String,
}

/// Times training of each shape.
pub fn bench_train_shapes(
    shapes: &[TrainShape],
    sizes: &TrainSizes,
    device: &Device,
) -> Result<TrainReport, TrainError> {
    let mut rows = Vec::new();
    for &shape in shapes {
        let parent = crate::parent::default_parent_config(crate::parent::ParentOptions::default().layers);
        let config = match shape {
            TrainShape::Parent => parent,
            TrainShape::EightM => shape_8m(parent.vocab_size),
        };
        let TrainSizes {
            batch_size,
            micro_batches,
            seq_len,
            warmup,
            steps,
        } = *sizes;
        let result = bench_train(&config, batch_size, micro_batches, seq_len, warmup, steps, device)?;
        rows.push(ShapeResult { shape, result });
    }
    Ok(TrainReport {
        engine: "tessera".into(),
        shapes: rows,
        sizes_note: format!(
            "medians of {} steps after {} warm-up steps; batch {} x {} tokens in {} micro-batches",
            sizes.steps, sizes.warmup, sizes.batch_size, sizes.seq_len, sizes.micro_batches
        ),
    })
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<8} {:>10} {:>7} {:>12} {:>14} {:>9}",
            "shape", "params", "tokens", "step ms", "tokens/s", "GFLOP/s"
        )?;
        for ShapeResult { shape, result: r } in &self.shapes {
            writeln!(
                f,
                "{:<8} {:>10} {:>7} {:>12.1} {:>14.0} {:>9.1}",
                shape.to_string(),
                r.params,
                r.batch_size * r.seq_len,
                r.median_step_ms,
                r.median_tokens_per_s,
                r.gflops
            )?;
        }
        write!(f, "({})", self.sizes_note)
    }
}
