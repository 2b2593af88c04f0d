//! FFN sub-blocks: SwiGLU (`down(silu(gate(x)) * up(x))`) or a single linear map.

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;

use super::dense::dense;
use super::fused::swiglu;

#[derive(Module, Debug)]
pub struct SwiGlu {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

// One value per layer, so the size gap between variants costs nothing; burn modules cannot box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Ffn {
    SwiGlu(SwiGlu),
    Linear(Linear),
}

impl Ffn {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Ffn::SwiGlu(f) => dense(
                swiglu(dense(x.clone(), &f.gate_proj), dense(x, &f.up_proj)),
                &f.down_proj,
            ),
            Ffn::Linear(linear) => dense(x, linear),
        }
    }
}
