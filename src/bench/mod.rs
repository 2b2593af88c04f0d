//! Throughput benchmarks printed by `tessera bench`: the machine's f32 GEMM peak on the chosen
//! device, and prefill / decode tokens per second of a model with the GFLOP/s they reach.

pub mod forward;

pub use forward::{ForwardBench, bench_forward, gemm_peak_gflops, random_25m_config, read_bandwidth_gbs};
