//! A child from a library (DESIGN §1.8): the parent's tensors outside the layers, and for each
//! chosen span the chosen block's trained weights (the parent's own where the block is the
//! parent's; a fused run's FFN folded from the parent's). Blocks are named as in
//! `block_library.json`; a name the span does not offer is an error that names the span.

use super::interchange::{ChildChoice, span_key};
use super::{Library, LibraryError, Stage};
use crate::checkpoint::{Checkpoint, LayerSpan, Replacement};
use crate::model::BlockConfig;

impl Library {
    /// The block called `name` at `layer`: the parent's own or one of the search space's.
    pub fn block_named(&self, layer: usize, name: &str) -> Result<BlockConfig, LibraryError> {
        let parent = &self.manifest.parent.config;
        let unknown = || LibraryError::Format {
            path: self.dir.clone(),
            problem: format!("layer_{layer} offers no block `{name}`"),
        };
        let variants = self.manifest.space.layers.get(layer).ok_or_else(unknown)?;
        let own = parent.blocks[layer];
        if super::block_name(&own) == name {
            return Ok(own);
        }
        variants.block_named(name).ok_or_else(unknown)
    }

    /// The child whose layer `i` is the block called `names[i]`, from the library's trained
    /// weights.
    pub fn assemble(&self, parent: &Checkpoint, names: &[String]) -> Result<Checkpoint, LibraryError> {
        self.assemble_spans(parent, &ChildChoice::per_layer(names))
    }

    /// The child made of `choice`, whose spans must cover every parent layer exactly once.
    pub fn assemble_spans(&self, parent: &Checkpoint, choice: &ChildChoice) -> Result<Checkpoint, LibraryError> {
        let layers = self.manifest.parent.config.num_layers();
        let fail = |problem: String| LibraryError::Format {
            path: self.dir.clone(),
            problem,
        };
        let mut spans: Vec<LayerSpan> = choice.iter().map(|(s, _)| *s).collect();
        spans.sort();
        let mut next = 0;
        for span in &spans {
            if span.first != next || span.last >= layers {
                return Err(fail(format!(
                    "a child needs exactly one block for each of the parent's {layers} layers; the choice has {} where parent layer {next} comes next",
                    span_key(*span)
                )));
            }
            next = span.last + 1;
        }
        if next != layers {
            return Err(fail(format!(
                "a child needs one block for each of {layers} layers; the choice stops before layer {next}"
            )));
        }
        let mut replacements = Vec::new();
        for (span, name) in choice.iter() {
            let span = *span;
            let block = self.span_block_named(span, name)?;
            let weights = self.span_weights(span, &block, &parent.weights, Stage::Trained)?;
            replacements.push(Replacement { span, block, weights });
        }
        Ok(parent.splice(&replacements)?)
    }
}
