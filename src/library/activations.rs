//! The parent's activations at one layer, computed once and shared by every variant of that
//! layer: the block input `x`, the residual stream after the attention half `h`, and the block
//! output `y`, for a fixed set of token windows; walked layer by layer so only one layer is held
//! at a time. Also the calibration statistics initialisation reads. Knows the parent model,
//! nothing of variants or training.

use burn::prelude::*;
use burn::tensor::activation::silu;

use super::init::Calibration;
use crate::model::ffn::Ffn;
use crate::model::{Block, HostTensor, Llama, from_burn};

/// Windows run through the parent at once (bounds the attention scores' memory).
const CHUNK: usize = 32;

/// `[windows, seq, hidden]` each, outside autodiff.
#[derive(Clone, Debug)]
pub struct LayerActivations {
    pub x: Tensor<3>,
    pub h: Tensor<3>,
    pub y: Tensor<3>,
}

impl LayerActivations {
    pub fn windows(&self) -> usize {
        self.x.dims()[0]
    }
}

/// Walks the parent's layers over fixed windows, holding the current layer's input.
pub struct ActivationWalk<'a> {
    parent: &'a Llama,
    layer: usize,
    x: Tensor<3>,
}

fn chunked(x: &Tensor<3>, f: impl Fn(Tensor<3>) -> Tensor<3>) -> Tensor<3> {
    let n = x.dims()[0];
    let parts: Vec<Tensor<3>> = (0..n)
        .step_by(CHUNK)
        .map(|start| f(x.clone().narrow(0, start, CHUNK.min(n - start))))
        .collect();
    Tensor::cat(parts, 0)
}

impl<'a> ActivationWalk<'a> {
    /// Starts at layer 0 with the embeddings of `windows` (equal lengths).
    pub fn new(parent: &'a Llama, windows: &[Vec<u32>]) -> Result<Self, crate::model::ForwardError> {
        let tokens = parent.tokens_tensor(windows)?;
        Ok(Self {
            parent,
            layer: 0,
            x: parent.embed(tokens),
        })
    }

    pub fn layer(&self) -> usize {
        self.layer
    }

    /// The activations of the current layer.
    pub fn current(&self) -> LayerActivations {
        let block = &self.parent.layers[self.layer];
        let h = chunked(&self.x, |x| {
            let rope = self.parent.rope_tables(0, x.dims()[1]);
            block.forward_attention(x, self.layer, 0, &rope, None)
        });
        let y = chunked(&h, |h| block.forward_ffn(h));
        LayerActivations {
            x: self.x.clone(),
            h,
            y,
        }
    }

    /// Moves to the next layer, whose input is this layer's output.
    pub fn advance(&mut self, current: LayerActivations) {
        self.x = current.y;
        self.layer += 1;
    }
}

fn token_rows(t: Tensor<3>, count: usize) -> HostTensor {
    let [b, s, h] = t.dims();
    let rows = (b * s).min(count);
    from_burn(t.reshape([b * s, h]).narrow(0, 0, rows))
}

/// Calibration statistics of `block` (the parent's, at its layer) over the first `tokens`
/// tokens of `acts`: what channel pruning and least-squares fits need.
pub fn calibration(block: &Block, acts: &LayerActivations, tokens: usize) -> Calibration {
    let windows = tokens.div_ceil(acts.x.dims()[1]).clamp(1, acts.windows());
    let x = acts.x.clone().narrow(0, 0, windows);
    let h = acts.h.clone().narrow(0, 0, windows);
    let y = acts.y.clone().narrow(0, 0, windows);
    let attention_io = block.attention.as_ref().map(|(norm, _)| {
        (
            token_rows(norm.forward(x.clone()), tokens),
            token_rows(h.clone() - x, tokens),
        )
    });
    let (ffn_activation, ffn_io) = match &block.ffn {
        Some((norm, ffn)) => {
            let normed = norm.forward(h.clone());
            let activation = match ffn {
                Ffn::SwiGlu(f) => {
                    let hidden = silu(f.gate_proj.forward(normed.clone())) * f.up_proj.forward(normed.clone());
                    let [b, s, n] = hidden.dims();
                    let mean = hidden.abs().reshape([b * s, n]).mean_dim(0).reshape([n]);
                    Some(from_burn(mean).into_raw_vec_and_offset().0)
                }
                Ffn::Linear(_) => None,
            };
            (
                activation,
                Some((token_rows(normed, tokens), token_rows(y - h, tokens))),
            )
        }
        None => (None, None),
    };
    Calibration {
        ffn_activation,
        attention_io,
        ffn_io,
    }
}
