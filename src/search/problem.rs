//! The search's view of a block library: for every parent layer, the candidates that can stand
//! there, each with its numeric `stats.*` and `metrics.*` values under dotted keys. Read from
//! `block_library.json` in the interchange layout (DESIGN §2), whoever wrote it: variant names are
//! free text and any keys may appear. A key `layer_A-B` holds candidates that replace parent
//! layers A to B (inclusive) at once, such as a fused FFN run. Knows nothing of how the values
//! were measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::SearchError;
use crate::checkpoint::LayerSpan;
use crate::library::interchange::{ChildChoice, parse_span_key};

/// One block (or multi-layer replacement) that the search may choose.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The layer key it came from: `layer_3`, or `layer_3-5` for a multi-layer replacement.
    pub span_key: String,
    pub name: String,
    /// Parent layers it replaces, `first..=last`.
    pub first: usize,
    pub last: usize,
    /// Numeric values under dotted keys (`stats.runtime_ms`, `metrics.kl_div`, …).
    pub values: BTreeMap<String, f64>,
}

impl Candidate {
    pub fn covers(&self, layer: usize) -> bool {
        (self.first..=self.last).contains(&layer)
    }

    pub fn is_single_layer(&self) -> bool {
        self.first == self.last
    }
}

/// Every candidate of a library, and how many parent layers they must cover.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Where it was read from, for messages.
    pub source: PathBuf,
    pub layers: usize,
    pub candidates: Vec<Candidate>,
    /// The parent's own candidate per layer, when known (speedup limits are relative to it).
    pub parent: Option<Vec<usize>>,
}

/// A chosen candidate for every layer: indices into `Problem::candidates`, in layer order.
pub type Choice = Vec<usize>;

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
    match value {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), x);
            }
        }
        Value::Object(map) => {
            for (key, inner) in map {
                flatten(&format!("{prefix}.{key}"), inner, out);
            }
        }
        _ => {}
    }
}

impl Problem {
    /// Reads `block_library.json`, or the one inside a library directory.
    pub fn read(path: &Path) -> Result<Self, SearchError> {
        let file = if path.is_dir() {
            path.join("block_library.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|cause| SearchError::Io {
            path: file.clone(),
            cause,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| SearchError::Library {
            path: file.clone(),
            problem: format!("not JSON: {e}"),
        })?;
        let Value::Object(map) = value else {
            return Err(SearchError::Library {
                path: file,
                problem: "expected an object whose keys are `layer_<i>`".into(),
            });
        };
        Self::from_map(&file, &map)
    }

    /// Builds the problem from an interchange map; `source` names it in messages.
    pub fn from_map(source: &Path, map: &Map<String, Value>) -> Result<Self, SearchError> {
        let fail = |problem: String| SearchError::Library {
            path: source.to_path_buf(),
            problem,
        };
        let mut candidates = Vec::new();
        for (key, variants) in map {
            let LayerSpan { first, last } = parse_span_key(key)
                .filter(|s| s.first <= s.last)
                .ok_or_else(|| fail(format!("key `{key}` is not `layer_<i>` or `layer_<first>-<last>`")))?;
            let Value::Object(variants) = variants else {
                return Err(fail(format!("`{key}` is not an object of variants")));
            };
            for (name, entry) in variants {
                let Value::Object(entry) = entry else {
                    return Err(fail(format!("`{key}`.`{name}` is not an object")));
                };
                let mut values = BTreeMap::new();
                for (group, inner) in entry {
                    flatten(group, inner, &mut values);
                }
                candidates.push(Candidate {
                    span_key: key.clone(),
                    name: name.clone(),
                    first,
                    last,
                    values,
                });
            }
        }
        let layers = candidates.iter().map(|c| c.last + 1).max().unwrap_or(0);
        if layers == 0 {
            return Err(fail("no layers with variants".into()));
        }
        for layer in 0..layers {
            if !candidates.iter().any(|c| c.covers(layer)) {
                return Err(fail(format!("no variant covers layer_{layer}")));
            }
        }
        Ok(Problem {
            source: source.to_path_buf(),
            layers,
            candidates,
            parent: None,
        })
    }

    /// The candidates whose span starts at `layer`.
    pub fn starting_at(&self, layer: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.candidates.len()).filter(move |&c| self.candidates[c].first == layer)
    }

    /// The value of `key` for candidate `c`, or an error naming the layer and variant.
    pub fn value(&self, c: usize, key: &str) -> Result<f64, SearchError> {
        let candidate = &self.candidates[c];
        candidate
            .values
            .get(key)
            .copied()
            .ok_or_else(|| SearchError::MissingKey {
                path: self.source.clone(),
                layer: candidate.span_key.clone(),
                variant: candidate.name.clone(),
                key: key.to_string(),
            })
    }

    /// Checks that every candidate has every key in `keys`.
    pub fn require(&self, keys: &[&str]) -> Result<(), SearchError> {
        for c in 0..self.candidates.len() {
            for key in keys {
                self.value(c, key)?;
            }
        }
        Ok(())
    }

    /// Sets the parent's choice by variant name per layer.
    pub fn with_parent_names(mut self, names: &[String]) -> Result<Self, SearchError> {
        let mut choice = Vec::new();
        for (layer, name) in names.iter().enumerate() {
            let found = self
                .candidates
                .iter()
                .position(|c| c.first == layer && c.last == layer && &c.name == name)
                .ok_or_else(|| SearchError::Library {
                    path: self.source.clone(),
                    problem: format!("layer_{layer} has no variant `{name}`, the parent's block"),
                })?;
            choice.push(found);
        }
        self.parent = Some(choice);
        Ok(self)
    }

    /// The parent's choice: as set, or else the single-layer variant with the most
    /// `stats.num_params` in each layer (a library from elsewhere does not mark the parent).
    pub fn parent_choice(&self) -> Result<Choice, SearchError> {
        if let Some(parent) = &self.parent {
            return Ok(parent.clone());
        }
        (0..self.layers)
            .map(|layer| {
                let mut best: Option<(usize, f64)> = None;
                for c in self
                    .starting_at(layer)
                    .filter(|&c| self.candidates[c].is_single_layer())
                {
                    let params = self.value(c, &crate::cost::keys::stat(crate::cost::keys::NUM_PARAMS))?;
                    if best.is_none_or(|(_, p)| params > p) {
                        best = Some((c, params));
                    }
                }
                best.map(|(c, _)| c).ok_or_else(|| SearchError::Library {
                    path: self.source.clone(),
                    problem: format!("layer_{layer} has no single-layer variant to stand for the parent"),
                })
            })
            .collect()
    }

    /// The choice as spans of parent layers and block names, in layer order.
    pub fn describe(&self, choice: &Choice) -> ChildChoice {
        ChildChoice(
            choice
                .iter()
                .map(|&c| {
                    let candidate = &self.candidates[c];
                    let span = LayerSpan {
                        first: candidate.first,
                        last: candidate.last,
                    };
                    (span, candidate.name.clone())
                })
                .collect(),
        )
    }

    /// The candidates a described choice names (the inverse of `describe`).
    pub fn choice_of(&self, child: &ChildChoice) -> Result<Choice, SearchError> {
        child
            .iter()
            .map(|(span, name)| {
                self.starting_at(span.first)
                    .find(|&c| self.candidates[c].name == *name && self.candidates[c].last == span.last)
                    .ok_or_else(|| SearchError::Library {
                        path: self.source.clone(),
                        problem: format!("layer_{span} has no block `{name}`"),
                    })
            })
            .collect()
    }

    /// Whether `choice` covers every parent layer exactly once.
    pub fn is_cover(&self, choice: &Choice) -> bool {
        let mut covered = vec![0usize; self.layers];
        for &c in choice {
            let candidate = &self.candidates[c];
            for count in &mut covered[candidate.first..=candidate.last] {
                *count += 1;
            }
        }
        covered.iter().all(|&n| n == 1)
    }
}
