//! A checkpoint whose tensors stay where they are stored until a stage asks for them: the
//! safetensors shards and GGUF files are memory-mapped, and a tensor is decoded to f32 (and
//! dequantised, and its RoPE rows reordered) only when read, one at a time. After decoding, the
//! mapped pages are handed back to the kernel, so a stage that walks a parent larger than memory
//! layer by layer holds one layer's f32 copy, not the mapped file, in its resident set. The
//! names and shapes are checked against the config when the checkpoint is opened, before any
//! value is read. llama2.c files (small by nature) are read whole. Knows the formats' readers;
//! nothing of the model or the stages.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde::Deserialize;

use super::safetensors_dir::{INDEX_FILE, SINGLE_FILE, decode_values};
use super::{Checkpoint, CheckpointError, ConfigFlavor, LayerSpan, SourceFormat, gguf_model, hf_config, llama2c};
use crate::model::weights::{
    HostTensor, HostValues, TensorMap, block_tensors, check_shapes, expected_tensors, host_tensor,
};
use crate::model::{BlockConfig, ModelConfig};

/// One mapped safetensors shard.
struct Shard {
    path: PathBuf,
    map: Mmap,
    /// Where tensor data starts: after the length prefix and the header.
    data_start: usize,
}

/// Where one safetensors tensor lies.
struct Located {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range within the shard's data.
    range: (usize, usize),
}

/// A checkpoint directory's safetensors files, mapped, with where each tensor lies.
pub(crate) struct SafetensorsStore {
    shards: Vec<Shard>,
    tensors: BTreeMap<String, Located>,
}

enum Store {
    Safetensors(SafetensorsStore),
    Gguf(Box<gguf_model::GgufModel>),
    Loaded(TensorMap),
}

/// A checkpoint opened for reading tensor by tensor.
pub struct StoredCheckpoint {
    path: PathBuf,
    format: SourceFormat,
    config: ModelConfig,
    parent_layers: Option<Vec<LayerSpan>>,
    store: Store,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

fn map_shard(path: &Path) -> Result<(Shard, Vec<(String, Located)>), CheckpointError> {
    let file = fs::File::open(path).map_err(CheckpointError::io(path))?;
    // SAFETY: the map is read-only and private to this value; like every reader of a mapped
    // file it assumes no other process truncates or rewrites the file while it is open.
    let map = unsafe { Mmap::map(&file) }.map_err(CheckpointError::io(path))?;
    let (header_len, metadata) = SafeTensors::read_metadata(&map)
        .map_err(|e| CheckpointError::format(path, format!("not a valid safetensors file: {e}")))?;
    let tensors = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            (
                name,
                Located {
                    shard: 0,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    range: info.data_offsets,
                },
            )
        })
        .collect();
    let shard = Shard {
        path: path.to_path_buf(),
        map,
        data_start: 8 + header_len,
    };
    Ok((shard, tensors))
}

impl SafetensorsStore {
    /// Maps the single file or the shards of the index in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let index_path = dir.join(INDEX_FILE);
        let files: Vec<(PathBuf, Option<Vec<String>>)> = if index_path.exists() {
            let text = fs::read_to_string(&index_path).map_err(CheckpointError::io(&index_path))?;
            let index: Index = serde_json::from_str(&text)
                .map_err(|e| CheckpointError::format(&index_path, format!("invalid index: {e}")))?;
            let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (tensor, shard) in index.weight_map {
                by_shard.entry(shard).or_default().push(tensor);
            }
            by_shard
                .into_iter()
                .map(|(shard, names)| (dir.join(shard), Some(names)))
                .collect()
        } else {
            let path = dir.join(SINGLE_FILE);
            if !path.exists() {
                return Err(CheckpointError::format(
                    dir,
                    format!("neither {SINGLE_FILE} nor {INDEX_FILE} is present"),
                ));
            }
            vec![(path, None)]
        };
        let mut shards = Vec::new();
        let mut tensors = BTreeMap::new();
        for (path, listed) in files {
            let (shard, found) = map_shard(&path)?;
            let index = shards.len();
            let mut found: BTreeMap<String, Located> = found
                .into_iter()
                .map(|(name, located)| {
                    (
                        name,
                        Located {
                            shard: index,
                            ..located
                        },
                    )
                })
                .collect();
            match listed {
                Some(names) => {
                    for name in names {
                        let located = found.remove(&name).ok_or_else(|| {
                            CheckpointError::format(
                                &path,
                                format!("tensor `{name}` listed in {INDEX_FILE} is not in this shard"),
                            )
                        })?;
                        tensors.insert(name, located);
                    }
                }
                None => tensors.extend(found),
            }
            shards.push(shard);
        }
        Ok(Self { shards, tensors })
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    fn locate(&self, name: &str) -> Result<(&Shard, &Located), CheckpointError> {
        let located = self.tensors.get(name).ok_or_else(|| {
            CheckpointError::format(&self.shards[0].path, format!("the checkpoint has no tensor `{name}`"))
        })?;
        Ok((&self.shards[located.shard], located))
    }

    /// Decodes `len` bytes at `offset` of tensor `name`'s data, then releases their pages.
    fn decode(&self, name: &str, offset: usize, len: usize) -> Result<Vec<f32>, CheckpointError> {
        let (shard, located) = self.locate(name)?;
        let start = shard.data_start + located.range.0 + offset;
        let values = decode_values(&shard.path, name, located.dtype, &shard.map[start..start + len])?;
        release(&shard.map, start, len);
        Ok(values)
    }

    pub(crate) fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        let (_, located) = self.locate(name)?;
        let values = self.decode(name, 0, located.range.1 - located.range.0)?;
        Ok(host_tensor(located.shape.clone(), values))
    }

    pub(crate) fn tensors<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<TensorMap, CheckpointError> {
        names
            .into_iter()
            .map(|name| Ok((name.to_string(), self.tensor(name)?)))
            .collect()
    }

    fn rows(&self, name: &str, rows: &[usize]) -> Result<HostTensor, CheckpointError> {
        let (_, located) = self.locate(name)?;
        let columns = located.shape[1];
        let row_bytes = columns * located.dtype.bitsize() / 8;
        let mut data = Vec::with_capacity(rows.len() * columns);
        for &row in rows {
            data.extend(self.decode(name, row * row_bytes, row_bytes)?);
        }
        Ok(host_tensor(vec![rows.len(), columns], data))
    }
}

impl StoredCheckpoint {
    /// Opens a checkpoint directory (HF or DeciLM), a GGUF model file or a llama2.c `.bin`
    /// file, and checks its tensors' names and shapes against its config.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let stored = if path.is_dir() {
            let config_path = path.join("config.json");
            let text = fs::read_to_string(&config_path).map_err(CheckpointError::io(&config_path))?;
            let (config, flavor) = hf_config::parse_config(&config_path, &text)?;
            let parent_layers = hf_config::parse_parent_layers(&config_path, &text, config.num_layers())?;
            Self {
                path: path.to_path_buf(),
                format: match flavor {
                    ConfigFlavor::Hf(_) => SourceFormat::Hf,
                    ConfigFlavor::DeciLm => SourceFormat::DeciLm,
                },
                config,
                parent_layers,
                store: Store::Safetensors(SafetensorsStore::open(path)?),
            }
        } else if gguf_model::is_gguf(path) {
            let model = gguf_model::GgufModel::open(path)?;
            Self {
                path: path.to_path_buf(),
                format: SourceFormat::Gguf,
                config: model.config().clone(),
                parent_layers: None,
                store: Store::Gguf(Box::new(model)),
            }
        } else {
            let (config, weights) = llama2c::read(path)?;
            Self {
                path: path.to_path_buf(),
                format: SourceFormat::Llama2c,
                config,
                parent_layers: None,
                store: Store::Loaded(weights),
            }
        };
        check_shapes(&expected_tensors(&stored.config), &stored.shapes()?).map_err(|cause| {
            CheckpointError::Weights {
                path: path.to_path_buf(),
                cause,
            }
        })?;
        Ok(stored)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> SourceFormat {
        self.format
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The parent layers each layer stands for, when layers were fused.
    pub fn parent_layers(&self) -> Option<&[LayerSpan]> {
        self.parent_layers.as_deref()
    }

    /// Every stored tensor's name and shape.
    fn shapes(&self) -> Result<BTreeMap<String, Vec<usize>>, CheckpointError> {
        Ok(match &self.store {
            Store::Safetensors(store) => store
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shape.clone()))
                .collect(),
            Store::Gguf(model) => model
                .tensor_names()
                .map(|n| Ok((n.to_string(), model.stored(n)?.tensor.shape())))
                .collect::<Result<_, CheckpointError>>()?,
            Store::Loaded(map) => map.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect(),
        })
    }

    /// The tensor called `name`, as f32 in tessera's layout.
    pub fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        match &self.store {
            Store::Safetensors(store) => store.tensor(name),
            Store::Gguf(model) => model.read_tensor(name),
            Store::Loaded(map) => map
                .get(name)
                .cloned()
                .ok_or_else(|| CheckpointError::format(&self.path, format!("the checkpoint has no tensor `{name}`"))),
        }
    }

    /// The tensors called `names`.
    pub fn tensors<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<TensorMap, CheckpointError> {
        names
            .into_iter()
            .map(|name| Ok((name.to_string(), self.tensor(name)?)))
            .collect()
    }

    /// The tensors of layer `layer` (its block as the config says).
    pub fn layer(&self, layer: usize) -> Result<TensorMap, CheckpointError> {
        self.block(layer, &self.config.blocks[layer])
    }

    /// The tensors `block` has at `layer` (a part of the layer's own block, e.g. its FFN).
    pub fn block(&self, layer: usize, block: &BlockConfig) -> Result<TensorMap, CheckpointError> {
        let names = block_tensors(&self.config, layer, block);
        self.tensors(names.iter().map(|(n, _)| n.as_str()))
    }

    /// The tensors of the layers `first..=last`.
    pub fn layers(&self, first: usize, last: usize) -> Result<TensorMap, CheckpointError> {
        let mut out = TensorMap::new();
        for layer in first..=last {
            out.extend(self.layer(layer)?);
        }
        Ok(out)
    }

    /// Rows `rows` of the matrix `name`, as a `[rows.len(), columns]` tensor (embeddings of
    /// some tokens without the whole table).
    pub fn rows(&self, name: &str, rows: &[usize]) -> Result<HostTensor, CheckpointError> {
        let gather = |matrix: &HostTensor| {
            let columns = matrix.shape()[1];
            let values = matrix.values();
            let data = rows
                .iter()
                .flat_map(|&r| values[r * columns..(r + 1) * columns].iter().copied());
            host_tensor(vec![rows.len(), columns], data.collect())
        };
        match &self.store {
            Store::Safetensors(store) => store.rows(name, rows),
            Store::Gguf(_) | Store::Loaded(_) => Ok(gather(&self.tensor(name)?)),
        }
    }

    /// FNV-1a over the config and every tensor, read one at a time: equal to
    /// [`Checkpoint::fingerprint`] of the loaded checkpoint.
    pub fn fingerprint(&self) -> Result<String, CheckpointError> {
        let mut hash = super::Fingerprint::new(&self.config);
        for name in self.shapes()?.keys() {
            hash.tensor(name, &self.tensor(name)?);
        }
        Ok(hash.finish())
    }

    /// Every tensor read: the whole checkpoint in memory, as f32.
    pub fn load(&self) -> Result<Checkpoint, CheckpointError> {
        let weights = match &self.store {
            Store::Loaded(map) => map.clone(),
            _ => self.tensors(self.shapes()?.keys().map(String::as_str))?,
        };
        Ok(Checkpoint {
            config: self.config.clone(),
            weights,
            parent_layers: self.parent_layers.clone(),
        })
    }
}

/// Hands mapped pages already decoded back to the kernel, so that they leave this process's
/// resident set (the file stays in the page cache).
pub(crate) fn release(map: &Mmap, offset: usize, len: usize) {
    // SAFETY: the map is read-only and private: dropping its pages discards nothing; a later
    // read faults them in again from the file.
    let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len) };
}
