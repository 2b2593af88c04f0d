//! A child from a library (DESIGN §1.8): the parent's tensors outside the layers, and for each
//! chosen span the chosen block's trained weights (the parent's own where the block is the
//! parent's; a fused run's FFN folded from the parent's). Blocks are named as in
//! `block_library.json`; a name the span does not offer is an error that names the span. The
//! child is made in memory, or as an [`AssembledChild`] whose tensors are made one span at a
//! time while it is written, from the stored parent.

use std::cell::RefCell;

use super::interchange::{ChildChoice, span_key};
use super::{Library, LibraryError, Stage};
use crate::checkpoint::{
    Checkpoint, CheckpointError, LayerOrigin, LayerSpan, Replacement, SplicePlan, StoredCheckpoint, TensorSource,
    layer_of, plan_splice,
};
use crate::model::weights::expected_tensors;
use crate::model::{BlockConfig, HostTensor, ModelConfig, TensorMap};

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

    /// The blocks of `choice` in layer order, checked to cover every parent layer exactly once.
    fn choice_blocks(&self, choice: &ChildChoice) -> Result<Vec<(LayerSpan, BlockConfig)>, LibraryError> {
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
        choice
            .iter()
            .map(|(span, name)| Ok((*span, self.span_block_named(*span, name)?)))
            .collect()
    }

    /// The child made of `choice`, whose spans must cover every parent layer exactly once.
    pub fn assemble_spans(&self, parent: &Checkpoint, choice: &ChildChoice) -> Result<Checkpoint, LibraryError> {
        let mut replacements = Vec::new();
        for (span, block) in self.choice_blocks(choice)? {
            let weights = self.span_weights(span, &block, &parent.weights, Stage::Trained)?;
            replacements.push(Replacement { span, block, weights });
        }
        Ok(parent.splice(&replacements)?)
    }

    /// The config of the child `choice` makes (nothing read but the manifest).
    pub fn child_config(&self, choice: &ChildChoice) -> Result<ModelConfig, LibraryError> {
        Ok(self.plan_child(&self.manifest.parent.config, choice)?.1.config)
    }

    /// The blocks of `choice` and where each layer of the child comes from in `parent`.
    fn plan_child(
        &self,
        parent: &ModelConfig,
        choice: &ChildChoice,
    ) -> Result<(Vec<(LayerSpan, BlockConfig)>, SplicePlan), LibraryError> {
        let blocks = self.choice_blocks(choice)?;
        let spans: Vec<LayerSpan> = (0..parent.num_layers()).map(LayerSpan::single).collect();
        let plan = plan_splice(parent, &spans, &blocks)?;
        Ok((blocks, plan))
    }

    /// The child made of `choice` from the stored parent, its tensors made when asked for.
    pub fn assemble_stored<'a>(
        &'a self,
        parent: &'a StoredCheckpoint,
        choice: &ChildChoice,
    ) -> Result<AssembledChild<'a>, LibraryError> {
        let (blocks, plan) = self.plan_child(parent.config(), choice)?;
        Ok(AssembledChild {
            library: self,
            parent,
            blocks,
            plan,
            span: RefCell::new(None),
        })
    }
}

/// A child of a library whose tensors are read from the stored parent and the library's blocks
/// as they are asked for, one span's block weights held at a time.
pub struct AssembledChild<'a> {
    library: &'a Library,
    parent: &'a StoredCheckpoint,
    blocks: Vec<(LayerSpan, BlockConfig)>,
    plan: SplicePlan,
    /// The replacement whose weights were made last, and those weights.
    span: RefCell<Option<(usize, TensorMap)>>,
}

impl AssembledChild<'_> {
    /// What making one tensor of a child of a parent of `parent` shape holds, known before
    /// either is read: the larger of the widest span's tensors (its parent layers, the block
    /// made from them, and the block's file as read) and the largest tensor twice (as made, and
    /// as its reader copies or encodes it).
    pub fn making_bytes(parent: &ModelConfig, widest_span: usize) -> u64 {
        let largest_layer = parent.blocks.iter().map(|b| parent.block_params(b)).max().unwrap_or(0) as u64;
        let largest_tensor = expected_tensors(parent)
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>() as u64)
            .max()
            .unwrap_or(0);
        let span = 4 * largest_layer * (widest_span as u64 + 2);
        span.max(2 * 4 * largest_tensor)
    }
}

impl TensorSource for AssembledChild<'_> {
    fn config(&self) -> &ModelConfig {
        &self.plan.config
    }

    fn parent_layers(&self) -> Option<&[LayerSpan]> {
        self.plan.parent_layers.as_deref()
    }

    fn tensor(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        let Some((layer, rest)) = layer_of(name) else {
            return self.parent.tensor(name);
        };
        let missing = || CheckpointError::Weights {
            path: self.library.dir.clone(),
            cause: crate::model::WeightError::Missing { name: name.to_string() },
        };
        match *self.plan.layers.get(layer).ok_or_else(missing)? {
            LayerOrigin::Kept(from) => self.parent.tensor(&format!("model.layers.{from}.{rest}")),
            LayerOrigin::Replaced(i) => {
                let (span, block) = self.blocks[i];
                let mut held = self.span.borrow_mut();
                if held.as_ref().is_none_or(|(j, _)| *j != i) {
                    let parent = self.parent.layers(span.first, span.last)?;
                    let weights = self
                        .library
                        .span_weights(span, &block, &parent, Stage::Trained)
                        .map_err(|e| CheckpointError::format(&self.library.dir, e.to_string()))?;
                    *held = Some((i, weights));
                }
                let weights = &held.as_ref().expect("made above").1;
                weights
                    .get(&format!("model.layers.{}.{rest}", span.first))
                    .cloned()
                    .ok_or_else(missing)
            }
        }
    }
}
