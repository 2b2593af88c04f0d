//! Replace-1-block scoring (DESIGN §1.5): one block of the parent swapped for a variant, the
//! rest unchanged, measured on held-out windows against the parent: KL divergence of the
//! next-token distributions (parent ‖ child), LM loss, and the cosine distance of the final
//! hidden states. [`Reference`] holds the parent's side for comparing whole models;
//! `score::walk` runs single replaced blocks from the parent's cached stream instead.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::model::{ForwardError, Llama};

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
        Ok(Self::from_parts(
            last,
            out.logits,
            parent.tokens_tensor(&targets)?,
            inputs,
        ))
    }

    /// The reference of a parent whose last hidden state on `inputs` is `last` and whose
    /// logits are `logits`; `targets` are the next tokens.
    pub fn from_parts(last: Tensor<3>, logits: Tensor<3>, targets: Tensor<2, Int>, inputs: Tensor<2, Int>) -> Self {
        Self {
            last,
            log_probs: log_softmax(logits, 2),
            targets,
            inputs,
        }
    }

    /// Scores a model whose last hidden state is `last` and whose head is `head`'s.
    pub fn compare(&self, head: &Llama, last: Tensor<3>) -> Scores {
        self.compare_logits(head.head(last.clone()), last)
    }

    /// Scores a model whose last hidden state is `last` and whose logits are `logits`.
    pub fn compare_logits(&self, logits: Tensor<3>, last: Tensor<3>) -> Scores {
        let log_q = log_softmax(logits, 2);
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

    /// The same scores without reuse: `child` (a whole model) run from the tokens. Slower; it
    /// checks the reuse and serves children that differ from the parent in several layers.
    pub fn score_model(&self, child: &Llama) -> Result<Scores, ForwardError> {
        let mut out = child.forward(self.inputs.clone(), None, true)?;
        let last = out.hidden_states.pop().expect("hidden states include the last layer");
        Ok(self.compare(child, last))
    }
}
