//! Prefill and decode speed of one model, next to a square-GEMM peak measured the same way.

use std::time::Instant;

use burn::prelude::*;
use serde::Serialize;

use crate::model::{ForwardError, KvCache, Llama, ModelConfig};

/// A Llama of about 25M parameters (tied 4096-token embeddings, 8 layers of width 512).
pub fn random_25m_config() -> ModelConfig {
    ModelConfig::uniform(4096, 512, 8, 8, 4, 1376, 1024)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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

#[derive(Clone, Debug, Serialize)]
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
    let prefill_tokens_per_s = median(prefill);
    let decode_tokens_per_s = median(decode);
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
