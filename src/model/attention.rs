//! Attention sub-blocks: grouped-query softmax attention with RoPE, or a single linear map.
//! Knows the tensor maths only; names and file layouts live in `model::weights`.

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;

use super::dense::{dense, matmul};
use super::fused::causal_softmax;
use super::kv_cache::KvCache;
use super::rope::Rope;

#[derive(Module, Debug)]
pub struct GqaAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

// One value per layer, so the size gap between variants costs nothing; burn modules cannot box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Attention {
    Gqa(GqaAttention),
    Linear(Linear),
}

impl Attention {
    /// `x: [batch, seq, hidden]` (already normalised) at absolute positions `offset..offset+seq`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        offset: usize,
        rope: &Rope,
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
        rope: &Rope,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let q = rope.apply(self.heads(x.clone(), &self.q_proj, self.num_heads), offset);
        let k = rope.apply(self.heads(x.clone(), &self.k_proj, self.kv_heads), offset);
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
        let probs = causal_softmax(matmul(q, k.swap_dims(2, 3)), scale, seq, offset);
        let out = matmul(probs, v);
        let out = out
            .reshape([batch, self.num_heads, seq, self.head_dim])
            .swap_dims(1, 2)
            .reshape([batch, seq, self.num_heads * self.head_dim]);
        dense(out, &self.o_proj)
    }
}
