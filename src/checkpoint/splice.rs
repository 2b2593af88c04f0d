//! Replacing layers of a checkpoint: each replacement puts one block where a span of
//! consecutive layers was (one layer for a block swap, several for a fused FFN run); the layers
//! after it are renumbered, and the checkpoint remembers which parent layers each of its layers
//! stands for (`parent_layers`), so that distillation can match them to the parent's. Knows
//! tensor names and configs; nothing of libraries, searches or why a span is replaced.

use serde::{Deserialize, Serialize};

use super::Checkpoint;
use crate::model::{BlockConfig, TensorMap};

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

impl Checkpoint {
    /// The parent layers each layer stands for (one each, unless layers were fused).
    pub fn layer_spans(&self) -> Vec<LayerSpan> {
        self.parent_layers
            .clone()
            .unwrap_or_else(|| (0..self.config.num_layers()).map(LayerSpan::single).collect())
    }

    /// This checkpoint with each replacement's span (in this checkpoint's layer numbers) taken
    /// by its block, and the layers renumbered.
    pub fn splice(&self, replacements: &[Replacement]) -> Result<Checkpoint, SpliceError> {
        let layers = self.config.num_layers();
        let mut sorted: Vec<&Replacement> = replacements.iter().collect();
        sorted.sort_by_key(|r| r.span);
        for r in &sorted {
            if r.span.first > r.span.last {
                return Err(SpliceError::Backwards(r.span));
            }
            if r.span.last >= layers {
                return Err(SpliceError::OutOfRange { span: r.span, layers });
            }
        }
        if let Some(pair) = sorted.windows(2).find(|p| p[1].span.first <= p[0].span.last) {
            return Err(SpliceError::Overlap {
                a: pair[0].span,
                b: pair[1].span,
            });
        }
        let spans = self.layer_spans();
        let mut weights: TensorMap = self
            .weights
            .iter()
            .filter(|(name, _)| !name.starts_with("model.layers."))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let mut blocks = Vec::new();
        let mut parent_layers = Vec::new();
        let mut next = sorted.iter().peekable();
        let mut layer = 0;
        while layer < layers {
            let child = blocks.len();
            match next.next_if(|r| r.span.first == layer) {
                Some(r) => {
                    weights.extend(layer_renamed(&r.weights, layer, child));
                    blocks.push(r.block);
                    parent_layers.push(LayerSpan {
                        first: spans[r.span.first].first,
                        last: spans[r.span.last].last,
                    });
                    layer = r.span.last + 1;
                }
                None => {
                    weights.extend(layer_renamed(&self.weights, layer, child));
                    blocks.push(self.config.blocks[layer]);
                    parent_layers.push(spans[layer]);
                    layer += 1;
                }
            }
        }
        let identity = parent_layers
            .iter()
            .enumerate()
            .all(|(i, s)| *s == LayerSpan::single(i));
        let mut config = self.config.clone();
        config.blocks = blocks;
        Ok(Checkpoint {
            config,
            weights,
            parent_layers: (!identity).then_some(parent_layers),
        })
    }
}
