//! Search spaces (`search_spaces/*.toml`, DESIGN §1.2): which attention and FFN variants each
//! layer may take, written relative to the parent so one file serves parents of any size, and
//! resolved against a concrete parent into per-layer lists of block configs. Knows model
//! configs only; nothing of weights, training or the library directory.
//!
//! ```toml
//! description = "what this space is for"
//! fused_runs = 3                          # also offer runs of 2 to 3 layers fused (optional)
//! [all]                                   # every layer, unless a [[layers]] entry says otherwise
//! attention = ["kv/1", "kv/2", "linear", "no_op"]
//! ffn = [1.0, 0.5, 0.25, "linear", "no_op"]
//! [[layers]]                              # layers 0..=1 (inclusive) get their own lists
//! first = 0
//! last = 1
//! attention = ["kv/1"]                    # a list left out keeps the one from [all]
//! ```
//! Attention entries: `"kv/d"` (the parent layer's KV heads divided by d), `"kv=n"` (n KV heads),
//! `"linear"`, `"no_op"`. FFN entries: a fraction in (0, 1] of the parent layer's SwiGLU width
//! (rounded to the nearest channel), `"linear"`, `"no_op"`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}: `{key}`: {problem}", path.display())]
pub struct SpaceError {
    pub path: PathBuf,
    pub key: String,
    pub problem: String,
}

/// One entry of an attention or FFN list as written in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Fraction(f64),
    Word(String),
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Fraction(x) => write!(f, "{x}"),
            Entry::Word(w) => write!(f, "\"{w}\""),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    pub attention: Option<Vec<Entry>>,
    pub ffn: Option<Vec<Entry>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRange {
    pub first: usize,
    pub last: usize,
    pub attention: Option<Vec<Entry>>,
    pub ffn: Option<Vec<Entry>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    fused_runs: usize,
    all: Lists,
    #[serde(default)]
    layers: Vec<LayerRange>,
}

/// A search space as read from its file (checked for everything that does not depend on the
/// parent).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchSpace {
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub description: String,
    /// The longest run of layers offered fused as one candidate (0: none).
    pub fused_runs: usize,
    pub all: Lists,
    pub layers: Vec<LayerRange>,
}

/// The concrete alternatives of one layer, in the order the file lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVariants {
    pub attention: Vec<AttentionConfig>,
    pub ffn: Vec<FfnConfig>,
}

impl LayerVariants {
    /// Every block of the layer: each attention variant with each FFN variant, in file order.
    pub fn blocks(&self) -> impl Iterator<Item = BlockConfig> + '_ {
        self.attention
            .iter()
            .flat_map(|&attention| self.ffn.iter().map(move |&ffn| BlockConfig { attention, ffn }))
    }

    /// The block called `name` (as `block_name` writes it), when the layer offers it.
    pub fn block_named(&self, name: &str) -> Option<BlockConfig> {
        self.blocks().find(|b| super::block_name(b) == name)
    }
}

impl SearchSpace {
    pub fn read(path: &Path) -> Result<Self, SpaceError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpaceError {
            path: path.to_path_buf(),
            key: "(file)".into(),
            problem: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a space file; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SpaceError> {
        let err = |key: String, problem: String| SpaceError {
            path: path.to_path_buf(),
            key,
            problem,
        };
        let file: SpaceFile = toml::from_str(text)
            .map_err(|e| err(crate::config_file::toml_location(text, &e), e.message().to_string()))?;
        let check = |key: String, list: &Option<Vec<Entry>>, required: bool| match list {
            None if required => Err(err(key, "missing: every layer needs a list".into())),
            None => Ok(()),
            Some(entries) if entries.is_empty() => Err(err(key, "the list is empty".into())),
            Some(entries) => entries.iter().enumerate().try_for_each(|(i, entry)| {
                let ffn = key.ends_with("ffn");
                parse_entry(entry, ffn)
                    .map(|_| ())
                    .map_err(|p| err(format!("{key}[{i}]"), p))
            }),
        };
        if file.fused_runs == 1 {
            return Err(err(
                "fused_runs".into(),
                "a fused run has at least 2 layers: use 0 (none) or 2 and more".into(),
            ));
        }
        check("all.attention".into(), &file.all.attention, true)?;
        check("all.ffn".into(), &file.all.ffn, true)?;
        for (i, range) in file.layers.iter().enumerate() {
            if range.first > range.last {
                return Err(err(
                    format!("layers[{i}].first"),
                    format!("first layer {} is after last layer {}", range.first, range.last),
                ));
            }
            if range.attention.is_none() && range.ffn.is_none() {
                return Err(err(
                    format!("layers[{i}]"),
                    "gives neither `attention` nor `ffn`".into(),
                ));
            }
            check(format!("layers[{i}].attention"), &range.attention, false)?;
            check(format!("layers[{i}].ffn"), &range.ffn, false)?;
            if let Some((j, _)) = file.layers[..i]
                .iter()
                .enumerate()
                .find(|(_, r)| r.first <= range.last && range.first <= r.last)
            {
                return Err(err(
                    format!("layers[{i}]"),
                    format!("layers {}..={} overlap layers[{j}]", range.first, range.last),
                ));
            }
        }
        Ok(Self {
            name: path
                .file_stem()
                .map_or_else(|| "space".into(), |s| s.to_string_lossy().into_owned()),
            path: path.to_path_buf(),
            description: file.description,
            fused_runs: file.fused_runs,
            all: file.all,
            layers: file.layers,
        })
    }

    /// The concrete variants of every layer of `parent`.
    pub fn resolve(&self, parent: &ModelConfig) -> Result<Vec<LayerVariants>, SpaceError> {
        let err = |key: String, problem: String| SpaceError {
            path: self.path.clone(),
            key,
            problem,
        };
        let layers = parent.num_layers();
        if let Some((i, range)) = self.layers.iter().enumerate().find(|(_, r)| r.last >= layers) {
            return Err(err(
                format!("layers[{i}].last"),
                format!("layer {} does not exist: the parent has {layers} layers", range.last),
            ));
        }
        (0..layers)
            .map(|layer| {
                let range = self
                    .layers
                    .iter()
                    .enumerate()
                    .find(|(_, r)| (r.first..=r.last).contains(&layer));
                let pick = |part: &str, own: Option<&Option<Vec<Entry>>>, all: &Option<Vec<Entry>>| match (range, own) {
                    (Some((i, _)), Some(Some(list))) => (format!("layers[{i}].{part}"), list.clone()),
                    _ => (format!("all.{part}"), all.clone().unwrap_or_default()),
                };
                let (akey, attention) = pick("attention", range.map(|(_, r)| &r.attention), &self.all.attention);
                let (fkey, ffn) = pick("ffn", range.map(|(_, r)| &r.ffn), &self.all.ffn);
                let parent_block = parent.blocks[layer];
                let attention = resolve_list(&attention, &akey, layer, |entry| {
                    resolve_attention(entry, parent_block.attention, parent.num_attention_heads)
                })
                .map_err(|(key, problem)| err(key, problem))?;
                let ffn = resolve_list(&ffn, &fkey, layer, |entry| resolve_ffn(entry, parent_block.ffn))
                    .map_err(|(key, problem)| err(key, problem))?;
                Ok(LayerVariants { attention, ffn })
            })
            .collect()
    }
}

/// Resolves each entry, refusing two entries that name the same variant.
fn resolve_list<T: PartialEq + std::fmt::Debug>(
    entries: &[Entry],
    key: &str,
    layer: usize,
    resolve: impl Fn(&Entry) -> Result<T, String>,
) -> Result<Vec<T>, (String, String)> {
    let mut out: Vec<T> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let variant = resolve(entry).map_err(|p| (format!("{key}[{i}]"), format!("layer {layer}: {p}")))?;
        if let Some(j) = out.iter().position(|v| *v == variant) {
            return Err((
                format!("{key}[{i}]"),
                format!("layer {layer}: {entry} is the same variant as entry {j} ({variant:?})"),
            ));
        }
        out.push(variant);
    }
    Ok(out)
}

enum Parsed {
    KvDivisor(usize),
    KvHeads(usize),
    Fraction(f64),
    Linear,
    NoOp,
}

fn parse_entry(entry: &Entry, ffn: bool) -> Result<Parsed, String> {
    let number = |text: &str, what: &str| {
        text.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{what} must be a positive whole number, got \"{text}\""))
    };
    match entry {
        Entry::Word(w) if w == "linear" => Ok(Parsed::Linear),
        Entry::Word(w) if w == "no_op" => Ok(Parsed::NoOp),
        Entry::Fraction(x) if ffn => {
            if *x > 0.0 && *x <= 1.0 {
                Ok(Parsed::Fraction(*x))
            } else {
                Err(format!("an FFN fraction must be in (0, 1], got {x}"))
            }
        }
        Entry::Word(w) if !ffn && w.starts_with("kv/") => number(&w[3..], "the divisor in kv/d").map(Parsed::KvDivisor),
        Entry::Word(w) if !ffn && w.starts_with("kv=") => {
            number(&w[3..], "the head count in kv=n").map(Parsed::KvHeads)
        }
        other if ffn => Err(format!(
            "{other} is not an FFN variant: use a fraction in (0, 1], \"linear\" or \"no_op\""
        )),
        other => Err(format!(
            "{other} is not an attention variant: use \"kv/d\", \"kv=n\", \"linear\" or \"no_op\""
        )),
    }
}

fn resolve_attention(entry: &Entry, parent: AttentionConfig, heads: usize) -> Result<AttentionConfig, String> {
    let kv_heads = match parse_entry(entry, false)? {
        Parsed::Linear => return Ok(AttentionConfig::Linear),
        Parsed::NoOp => return Ok(AttentionConfig::NoOp),
        Parsed::Fraction(_) => unreachable!("attention entries are never fractions"),
        Parsed::KvHeads(n) => n,
        Parsed::KvDivisor(d) => {
            let AttentionConfig::Gqa { kv_heads } = parent else {
                return Err(format!(
                    "kv/{d} needs a parent layer with attention, this one is {parent:?}"
                ));
            };
            if !kv_heads.is_multiple_of(d) {
                return Err(format!(
                    "the parent has {kv_heads} KV heads, which kv/{d} does not divide"
                ));
            }
            kv_heads / d
        }
    };
    if !heads.is_multiple_of(kv_heads) {
        return Err(format!("{kv_heads} KV heads do not divide the {heads} attention heads"));
    }
    if let AttentionConfig::Gqa { kv_heads: parent_kv } = parent
        && !(parent_kv.is_multiple_of(kv_heads) || kv_heads.is_multiple_of(parent_kv))
    {
        return Err(format!(
            "{kv_heads} KV heads cannot be made from the parent's {parent_kv} (one must divide the other)"
        ));
    }
    Ok(AttentionConfig::Gqa { kv_heads })
}

fn resolve_ffn(entry: &Entry, parent: FfnConfig) -> Result<FfnConfig, String> {
    match parse_entry(entry, true)? {
        Parsed::Linear => Ok(FfnConfig::Linear),
        Parsed::NoOp => Ok(FfnConfig::NoOp),
        Parsed::Fraction(x) => {
            let FfnConfig::SwiGlu { intermediate } = parent else {
                return Err(format!(
                    "{x} of the parent's width needs a SwiGLU parent layer, this one is {parent:?}"
                ));
            };
            Ok(FfnConfig::SwiGlu {
                intermediate: ((x * intermediate as f64).round() as usize).max(1),
            })
        }
        Parsed::KvDivisor(_) | Parsed::KvHeads(_) => unreachable!("FFN entries are never KV heads"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SearchSpace, SpaceError> {
        SearchSpace::parse(Path::new("test.toml"), text)
    }

    fn parent() -> ModelConfig {
        ModelConfig::uniform(64, 32, 3, 4, 2, 96, 32)
    }

    #[test]
    fn resolves_relative_entries_and_layer_overrides() {
        let space = parse(
            r#"
            [all]
            attention = ["kv/1", "kv/2", "linear", "no_op"]
            ffn = [1.0, 0.5, 0.1, "linear", "no_op"]
            [[layers]]
            first = 1
            last = 2
            attention = ["kv=4"]
            "#,
        )
        .unwrap();
        let layers = space.resolve(&parent()).unwrap();
        assert_eq!(
            layers[0].attention,
            vec![
                AttentionConfig::Gqa { kv_heads: 2 },
                AttentionConfig::Gqa { kv_heads: 1 },
                AttentionConfig::Linear,
                AttentionConfig::NoOp
            ]
        );
        assert_eq!(layers[1].attention, vec![AttentionConfig::Gqa { kv_heads: 4 }]);
        assert_eq!(layers[2].ffn, layers[0].ffn);
        assert_eq!(
            layers[0].ffn[..3],
            [96, 48, 10].map(|intermediate| FfnConfig::SwiGlu { intermediate })
        );
    }

    #[test]
    fn bad_spaces_name_the_key_and_the_problem() {
        let cases = [
            ("[all]\nattention = []\nffn = [1.0]", "all.attention", "empty"),
            ("[all]\nattention = [\"kv/1\"]\nffn = [1.5]", "all.ffn[0]", "(0, 1]"),
            ("[all]\nattention = [\"kv/1\"]\nffn = [0.0]", "all.ffn[0]", "(0, 1]"),
            (
                "[all]\nattention = [\"gqa\"]\nffn = [1.0]",
                "all.attention[0]",
                "not an attention variant",
            ),
            (
                "[all]\nattention = [\"kv/1\"]\nffn = [1.0]\nwidth = 3",
                "line 4",
                "unknown field `width`",
            ),
            (
                "[all]\nattention = [\"kv/1\"]\nffn = [1.0]\n[[layers]]\nfirst = 2\nlast = 1\nffn = [1.0]",
                "layers[0].first",
                "after",
            ),
            ("[all]\nattention = [\"kv/1\"]", "all.ffn", "missing"),
        ];
        for (text, key, problem) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.key, key, "{text}: {error}");
            assert!(error.to_string().contains(problem), "{text}: {error}");
            assert!(error.to_string().starts_with("test.toml: "), "{error}");
        }
        let resolve_cases = [
            (
                "[all]\nattention = [\"kv/4\"]\nffn = [1.0]",
                "all.attention[0]",
                "does not divide",
            ),
            (
                "[all]\nattention = [\"kv=3\"]\nffn = [1.0]",
                "all.attention[0]",
                "do not divide the 4",
            ),
            (
                "[all]\nattention = [\"kv/1\", \"kv=2\"]\nffn = [1.0]",
                "all.attention[1]",
                "same variant",
            ),
            (
                "[all]\nattention = [\"kv/1\"]\nffn = [1.0]\n[[layers]]\nfirst = 1\nlast = 3\nffn = [0.5]",
                "layers[0].last",
                "3 layers",
            ),
        ];
        for (text, key, problem) in resolve_cases {
            let error = parse(text).unwrap().resolve(&parent()).unwrap_err();
            assert_eq!(error.key, key, "{text}: {error}");
            assert!(error.to_string().contains(problem), "{text}: {error}");
        }
    }
}
