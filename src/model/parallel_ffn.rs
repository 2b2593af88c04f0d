//! Several SwiGLU FFNs that read the same input, folded into one wide SwiGLU (DESIGN §1.9):
//! `Σ_k down_k(silu(gate_k(norm_k(x))) ⊙ up_k(norm_k(x)))` is one SwiGLU whose gate and up
//! matrices are the members' stacked, each member's rows scaled column-wise by its RMSNorm
//! weight (`gate_k · diag(w_k)`), whose down matrix is the members' side by side, and whose
//! own norm weight is all ones. Exact, because every RMSNorm of a model shares one epsilon.
//! Knows tensor names and shapes; nothing of which layers to fuse or why.

use super::config::FfnConfig;
use super::weights::{HostTensor, HostValues, TensorMap, host_tensor};

/// One member of a fused FFN: its norm weight `[hidden]` and SwiGLU matrices (`[out, in]`).
#[derive(Clone, Copy, Debug)]
pub struct FfnMember<'a> {
    pub norm: &'a HostTensor,
    pub gate: &'a HostTensor,
    pub up: &'a HostTensor,
    pub down: &'a HostTensor,
}

impl<'a> FfnMember<'a> {
    /// The SwiGLU FFN of layer `layer` in `weights`, or `None` when it has none.
    pub fn of_layer(weights: &'a TensorMap, layer: usize) -> Option<Self> {
        let get = |name: &str| weights.get(&format!("model.layers.{layer}.{name}.weight"));
        Some(Self {
            norm: get("post_attention_layernorm")?,
            gate: get("mlp.gate_proj")?,
            up: get("mlp.up_proj")?,
            down: get("mlp.down_proj")?,
        })
    }
}

/// The fused FFN of `members` as the tensors of layer `layer`: its config and its
/// `post_attention_layernorm` and `mlp.{gate,up,down}_proj` weights. `members` must not be empty.
pub fn fuse_ffns(members: &[FfnMember], layer: usize) -> (FfnConfig, TensorMap) {
    let hidden = members[0].norm.shape()[0];
    let width: usize = members.iter().map(|m| m.gate.shape()[0]).sum();
    let scaled_rows = |matrix: &HostTensor, norm: &HostTensor, out: &mut Vec<f32>| {
        for row in matrix.values().chunks_exact(hidden) {
            out.extend(row.iter().zip(norm.values()).map(|(w, n)| w * n));
        }
    };
    let (mut gate, mut up) = (Vec::with_capacity(width * hidden), Vec::with_capacity(width * hidden));
    for m in members {
        scaled_rows(m.gate, m.norm, &mut gate);
        scaled_rows(m.up, m.norm, &mut up);
    }
    let mut down = Vec::with_capacity(hidden * width);
    for row in 0..hidden {
        for m in members {
            let w = m.down.shape()[1];
            down.extend_from_slice(&m.down.values()[row * w..(row + 1) * w]);
        }
    }
    let p = format!("model.layers.{layer}");
    let tensors = TensorMap::from([
        (
            format!("{p}.post_attention_layernorm.weight"),
            host_tensor(vec![hidden], vec![1.0; hidden]),
        ),
        (
            format!("{p}.mlp.gate_proj.weight"),
            host_tensor(vec![width, hidden], gate),
        ),
        (format!("{p}.mlp.up_proj.weight"), host_tensor(vec![width, hidden], up)),
        (
            format!("{p}.mlp.down_proj.weight"),
            host_tensor(vec![hidden, width], down),
        ),
    ]);
    (FfnConfig::SwiGlu { intermediate: width }, tensors)
}
