//! A child from a library (DESIGN §1.8): the parent's tensors outside the layers, and at each
//! layer the chosen block's trained weights (the parent's own where the block is the parent's).
//! Blocks are named as in `block_library.json`; a name the layer's search space does not offer
//! is an error that names the layer.

use super::variant::block_name;
use super::{Library, LibraryError, Stage};
use crate::checkpoint::Checkpoint;
use crate::model::{BlockConfig, TensorMap};

/// The parent with the blocks of some layers replaced: `(layer, block, that block's tensors)`.
pub fn substitute_layers(parent: &Checkpoint, layers: &[(usize, BlockConfig, &TensorMap)]) -> Checkpoint {
    let replaced = |name: &str| {
        layers
            .iter()
            .any(|(layer, ..)| name.starts_with(&format!("model.layers.{layer}.")))
    };
    let mut weights: TensorMap = parent
        .weights
        .iter()
        .filter(|(name, _)| !replaced(name))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    let mut config = parent.config.clone();
    for (layer, block, tensors) in layers {
        weights.extend(tensors.iter().map(|(n, t)| (n.clone(), t.clone())));
        config.blocks[*layer] = *block;
    }
    Checkpoint { config, weights }
}

impl Library {
    /// The block called `name` at `layer`: the parent's own or one of the search space's.
    pub fn block_named(&self, layer: usize, name: &str) -> Result<BlockConfig, LibraryError> {
        let parent = &self.manifest.parent.config;
        let unknown = || LibraryError::Format {
            path: self.dir.clone(),
            problem: format!("layer_{layer} offers no block `{name}`"),
        };
        let variants = self.manifest.space.layers.get(layer).ok_or_else(unknown)?;
        std::iter::once(parent.blocks[layer])
            .chain(
                variants
                    .attention
                    .iter()
                    .flat_map(|&attention| variants.ffn.iter().map(move |&ffn| BlockConfig { attention, ffn })),
            )
            .find(|b| block_name(b) == name)
            .ok_or_else(unknown)
    }

    /// The child whose layer `i` is the block called `names[i]`, from the library's trained
    /// weights.
    pub fn assemble(&self, parent: &Checkpoint, names: &[String]) -> Result<Checkpoint, LibraryError> {
        let layers = self.manifest.parent.config.num_layers();
        if names.len() != layers {
            return Err(LibraryError::Format {
                path: self.dir.clone(),
                problem: format!(
                    "a child needs one block for each of {layers} layers, got {}",
                    names.len()
                ),
            });
        }
        let mut blocks = Vec::new();
        for (layer, name) in names.iter().enumerate() {
            let block = self.block_named(layer, name)?;
            blocks.push((
                layer,
                block,
                self.block_weights(layer, &block, &parent.weights, Stage::Trained)?,
            ));
        }
        let parts: Vec<(usize, BlockConfig, &TensorMap)> = blocks.iter().map(|(l, b, w)| (*l, *b, w)).collect();
        Ok(substitute_layers(parent, &parts))
    }
}
