//! Every candidate a library offers the search: each layer's blocks from the search space, and,
//! when the space asks for them (`fused_runs = N`), multi-layer candidates (DESIGN §1.7, §1.9):
//! a run of 2 to N consecutive parent layers that becomes one layer, with the first layer's
//! attention (the parent's, any variant the space offers it, or none) and the parent FFNs of the
//! whole run read in parallel as one wide SwiGLU; the other members' attention is removed. They
//! stand under `layer_A-B` keys, so the search decides fusion and block choice together.
//! Training-free: the FFN is the parent's, folded exactly.

use super::{Library, LibraryError, Stage, block_name};
use crate::checkpoint::LayerSpan;
use crate::model::parallel_ffn::{FfnMember, fuse_ffns};
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, TensorMap};

impl Library {
    /// Every candidate: each layer's blocks in the space's order, then the fused runs.
    pub fn candidates(&self) -> Vec<(LayerSpan, BlockConfig)> {
        let mut out: Vec<(LayerSpan, BlockConfig)> = Vec::new();
        for (layer, v) in self.manifest.space.layers.iter().enumerate() {
            out.extend(v.blocks().map(|block| (LayerSpan::single(layer), block)));
        }
        out.extend(self.fused_candidates(self.manifest.space.fused_runs));
        out
    }

    /// The attention choices of a fused run starting at `layer`: the parent's own, then the
    /// space's, then none.
    fn fused_attention(&self, layer: usize) -> Vec<AttentionConfig> {
        let mut out = vec![self.manifest.parent.config.blocks[layer].attention];
        for &a in &self.manifest.space.layers[layer].attention {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        if !out.contains(&AttentionConfig::NoOp) {
            out.push(AttentionConfig::NoOp);
        }
        out
    }

    /// Every fused candidate of runs of 2 to `max_run` layers whose parent FFNs are all SwiGLU.
    pub fn fused_candidates(&self, max_run: usize) -> Vec<(LayerSpan, BlockConfig)> {
        let blocks = &self.manifest.parent.config.blocks;
        let width = |layer: usize| match blocks[layer].ffn {
            FfnConfig::SwiGlu { intermediate } => Some(intermediate),
            _ => None,
        };
        let mut out = Vec::new();
        for first in 0..blocks.len() {
            for last in first + 1..blocks.len().min(first + max_run) {
                let Some(intermediate) = (first..=last).map(width).sum::<Option<usize>>() else {
                    continue;
                };
                for attention in self.fused_attention(first) {
                    let ffn = FfnConfig::SwiGlu { intermediate };
                    out.push((LayerSpan { first, last }, BlockConfig { attention, ffn }));
                }
            }
        }
        out
    }

    /// The block called `name` standing for `span`: one layer's (see `block_named`) or a fused
    /// run's.
    pub fn span_block_named(&self, span: LayerSpan, name: &str) -> Result<BlockConfig, LibraryError> {
        if span.first == span.last {
            return self.block_named(span.first, name);
        }
        self.fused_candidates(self.manifest.space.fused_runs)
            .into_iter()
            .find(|(s, b)| *s == span && block_name(b) == name)
            .map(|(_, b)| b)
            .ok_or_else(|| LibraryError::Format {
                path: self.dir.clone(),
                problem: format!(
                    "layer_{span} offers no block `{name}` (a fused run keeps the first layer's attention or none, and fuses the parent's SwiGLU FFNs)"
                ),
            })
    }

    /// The tensors of `block` standing for `span`, named at layer `span.first`; `parent` holds
    /// the parent's tensors.
    pub fn span_weights(
        &self,
        span: LayerSpan,
        block: &BlockConfig,
        parent: &TensorMap,
        stage: Stage,
    ) -> Result<TensorMap, LibraryError> {
        if span.first == span.last {
            return self.block_weights(span.first, block, parent, stage);
        }
        let attention_only = BlockConfig {
            attention: block.attention,
            ffn: FfnConfig::NoOp,
        };
        let mut out = self.block_weights(span.first, &attention_only, parent, stage)?;
        let members = (span.first..=span.last)
            .map(|layer| {
                FfnMember::of_layer(parent, layer).ok_or_else(|| LibraryError::Format {
                    path: self.manifest.parent.source.clone(),
                    problem: format!("the parent has no SwiGLU FFN at layer {layer} to fuse"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (_, ffn) = fuse_ffns(&members, span.first);
        out.extend(ffn);
        Ok(out)
    }
}
