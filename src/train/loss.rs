//! Training losses on logits: next-token cross-entropy, optionally restricted by a mask
//! (SFT trains on assistant tokens only).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::model::{ForwardError, Llama};

/// Mean cross-entropy of `logits: [batch, seq, vocab]` against `targets: [batch, seq]`; with a
/// mask (1 = counted) the mean is over the counted positions only.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Option<Tensor<2>>) -> Tensor<1> {
    let [batch, seq, _] = logits.dims();
    let picked = log_softmax(logits, 2)
        .gather(2, targets.reshape([batch, seq, 1]))
        .reshape([batch, seq]);
    match mask {
        None => picked.mean().neg(),
        Some(mask) => {
            let count = mask.clone().sum().clamp_min(1.0);
            (picked * mask).sum().neg() / count
        }
    }
}

/// Splits windows of `len + 1` tokens into inputs and shifted targets and returns the mean
/// next-token loss of `model` on them.
pub fn next_token_loss(model: &Llama, windows: &[Vec<u32>]) -> Result<Tensor<1>, ForwardError> {
    let inputs: Vec<Vec<u32>> = windows.iter().map(|w| w[..w.len() - 1].to_vec()).collect();
    let targets: Vec<Vec<u32>> = windows.iter().map(|w| w[1..].to_vec()).collect();
    let logits = model.forward(model.tokens_tensor(&inputs)?, None, false)?.logits;
    Ok(cross_entropy(logits, model.tokens_tensor(&targets)?, None))
}

/// One language-modelling micro-batch: `batch_size` random windows of `seq_len + 1` tokens
/// from `windows` (shared between micro-batch threads), and the model's next-token loss on them.
pub fn lm_micro_batch(
    model: &Llama,
    windows: &std::sync::Mutex<crate::data::TokenWindows>,
    rng: &mut impl rand::Rng,
    batch_size: usize,
    seq_len: usize,
) -> Result<super::MicroBatch, super::TrainError> {
    let batch = {
        let mut windows = windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (0..batch_size)
            .map(|_| windows.sample(rng, seq_len + 1))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(super::MicroBatch {
        loss: next_token_loss(model, &batch)?,
        tokens: batch_size * seq_len,
    })
}
