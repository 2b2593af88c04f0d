//! Throughput benchmarks printed by `tessera bench`: the machine's f32 GEMM peak on the chosen
//! device, prefill / decode tokens per second of a model with the GFLOP/s they reach, and
//! training tokens per second, and BLD (library build) throughput.

pub mod bld;
pub mod forward;
pub mod search;
pub mod train;

pub use bld::{BldBench, bench_bld};
pub use forward::{ForwardBench, bench_forward, gemm_peak_gflops, random_25m_config, read_bandwidth_gbs};
pub use search::{SearchBench, bench_search};
pub use train::{TrainBench, bench_train, shape_8m};
