//! Attention sub-blocks: grouped-query softmax attention with RoPE (optionally with q/k/v
//! biases, per-head q/k RMSNorm before RoPE, and a sliding window), or a single linear map.
//! Knows the tensor maths only; names and file layouts live in `model::weights`.

use burn::module::Module;
use burn::nn::{Linear, RmsNorm};
use burn::prelude::*;

use super::dense::{dense, matmul};
use super::fused::causal_softmax;
use super::kv_cache::KvCache;
use super::rope::RopeTables;

#[derive(Module, Debug)]
pub struct GqaAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// RMSNorm over each query and key head, before RoPE (Qwen3).
    pub qk_norm: Option<(RmsNorm, RmsNorm)>,
    pub num_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Keys further back than this are masked (`i - window < j <= i`).
    pub window: Option<usize>,
}

// One value per layer, so the size gap between variants costs nothing; burn modules cannot box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Attention {
    Gqa(GqaAttention),
    Linear(Linear),
}

impl Attention {
    /// `x: [batch, seq, hidden]` (already normalised) at absolute positions `offset..offset+seq`,
    /// whose rotary tables are `rope`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        offset: usize,
        rope: &RopeTables,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        match self {
            Attention::Gqa(gqa) => gqa.forward(x, layer, offset, rope, cache),
            Attention::Linear(linear) => dense(x, linear),
        }
    }
}

impl GqaAttention {
    fn heads(&self, x: Tensor<3>, proj: &Linear, heads: usize) -> Tensor<4> {
        let [batch, seq, _] = x.dims();
        dense(x, proj)
            .reshape([batch, seq, heads, self.head_dim])
            .swap_dims(1, 2)
    }

    fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        offset: usize,
        rope: &RopeTables,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (mut q, mut k) = (
            self.heads(x.clone(), &self.q_proj, self.num_heads),
            self.heads(x.clone(), &self.k_proj, self.kv_heads),
        );
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            (q, k) = (q_norm.forward(q), k_norm.forward(k));
        }
        let (q, k) = (rope.apply(q), rope.apply(k));
        let v = self.heads(x, &self.v_proj, self.kv_heads);
        let (k, v) = match cache {
            Some(cache) => cache.append(layer, k, v),
            None => (k, v),
        };
        // Query heads of one KV group are stacked along the sequence axis, so K and V are used
        // as they are instead of being repeated per query head.
        let group = self.num_heads / self.kv_heads;
        let q = q.reshape([batch, self.kv_heads, group * seq, self.head_dim]);
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = matmul(q, k.swap_dims(2, 3));
        let probs = match self.window {
            Some(window) if offset + seq > window => windowed_softmax(scores, scale, seq, offset, window),
            _ => causal_softmax(scores, scale, seq, offset),
        };
        let out = matmul(probs, v);
        let out = out
            .reshape([batch, self.num_heads, seq, self.head_dim])
            .swap_dims(1, 2)
            .reshape([batch, seq, self.num_heads * self.head_dim]);
        dense(out, &self.o_proj)
    }
}

/// Attention probabilities with the sliding window: query `i` sees key `j` when
/// `i - window < j <= i` (the composed form; the fused kernel knows only the causal mask).
fn windowed_softmax(scores: Tensor<4>, scale: f64, seq: usize, offset: usize, window: usize) -> Tensor<4> {
    let [_, _, rows, context] = scores.dims();
    let device = scores.device();
    let query: Tensor<2, Int> = Tensor::arange(offset as i64..(offset + seq) as i64, &device)
        .reshape([seq, 1])
        .expand([seq, context]);
    let key: Tensor<2, Int> = Tensor::arange(0..context as i64, &device)
        .reshape([1, context])
        .expand([seq, context]);
    let hidden = key
        .clone()
        .greater(query.clone())
        .bool_or(key.lower_equal(query - window as i64));
    let mask = hidden.repeat_dim(0, rows / seq).unsqueeze::<4>();
    burn::tensor::activation::softmax((scores * scale).mask_fill(mask, f32::NEG_INFINITY), 3)
}
