//! A random parent of any shape, for memory and speed benchmarks (not quality): a checkpoint
//! directory with the `config.json` given and seeded random weights, each tensor generated
//! when the shard writer reaches it, so memory stays near one tensor whatever the model's size.
//! Knows the checkpoint layout only through `hf_config` and `safetensors_dir`; nothing of the
//! stages.

use std::fs;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::export::bytes_on_disk;
use super::safetensors_dir::{PendingTensor, StoreDtype, write_checkpoint_dir};
use super::{CheckpointError, LayerSpan, ModelSummary, hf_config};
use crate::model::weights::{TensorInit, expected_tensors};

/// Values drawn from one generator; chunks are generated in parallel, each from its own seed.
const CHUNK_VALUES: usize = 1 << 20;

/// Safetensors shards of at most this many bytes unless asked otherwise (2 GB).
pub const DEFAULT_SHARD_BYTES: usize = 2_000_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RandomParentOptions {
    pub dtype: StoreDtype,
    /// The same seed, config and dtype give the same bytes (whatever the shard size or the
    /// number of threads).
    pub seed: u64,
    pub max_shard_bytes: usize,
    pub progress: bool,
}

impl Default for RandomParentOptions {
    fn default() -> Self {
        Self {
            dtype: StoreDtype::Bf16,
            seed: 0,
            max_shard_bytes: DEFAULT_SHARD_BYTES,
            progress: false,
        }
    }
}

/// The generator of chunk `chunk` of tensor `tensor` (its index in checkpoint order).
fn chunk_rng(seed: u64, tensor: usize, chunk: usize) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(tensor as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(chunk as u64).to_le_bytes());
    StdRng::from_seed(key)
}

/// Writes tensor `tensor`'s values, started as `init` says, into `out` in `dtype`.
fn fill_random(init: TensorInit, seed: u64, tensor: usize, dtype: StoreDtype, out: &mut [u8]) {
    let element = dtype.bytes();
    out.par_chunks_mut(CHUNK_VALUES * element).enumerate().for_each_init(
        || vec![0.0f32; CHUNK_VALUES],
        |scratch, (chunk, bytes)| {
            let values = &mut scratch[..bytes.len() / element];
            init.fill(&mut chunk_rng(seed, tensor, chunk), values);
            dtype.encode_into(values, bytes);
        },
    );
}

/// Writes a checkpoint directory at `out` for the model `config_path` describes (any
/// `config.json` tessera reads: an HF family or DeciLM): that config, with `torch_dtype` set to
/// the stored dtype, and random weights (unit norms, N(0, 0.02) matrices, the residual-stream
/// maps scaled by 1/√(2·layers): `TensorInit`) in safetensors shards of at most
/// `max_shard_bytes` with an index. Refuses a directory that is not empty.
pub fn write_random_parent(
    config_path: &Path,
    out: &Path,
    options: &RandomParentOptions,
) -> Result<ModelSummary, CheckpointError> {
    let text = fs::read_to_string(config_path).map_err(CheckpointError::io(config_path))?;
    let (config, _) = hf_config::parse_config(config_path, &text)?;
    let layers = config.num_layers();
    let parent_layers = hf_config::parse_parent_layers(config_path, &text, layers)?
        .unwrap_or_else(|| (0..layers).map(LayerSpan::single).collect());
    let mut config_json: Value = serde_json::from_str(&text).expect("parse_config read it as a JSON object");
    // transformers 5 writes `dtype` where 4 wrote `torch_dtype`.
    let dtype_key = if config_json.get("dtype").is_some() {
        "dtype"
    } else {
        "torch_dtype"
    };
    config_json[dtype_key] = options.dtype.torch_name().into();
    let tensors = expected_tensors(&config);
    let bar = crate::progress::bar(options.progress, "tensors written", 0, tensors.len());
    let pending: Vec<PendingTensor> = tensors
        .into_iter()
        .enumerate()
        .map(|(index, (name, shape))| {
            let init = TensorInit::of(&name, &shape, layers);
            let bar = &bar;
            PendingTensor::new(name, shape, move |dtype, bytes| {
                fill_random(init, options.seed, index, dtype, bytes);
                bar.inc(1);
                Ok(())
            })
        })
        .collect();
    write_checkpoint_dir(
        out,
        &config_json,
        &pending,
        options.dtype,
        Some(options.max_shard_bytes),
    )?;
    bar.finish_and_clear();
    Ok(ModelSummary {
        model: out.to_path_buf(),
        layers,
        params: config.num_params(),
        parent_layers,
        bytes: bytes_on_disk(out)?,
    })
}
