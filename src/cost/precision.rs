//! Storage precisions a deployment may use for weights and the KV cache, with their sizes.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    Bf16,
    Fp8,
}

impl Precision {
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::Bf16 => 2,
            Precision::Fp8 => 1,
        }
    }
}

crate::named!(Precision { "f32" => Precision::F32, "bf16" => Precision::Bf16, "fp8" => Precision::Fp8 });
