//! Replace-1-block scoring (DESIGN §1.5): one block of the parent swapped for a variant, the
//! rest unchanged, measured on held-out windows against the parent: KL divergence of the
//! next-token distributions (parent ‖ child), LM loss, and the cosine distance of the final
//! hidden states. The parent's hidden state before each layer is the same for every variant of
//! that layer, so it is computed once and each variant runs only from its layer on.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::checkpoint::LayerSpan;
use crate::model::{Block, ForwardError, Llama};

/// How far a variant moves the model: all three measured from one forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Scores {
    /// Mean over predicted tokens of KL(parent ‖ child), nats.
    pub kl_div: f64,
    /// Mean next-token NLL of the child, nats.
    pub lm_loss: f64,
    /// Mean over tokens of 1 − cos(child, parent) of the last hidden state (before the norm).
    pub cosine_distance: f64,
}

/// The parent's side of every comparison on a set of windows.
pub struct Reference {
    /// `hidden[i]`: the residual stream entering layer `i`, `[windows, seq, hidden]`.
    hidden: Vec<Tensor<3>>,
    /// The parent's last hidden state and next-token log-probabilities.
    last: Tensor<3>,
    log_probs: Tensor<3>,
    /// Next-token targets `[windows, seq]`, and the inputs they follow.
    targets: Tensor<2, Int>,
    inputs: Tensor<2, Int>,
}

impl Reference {
    /// `windows` of `seq + 1` tokens: the first `seq` are the input, the last `seq` the targets.
    pub fn new(parent: &Llama, windows: &[Vec<u32>]) -> Result<Self, ForwardError> {
        let inputs: Vec<Vec<u32>> = windows.iter().map(|w| w[..w.len() - 1].to_vec()).collect();
        let targets: Vec<Vec<u32>> = windows.iter().map(|w| w[1..].to_vec()).collect();
        let inputs = parent.tokens_tensor(&inputs)?;
        let mut out = parent.forward(inputs.clone(), None, true)?;
        let last = out.hidden_states.pop().expect("hidden states include the last layer");
        Ok(Self {
            hidden: out.hidden_states,
            last,
            log_probs: log_softmax(out.logits, 2),
            targets: parent.tokens_tensor(&targets)?,
            inputs,
        })
    }

    /// The residual stream entering `layer`.
    pub fn hidden_before(&self, layer: usize) -> Tensor<3> {
        self.hidden[layer].clone()
    }

    /// Scores a model whose last hidden state is `last` and whose head is `head`'s.
    pub fn compare(&self, head: &Llama, last: Tensor<3>) -> Scores {
        let log_q = log_softmax(head.head(last.clone()), 2);
        let [b, s, _] = log_q.dims();
        let tokens = (b * s) as f64;
        let p = self.log_probs.clone().exp();
        let kl = (p * (self.log_probs.clone() - log_q.clone()))
            .sum()
            .into_scalar::<f32>() as f64
            / tokens;
        let nll = -(log_q
            .gather(2, self.targets.clone().reshape([b, s, 1]))
            .sum()
            .into_scalar::<f32>() as f64)
            / tokens;
        let dot = (last.clone() * self.last.clone()).sum_dim(2);
        let norms = (last.powi_scalar(2).sum_dim(2) * self.last.clone().powi_scalar(2).sum_dim(2)).sqrt();
        let cosine = (dot / norms.clamp_min(1e-12)).sum().into_scalar::<f32>() as f64 / tokens;
        Scores {
            kl_div: kl,
            lm_loss: nll,
            cosine_distance: 1.0 - cosine,
        }
    }

    /// The parent with its layers `span` replaced by `block`, run from the cached stream.
    pub fn score_block(&self, parent: &Llama, span: LayerSpan, block: &Block) -> Scores {
        let x = self.hidden_before(span.first);
        let rope = parent.rope_tables(0, x.dims()[1]);
        let x = block.forward(x, span.first, 0, &rope, None);
        let last = parent.run_layers(x, span.last + 1..parent.layers.len());
        self.compare(parent, last)
    }

    /// The same scores without reuse: `child` (a whole model) run from the tokens. Slower; it
    /// checks the reuse and serves children that differ from the parent in several layers.
    pub fn score_model(&self, child: &Llama) -> Result<Scores, ForwardError> {
        let mut out = child.forward(self.inputs.clone(), None, true)?;
        let last = out.hidden_states.pop().expect("hidden states include the last layer");
        Ok(self.compare(child, last))
    }
}
