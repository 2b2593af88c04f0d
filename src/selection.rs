//! Which part of a stage's work one invocation does. Library building, scoring and profiling
//! are lists of independent items, each at a layer; a selection picks some of them: all, the
//! items of a layer range, given item indices, or every n-th item (a shard). One concept for
//! `--shard`, `--layers` and a cluster task's item index, so that they cannot disagree. Knows
//! nothing of what the items are.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    All,
    /// Items at parent layers `first..=last`.
    Layers { first: usize, last: usize },
    /// Items by their index in the stage's canonical item order.
    Items(Vec<usize>),
    /// Items whose index is `index` modulo `count`.
    Shard { index: usize, count: usize },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("selection `{text}`: {problem}")]
pub struct SelectionError {
    pub text: String,
    pub problem: String,
}

impl Selection {
    /// Whether the item with this index in the canonical order, at this layer, is selected.
    pub fn selects(&self, index: usize, layer: usize) -> bool {
        match self {
            Selection::All => true,
            Selection::Layers { first, last } => (*first..=*last).contains(&layer),
            Selection::Items(indices) => indices.contains(&index),
            Selection::Shard { index: i, count } => index % count == *i,
        }
    }

    pub fn is_all(&self) -> bool {
        *self == Selection::All
    }

    /// Checks the selection against the stage's `items` and `layers`: every named item and
    /// layer must exist.
    pub fn check(&self, items: usize, layers: usize) -> Result<(), SelectionError> {
        let fail = |problem: String| {
            Err(SelectionError {
                text: self.to_string(),
                problem,
            })
        };
        match self {
            Selection::Layers { last, .. } if *last >= layers => fail(format!(
                "the parent has {layers} layers (0 to {})",
                layers.saturating_sub(1)
            )),
            Selection::Items(indices) => match indices.iter().find(|&&i| i >= items) {
                Some(i) => fail(format!(
                    "there is no item {i}: the stage has {items} items (0 to {})",
                    items.saturating_sub(1)
                )),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::All => write!(f, "all"),
            Selection::Layers { first, last } => write!(f, "layers:{first}-{last}"),
            Selection::Items(indices) => {
                let list: Vec<String> = indices.iter().map(usize::to_string).collect();
                write!(f, "items:{}", list.join(","))
            }
            Selection::Shard { index, count } => write!(f, "shard:{index}/{count}"),
        }
    }
}

fn whole(text: &str, part: &str) -> Result<usize, SelectionError> {
    part.trim().parse().map_err(|_| SelectionError {
        text: text.to_string(),
        problem: format!("`{part}` is not a whole number"),
    })
}

impl Selection {
    /// `A-B` (or `A`): the layers of `--layers`.
    pub fn layers(text: &str) -> Result<Self, SelectionError> {
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (whole(text, a)?, whole(text, b)?),
            None => (whole(text, text)?, whole(text, text)?),
        };
        if first > last {
            return Err(SelectionError {
                text: text.to_string(),
                problem: format!("the first layer {first} comes after the last {last}"),
            });
        }
        Ok(Selection::Layers { first, last })
    }

    /// `i/N` with 0 ≤ i < N: the shards of `--shard`.
    pub fn shard(text: &str) -> Result<Self, SelectionError> {
        let (i, n) = text.split_once('/').ok_or_else(|| SelectionError {
            text: text.to_string(),
            problem: "a shard is written i/N, e.g. 0/2".into(),
        })?;
        let (index, count) = (whole(text, i)?, whole(text, n)?);
        if count == 0 || index >= count {
            return Err(SelectionError {
                text: text.to_string(),
                problem: "a shard needs 0 <= i < N".into(),
            });
        }
        Ok(Selection::Shard { index, count })
    }

    /// `1,4,7`: the item indices of `--items`.
    pub fn items(text: &str) -> Result<Self, SelectionError> {
        let mut indices = text
            .split(',')
            .map(|part| whole(text, part))
            .collect::<Result<Vec<_>, _>>()?;
        indices.sort_unstable();
        indices.dedup();
        Ok(Selection::Items(indices))
    }
}

impl std::str::FromStr for Selection {
    type Err = SelectionError;

    /// `all`, `layers:A-B`, `items:I,J,…` or `shard:i/N`, as `Display` writes them.
    fn from_str(text: &str) -> Result<Self, SelectionError> {
        if text == "all" {
            return Ok(Selection::All);
        }
        match text.split_once(':') {
            Some(("layers", rest)) => Selection::layers(rest),
            Some(("items", rest)) => Selection::items(rest),
            Some(("shard", rest)) => Selection::shard(rest),
            _ => Err(SelectionError {
                text: text.to_string(),
                problem: "expected all, layers:A-B, items:I,J,… or shard:i/N".into(),
            }),
        }
    }
}

impl Serialize for Selection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selection {
    /// The text form; also a manifest's older `shard` field (`null` or `{"index", "count"}`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Text(String),
            Shard { index: usize, count: usize },
            None(()),
        }
        match Stored::deserialize(deserializer)? {
            Stored::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Stored::Shard { index, count } => Ok(Selection::Shard { index, count }),
            Stored::None(()) => Ok(Selection::All),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_what_it_writes_and_selects_its_items() {
        for text in ["all", "layers:2-5", "items:0,3,9", "shard:1/3"] {
            let selection: Selection = text.parse().unwrap();
            assert_eq!(selection.to_string(), text);
            let json = serde_json::to_string(&selection).unwrap();
            assert_eq!(serde_json::from_str::<Selection>(&json).unwrap(), selection);
        }
        let picked = |s: &Selection| -> Vec<usize> { (0..10).filter(|&i| s.selects(i, i / 2)).collect() };
        assert_eq!(picked(&"layers:1-2".parse().unwrap()), vec![2, 3, 4, 5]);
        assert_eq!(picked(&"items:9,0,3".parse().unwrap()), vec![0, 3, 9]);
        assert_eq!(picked(&"shard:1/3".parse().unwrap()), vec![1, 4, 7]);
    }

    #[test]
    fn older_manifests_shard_field_still_reads() {
        assert_eq!(serde_json::from_str::<Selection>("null").unwrap(), Selection::All);
        assert_eq!(
            serde_json::from_str::<Selection>(r#"{"index":0,"count":2}"#).unwrap(),
            Selection::Shard { index: 0, count: 2 }
        );
    }

    #[test]
    fn bad_selections_say_what_is_wrong() {
        assert!(
            "shard:2/2"
                .parse::<Selection>()
                .unwrap_err()
                .problem
                .contains("0 <= i < N")
        );
        assert!(
            "layers:5-3"
                .parse::<Selection>()
                .unwrap_err()
                .problem
                .contains("comes after")
        );
        assert!(
            "layers:x"
                .parse::<Selection>()
                .unwrap_err()
                .problem
                .contains("not a whole number")
        );
        assert!(
            "rows:1"
                .parse::<Selection>()
                .unwrap_err()
                .problem
                .contains("expected all")
        );
        let too_far = Selection::Layers { first: 0, last: 8 }.check(10, 8).unwrap_err();
        assert!(too_far.problem.contains("8 layers"), "{too_far}");
        assert!(Selection::Items(vec![10]).check(10, 8).is_err());
    }
}
