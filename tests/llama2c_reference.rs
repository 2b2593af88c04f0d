//! An independent reference for stories260K: llama2.c's `run.c` forward pass written as plain
//! loops over f32 arrays read straight from the `.bin` (interleaved RoPE, no burn, no tessera
//! code), compared token for token with tessera's greedy decoding.

mod common;

use burn::prelude::Device;
use tessera::checkpoint::load_model;
use tessera::model::{Sampling, generate};

struct Reference {
    dim: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    seq_len: usize,
    floats: Vec<f32>,
    offsets: Offsets,
}

struct Offsets {
    embed: usize,
    rms_att: usize,
    wq: usize,
    wk: usize,
    wv: usize,
    wo: usize,
    rms_ffn: usize,
    w1: usize,
    w2: usize,
    w3: usize,
    rms_final: usize,
    wcls: usize,
}

impl Reference {
    fn read(path: &std::path::Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let int = |i: usize| i32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
        let (dim, hidden, layers, heads, kv_heads, vocab, seq_len) =
            (int(0), int(1), int(2), int(3), int(4), int(5), int(6));
        let shared = vocab > 0;
        let [dim, hidden, layers, heads, kv_heads, vocab, seq_len] =
            [dim, hidden, layers, heads, kv_heads, vocab.abs(), seq_len].map(|v| v as usize);
        let floats: Vec<f32> = bytes[28..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let head_size = dim / heads;
        let kv_dim = kv_heads * head_size;
        let mut at = 0;
        let mut take = |n: usize| {
            let start = at;
            at += n;
            start
        };
        let embed = take(vocab * dim);
        let rms_att = take(layers * dim);
        let wq = take(layers * dim * dim);
        let wk = take(layers * dim * kv_dim);
        let wv = take(layers * dim * kv_dim);
        let wo = take(layers * dim * dim);
        let rms_ffn = take(layers * dim);
        let w1 = take(layers * dim * hidden);
        let w2 = take(layers * hidden * dim);
        let w3 = take(layers * dim * hidden);
        let rms_final = take(dim);
        take(seq_len * head_size); // freq_cis_real and freq_cis_imag
        let wcls = if shared { embed } else { take(vocab * dim) };
        let offsets = Offsets {
            embed,
            rms_att,
            wq,
            wk,
            wv,
            wo,
            rms_ffn,
            w1,
            w2,
            w3,
            rms_final,
            wcls,
        };
        Self {
            dim,
            hidden,
            layers,
            heads,
            kv_heads,
            vocab,
            seq_len,
            floats,
            offsets,
        }
    }

    fn rmsnorm(&self, x: &[f32], weight: usize) -> Vec<f32> {
        let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + 1e-5;
        let ss = 1.0 / ss.sqrt();
        x.iter()
            .enumerate()
            .map(|(j, v)| self.floats[weight + j] * (ss * v))
            .collect()
    }

    /// `xout[i] = Σ_j W[i, j] x[j]` for `W: [d, n]` at `w`.
    fn matmul(&self, x: &[f32], w: usize, n: usize, d: usize) -> Vec<f32> {
        (0..d)
            .map(|i| (0..n).map(|j| self.floats[w + i * n + j] * x[j]).sum())
            .collect()
    }

    fn forward(&self, token: usize, pos: usize, key_cache: &mut [Vec<f32>], value_cache: &mut [Vec<f32>]) -> Vec<f32> {
        let (dim, hidden) = (self.dim, self.hidden);
        let head_size = dim / self.heads;
        let kv_dim = self.kv_heads * head_size;
        let kv_mul = self.heads / self.kv_heads;
        let o = &self.offsets;
        let mut x: Vec<f32> = self.floats[o.embed + token * dim..o.embed + (token + 1) * dim].to_vec();
        for l in 0..self.layers {
            let xb = self.rmsnorm(&x, o.rms_att + l * dim);
            let mut q = self.matmul(&xb, o.wq + l * dim * dim, dim, dim);
            let mut k = self.matmul(&xb, o.wk + l * dim * kv_dim, dim, kv_dim);
            let v = self.matmul(&xb, o.wv + l * dim * kv_dim, dim, kv_dim);
            for i in (0..dim).step_by(2) {
                let head_dim = i % head_size;
                let freq = 1.0f32 / 10000f32.powf(head_dim as f32 / head_size as f32);
                let val = pos as f32 * freq;
                let (fcr, fci) = (val.cos(), val.sin());
                let rotn = if i < kv_dim { 2 } else { 1 };
                for which in 0..rotn {
                    let vec = if which == 0 { &mut q } else { &mut k };
                    let (v0, v1) = (vec[i], vec[i + 1]);
                    vec[i] = v0 * fcr - v1 * fci;
                    vec[i + 1] = v0 * fci + v1 * fcr;
                }
            }
            key_cache[l].extend_from_slice(&k);
            value_cache[l].extend_from_slice(&v);
            let mut attended = vec![0.0f32; dim];
            for h in 0..self.heads {
                let qh = &q[h * head_size..(h + 1) * head_size];
                let kv_off = (h / kv_mul) * head_size;
                let mut att: Vec<f32> = (0..=pos)
                    .map(|t| {
                        let kt = &key_cache[l][t * kv_dim + kv_off..t * kv_dim + kv_off + head_size];
                        qh.iter().zip(kt).map(|(a, b)| a * b).sum::<f32>() / (head_size as f32).sqrt()
                    })
                    .collect();
                let max = att.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for a in att.iter_mut() {
                    *a = (*a - max).exp();
                    sum += *a;
                }
                for t in 0..=pos {
                    let vt = &value_cache[l][t * kv_dim + kv_off..t * kv_dim + kv_off + head_size];
                    for i in 0..head_size {
                        attended[h * head_size + i] += att[t] / sum * vt[i];
                    }
                }
            }
            let out = self.matmul(&attended, o.wo + l * dim * dim, dim, dim);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
            let xb = self.rmsnorm(&x, o.rms_ffn + l * dim);
            let h1 = self.matmul(&xb, o.w1 + l * dim * hidden, dim, hidden);
            let h3 = self.matmul(&xb, o.w3 + l * dim * hidden, dim, hidden);
            let gated: Vec<f32> = h1
                .iter()
                .zip(&h3)
                .map(|(a, b)| a * (1.0 / (1.0 + (-a).exp())) * b)
                .collect();
            let out = self.matmul(&gated, o.w2 + l * dim * hidden, hidden, dim);
            x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        }
        let x = self.rmsnorm(&x, o.rms_final);
        self.matmul(&x, o.wcls, dim, self.vocab)
    }

    fn greedy(&self, steps: usize) -> Vec<u32> {
        let mut key_cache = vec![Vec::new(); self.layers];
        let mut value_cache = vec![Vec::new(); self.layers];
        let mut tokens = vec![1u32];
        for pos in 0..steps.min(self.seq_len - 1) {
            let logits = self.forward(*tokens.last().unwrap() as usize, pos, &mut key_cache, &mut value_cache);
            let next = logits
                .iter()
                .enumerate()
                .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best });
            tokens.push(next as u32);
        }
        tokens
    }
}

#[test]
fn greedy_80_tokens_match_the_run_c_reference() {
    let Some(data) = common::shared_data("greedy_80_tokens_match_the_run_c_reference") else {
        return;
    };
    let path = common::stories_bin(&data);
    let expected = Reference::read(&path).greedy(80);
    let model = load_model(&path, &Device::flex()).unwrap();
    let got = generate(&model, &[1], 80, Sampling::Greedy, &[]).unwrap();
    assert_eq!(got.len(), 81);
    assert_eq!(
        got, expected,
        "tessera's greedy decoding diverges from the run.c reference"
    );
}
