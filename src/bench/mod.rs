//! Benchmarks printed by `tessera bench` and `tessera hardware`: the machine's f32 GEMM peak and
//! read bandwidth, prefill / decode tokens per second of models, whole requests of several
//! models interleaved, training tokens per second, BLD (library build) throughput, scoring with
//! and without prefix reuse, and solver speed. Each is one call returning a report.

pub mod bld;
pub mod forward;
pub mod hardware;
pub mod request;
pub mod score;
pub mod search;
pub mod train;

pub use bld::{BldBench, bench_bld};
pub use forward::{
    ForwardBench, ForwardBenchOptions, ForwardReport, RANDOM_25M, bench_forward, bench_models, gemm_peak_gflops,
    random_25m_config, read_bandwidth_gbs,
};
pub use hardware::{HardwareReport, hardware};
pub use request::{RequestBench, RequestShape, bench_requests};
pub use score::{ScoreBench, bench_score};
pub use search::{BenchShape, SearchBench, SearchBenchOptions, Setting, bench_search};
pub use train::{TrainBench, TrainReport, TrainShape, TrainSizes, bench_train, bench_train_shapes, shape_8m};
