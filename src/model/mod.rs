//! The model stage: configuration, the heterogeneous Llama forward pass, its named weights and
//! text generation. Knows nothing about files (see `checkpoint`) or later pipeline stages.

pub mod attention;
pub mod config;
pub mod dense;
pub mod ffn;
pub mod fused;
pub mod generate;
pub mod kv_cache;
pub mod llama;
pub mod masked_batch;
pub mod parallel_ffn;
pub mod rope;
pub mod weights;

pub use config::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};
pub use generate::{Sampling, generate, generate_batch};
pub use kv_cache::KvCache;
pub use llama::{Block, Head};
pub use llama::{ForwardError, ForwardOutput, Llama};
pub use masked_batch::MaskedBatch;
pub use weights::{
    HostTensor, HostValues, TensorInit, TensorMap, WeightError, block_tensors, block_weights, build_block, build_head,
    build_model, from_burn, host_tensor, model_weights, random_model, random_weights, to_burn, transposed,
};
