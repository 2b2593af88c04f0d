//! Prefill and decode speed of one model, next to a square-GEMM peak measured the same way.

use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, load_model};
use crate::model::{ForwardError, KvCache, Llama, ModelConfig, random_model};

/// A Llama of about 25M parameters (tied 4096-token embeddings, 8 layers of width 512).
pub fn random_25m_config() -> ModelConfig {
    ModelConfig::uniform(4096, 512, 8, 8, 4, 1376, 1024)
}

/// Best GFLOP/s of `size`×`size` f32 matrix products over `repeats` runs (after a warm-up).
pub fn gemm_peak_gflops(device: &Device, size: usize, repeats: usize) -> f64 {
    let a = Tensor::<2>::random([size, size], burn::tensor::Distribution::Default, device);
    let b = Tensor::<2>::random([size, size], burn::tensor::Distribution::Default, device);
    let flops = 2.0 * (size as f64).powi(3);
    let mut best = 0.0f64;
    for run in 0..=repeats {
        let start = Instant::now();
        let _ = a.clone().matmul(b.clone()).slice([0..1, 0..1]).into_data();
        let seconds = start.elapsed().as_secs_f64();
        if run > 0 {
            best = best.max(flops / seconds / 1e9);
        }
    }
    best
}

/// Best read bandwidth in GB/s of summing a 256 MiB tensor (decode streams every weight once
/// per token, so this, not the GEMM peak, bounds decode speed).
pub fn read_bandwidth_gbs(device: &Device, repeats: usize) -> f64 {
    let elements = 64 << 20;
    let t = Tensor::<1>::ones([elements], device);
    let mut best = 0.0f64;
    for run in 0..=repeats {
        let start = Instant::now();
        let _ = t.clone().sum().into_data();
        let seconds = start.elapsed().as_secs_f64();
        if run > 0 {
            best = best.max(4.0 * elements as f64 / seconds / 1e9);
        }
    }
    best
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardBench {
    pub params: usize,
    pub prompt_len: usize,
    pub decode_tokens: usize,
    /// Timed runs the medians are taken over.
    pub runs: usize,
    pub prefill_tokens_per_s: f64,
    pub prefill_gflops: f64,
    pub decode_tokens_per_s: f64,
    pub decode_gflops: f64,
    /// f32 weight bytes read per second while decoding.
    pub decode_weight_gbs: f64,
}

/// Median over `repeats` (at least 1) of: one prefill of `prompt_len` (at least 1) tokens at
/// batch 1, and `decode_tokens` cached single-token steps after it.
pub fn bench_forward(
    model: &Llama,
    prompt_len: usize,
    decode_tokens: usize,
    repeats: usize,
) -> Result<ForwardBench, ForwardError> {
    let (prompt_len, repeats) = (prompt_len.max(1), repeats.max(1));
    let config = model.config();
    let vocab = config.vocab_size as u32;
    let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| (i * 7 + 3) % vocab).collect();
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for run in 0..=repeats {
        let mut cache = KvCache::new(config.num_layers());
        let start = Instant::now();
        let logits = model
            .forward(
                model.tokens_tensor(std::slice::from_ref(&prompt))?,
                Some(&mut cache),
                false,
            )?
            .logits;
        let _ = logits.slice([0..1, 0..1, 0..1]).into_data();
        let prefill_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for step in 0..decode_tokens as u32 {
            let logits = model
                .forward(
                    model.tokens_tensor(&[vec![(step * 13 + 5) % vocab]])?,
                    Some(&mut cache),
                    false,
                )?
                .logits;
            let _ = logits.argmax(2).into_data();
        }
        let decode_s = start.elapsed().as_secs_f64();
        if run > 0 {
            prefill.push(prompt_len as f64 / prefill_s);
            decode.push(decode_tokens as f64 / decode_s);
        }
    }
    let prefill_tokens_per_s = crate::stats::median(&prefill);
    let decode_tokens_per_s = crate::stats::median(&decode);
    // Mean attention context: half the prompt during prefill, the middle of the decode run after.
    let prefill_flops = config.flops_per_token(prompt_len / 2);
    let decode_flops = config.flops_per_token(prompt_len + decode_tokens / 2);
    Ok(ForwardBench {
        params: config.num_params(),
        prompt_len,
        decode_tokens,
        runs: repeats,
        prefill_tokens_per_s,
        prefill_gflops: prefill_tokens_per_s * prefill_flops / 1e9,
        decode_tokens_per_s,
        decode_gflops: decode_tokens_per_s * decode_flops / 1e9,
        decode_weight_gbs: decode_tokens_per_s * 4.0 * config.num_params() as f64 / 1e9,
    })
}

/// The name that stands for a random 25M-parameter model in a list of models to measure.
pub const RANDOM_25M: &str = "random-25m";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardRow {
    pub model: String,
    pub result: ForwardBench,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardReport {
    pub gemm_peak_gflops: f64,
    pub read_bandwidth_gbs: f64,
    pub models: Vec<ForwardRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardBenchError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
}

/// What `bench_models` times: a prompt of `prompt_len` tokens, then `decode_tokens` cached
/// steps, the median of `repeats` runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardBenchOptions {
    pub prompt_len: usize,
    pub decode_tokens: usize,
    pub repeats: usize,
}

impl Default for ForwardBenchOptions {
    fn default() -> Self {
        Self {
            prompt_len: 128,
            decode_tokens: 64,
            repeats: 5,
        }
    }
}

/// Measures the machine's GEMM peak and read bandwidth, then each of `models` (checkpoint paths,
/// or `random-25m`), its prompt shortened to fit the model's context.
pub fn bench_models(
    models: &[String],
    options: &ForwardBenchOptions,
    device: &Device,
) -> Result<ForwardReport, ForwardBenchError> {
    let ForwardBenchOptions {
        prompt_len,
        decode_tokens,
        repeats,
    } = *options;
    let gemm_peak_gflops = gemm_peak_gflops(device, 1024, repeats.max(3));
    let read_bandwidth_gbs = read_bandwidth_gbs(device, repeats.max(3));
    let mut rows = Vec::new();
    for name in models {
        let model = if name == RANDOM_25M {
            let config = random_25m_config();
            random_model(&config, 0, device)
        } else {
            load_model(std::path::Path::new(name), device)?
        };
        let prompt_len = prompt_len
            .min(model.config().max_position_embeddings.saturating_sub(decode_tokens))
            .max(1);
        let result = bench_forward(&model, prompt_len, decode_tokens, repeats)?;
        rows.push(ForwardRow {
            model: name.clone(),
            result,
        });
    }
    Ok(ForwardReport {
        gemm_peak_gflops,
        read_bandwidth_gbs,
        models: rows,
    })
}

impl std::fmt::Display for ForwardReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (peak, bandwidth) = (self.gemm_peak_gflops, self.read_bandwidth_gbs);
        writeln!(
            f,
            "machine: f32 GEMM peak {peak:.1} GFLOP/s (1024³, best run); read bandwidth {bandwidth:.1} GB/s"
        )?;
        writeln!(
            f,
            "{:<22} {:>10} | {:>13} {:>8} {:>6} | {:>12} {:>8} {:>6} {:>12} {:>6}",
            "model",
            "params",
            "prefill tok/s",
            "GFLOP/s",
            "%peak",
            "decode tok/s",
            "GFLOP/s",
            "%peak",
            "weights GB/s",
            "%bw"
        )?;
        for ForwardRow { model, result: r } in &self.models {
            let short = std::path::Path::new(model)
                .file_name()
                .map_or(model.clone(), |f| f.to_string_lossy().into_owned());
            writeln!(
                f,
                "{:<22} {:>10} | {:>13.1} {:>8.2} {:>5.1}% | {:>12.1} {:>8.2} {:>5.1}% {:>12.2} {:>5.1}%",
                short,
                r.params,
                r.prefill_tokens_per_s,
                r.prefill_gflops,
                100.0 * r.prefill_gflops / peak,
                r.decode_tokens_per_s,
                r.decode_gflops,
                100.0 * r.decode_gflops / peak,
                r.decode_weight_gbs,
                100.0 * r.decode_weight_gbs / bandwidth
            )?;
        }
        if let Some(ForwardRow { result: r, .. }) = self.models.first() {
            write!(
                f,
                "(medians of {} runs; prefill of {} tokens at batch 1, then {} cached decode steps)",
                r.runs, r.prompt_len, r.decode_tokens
            )?;
        }
        Ok(())
    }
}
