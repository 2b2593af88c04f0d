//! What a whole model costs beyond its blocks — embeddings, final norm and LM head, and the
//! whole-model latency correction fitted by `tessera profile` — and how a library on disk is
//! opened for the search: a tessera library directory also names the parent's blocks and
//! these outside costs; a bare `block_library.json` from elsewhere has neither, and its outside
//! costs count as zero.

use std::collections::BTreeMap;
use std::path::Path;

use super::SearchError;
use super::problem::Problem;
use crate::cost::memory::outside_params;
use crate::cost::profile::CostsFile;
use crate::cost::{Precision, Scenario};
use crate::library::{Library, block_name};

#[derive(Clone, Debug, Default)]
pub struct Outside {
    pub params: f64,
    /// Milliseconds outside the blocks plus the fitted correction, per scenario.
    latency: BTreeMap<String, f64>,
}

impl Outside {
    pub fn latency_ms(&self, scenario: &Scenario) -> f64 {
        self.latency.get(&scenario.to_string()).copied().unwrap_or(0.0)
    }
}

/// A library opened for searching.
#[derive(Clone, Debug)]
pub struct SearchInput {
    pub problem: Problem,
    /// The tessera library, when it is one.
    pub library: Option<Library>,
}

impl SearchInput {
    /// Opens a tessera library directory or any `block_library.json`.
    pub fn open(path: &Path) -> Result<Self, SearchError> {
        let problem = Problem::read(path)?;
        if !(path.is_dir() && path.join("manifest.json").exists()) {
            return Ok(SearchInput { problem, library: None });
        }
        let library = Library::open(path).map_err(|e| SearchError::Library {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        let names: Vec<String> = library.manifest.parent.config.blocks.iter().map(block_name).collect();
        Ok(SearchInput {
            problem: problem.with_parent_names(&names)?,
            library: Some(library),
        })
    }

    /// The outside costs for a target and precision (zero when unknown).
    pub fn outside(&self, target: &str, precision: Precision) -> Result<Outside, SearchError> {
        let Some(library) = &self.library else {
            return Ok(Outside::default());
        };
        let mut outside = Outside {
            params: outside_params(&library.manifest.parent.config) as f64,
            latency: BTreeMap::new(),
        };
        let costs = library.dir.join("costs").join(format!("{target}_{precision}.json"));
        if costs.exists() {
            let text = std::fs::read_to_string(&costs).map_err(|cause| SearchError::Io {
                path: costs.clone(),
                cause,
            })?;
            let file: CostsFile = serde_json::from_str(&text).map_err(|e| SearchError::Library {
                path: costs.clone(),
                problem: e.to_string(),
            })?;
            for model in file.latency {
                outside
                    .latency
                    .insert(model.scenario.to_string(), model.outside_ms + model.offset_ms);
            }
        }
        Ok(outside)
    }
}
