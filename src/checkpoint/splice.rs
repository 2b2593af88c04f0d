//! Replacing layers of a checkpoint: each replacement puts one block where a span of
//! consecutive layers was (one layer for a block swap, several for a fused FFN run); the layers
//! after it are renumbered, and the checkpoint remembers which parent layers each of its layers
//! stands for (`parent_layers`), so that distillation can match them to the parent's. Knows
//! tensor names and configs; nothing of libraries, searches or why a span is replaced.

use serde::{Deserialize, Serialize};

use super::{Checkpoint, TensorSource};
use crate::model::{BlockConfig, ModelConfig, TensorMap};

/// The parent layers `first..=last` one layer of a child stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LayerSpan {
    pub first: usize,
    pub last: usize,
}

impl LayerSpan {
    pub fn single(layer: usize) -> Self {
        Self {
            first: layer,
            last: layer,
        }
    }

    /// How many parent layers it stands for.
    pub fn layers(&self) -> usize {
        self.last + 1 - self.first
    }
}

impl std::fmt::Display for LayerSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One block standing for layers `span` of the checkpoint it replaces them in; its tensors
/// are named at layer `span.first`.
#[derive(Clone, Debug)]
pub struct Replacement {
    pub span: LayerSpan,
    pub block: BlockConfig,
    pub weights: TensorMap,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpliceError {
    #[error("layers {span} do not exist: the model has {layers} layers")]
    OutOfRange { span: LayerSpan, layers: usize },
    #[error("layers {a} and {b} overlap")]
    Overlap { a: LayerSpan, b: LayerSpan },
    #[error("layers {0} run backwards")]
    Backwards(LayerSpan),
}

fn layer_prefix(layer: usize) -> String {
    format!("model.layers.{layer}.")
}

/// The tensors of layer `from` of `weights`, renamed to layer `to`.
fn layer_renamed(weights: &TensorMap, from: usize, to: usize) -> TensorMap {
    let (old, new) = (layer_prefix(from), layer_prefix(to));
    weights
        .iter()
        .filter_map(|(name, t)| name.strip_prefix(&old).map(|rest| (format!("{new}{rest}"), t.clone())))
        .collect()
}

/// Where one layer of a spliced checkpoint comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOrigin {
    /// That layer of the checkpoint spliced into.
    Kept(usize),
    /// That replacement (by index), whose tensors are named at its span's first layer.
    Replaced(usize),
}

/// A splice worked out before any tensor is touched: the result's config, the parent layers
/// its layers stand for (`None`: one each) and where each of its layers comes from.
#[derive(Clone, Debug)]
pub struct SplicePlan {
    pub config: ModelConfig,
    pub parent_layers: Option<Vec<LayerSpan>>,
    pub layers: Vec<LayerOrigin>,
}

/// Plans putting each `(span, block)` of `replacements` where its span (in the layer numbers of
/// the checkpoint of `config`, whose layers stand for `spans` of the parent) was.
pub fn plan_splice(
    config: &ModelConfig,
    spans: &[LayerSpan],
    replacements: &[(LayerSpan, BlockConfig)],
) -> Result<SplicePlan, SpliceError> {
    let layers = config.num_layers();
    let mut sorted: Vec<(usize, &(LayerSpan, BlockConfig))> = replacements.iter().enumerate().collect();
    sorted.sort_by_key(|(_, (span, _))| *span);
    for (_, (span, _)) in &sorted {
        if span.first > span.last {
            return Err(SpliceError::Backwards(*span));
        }
        if span.last >= layers {
            return Err(SpliceError::OutOfRange { span: *span, layers });
        }
    }
    if let Some(pair) = sorted.windows(2).find(|p| p[1].1.0.first <= p[0].1.0.last) {
        return Err(SpliceError::Overlap {
            a: pair[0].1.0,
            b: pair[1].1.0,
        });
    }
    let mut blocks = Vec::new();
    let mut parent_layers = Vec::new();
    let mut origins = Vec::new();
    let mut next = sorted.iter().peekable();
    let mut layer = 0;
    while layer < layers {
        match next.next_if(|(_, (span, _))| span.first == layer) {
            Some(&(index, &(span, block))) => {
                origins.push(LayerOrigin::Replaced(index));
                blocks.push(block);
                parent_layers.push(LayerSpan {
                    first: spans[span.first].first,
                    last: spans[span.last].last,
                });
                layer = span.last + 1;
            }
            None => {
                origins.push(LayerOrigin::Kept(layer));
                blocks.push(config.blocks[layer]);
                parent_layers.push(spans[layer]);
                layer += 1;
            }
        }
    }
    let identity = parent_layers
        .iter()
        .enumerate()
        .all(|(i, s)| *s == LayerSpan::single(i));
    let mut config = config.clone();
    config.blocks = blocks;
    Ok(SplicePlan {
        config,
        parent_layers: (!identity).then_some(parent_layers),
        layers: origins,
    })
}

/// `name` split into its layer and the rest (`model.layers.3.mlp.up_proj.weight` → 3,
/// `mlp.up_proj.weight`); `None` for a tensor outside the layers.
pub fn layer_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    Some((layer.parse().ok()?, rest))
}

impl Checkpoint {
    /// This checkpoint with each replacement's span (in this checkpoint's layer numbers) taken
    /// by its block, and the layers renumbered.
    pub fn splice(&self, replacements: &[Replacement]) -> Result<Checkpoint, SpliceError> {
        let blocks: Vec<(LayerSpan, BlockConfig)> = replacements.iter().map(|r| (r.span, r.block)).collect();
        let plan = plan_splice(&self.config, &self.layer_spans(), &blocks)?;
        let mut weights: TensorMap = self
            .weights
            .iter()
            .filter(|(name, _)| !name.starts_with("model.layers."))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (child, origin) in plan.layers.iter().enumerate() {
            weights.extend(match *origin {
                LayerOrigin::Kept(layer) => layer_renamed(&self.weights, layer, child),
                LayerOrigin::Replaced(i) => layer_renamed(&replacements[i].weights, replacements[i].span.first, child),
            });
        }
        Ok(Checkpoint {
            config: plan.config,
            weights,
            parent_layers: plan.parent_layers,
        })
    }
}
