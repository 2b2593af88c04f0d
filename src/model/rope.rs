//! Rotary position embeddings in the rotate-half layout (HF's), the one layout used inside
//! tessera; interleaved checkpoints are permuted on import (`checkpoint::llama2c`).

use burn::module::Module;
use burn::prelude::*;

use super::fused::rope;

/// Precomputed cos/sin tables, `[max_positions, head_dim]`, each half repeated.
#[derive(Module, Debug)]
pub struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for pos in 0..max_positions {
            let row: Vec<f64> = (0..half)
                .map(|i| pos as f64 / theta.powf(2.0 * i as f64 / head_dim as f64))
                .collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos() as f32));
                sin.extend(row.iter().map(|a| a.sin() as f32));
            }
        }
        let shape = [max_positions, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// The cos and sin rows `[seq, head_dim]` of positions `offset..offset + seq`.
    pub fn tables(&self, offset: usize, seq: usize) -> (Tensor<2>, Tensor<2>) {
        (
            self.cos.clone().narrow(0, offset, seq),
            self.sin.clone().narrow(0, offset, seq),
        )
    }

    /// Rotates `x: [batch, heads, seq, head_dim]` whose first position is `offset`.
    pub fn apply(&self, x: Tensor<4>, offset: usize) -> Tensor<4> {
        let (cos, sin) = self.tables(offset, x.dims()[2]);
        rope(x, cos, sin)
    }
}
