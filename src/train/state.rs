//! Training checkpoints: `<dir>/checkpoint/` holds `train_state.json` (steps done, what the run
//! is, the loss history) and `model.safetensors` (parameters `param.<path>` and AdamW moments,
//! f32, bit-exact). Written to a temporary directory and swapped in by rename, so a kill at any
//! moment leaves the previous checkpoint intact.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TrainError;
use super::params::ParamInfo;
use crate::checkpoint::safetensors_dir::{StoreDtype, read_tensors, write_tensors};
use crate::model::TensorMap;

const CURRENT: &str = "checkpoint";
const PREVIOUS: &str = "checkpoint.previous";
const PARTIAL: &str = "checkpoint.partial";
const STATE_FILE: &str = "train_state.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    /// Wall time of the whole step (micro-batches, clip, update; not checkpoint writing).
    pub seconds: f64,
    pub tokens_per_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: usize,
    pub tokens_seen: u64,
    /// What the run is (model and training settings); a resume must match it.
    pub fingerprint: Value,
    pub layout: Vec<ParamInfo>,
    pub history: Vec<StepLog>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |cause| TrainError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The directory of the last complete checkpoint under `dir`, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    [CURRENT, PREVIOUS]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.join(STATE_FILE).is_file())
}

pub fn save(dir: &Path, state: &TrainState, tensors: &TensorMap) -> Result<PathBuf, TrainError> {
    let partial = dir.join(PARTIAL);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    write_tensors(&partial, tensors, StoreDtype::F32, None).map_err(|cause| TrainError::Checkpoint {
        path: partial.clone(),
        cause,
    })?;
    let state_path = partial.join(STATE_FILE);
    let text = serde_json::to_string_pretty(state).expect("train state serialises");
    std::fs::write(&state_path, text).map_err(io(&state_path))?;
    let (current, previous) = (dir.join(CURRENT), dir.join(PREVIOUS));
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(io(&previous))?;
    }
    if current.exists() {
        std::fs::rename(&current, &previous).map_err(io(&current))?;
    }
    std::fs::rename(&partial, &current).map_err(io(&current))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(io(&previous))?;
    }
    Ok(current)
}

fn read_state(checkpoint: &Path) -> Result<TrainState, TrainError> {
    let state_path = checkpoint.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Format {
        path: state_path.clone(),
        problem: format!("not a training state: {e}"),
    })
}

/// The step log of the last checkpoint under `dir` (its state file only, not the tensors).
pub fn read_history(dir: &Path) -> Result<Vec<StepLog>, TrainError> {
    let checkpoint = latest(dir).ok_or_else(|| TrainError::Format {
        path: dir.to_path_buf(),
        problem: "holds no training checkpoint".into(),
    })?;
    Ok(read_state(&checkpoint)?.history)
}

pub fn load(checkpoint: &Path) -> Result<(TrainState, TensorMap), TrainError> {
    let state = read_state(checkpoint)?;
    let tensors = read_tensors(checkpoint).map_err(|cause| TrainError::Checkpoint {
        path: checkpoint.to_path_buf(),
        cause,
    })?;
    Ok((state, tensors))
}

/// The first place where two JSON values differ, as (dotted key, there, here).
pub fn first_difference(there: &Value, here: &Value, key: &str) -> Option<(String, Value, Value)> {
    match (there, here) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            keys.into_iter().find_map(|k| {
                let sub = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                first_difference(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), &sub)
            })
        }
        _ if there == here => None,
        _ => Some((key.to_string(), there.clone(), here.clone())),
    }
}
