//! Checkpoint directories: `config.json` plus `model.safetensors` or shards listed in
//! `model.safetensors.index.json`. Reads f32, f16 and bf16 (to f32); writes f32, f16 or bf16,
//! one tensor at a time: a tensor's bytes are made only when the file reaches it
//! ([`PendingTensor`]), so writing never needs a whole shard, let alone a whole model, in memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use safetensors::{SafeTensorError, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::CheckpointError;
use crate::model::weights::{HostTensor, HostValues, TensorMap, host_tensor};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The dtype tensors are stored in on export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

crate::named!(StoreDtype { "f32" => StoreDtype::F32, "f16" => StoreDtype::F16, "bf16" => StoreDtype::Bf16 });

impl StoreDtype {
    /// The `torch_dtype` string HF configs carry.
    pub fn torch_name(self) -> &'static str {
        match self {
            StoreDtype::F32 => "float32",
            StoreDtype::F16 => "float16",
            StoreDtype::Bf16 => "bfloat16",
        }
    }

    fn dtype(self) -> Dtype {
        match self {
            StoreDtype::F32 => Dtype::F32,
            StoreDtype::F16 => Dtype::F16,
            StoreDtype::Bf16 => Dtype::BF16,
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        self.dtype().bitsize() / 8
    }

    /// Stores `values` into `out`, which holds exactly `values.len() · self.bytes()` bytes.
    pub(crate) fn encode_into(self, values: &[f32], out: &mut [u8]) {
        let element = self.bytes();
        for (v, bytes) in values.iter().zip(out.chunks_exact_mut(element)) {
            match self {
                StoreDtype::F32 => bytes.copy_from_slice(&v.to_le_bytes()),
                StoreDtype::F16 => bytes.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes()),
                StoreDtype::Bf16 => bytes.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes()),
            }
        }
    }

    /// The values `bytes` hold in this dtype (a whole number of values).
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            StoreDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StoreDtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            StoreDtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }

    /// Rounds values as storing and re-reading them would.
    pub fn round_trip(self, value: f32) -> f32 {
        match self {
            StoreDtype::F32 => value,
            StoreDtype::F16 => half::f16::from_f32(value).to_f32(),
            StoreDtype::Bf16 => half::bf16::from_f32(value).to_f32(),
        }
    }
}

/// The values of tensor `name` stored as `dtype` in `bytes`, as f32.
pub(crate) fn decode_values(path: &Path, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, CheckpointError> {
    let stored = match dtype {
        Dtype::F32 => StoreDtype::F32,
        Dtype::F16 => StoreDtype::F16,
        Dtype::BF16 => StoreDtype::Bf16,
        other => {
            return Err(CheckpointError::format(
                path,
                format!("tensor `{name}` has dtype {other:?}; supported are F32, F16 and BF16"),
            ));
        }
    };
    Ok(stored.decode(bytes))
}

fn read_file(path: &Path, into: &mut TensorMap) -> Result<(), CheckpointError> {
    let bytes = fs::read(path).map_err(CheckpointError::io(path))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| CheckpointError::format(path, format!("not a valid safetensors file: {e}")))?;
    for (name, view) in file.tensors() {
        let values = decode_values(path, &name, view.dtype(), view.data())?;
        into.insert(name, host_tensor(view.shape().to_vec(), values));
    }
    Ok(())
}

/// Reads every tensor of a checkpoint directory (single file or sharded).
pub fn read_tensors(dir: &Path) -> Result<TensorMap, CheckpointError> {
    let store = super::stored::SafetensorsStore::open(dir)?;
    store.tensors(store.names())
}

/// Writes a tensor's bytes in the store dtype into a buffer of exactly its size (reading them
/// may fail: a tensor read from disk).
type FillBytes<'a> = Box<dyn Fn(StoreDtype, &mut [u8]) -> Result<(), CheckpointError> + 'a>;

/// A tensor on its way into a file: its name and shape up front, its bytes made only when the
/// writer reaches it (in the store dtype, into a buffer of exactly the tensor's size).
pub struct PendingTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    fill: FillBytes<'a>,
}

impl<'a> PendingTensor<'a> {
    /// A tensor whose bytes `fill` writes when they are needed.
    pub fn new(
        name: String,
        shape: Vec<usize>,
        fill: impl Fn(StoreDtype, &mut [u8]) -> Result<(), CheckpointError> + 'a,
    ) -> Self {
        Self {
            name,
            shape,
            fill: Box::new(fill),
        }
    }

    /// A tensor already in memory as f32.
    pub fn from_host(name: &str, tensor: &'a HostTensor) -> Self {
        Self::new(name.to_string(), tensor.shape().to_vec(), |dtype, out| {
            dtype.encode_into(tensor.values(), out);
            Ok(())
        })
    }

    fn stored_bytes(&self, dtype: StoreDtype) -> usize {
        self.shape.iter().product::<usize>() * dtype.bytes()
    }
}

/// A pending tensor as the safetensors serializer sees it; the serializer cannot fail a
/// tensor, so the first error making one is kept in `failed` (and the file discarded).
struct Stored<'p, 'a> {
    tensor: &'p PendingTensor<'a>,
    dtype: StoreDtype,
    failed: &'p std::cell::RefCell<Option<CheckpointError>>,
}

impl View for Stored<'_, '_> {
    fn dtype(&self) -> Dtype {
        self.dtype.dtype()
    }

    fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = vec![0; self.data_len()];
        if self.failed.borrow().is_none()
            && let Err(e) = (self.tensor.fill)(self.dtype, &mut bytes)
        {
            *self.failed.borrow_mut() = Some(e);
        }
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.tensor.stored_bytes(self.dtype)
    }
}

/// Writes a checkpoint directory: `config` as `config.json`, then the tensors as
/// [`write_pending_tensors`] does. A directory that is not empty is refused: stale shards from an earlier
/// write would be mixed with the new ones.
pub fn write_checkpoint_dir(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[PendingTensor],
    dtype: StoreDtype,
    max_shard_bytes: Option<usize>,
) -> Result<(), CheckpointError> {
    if dir.exists() && fs::read_dir(dir).map_err(CheckpointError::io(dir))?.next().is_some() {
        return Err(CheckpointError::Unsupported {
            path: dir.to_path_buf(),
            problem: "the directory is not empty".into(),
        });
    }
    fs::create_dir_all(dir).map_err(CheckpointError::io(dir))?;
    let config_path = dir.join("config.json");
    fs::write(
        &config_path,
        serde_json::to_string_pretty(config).expect("config serialises"),
    )
    .map_err(CheckpointError::io(&config_path))?;
    write_pending_tensors(dir, tensors, dtype, max_shard_bytes)
}

/// Writes `tensors` into `dir` as one file, or, in their order, as shards of at most
/// `max_shard_bytes` (a larger tensor gets a shard of its own) with an index when they do not
/// fit in one.
pub fn write_pending_tensors(
    dir: &Path,
    tensors: &[PendingTensor],
    dtype: StoreDtype,
    max_shard_bytes: Option<usize>,
) -> Result<(), CheckpointError> {
    let limit = max_shard_bytes.unwrap_or(usize::MAX).max(1);
    let mut shards: Vec<Vec<&PendingTensor>> = vec![Vec::new()];
    let mut shard_bytes = 0;
    for tensor in tensors {
        let bytes = tensor.stored_bytes(dtype);
        if shard_bytes > 0 && shard_bytes + bytes > limit {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shards.last_mut().expect("one shard").push(tensor);
        shard_bytes += bytes;
    }
    let count = shards.len();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let file_name = if count == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        };
        write_file(&dir.join(&file_name), shard, dtype, metadata.clone())?;
        for tensor in shard {
            weight_map.insert(tensor.name.clone(), file_name.clone());
        }
    }
    if count > 1 {
        let total: usize = tensors.iter().map(|t| t.stored_bytes(dtype)).sum();
        let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        let path = dir.join(INDEX_FILE);
        fs::write(&path, serde_json::to_string_pretty(&index).expect("index serialises"))
            .map_err(CheckpointError::io(&path))?;
    }
    Ok(())
}

/// Writes `tensors` (f32, in memory) into `dir` as one file, or as shards of at most
/// `max_shard_bytes` with an index when they do not fit in one.
pub fn write_tensors(
    dir: &Path,
    tensors: &TensorMap,
    dtype: StoreDtype,
    max_shard_bytes: Option<usize>,
) -> Result<(), CheckpointError> {
    write_pending_tensors(dir, &pending_from_map(tensors), dtype, max_shard_bytes)
}

/// The tensors of `map` as pending tensors, in the map's (name) order.
pub fn pending_from_map(map: &TensorMap) -> Vec<PendingTensor<'_>> {
    map.iter().map(|(name, t)| PendingTensor::from_host(name, t)).collect()
}

fn write_file(
    path: &Path,
    tensors: &[&PendingTensor],
    dtype: StoreDtype,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CheckpointError> {
    let failed = std::cell::RefCell::new(None);
    let stored = tensors.iter().map(|&tensor| {
        (
            tensor.name.as_str(),
            Stored {
                tensor,
                dtype,
                failed: &failed,
            },
        )
    });
    let written = safetensors::serialize_to_file(stored, metadata, path).map_err(|e| match e {
        SafeTensorError::IoError(cause) => CheckpointError::Io {
            path: path.to_path_buf(),
            cause,
        },
        other => CheckpointError::format(path, format!("cannot encode: {other}")),
    });
    if let Some(e) = failed.into_inner() {
        // The file holds zeros where the tensor failed: useless, and removing it changes nothing
        // for the caller if that fails too.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    written
}

/// Writes `tensors` (f32) as one safetensors file at `path`, atomically: a reader sees the old
/// file or the whole new one, never a part.
pub fn write_tensor_file(path: &Path, tensors: &TensorMap) -> Result<(), CheckpointError> {
    let partial = path.with_extension("safetensors.partial");
    let pending = pending_from_map(tensors);
    let refs: Vec<&PendingTensor> = pending.iter().collect();
    write_file(&partial, &refs, StoreDtype::F32, None)?;
    fs::rename(&partial, path).map_err(CheckpointError::io(path))
}

/// Reads every tensor of one safetensors file.
pub fn read_tensor_file(path: &Path) -> Result<TensorMap, CheckpointError> {
    let mut tensors = TensorMap::new();
    read_file(path, &mut tensors)?;
    Ok(tensors)
}
