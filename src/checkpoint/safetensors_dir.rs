//! Checkpoint directories: `config.json` plus `model.safetensors` or shards listed in
//! `model.safetensors.index.json`. Reads f32, f16 and bf16 (to f32); writes f32, f16 or bf16,
//! one tensor at a time: a tensor's bytes are made only when the file reaches it
//! ([`PendingTensor`]), so writing never needs a whole shard, let alone a whole model, in memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView, View};
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

    /// Rounds values as storing and re-reading them would.
    pub fn round_trip(self, value: f32) -> f32 {
        match self {
            StoreDtype::F32 => value,
            StoreDtype::F16 => half::f16::from_f32(value).to_f32(),
            StoreDtype::Bf16 => half::bf16::from_f32(value).to_f32(),
        }
    }
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

fn decode(path: &Path, name: &str, view: &TensorView<'_>) -> Result<HostTensor, CheckpointError> {
    let bytes = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(CheckpointError::format(
                path,
                format!("tensor `{name}` has dtype {other:?}; supported are F32, F16 and BF16"),
            ));
        }
    };
    Ok(host_tensor(view.shape().to_vec(), data))
}

fn read_file(path: &Path, wanted: Option<&[&str]>, into: &mut TensorMap) -> Result<(), CheckpointError> {
    let bytes = fs::read(path).map_err(CheckpointError::io(path))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| CheckpointError::format(path, format!("not a valid safetensors file: {e}")))?;
    for (name, view) in file.tensors() {
        if wanted.is_none_or(|w| w.contains(&name.as_str())) {
            let tensor = decode(path, &name, &view)?;
            into.insert(name, tensor);
        }
    }
    Ok(())
}

/// Reads every tensor of a checkpoint directory (single file or sharded).
pub fn read_tensors(dir: &Path) -> Result<TensorMap, CheckpointError> {
    let mut tensors = TensorMap::new();
    let index_path = dir.join(INDEX_FILE);
    if index_path.exists() {
        let text = fs::read_to_string(&index_path).map_err(CheckpointError::io(&index_path))?;
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::format(&index_path, format!("invalid index: {e}")))?;
        let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tensor, shard) in &index.weight_map {
            by_shard.entry(shard.as_str()).or_default().push(tensor.as_str());
        }
        for (shard, names) in by_shard {
            let shard_path = dir.join(shard);
            read_file(&shard_path, Some(&names), &mut tensors)?;
            if let Some(missing) = names.iter().find(|n| !tensors.contains_key(**n)) {
                return Err(CheckpointError::format(
                    &shard_path,
                    format!("tensor `{missing}` listed in {INDEX_FILE} is not in this shard"),
                ));
            }
        }
    } else {
        let path = dir.join(SINGLE_FILE);
        if !path.exists() {
            return Err(CheckpointError::format(
                dir,
                format!("neither {SINGLE_FILE} nor {INDEX_FILE} is present"),
            ));
        }
        read_file(&path, None, &mut tensors)?;
    }
    Ok(tensors)
}

/// A tensor on its way into a file: its name and shape up front, its bytes made only when the
/// writer reaches it (in the store dtype, into a buffer of exactly the tensor's size).
pub struct PendingTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    fill: Fill<'a>,
}

/// Writes a tensor's bytes in a store dtype into a buffer of its size.
type Fill<'a> = Box<dyn Fn(StoreDtype, &mut [u8]) + 'a>;

impl<'a> PendingTensor<'a> {
    /// A tensor whose bytes `fill` writes when they are needed.
    pub fn new(name: String, shape: Vec<usize>, fill: impl Fn(StoreDtype, &mut [u8]) + 'a) -> Self {
        Self {
            name,
            shape,
            fill: Box::new(fill),
        }
    }

    /// A tensor already in memory as f32.
    pub fn from_host(name: &str, tensor: &'a HostTensor) -> Self {
        Self::new(name.to_string(), tensor.shape().to_vec(), |dtype, out| {
            dtype.encode_into(tensor.values(), out)
        })
    }

    fn stored_bytes(&self, dtype: StoreDtype) -> usize {
        self.shape.iter().product::<usize>() * dtype.bytes()
    }
}

/// A pending tensor as the safetensors serializer sees it.
struct Stored<'p, 'a> {
    tensor: &'p PendingTensor<'a>,
    dtype: StoreDtype,
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
        (self.tensor.fill)(self.dtype, &mut bytes);
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
    let stored = tensors
        .iter()
        .map(|&tensor| (tensor.name.as_str(), Stored { tensor, dtype }));
    safetensors::serialize_to_file(stored, metadata, path).map_err(|e| match e {
        SafeTensorError::IoError(cause) => CheckpointError::Io {
            path: path.to_path_buf(),
            cause,
        },
        other => CheckpointError::format(path, format!("cannot encode: {other}")),
    })
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
    read_file(path, None, &mut tensors)?;
    Ok(tensors)
}
