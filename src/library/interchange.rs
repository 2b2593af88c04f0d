//! `block_library.json`, the interchange layout of NVIDIA's public Puzzle MIP code (DESIGN §2):
//! `{"layer_i": {"<block variant>": {"stats": {...}, "metrics": {...}}}}`. The library build
//! lists every block of the search space with its parameter count; later stages add their own
//! keys (scores under `metrics`, costs under `stats`) and keep everyone else's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::variant::block_name;
use super::{Library, LibraryError};
use crate::checkpoint::LayerSpan;

pub const BLOCK_LIBRARY_FILE: &str = "block_library.json";

pub fn block_library_path(dir: &Path) -> PathBuf {
    dir.join(BLOCK_LIBRARY_FILE)
}

/// Reads a `block_library.json` as a JSON object (an absent file is an empty one).
pub fn read_block_library(path: &Path) -> Result<Map<String, Value>, LibraryError> {
    if !path.exists() {
        return Ok(Map::new());
    }
    let text = std::fs::read_to_string(path).map_err(LibraryError::io(path))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(LibraryError::Format {
            path: path.to_path_buf(),
            problem: "expected an object of layers".into(),
        }),
        Err(e) => Err(LibraryError::Format {
            path: path.to_path_buf(),
            problem: format!("not JSON: {e}"),
        }),
    }
}

/// Writes the file through a temporary file and a rename.
pub fn write_block_library_map(path: &Path, map: &Map<String, Value>) -> Result<(), LibraryError> {
    let partial = path.with_extension("json.partial");
    let text = serde_json::to_string_pretty(map).expect("JSON serialises");
    std::fs::write(&partial, text).map_err(LibraryError::io(&partial))?;
    std::fs::rename(&partial, path).map_err(LibraryError::io(path))
}

/// The key of the candidates standing for `span`: `layer_3`, or `layer_3-5` for several layers.
pub fn span_key(span: LayerSpan) -> String {
    format!("layer_{span}")
}

/// The span a layer key names (`layer_3` or `layer_3-5`), when it is one.
pub fn parse_span_key(key: &str) -> Option<LayerSpan> {
    let rest = key.strip_prefix("layer_")?;
    let (first, last) = match rest.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let layer = rest.parse().ok()?;
            (layer, layer)
        }
    };
    Some(LayerSpan { first, last })
}

/// A child as a search describes it: for each span of parent layers, in layer order, the name
/// of the block that stands there. Written as the `choice` object of a solution
/// (`{"layer_0": "kv2 + ffn384", "layer_1-3": "fused ffn"}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildChoice(pub Vec<(LayerSpan, String)>);

impl ChildChoice {
    /// Each single layer with its block name: `names[i]` stands at layer `i`.
    pub fn per_layer(names: &[String]) -> Self {
        Self(
            names
                .iter()
                .enumerate()
                .map(|(layer, name)| (LayerSpan::single(layer), name.clone()))
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &(LayerSpan, String)> {
        self.0.iter()
    }

    /// The block names in layer order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(_, name)| name.as_str()).collect()
    }

    /// The block standing for `span`, when the choice has it.
    pub fn block_at(&self, span: LayerSpan) -> Option<&str> {
        self.0.iter().find(|(s, _)| *s == span).map(|(_, name)| name.as_str())
    }
}

impl Serialize for ChildChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(span, name)| (span_key(*span), name)))
    }
}

impl<'de> Deserialize<'de> for ChildChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        let mut choice = map
            .into_iter()
            .map(|(key, name)| {
                let span = parse_span_key(&key)
                    .filter(|s| s.first <= s.last)
                    .ok_or_else(|| format!("`{key}` is not `layer_<i>` or `layer_<first>-<last>`"))?;
                match name {
                    Value::String(name) => Ok((span, name)),
                    other => Err(format!("`{key}` names no block: {other} is not a string")),
                }
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(serde::de::Error::custom)?;
        choice.sort();
        Ok(Self(choice))
    }
}

/// Sets `group.key` (`group` is `stats` or `metrics`) of one block, creating what is missing.
pub fn set_value(map: &mut Map<String, Value>, layer: usize, block: &str, group: &str, key: &str, value: Value) {
    set_span_value(map, LayerSpan::single(layer), block, group, key, value);
}

/// [`set_value`] for the candidates of a span of layers.
pub fn set_span_value(
    map: &mut Map<String, Value>,
    span: LayerSpan,
    block: &str,
    group: &str,
    key: &str,
    value: Value,
) {
    let entry = map
        .entry(span_key(span))
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("layers are objects")
        .entry(block.to_string())
        .or_insert_with(|| json!({ "stats": {}, "metrics": {} }));
    entry[group][key] = value;
}

/// Lists every block of the library's search space with `stats.num_params`, keeping the keys
/// other stages wrote.
pub fn write_block_library(library: &Library) -> Result<(), LibraryError> {
    let path = block_library_path(&library.dir);
    let mut map = read_block_library(&path)?;
    let config = &library.manifest.parent.config;
    for (span, block) in library.candidates() {
        let params = config.block_params(&block);
        set_span_value(
            &mut map,
            span,
            &block_name(&block),
            "stats",
            crate::cost::keys::NUM_PARAMS,
            json!(params),
        );
    }
    write_block_library_map(&path, &map)
}
