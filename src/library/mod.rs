//! The block-library stage (DESIGN §1.2–§1.4, §2): search spaces, training-free
//! initialisation, blockwise local distillation, and the library directory that holds the
//! result. Reads the parent through `model`/`checkpoint` and trains through `train`; knows
//! nothing of scoring, costs, search or later stages, which read the library it writes.
//!
//! A library directory holds `manifest.json`, `init/` and `blocks/` (one safetensors file per
//! initialised and per trained item, under checkpoint tensor names) and `block_library.json`.

pub mod activations;
pub mod assemble;
pub mod bld;
pub mod build;
pub mod candidates;
pub mod footprint;
pub mod init;
pub mod interchange;
pub mod lock;
pub mod manifest;
pub mod merge;
pub mod space;
pub mod status;
pub mod variant;

use std::path::{Path, PathBuf};

pub use assemble::AssembledChild;
pub use bld::BldSettings;
pub use build::{BuildOptions, BuildPlan, BuildReport, build_library, plan_build};
pub use init::LinearInit;
pub use interchange::ChildChoice;
pub use manifest::{ItemRecord, ItemState, Manifest};
pub use merge::merge_libraries;
pub use space::{LayerVariants, SearchSpace, SpaceError};
pub use variant::{BldMode, Origin, WorkItem, block_name};

use crate::checkpoint::{Checkpoint, CheckpointError, StoredCheckpoint, read_tensor_file};
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, TensorMap, block_tensors};

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryError),
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error(transparent)]
    Space(#[from] SpaceError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Splice(#[from] crate::checkpoint::SpliceError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
    #[error(transparent)]
    Forward(#[from] crate::model::ForwardError),
    #[error(transparent)]
    Init(#[from] init::InitError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(
        "{}: this library was built differently: `{key}` is {there} there but {here} here; use another --out or the same settings",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        key: String,
        there: String,
        here: String,
    },
    #[error("{}: `{key}` has no {stage} weights (its state is {state})", path.display())]
    NotTrained {
        path: PathBuf,
        key: String,
        stage: &'static str,
        state: String,
    },
    #[error("{}: layer {layer} has no variant {variant}", path.display())]
    UnknownVariant {
        path: PathBuf,
        layer: usize,
        variant: String,
    },
    #[error("{0}")]
    Settings(String),
}

impl From<crate::checkpoint::StreamError> for LibraryError {
    fn from(error: crate::checkpoint::StreamError) -> Self {
        match error {
            crate::checkpoint::StreamError::Checkpoint(e) => LibraryError::Checkpoint(e),
            crate::checkpoint::StreamError::Forward(e) => LibraryError::Forward(e),
            other @ crate::checkpoint::StreamError::NotKept { .. } => LibraryError::Settings(other.to_string()),
        }
    }
}

impl LibraryError {
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> LibraryError + '_ {
        move |cause| LibraryError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// Which weights of an item: as initialised from the parent, or after BLD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Init,
    Trained,
}

impl Stage {
    fn folder(self) -> &'static str {
        match self {
            Stage::Init => "init",
            Stage::Trained => "blocks",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Stage::Init => "initial",
            Stage::Trained => "trained",
        }
    }
}

/// The tensors of one layer of a checkpoint (`model.layers.{layer}.…`).
pub fn layer_tensors(weights: &TensorMap, layer: usize) -> TensorMap {
    let prefix = format!("model.layers.{layer}.");
    weights
        .range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect()
}

/// An opened library directory.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Library {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Library {
    pub fn open(dir: &Path) -> Result<Self, LibraryError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest: Manifest::read(dir)?,
        })
    }

    pub fn item_path(&self, item: &WorkItem, stage: Stage) -> PathBuf {
        self.dir.join(stage.folder()).join(item.file_name())
    }

    /// The parent checkpoint the library was built from, checked against its fingerprint.
    /// `path` overrides the recorded location (for a parent that moved).
    pub fn parent(&self, path: Option<&Path>) -> Result<Checkpoint, LibraryError> {
        Ok(self.stored_parent(path)?.load()?)
    }

    /// The library's parent opened for reading layer by layer (from `path` when it moved),
    /// checked by fingerprint.
    pub fn stored_parent(&self, path: Option<&Path>) -> Result<StoredCheckpoint, LibraryError> {
        let source = path.unwrap_or(&self.manifest.parent.source);
        let checkpoint = StoredCheckpoint::open(source)?;
        let found = checkpoint.fingerprint()?;
        if found != self.manifest.parent.fingerprint {
            return Err(LibraryError::Mismatch {
                path: source.to_path_buf(),
                key: "parent.fingerprint".into(),
                there: self.manifest.parent.fingerprint.clone(),
                here: found,
            });
        }
        Ok(checkpoint)
    }

    /// The weights of an item with its own training (`Origin::Trained`) at `stage`.
    pub fn item_weights(&self, item: &WorkItem, stage: Stage) -> Result<TensorMap, LibraryError> {
        let key = item.key();
        let record = self.manifest.items.get(&key);
        let ready = matches!(
            (record.map(|r| r.state), stage),
            (Some(ItemState::Trained), _) | (Some(ItemState::Initialised | ItemState::Training), Stage::Init)
        );
        if !ready || record.is_some_and(|r| r.origin != Origin::Trained) {
            return Err(LibraryError::NotTrained {
                path: self.dir.clone(),
                key,
                stage: stage.label(),
                state: record.map_or("absent".into(), |r| format!("{:?} ({:?})", r.state, r.origin)),
            });
        }
        Ok(read_tensor_file(&self.item_path(item, stage))?)
    }

    /// The tensors of `block` at `layer`: a pair trained together when the library has one,
    /// otherwise its attention and FFN variants composed, the parent's own sub-blocks taken
    /// from `parent` (the parent's tensors).
    pub fn block_weights(
        &self,
        layer: usize,
        block: &BlockConfig,
        parent: &TensorMap,
        stage: Stage,
    ) -> Result<TensorMap, LibraryError> {
        let config = &self.manifest.parent.config;
        let parent_block = config.blocks[layer];
        let pair = WorkItem::pair(layer, *block);
        if self
            .manifest
            .items
            .get(&pair.key())
            .is_some_and(|r| r.origin == Origin::Trained && r.state == ItemState::Trained)
        {
            return self.item_weights(&pair, stage);
        }
        let mut out = TensorMap::new();
        let parts = [
            (
                block.attention == parent_block.attention,
                block.attention == AttentionConfig::NoOp,
                WorkItem::attention(layer, block.attention),
                BlockConfig {
                    attention: block.attention,
                    ffn: FfnConfig::NoOp,
                },
            ),
            (
                block.ffn == parent_block.ffn,
                block.ffn == FfnConfig::NoOp,
                WorkItem::ffn(layer, block.ffn),
                BlockConfig {
                    attention: AttentionConfig::NoOp,
                    ffn: block.ffn,
                },
            ),
        ];
        for (is_parent, is_noop, item, part) in parts {
            if is_noop {
                continue;
            }
            if is_parent {
                for (name, _) in block_tensors(config, layer, &part) {
                    let tensor = parent.get(&name).ok_or_else(|| LibraryError::Format {
                        path: self.manifest.parent.source.clone(),
                        problem: format!("the parent has no tensor `{name}`"),
                    })?;
                    out.insert(name, tensor.clone());
                }
            } else {
                out.extend(self.item_weights(&item, stage)?);
            }
        }
        Ok(out)
    }
}
