//! llama.cpp's GGUF *models* in and out of [`Checkpoint`](super::Checkpoint): the architectures
//! `llama` (Llama 1–3.x, Mistral), `qwen2`, `qwen3` and `deci` (heterogeneous Llama children,
//! Nemotron-51B/Ultra style), their metadata keys and tensor names as llama.cpp's own converter
//! writes them and its loaders read them.
//!
//! - [`GgufModel`] opens a file, derives the `ModelConfig` from its keys and tensors, and lends
//!   each tensor under its HF name, lazily, in its stored type ([`GgufModel::stored`]) or
//!   dequantised to f32 in tessera's layout ([`GgufModel::read_tensor`]).
//! - [`write_gguf`] writes a checkpoint as the architecture llama.cpp runs it with, or refuses
//!   what that architecture cannot express, naming the layer and why.
//!
//! What the conventions are (and the evidence for them) is in `docs/` and the research notes of
//! issue 21: llama.cpp rotates adjacent pairs (`LLAMA_ROPE_TYPE_NORM`) for `llama` and `deci`,
//! so their converter permutes the q/k rows (and biases) into the interleaved layout, which is
//! undone on import and redone on export; `qwen2`/`qwen3` rotate halves as HF does and are stored
//! as they are. llama3 RoPE scaling travels as a tensor of per-frequency divisors
//! (`rope_freqs.weight`); the `rope` submodule recovers its parameters.
//!
//! Knows tensor names and keys of those architectures; not the container's bytes
//! (`checkpoint::gguf`), not tokenizers (`tokenizer::gguf` reads and writes the `tokenizer.*`
//! keys), not burn.

mod read;
mod rope;
mod write;

use std::io::Read;
use std::path::Path;

pub use read::{GgufModel, StoredTensor};
pub use write::write_gguf;

/// llama.cpp's `LLAMA_MAX_LAYERS`: a file declaring more layers is refused before anything is
/// sized by the count.
const MAX_LAYERS: usize = 512;

/// The FFN width of the exact encoding of "attention, no FFN" in a `deci` file (one Q8_0 block;
/// see `write`): a SwiGLU this narrow whose down projection is all zeros.
const ZERO_FFN_WIDTH: usize = 32;

/// A llama.cpp architecture tessera reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufArch {
    Llama,
    Qwen2,
    Qwen3,
    Deci,
}

impl GgufArch {
    const ALL: [GgufArch; 4] = [GgufArch::Llama, GgufArch::Qwen2, GgufArch::Qwen3, GgufArch::Deci];

    pub fn name(self) -> &'static str {
        match self {
            GgufArch::Llama => "llama",
            GgufArch::Qwen2 => "qwen2",
            GgufArch::Qwen3 => "qwen3",
            GgufArch::Deci => "deci",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// llama.cpp rotates adjacent pairs for these, so their q/k rows are stored interleaved.
    fn interleaved_rope(self) -> bool {
        matches!(self, GgufArch::Llama | GgufArch::Deci)
    }

    /// Whether llama.cpp's graph for this architecture applies `rope_freqs.weight`.
    fn reads_rope_freqs(self) -> bool {
        self.interleaved_rope()
    }

    /// Whether its loader takes an output-projection bias (`attn_output.bias`).
    fn has_output_bias(self) -> bool {
        self.interleaved_rope()
    }

    /// Whether its graph applies per-head q/k RMSNorm (and its loader requires the weights).
    fn has_qk_norm(self) -> bool {
        self == GgufArch::Qwen3
    }

    /// The key `{arch}.{suffix}`.
    fn key(self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name())
    }
}

/// Whether `path` is a GGUF file (by its magic, whatever its name).
pub fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}

/// The tensors outside the layers: (GGUF name, HF name).
const GLOBAL_TENSORS: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// The tensors of one layer: (GGUF suffix after `blk.{i}.`, HF suffix after `model.layers.{i}.`).
/// A `deci` linear attention stores its matrix as `attn_output.weight` too (see [`hf_name`]).
const LAYER_TENSORS: [(&str, &str); 15] = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("attn_output.bias", "self_attn.o_proj.bias"),
    ("attn_q_norm.weight", "self_attn.q_norm.weight"),
    ("attn_k_norm.weight", "self_attn.k_norm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

const LINEAR_ATTENTION: (&str, &str) = ("attn_output.weight", "self_attn.linear_attn.weight");

/// The tensor of per-frequency RoPE divisors (llama3 scaling).
const ROPE_FREQS: &str = "rope_freqs.weight";

/// Where a GGUF tensor name points: a global tensor, or layer `i`'s tensor with this GGUF suffix.
#[derive(Debug, PartialEq, Eq)]
enum GgufSlot<'a> {
    Global(&'static str),
    Layer(usize, &'a str),
}

fn slot(name: &str) -> Option<GgufSlot<'_>> {
    if let Some(&(_, hf)) = GLOBAL_TENSORS.iter().find(|(g, _)| *g == name) {
        return Some(GgufSlot::Global(hf));
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    // `blk.01` is not llama.cpp's spelling of layer 1.
    let index: usize = layer.parse().ok().filter(|i: &usize| i.to_string() == layer)?;
    Some(GgufSlot::Layer(index, suffix))
}

/// The HF name of layer `layer`'s GGUF tensor `suffix`; `linear_attention` when the layer's
/// `attn_output.weight` is a `deci` linear attention.
fn hf_name(layer: usize, suffix: &str, linear_attention: bool) -> Option<String> {
    let hf = if linear_attention && suffix == LINEAR_ATTENTION.0 {
        LINEAR_ATTENTION.1
    } else {
        LAYER_TENSORS.iter().find(|(g, _)| *g == suffix)?.1
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The GGUF name of an HF tensor; `None` for a tensor GGUF has no name for (`linear_attn.bias`,
/// `mlp.linear_mlp.weight`).
fn gguf_name(hf: &str) -> Option<String> {
    if let Some(&(g, _)) = GLOBAL_TENSORS.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let g = if suffix == LINEAR_ATTENTION.1 {
        LINEAR_ATTENTION.0
    } else {
        LAYER_TENSORS.iter().find(|(_, h)| *h == suffix)?.0
    };
    Some(format!("blk.{layer}.{g}"))
}

/// An f32 read from a file, as the shortest decimal that reads back as it (`1e-5`, not
/// `9.999999747378752e-6`), so that a config read from GGUF prints and round-trips as written.
fn f32_as_decimal(v: f32) -> f64 {
    v.to_string().parse().expect("an f32 prints as a number")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (g, h) in GLOBAL_TENSORS {
            assert_eq!(slot(g), Some(GgufSlot::Global(h)));
            assert_eq!(gguf_name(h).as_deref(), Some(g));
        }
        for (g, h) in LAYER_TENSORS {
            let name = format!("blk.12.{g}");
            assert_eq!(slot(&name), Some(GgufSlot::Layer(12, g)));
            let hf = hf_name(12, g, false).unwrap();
            assert_eq!(hf, format!("model.layers.12.{h}"));
            assert_eq!(gguf_name(&hf), Some(name));
        }
        assert_eq!(
            hf_name(3, "attn_output.weight", true).as_deref(),
            Some("model.layers.3.self_attn.linear_attn.weight")
        );
        assert_eq!(
            gguf_name("model.layers.3.self_attn.linear_attn.weight").as_deref(),
            Some("blk.3.attn_output.weight")
        );
        assert_eq!(gguf_name("model.layers.3.mlp.linear_mlp.weight"), None);
        assert_eq!(gguf_name("model.layers.3.self_attn.linear_attn.bias"), None);
        assert_eq!(slot("blk.01.attn_q.weight"), None);
        assert_eq!(hf_name(0, "attn_qkv.weight", false), None);
    }

    #[test]
    fn f32_values_read_as_their_decimal() {
        assert_eq!(f32_as_decimal(1e-5f32), 1e-5);
        assert_eq!(f32_as_decimal(100000.0), 1e5);
        assert_eq!(f32_as_decimal(0.1), 0.1);
    }
}
