//! Checkpoint directories: `config.json` plus `model.safetensors` or shards listed in
//! `model.safetensors.index.json`. Reads f32, f16 and bf16 (to f32); writes f32, f16 or bf16.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde::Deserialize;
use serde_json::json;

use super::error::CheckpointError;
use crate::model::weights::{HostTensor, HostValues, TensorMap, host_tensor};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The dtype tensors are stored in on export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
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

    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            StoreDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            StoreDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            StoreDtype::Bf16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
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

/// Writes `tensors` into `dir` as one file, or as shards of at most `max_shard_bytes` with an
/// index when they do not fit in one.
pub fn write_tensors(
    dir: &Path,
    tensors: &TensorMap,
    dtype: StoreDtype,
    max_shard_bytes: Option<usize>,
) -> Result<(), CheckpointError> {
    let element = dtype.dtype().bitsize() / 8;
    let limit = max_shard_bytes.unwrap_or(usize::MAX).max(1);
    let mut shards: Vec<Vec<&str>> = vec![Vec::new()];
    let mut shard_bytes = 0;
    for (name, tensor) in tensors {
        let bytes = tensor.len() * element;
        if shard_bytes > 0 && shard_bytes + bytes > limit {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shards.last_mut().expect("one shard").push(name);
        shard_bytes += bytes;
    }
    let count = shards.len();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let mut weight_map = BTreeMap::new();
    for (i, names) in shards.iter().enumerate() {
        let file_name = if count == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        };
        let path = dir.join(&file_name);
        write_file(&path, names, tensors, dtype, metadata.clone())?;
        for n in names {
            weight_map.insert(n.to_string(), file_name.clone());
        }
    }
    if count > 1 {
        let total: usize = tensors.values().map(|t| t.len() * element).sum();
        let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
        let path = dir.join(INDEX_FILE);
        fs::write(&path, serde_json::to_string_pretty(&index).expect("index serialises"))
            .map_err(CheckpointError::io(&path))?;
    }
    Ok(())
}

fn write_file(
    path: &Path,
    names: &[&str],
    tensors: &TensorMap,
    dtype: StoreDtype,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CheckpointError> {
    let encoded: Vec<(&str, Vec<u8>, &HostTensor)> = names
        .iter()
        .map(|n| (*n, dtype.encode(tensors[*n].values()), &tensors[*n]))
        .collect();
    let views = encoded
        .iter()
        .map(|(n, bytes, t)| TensorView::new(dtype.dtype(), t.shape().to_vec(), bytes).map(|v| (*n, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::format(path, format!("cannot encode: {e}")))?;
    let bytes = safetensors::serialize(views, metadata)
        .map_err(|e| CheckpointError::format(path, format!("cannot encode: {e}")))?;
    fs::write(path, bytes).map_err(CheckpointError::io(path))
}

/// Writes `tensors` (f32) as one safetensors file at `path`, atomically: a reader sees the old
/// file or the whole new one, never a part.
pub fn write_tensor_file(path: &Path, tensors: &TensorMap) -> Result<(), CheckpointError> {
    let partial = path.with_extension("safetensors.partial");
    let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    write_file(&partial, &names, tensors, StoreDtype::F32, None)?;
    fs::rename(&partial, path).map_err(CheckpointError::io(path))
}

/// Reads every tensor of one safetensors file.
pub fn read_tensor_file(path: &Path) -> Result<TensorMap, CheckpointError> {
    let mut tensors = TensorMap::new();
    read_file(path, None, &mut tensors)?;
    Ok(tensors)
}
