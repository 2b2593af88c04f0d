//! Mean negative log-likelihood (nats per predicted token) of token sequences, each evaluated
//! exactly as given: position t predicts token t + 1.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::model::{ForwardError, Llama};

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NllReport {
    pub mean_nll: f64,
    pub tokens: usize,
}

/// Sequences longer than the model's context are cut into consecutive windows of at most
/// `max_position_embeddings` tokens, each evaluated on its own.
pub fn mean_nll(model: &Llama, sequences: &[Vec<u32>]) -> Result<NllReport, ForwardError> {
    let window = model.config().max_position_embeddings;
    let mut total = 0.0f64;
    let mut tokens = 0usize;
    for sequence in sequences {
        for chunk in sequence.chunks(window) {
            if chunk.len() < 2 {
                continue;
            }
            let input = model.tokens_tensor(&[chunk.to_vec()])?;
            let logits = model.forward(input, None, false)?.logits;
            let [_, seq, vocab] = logits.dims();
            let log_probs = log_softmax(logits.slice([0..1, 0..seq - 1, 0..vocab]), 2);
            let targets: Vec<i64> = chunk[1..].iter().map(|&t| t as i64).collect();
            let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, seq - 1, 1]), &log_probs.device());
            let picked = log_probs.gather(2, targets).sum().into_scalar::<f32>();
            total -= picked as f64;
            tokens += seq - 1;
        }
    }
    Ok(NllReport {
        mean_nll: if tokens == 0 { f64::NAN } else { total / tokens as f64 },
        tokens,
    })
}

/// Entropy (nats/token) of the unigram distribution of `sequences`: what a model that knows
/// only token frequencies would score; a trained model's NLL should be well below it.
pub fn unigram_entropy(sequences: &[Vec<u32>]) -> f64 {
    let mut counts = std::collections::HashMap::<u32, usize>::new();
    for &t in sequences.iter().flatten() {
        *counts.entry(t).or_default() += 1;
    }
    let total = counts.values().sum::<usize>() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.ln()
        })
        .sum()
}
