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

impl Sampling {
    /// Top-p sampling's defaults: the model's own distribution, within the top 0.9 of its mass.
    pub const DEFAULT_TEMPERATURE: f32 = 1.0;
    pub const DEFAULT_TOP_P: f32 = 0.9;
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
    let mut rows = generate_batch(model, &[prompt.to_vec()], max_new_tokens, sampling, stop_tokens)?;
    Ok(rows.remove(0))
}

/// [`generate`] for several prompts of one length at once, sharing each forward pass. Row `r`
/// samples with seed `seed + r`; a row that has stopped keeps its tokens while the others go on.
pub fn generate_batch(
    model: &Llama,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    sampling: Sampling,
    stop_tokens: &[u32],
) -> Result<Vec<Vec<u32>>, ForwardError> {
    let mut rows: Vec<Vec<u32>> = prompts.to_vec();
    let mut cache = KvCache::new(model.config().num_layers());
    let mut samplers: Vec<Sampler> = (0..rows.len() as u64)
        .map(|r| match sampling {
            Sampling::TopP {
                temperature,
                top_p,
                seed,
            } => Sampler::new(Sampling::TopP {
                temperature,
                top_p,
                seed: seed.wrapping_add(r),
            }),
            Sampling::Greedy => Sampler::new(Sampling::Greedy),
        })
        .collect();
    let mut done = vec![false; rows.len()];
    let mut input = model.tokens_tensor(prompts)?;
    for _ in 0..max_new_tokens {
        if rows.is_empty() || done.iter().all(|&d| d) {
            break;
        }
        let logits = model.forward(input, Some(&mut cache), false)?.logits;
        let [batch, seq, vocab] = logits.dims();
        let last = to_host_vec(logits.slice([0..batch, seq - 1..seq, 0..vocab]));
        let mut next_inputs = Vec::with_capacity(batch);
        for (r, row_logits) in last.chunks(vocab).enumerate() {
            let next = samplers[r].pick(row_logits) as u32;
            if !done[r] {
                rows[r].push(next);
                done[r] = stop_tokens.contains(&next);
            }
            next_inputs.push(vec![next]);
        }
        input = model.tokens_tensor(&next_inputs)?;
    }
    Ok(rows)
}
