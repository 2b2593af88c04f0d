//! The library manifest (`manifest.json`, DESIGN §2): which parent and search space the library
//! was built from, with which settings, and the state of every work item (initialised /
//! training / trained, tokens seen, losses). It lists every item of the build, whichever
//! process trains which. Changed only under the library's manifest lock by re-reading,
//! changing and atomically rewriting it, so processes sharing the directory never lose each
//! other's updates and a killed build leaves a manifest naming exactly the complete items.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::StoreDtype;

use super::LibraryError;
use super::bld::BldSettings;
use super::init::LinearInit;
use super::space::LayerVariants;
use super::variant::{BldMode, Origin, WorkItem};
use crate::model::ModelConfig;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT: &str = "tessera-block-library/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParentInfo {
    pub source: PathBuf,
    /// FNV-1a over the config and every tensor's bytes: two libraries with the same fingerprint
    /// were built from the same weights.
    pub fingerprint: String,
    pub config: ModelConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceInfo {
    pub name: String,
    pub source: PathBuf,
    pub layers: Vec<LayerVariants>,
    /// The longest run of layers offered fused as one candidate (0: none).
    #[serde(default)]
    pub fused_runs: usize,
}

/// Everything that decides what a build computes; two parts of one library share it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildSettings {
    pub mode: BldMode,
    pub data: String,
    pub seq_len: usize,
    pub train_windows: usize,
    pub held_out_windows: usize,
    pub calibration_tokens: usize,
    pub linear_init: LinearInit,
    pub bld: BldSettings,
    /// Blocks trained together after the decoupled stage (hybrid mode), per layer.
    #[serde(default)]
    pub pairs: Vec<WorkItem>,
    /// The dtype the parent's activations are cached in on disk for training (libraries built
    /// before the cache existed held them in memory as f32).
    #[serde(default = "f32_activations")]
    pub activation_cache: StoreDtype,
}

fn f32_activations() -> StoreDtype {
    StoreDtype::F32
}

/// In the order a build moves through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending,
    Initialised,
    Training,
    Trained,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub item: WorkItem,
    pub origin: Origin,
    pub state: ItemState,
    /// Held-out normalised MSE of the initial weights.
    pub nmse_init: Option<f64>,
    /// Held-out normalised MSE after BLD.
    pub nmse_trained: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub tokens_seen: u64,
    pub steps: usize,
    pub seconds: f64,
    /// The optimizer step its training resumed from after an interruption, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<usize>,
}

impl ItemRecord {
    pub fn new(item: WorkItem, origin: Origin) -> Self {
        Self {
            item,
            origin,
            state: if origin == Origin::Trained {
                ItemState::Pending
            } else {
                ItemState::Trained
            },
            nmse_init: None,
            nmse_trained: None,
            final_train_loss: None,
            tokens_seen: 0,
            steps: 0,
            seconds: 0.0,
            resumed_from: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub parent: ParentInfo,
    pub space: SpaceInfo,
    pub settings: BuildSettings,
    /// Every item of the build by key, e.g. `layer_3/kv1`.
    pub items: BTreeMap<String, ItemRecord>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    pub fn read(dir: &Path) -> Result<Self, LibraryError> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(LibraryError::io(&path))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| LibraryError::Format {
            path: path.clone(),
            problem: format!("not a library manifest: {e}"),
        })?;
        if manifest.format != FORMAT {
            return Err(LibraryError::Format {
                path,
                problem: format!("format `{}` is not `{FORMAT}`", manifest.format),
            });
        }
        Ok(manifest)
    }

    /// Re-reads the manifest in `dir` under the library's lock, applies `change` and writes
    /// the result back; returns it with what `change` returned.
    pub fn update<T>(
        dir: &Path,
        change: impl FnOnce(&mut Manifest) -> Result<T, LibraryError>,
    ) -> Result<(Manifest, T), LibraryError> {
        let _held = super::lock::manifest(dir)?;
        let mut manifest = Self::read(dir)?;
        let value = change(&mut manifest)?;
        manifest.write(dir)?;
        Ok((manifest, value))
    }

    /// Writes the manifest through a temporary file and a rename (under the manifest lock
    /// when other processes may share `dir`).
    pub(crate) fn write(&self, dir: &Path) -> Result<(), LibraryError> {
        let path = Self::path(dir);
        let partial = dir.join(format!("{MANIFEST_FILE}.partial"));
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        std::fs::write(&partial, text).map_err(LibraryError::io(&partial))?;
        std::fs::rename(&partial, &path).map_err(LibraryError::io(&path))
    }
}
