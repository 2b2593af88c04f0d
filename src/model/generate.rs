//! Autoregressive generation: one prefill of the prompt, then one cached decode step per new
//! token, choosing greedily or by temperature / top-p sampling from a seeded generator.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::kv_cache::KvCache;
use super::llama::{ForwardError, Llama};
use super::weights::to_host_vec;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Softmax at `temperature`, keep the smallest set of tokens whose mass reaches `top_p`.
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

/// Index of the largest value (the first one on ties, as llama2.c's `sample_argmax`).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    fn new(sampling: Sampling) -> Self {
        let seed = match sampling {
            Sampling::TopP { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn pick(&mut self, logits: &[f32]) -> usize {
        let Sampling::TopP { temperature, top_p, .. } = self.sampling else {
            return argmax(logits);
        };
        if temperature <= 0.0 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(usize, f32)> = logits
            .iter()
            .map(|&l| ((l - max) / temperature).exp())
            .enumerate()
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept = 0;
        let mut mass = 0.0;
        for &(_, p) in &probs {
            kept += 1;
            mass += p / total;
            if mass >= top_p {
                break;
            }
        }
        let target = self.rng.random::<f32>() * probs[..kept].iter().map(|p| p.1).sum::<f32>();
        let mut acc = 0.0;
        for &(index, p) in &probs[..kept] {
            acc += p;
            if acc > target {
                return index;
            }
        }
        probs[kept - 1].0
    }
}

/// Continues `prompt` (which must be non-empty, e.g. `[BOS]`) by up to `max_new_tokens`,
/// stopping early after any token in `stop_tokens`. Returns the prompt followed by the new tokens.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    max_new_tokens: usize,
    sampling: Sampling,
    stop_tokens: &[u32],
) -> Result<Vec<u32>, ForwardError> {
    let mut tokens = prompt.to_vec();
    let mut cache = KvCache::new(model.config().num_layers());
    let mut sampler = Sampler::new(sampling);
    let mut input = model.tokens_tensor(&[prompt.to_vec()])?;
    for _ in 0..max_new_tokens {
        let logits = model.forward(input, Some(&mut cache), false)?.logits;
        let [_, seq, vocab] = logits.dims();
        let last = to_host_vec(logits.slice([0..1, seq - 1..seq, 0..vocab]));
        let next = sampler.pick(&last) as u32;
        tokens.push(next);
        if stop_tokens.contains(&next) {
            break;
        }
        input = model.tokens_tensor(&[vec![next]])?;
    }
    Ok(tokens)
}
