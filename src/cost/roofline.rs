//! Analytic latency estimates for hardware that is not at hand: a roofline per kernel group,
//! `time = max(FLOPs / peak, bytes / bandwidth) + kernels · launch overhead`, with peak dense
//! FLOP/s per precision and memory bandwidth from the vendors' datasheets (cited below), or
//! measured on this machine's CPU by `tessera profile calibrate`.

use serde::{Deserialize, Serialize};

use super::memory::outside_params;
use super::precision::Precision;
use super::scenario::Scenario;
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};

/// A device as the roofline sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    pub name: String,
    /// Dense (no sparsity) peak FLOP/s for f32, bf16 and fp8 matrix products; `None` where the
    /// device has no such units.
    pub peak_f32: f64,
    pub peak_bf16: Option<f64>,
    pub peak_fp8: Option<f64>,
    /// Bytes per second from device memory.
    pub bandwidth: f64,
    pub memory_bytes: f64,
    /// Seconds added per kernel (launch and synchronisation).
    pub kernel_overhead: f64,
    /// Where the figures come from.
    pub source: String,
}

const T: f64 = 1e12;
const GB: f64 = 1e9;
/// A kernel launch on a recent NVIDIA GPU with a CUDA graph, about 4 µs end to end.
const GPU_KERNEL: f64 = 4e-6;

/// The GPUs tessera can estimate for. f32 is the CUDA-core rate (no TF32), bf16/fp8 the dense
/// tensor-core rate (datasheets quote twice that "with sparsity").
pub fn gpu_table() -> Vec<Hardware> {
    let gpu = |name: &str, f32_: f64, bf16: f64, fp8: Option<f64>, bw: f64, mem: f64, source: &str| Hardware {
        name: name.into(),
        peak_f32: f32_ * T,
        peak_bf16: Some(bf16 * T),
        peak_fp8: fp8.map(|x| x * T),
        bandwidth: bw * GB,
        memory_bytes: mem * GB,
        kernel_overhead: GPU_KERNEL,
        source: source.into(),
    };
    vec![
        gpu(
            "h100",
            67.0,
            989.4,
            Some(1978.9),
            3350.0,
            80.0,
            "NVIDIA H100 Tensor Core GPU datasheet, SXM5: FP32 67 TFLOPS, BF16 1,979 / FP8 3,958 TFLOPS with sparsity, HBM3 3.35 TB/s, 80 GB",
        ),
        gpu(
            "h200",
            67.0,
            989.4,
            Some(1978.9),
            4800.0,
            141.0,
            "NVIDIA H200 Tensor Core GPU datasheet, SXM: FP32 67 TFLOPS, BF16 1,979 / FP8 3,958 TFLOPS with sparsity, HBM3e 4.8 TB/s, 141 GB",
        ),
        gpu(
            "a100",
            19.5,
            312.0,
            None,
            2039.0,
            80.0,
            "NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM: FP32 19.5 TFLOPS, BF16 312 TFLOPS (624 with sparsity), no FP8, HBM2e 2,039 GB/s, 80 GB",
        ),
        gpu(
            "l40s",
            91.6,
            362.05,
            Some(733.0),
            864.0,
            48.0,
            "NVIDIA L40S datasheet: FP32 91.6 TFLOPS, BF16 362.05 / FP8 733 TFLOPS (733 / 1,466 with sparsity), GDDR6 864 GB/s, 48 GB",
        ),
        gpu(
            "rtx4090",
            82.6,
            165.2,
            Some(330.3),
            1008.0,
            24.0,
            "NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: FP32 82.6 TFLOPS, BF16 (FP32 accumulate) 165.2 / FP8 (FP32 accumulate) 330.3 TFLOPS dense, GDDR6X 1,008 GB/s, 24 GB",
        ),
    ]
}

impl Hardware {
    pub fn peak(&self, precision: Precision) -> Option<f64> {
        match precision {
            Precision::F32 => Some(self.peak_f32),
            Precision::Bf16 => self.peak_bf16,
            Precision::Fp8 => self.peak_fp8,
        }
    }
}

/// Whether a kernel group is limited by arithmetic or by memory traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Compute,
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub flops: f64,
    pub bytes: f64,
    pub compute_s: f64,
    pub memory_s: f64,
    pub kernels: usize,
    pub overhead_s: f64,
    pub seconds: f64,
    pub bound: Bound,
}

impl Estimate {
    fn of(flops: f64, bytes: f64, kernels: usize, hw: &Hardware, peak: f64) -> Self {
        let compute_s = flops / peak;
        let memory_s = bytes / hw.bandwidth;
        let overhead_s = kernels as f64 * hw.kernel_overhead;
        Self {
            flops,
            bytes,
            compute_s,
            memory_s,
            kernels,
            overhead_s,
            seconds: compute_s.max(memory_s) + overhead_s,
            bound: if compute_s >= memory_s {
                Bound::Compute
            } else {
                Bound::Memory
            },
        }
    }

    pub fn ms(&self) -> f64 {
        1e3 * self.seconds
    }
}

/// FLOPs, bytes moved and kernels of one block under a scenario: the projections read their
/// weights once and each token's activations; softmax attention also reads (decode) or writes
/// (prefill) the KV cache and multiplies queries by keys and probabilities by values over the
/// causal context.
pub fn block_work(
    config: &ModelConfig,
    block: &BlockConfig,
    scenario: &Scenario,
    precision: Precision,
) -> (f64, f64, usize) {
    let h = config.hidden_size as f64;
    let q = (config.num_attention_heads * config.head_dim) as f64;
    let b = precision.bytes() as f64;
    let tokens = scenario.tokens() as f64;
    let batch = scenario.batch() as f64;
    let (mut flops, mut bytes, mut kernels) = (0.0, 0.0, 0usize);
    // FLOPs and bytes of a sub-block's projections with `params` weights: it reads its input
    // and norm, writes `inner` intermediate values per token and its output, and adds the residual.
    let matmul = |params: f64, inner: f64| (2.0 * tokens * params, params * b + tokens * (3.0 * h + 2.0 * inner) * b);
    match block.attention {
        AttentionConfig::Gqa { kv_heads } => {
            let kv = (kv_heads * config.head_dim) as f64;
            let (f, m) = matmul(h * (q + 2.0 * kv) + q * h, q + 2.0 * kv);
            (flops, bytes) = (flops + f, bytes + m);
            let (attended, cache_bytes) = match *scenario {
                // Causal: each of `seq` queries sees on average half the prompt.
                Scenario::Prefill { seq, .. } => (seq as f64 / 2.0, tokens * 2.0 * kv * b),
                Scenario::Decode { context, .. } => {
                    (context as f64 + 1.0, batch * (context as f64 + 1.0) * 2.0 * kv * b)
                }
            };
            flops += 4.0 * tokens * attended * q;
            bytes += cache_bytes;
            // norm, q/k/v projection, rope, attention, output projection, residual add
            kernels += 6;
        }
        AttentionConfig::Linear => {
            let (f, m) = matmul(h * h, 0.0);
            (flops, bytes) = (flops + f, bytes + m);
            kernels += 3;
        }
        AttentionConfig::NoOp => {}
    }
    match block.ffn {
        FfnConfig::SwiGlu { intermediate } => {
            let n = intermediate as f64;
            let (f, m) = matmul(3.0 * h * n, 3.0 * n);
            (flops, bytes) = (flops + f, bytes + m);
            // norm, gate/up projection, activation, down projection, residual add
            kernels += 5;
        }
        FfnConfig::Linear => {
            let (f, m) = matmul(h * h, 0.0);
            (flops, bytes) = (flops + f, bytes + m);
            kernels += 3;
        }
        FfnConfig::NoOp => {}
    }
    (flops, bytes, kernels)
}

/// The roofline estimate of one block.
pub fn estimate_block(
    config: &ModelConfig,
    block: &BlockConfig,
    scenario: &Scenario,
    precision: Precision,
    hw: &Hardware,
) -> Option<Estimate> {
    let peak = hw.peak(precision)?;
    let (flops, bytes, kernels) = block_work(config, block, scenario, precision);
    Some(Estimate::of(flops, bytes, kernels, hw, peak))
}

/// The roofline estimate of what lies outside the blocks: the embedding lookup, the final norm
/// and the LM head over every token of the pass.
pub fn estimate_outside(
    config: &ModelConfig,
    scenario: &Scenario,
    precision: Precision,
    hw: &Hardware,
) -> Option<Estimate> {
    let peak = hw.peak(precision)?;
    let (h, v, b) = (
        config.hidden_size as f64,
        config.vocab_size as f64,
        precision.bytes() as f64,
    );
    let tokens = scenario.tokens() as f64;
    let flops = 2.0 * tokens * h * v;
    let bytes = outside_params(config) as f64 * b + tokens * (2.0 * h + v) * b;
    Some(Estimate::of(flops, bytes, 3, hw, peak))
}

/// A Llama-3.1-8B-shaped config (shapes only): hidden 4096, 32 layers, 32 heads, 8 KV heads,
/// SwiGLU 14336, vocabulary 128256.
pub fn llama31_8b_shape() -> ModelConfig {
    ModelConfig {
        tie_word_embeddings: false,
        rope_theta: 500_000.0,
        ..ModelConfig::uniform(128_256, 4096, 32, 32, 8, 14_336, 131_072)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_8b_block_decoding_one_sequence_on_h100_is_memory_bound() {
        let config = llama31_8b_shape();
        let h100 = gpu_table().into_iter().find(|h| h.name == "h100").unwrap();
        let scenario = Scenario::Decode {
            batch: 1,
            context: 1024,
        };
        let estimate = estimate_block(&config, &config.blocks[0], &scenario, Precision::Bf16, &h100).unwrap();
        assert_eq!(estimate.bound, Bound::Memory);
        // 218M parameters at 2 bytes are the bytes, but for the 1025 cached positions
        // (2 · 8 heads · 128 · 2 bytes each, 4.2 MB) and a few activations.
        let params = config.block_params(&config.blocks[0]) as f64;
        let cache = 1025.0 * 2.0 * 8.0 * 128.0 * 2.0;
        assert!(
            (estimate.bytes / (2.0 * params + cache) - 1.0).abs() < 1e-3,
            "{estimate:?}"
        );
        assert!(estimate.memory_s > 100.0 * estimate.compute_s, "{estimate:?}");
        // A prefill of 8 × 2048 tokens is compute-bound.
        let prefill = Scenario::Prefill { batch: 8, seq: 2048 };
        let estimate = estimate_block(&config, &config.blocks[0], &prefill, Precision::Bf16, &h100).unwrap();
        assert_eq!(estimate.bound, Bound::Compute);
        // The A100 has no FP8 units.
        let a100 = gpu_table().into_iter().find(|h| h.name == "a100").unwrap();
        assert!(estimate_block(&config, &config.blocks[0], &scenario, Precision::Fp8, &a100).is_none());
    }
}
