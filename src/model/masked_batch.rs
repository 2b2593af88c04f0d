//! Next-token batches of variable-length sequences (SFT, RL, KL on chats): rows padded at the
//! end to a common length (a causal model's earlier positions never see the padding) with a
//! mask that counts only the chosen target tokens. Knows models only through their forward pass.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::{ForwardError, Llama};

/// Inputs, shifted targets and a 0/1 mask over the targets, each `[rows, longest - 1]`.
pub struct MaskedBatch {
    pub inputs: Vec<Vec<u32>>,
    pub targets: Vec<Vec<u32>>,
    pub mask: Vec<Vec<f32>>,
}

impl MaskedBatch {
    /// `rows`: each sequence with, per token, whether predicting it counts. The first token is
    /// never predicted.
    pub fn new(rows: &[(&[u32], &[bool])], pad: u32) -> Self {
        let width = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(1).max(2) - 1;
        let mut batch = MaskedBatch {
            inputs: Vec::with_capacity(rows.len()),
            targets: Vec::with_capacity(rows.len()),
            mask: Vec::with_capacity(rows.len()),
        };
        for (tokens, counted) in rows {
            let n = tokens.len().saturating_sub(1);
            let padded = |slice: &[u32]| {
                let mut row = slice.to_vec();
                row.resize(width, pad);
                row
            };
            batch.inputs.push(padded(&tokens[..n]));
            batch.targets.push(padded(&tokens[1..n + 1]));
            let mut mask: Vec<f32> = counted[1..n + 1].iter().map(|&c| f32::from(u8::from(c))).collect();
            mask.resize(width, 0.0);
            batch.mask.push(mask);
        }
        batch
    }

    pub fn counted(&self) -> usize {
        self.mask.iter().flatten().filter(|&&m| m > 0.0).count()
    }

    pub fn mask_tensor(&self, device: &Device) -> Tensor<2> {
        let [rows, width] = [self.mask.len(), self.mask.first().map_or(0, Vec::len)];
        Tensor::from_data(
            TensorData::new(self.mask.iter().flatten().copied().collect::<Vec<f32>>(), [rows, width]),
            device,
        )
    }

    /// The model's log-probabilities over the vocabulary at every input position,
    /// `[rows, width, vocab]`, and of each target token, `[rows, width]`.
    pub fn log_probs(&self, model: &Llama) -> Result<(Tensor<3>, Tensor<2>), ForwardError> {
        let logits = model.forward(model.tokens_tensor(&self.inputs)?, None, false)?.logits;
        let [rows, width, _] = logits.dims();
        let all = log_softmax(logits, 2);
        let picked = all
            .clone()
            .gather(2, model.tokens_tensor(&self.targets)?.reshape([rows, width, 1]))
            .reshape([rows, width]);
        Ok((all, picked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_at_the_end_and_masks_only_counted_targets() {
        let a: (&[u32], &[bool]) = (&[1, 5, 6, 7], &[false, false, true, true]);
        let b: (&[u32], &[bool]) = (&[1, 9], &[false, true]);
        let batch = MaskedBatch::new(&[a, b], 0);
        assert_eq!(batch.inputs, vec![vec![1, 5, 6], vec![1, 0, 0]]);
        assert_eq!(batch.targets, vec![vec![5, 6, 7], vec![9, 0, 0]]);
        assert_eq!(batch.mask, vec![vec![0.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]]);
        assert_eq!(batch.counted(), 3);
    }
}
