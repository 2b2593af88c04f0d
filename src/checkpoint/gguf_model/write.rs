//! Writing a checkpoint as a GGUF model, as llama.cpp's converter would: `llama` for a
//! homogeneous Llama/Mistral-family model, `qwen2`/`qwen3` for a homogeneous Qwen one, `deci`
//! for a heterogeneous child (per-layer head counts and FFN widths). What the chosen graph
//! cannot compute is refused, naming the layer and why, except three cases that have an exact
//! encoding (see [`AttentionOut::ZeroLinear`], [`AttentionOut::LinearFfn`] and
//! [`FfnOut::ZeroSwiGlu`]).
//!
//! Tensors are written one at a time through `GgufWriter`, matrices in the asked type (F32,
//! F16, BF16 or Q8_0; a matrix whose rows are not whole Q8_0 blocks falls back to F16, as the
//! converter does), 1-D tensors always in F32 (llama.cpp refuses other norm types).

use std::collections::HashMap;
use std::path::Path;

use super::rope::scaling_to_gguf;
use super::{GgufArch, ROPE_FREQS, ZERO_FFN_WIDTH, gguf_name};
use crate::checkpoint::gguf::{GgmlType, GgufWriter, MetaArray, MetaValue};
use crate::checkpoint::llama2c::permute_rope_rows;
use crate::checkpoint::{CheckpointError, TensorSource};
use crate::model::config::{AttentionConfig, BlockConfig, Family, FfnConfig, ModelConfig};
use crate::model::weights::{HostValues, expected_tensors};

/// How one layer's attention is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttentionOut {
    Gqa {
        kv_heads: usize,
    },
    Linear,
    None,
    /// Attention-free layer 0. llama.cpp takes the head size of every layer from layer 0's head
    /// count (`n_embd / n_head(0)`), so a `deci` file whose layer 0 has no heads cannot run.
    /// Written instead as a linear attention whose matrix is all zeros (and norm all ones): it
    /// adds exactly 0 to the residual stream, so the layer computes what an attention-free one
    /// does. The reader turns it back into an attention-free layer.
    ZeroLinear,
    /// An attention-free layer whose FFN is linear: `x + W·norm(x)`, which is exactly what a
    /// `deci` linear attention computes, so it is written as one, with the FFN's norm and matrix
    /// (llama.cpp has no linear FFN). The reader reads a linear attention without FFN: the same
    /// function, another description.
    LinearFfn,
}

/// How one layer's FFN is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FfnOut {
    SwiGlu,
    None,
    /// An attention followed by no FFN. llama.cpp's `deci` graph skips the rest of a layer
    /// whose FFN length is 0 *before* adding the attention output to the residual stream
    /// (`if (n_ff == 0) continue;`), so that layer would lose its attention. Written instead as
    /// a SwiGLU of width [`ZERO_FFN_WIDTH`] (one Q8_0 block) whose matrices are all zeros (norm
    /// all ones): it adds exactly 0, in every tensor type. The reader turns it back into no FFN.
    ZeroSwiGlu,
}

/// Where a written tensor's values come from.
#[derive(Clone, Debug)]
enum Source {
    /// A checkpoint tensor, its rows permuted to llama.cpp's interleaved layout with `heads`
    /// heads when `Some`.
    Weight {
        hf: String,
        interleave: Option<usize>,
    },
    Ones,
    Zeros,
    Values(Vec<f32>),
}

/// The tensor types a GGUF export can store matrices in, and llama.cpp's `general.file_type`
/// for each (`LLAMA_FTYPE_ALL_F32`, `MOSTLY_F16`, `MOSTLY_BF16`, `MOSTLY_Q8_0`).
fn file_type(matrix_type: GgmlType) -> Option<u32> {
    match matrix_type {
        GgmlType::F32 => Some(0),
        GgmlType::F16 => Some(1),
        GgmlType::BF16 => Some(32),
        GgmlType::Q8_0 => Some(7),
        _ => None,
    }
}

/// Writes `checkpoint` at `path` as a GGUF model with its matrices in `matrix_type` (F32, F16,
/// BF16 or Q8_0) and the `tokenizer.*` entries given (none: `tokenizer.ggml.model = "none"`,
/// which llama.cpp runs on token ids only).
pub fn write_gguf(
    checkpoint: &impl TensorSource,
    path: &Path,
    matrix_type: GgmlType,
    tokenizer: &[(String, MetaValue)],
) -> Result<(), CheckpointError> {
    let unsupported = |problem: String| CheckpointError::Unsupported {
        path: path.to_path_buf(),
        problem,
    };
    let config = checkpoint.config();
    let file_type = file_type(matrix_type)
        .ok_or_else(|| unsupported(format!("tessera writes F32, F16, BF16 or Q8_0, not {matrix_type}")))?;
    let (arch, layers) = plan(config).map_err(unsupported)?;
    let rope = scaling_to_gguf(arch, &config.rope_scaling, config.rope_theta, config.head_dim).map_err(unsupported)?;
    if let Some(n) = tokenizer.iter().find_map(|(k, v)| match v {
        MetaValue::Array(tokens) if k == "tokenizer.ggml.tokens" => Some(tokens.len()),
        _ => None,
    }) && n != config.vocab_size
    {
        return Err(unsupported(format!(
            "the tokenizer has {n} tokens and the embedding {} rows; llama.cpp needs one row per token",
            config.vocab_size
        )));
    }

    let mut writer = GgufWriter::new(path);
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metadata = vec![
        ("general.architecture".to_string(), MetaValue::Str(arch.name().into())),
        ("general.type".to_string(), MetaValue::Str("model".into())),
        ("general.name".to_string(), MetaValue::Str(name)),
        ("general.file_type".to_string(), MetaValue::U32(file_type)),
        ("general.quantization_version".to_string(), MetaValue::U32(2)),
    ];
    metadata.extend(shape_metadata(config, arch, &layers).map_err(unsupported)?);
    metadata.extend(rope.keys.into_iter().map(|(k, v)| (arch.key(k), v)));
    if tokenizer.is_empty() {
        metadata.push(("tokenizer.ggml.model".into(), MetaValue::Str("none".into())));
    }
    metadata.extend(tokenizer.iter().cloned());
    for (k, v) in metadata {
        writer.add_metadata(k, v)?;
    }

    let tensors = tensor_sources(checkpoint, path, arch, &layers, rope.freqs)?;
    for (name, shape, _) in &tensors {
        let ty = match (shape.len(), matrix_type) {
            (1, _) => GgmlType::F32,
            (_, GgmlType::Q8_0) if !shape[1].is_multiple_of(32) => GgmlType::F16,
            (_, ty) => ty,
        };
        writer.add_tensor(name.clone(), shape, ty)?;
    }
    let sources: HashMap<String, Source> = tensors.into_iter().map(|(n, _, s)| (n, s)).collect();
    writer.write(|spec| -> Result<Vec<f32>, CheckpointError> {
        let n = spec.n_elements();
        Ok(match &sources[&spec.name] {
            Source::Ones => vec![1.0; n],
            Source::Zeros => vec![0.0; n],
            Source::Values(v) => v.clone(),
            Source::Weight { hf, interleave } => {
                let tensor = checkpoint.tensor(hf)?;
                match interleave {
                    Some(heads) => permute_rope_rows(&tensor, *heads, false).into_raw_vec_and_offset().0,
                    None => tensor.into_raw_vec_and_offset().0,
                }
            }
        })
    })?;
    Ok(())
}

/// The `<arch>.*` entries describing the model's shape: sizes, and per layer (`deci`: an array
/// with one entry per layer; the others: one number) the attention heads, KV heads and FFN width.
fn shape_metadata(
    config: &ModelConfig,
    arch: GgufArch,
    layers: &[(AttentionOut, FfnOut)],
) -> Result<Vec<(String, MetaValue)>, String> {
    let u32_of = |what: &str, v: usize| {
        u32::try_from(v)
            .map(MetaValue::U32)
            .map_err(|_| format!("{what} {v} does not fit GGUF's u32"))
    };
    let per_layer = |value: &dyn Fn(usize, &(AttentionOut, FfnOut)) -> usize| -> Result<MetaValue, String> {
        let values: Vec<usize> = layers.iter().enumerate().map(|(i, l)| value(i, l)).collect();
        if arch == GgufArch::Deci {
            // The converter writes INT32, as gguf-py writes Python ints.
            let values = values
                .iter()
                .map(|&v| i32::try_from(v).map_err(|_| format!("{v} does not fit GGUF's i32")))
                .collect::<Result<_, _>>()?;
            Ok(MetaValue::Array(MetaArray::I32(values)))
        } else {
            u32_of("a count", values[0])
        }
    };
    let heads = per_layer(&|_, (a, _)| match a {
        AttentionOut::None => 0,
        _ => config.num_attention_heads,
    })?;
    let kv_heads = per_layer(&|_, (a, _)| match a {
        AttentionOut::Gqa { kv_heads } => *kv_heads,
        _ => 0,
    })?;
    let ffn = per_layer(&|i, (_, f)| match (f, config.blocks[i].ffn) {
        (FfnOut::SwiGlu, FfnConfig::SwiGlu { intermediate }) => intermediate,
        (FfnOut::ZeroSwiGlu, _) => ZERO_FFN_WIDTH,
        _ => 0,
    })?;
    let key = |suffix: &str| arch.key(suffix);
    Ok(vec![
        (key("block_count"), u32_of("block count", layers.len())?),
        (
            key("context_length"),
            u32_of("context length", config.max_position_embeddings)?,
        ),
        (key("embedding_length"), u32_of("hidden size", config.hidden_size)?),
        (key("feed_forward_length"), ffn),
        (key("attention.head_count"), heads),
        (key("attention.head_count_kv"), kv_heads),
        (key("rope.freq_base"), MetaValue::F32(config.rope_theta as f32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(config.rms_norm_eps as f32),
        ),
        (key("attention.key_length"), u32_of("head dim", config.head_dim)?),
        (key("attention.value_length"), u32_of("head dim", config.head_dim)?),
        (key("vocab_size"), u32_of("vocabulary", config.vocab_size)?),
        (key("rope.dimension_count"), u32_of("head dim", config.head_dim)?),
    ])
}

/// The architecture and each layer's encoding, or what llama.cpp cannot compute.
fn plan(config: &ModelConfig) -> Result<(GgufArch, Vec<(AttentionOut, FfnOut)>), String> {
    let homogeneous = matches!(
        config.homogeneous_block(),
        Some(BlockConfig {
            attention: AttentionConfig::Gqa { .. },
            ffn: FfnConfig::SwiGlu { .. }
        })
    );
    let arch = match (homogeneous, config.family) {
        (true, Family::Qwen2) => GgufArch::Qwen2,
        (true, Family::Qwen3) => GgufArch::Qwen3,
        (true, Family::Llama | Family::Mistral) => GgufArch::Llama,
        (false, _) => GgufArch::Deci,
    };
    let name = arch.name();
    if let Some(window) = config.sliding_window
        && window < config.max_position_embeddings
    {
        return Err(format!(
            "a sliding window of {window} tokens: llama.cpp's `{name}` graph attends to the whole context, so the \
             file would compute something else past {window} tokens"
        ));
    }
    let first_attention = config
        .blocks
        .iter()
        .position(|b| matches!(b.attention, AttentionConfig::Gqa { .. }));
    if config.qk_norm
        && !arch.has_qk_norm()
        && let Some(i) = first_attention
    {
        return Err(format!(
            "layer {i}: per-head q/k RMSNorm, which llama.cpp's `{name}` graph never applies"
        ));
    }
    if config.attention_bias.on_output()
        && !arch.has_output_bias()
        && let Some(i) = first_attention
    {
        return Err(format!(
            "layer {i}: an output-projection bias, which llama.cpp's `{name}` loader has no tensor for"
        ));
    }
    if arch == GgufArch::Qwen2 && config.num_attention_heads * config.head_dim != config.hidden_size {
        return Err(format!(
            "{} heads of {} make {} query channels; llama.cpp's `qwen2` needs them to equal the hidden size {}",
            config.num_attention_heads,
            config.head_dim,
            config.num_attention_heads * config.head_dim,
            config.hidden_size
        ));
    }
    let layers = config
        .blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            if (block.attention, block.ffn) == (AttentionConfig::NoOp, FfnConfig::Linear) {
                return Ok((AttentionOut::LinearFfn, FfnOut::ZeroSwiGlu));
            }
            let attention = match block.attention {
                AttentionConfig::Gqa { kv_heads } => AttentionOut::Gqa { kv_heads },
                AttentionConfig::Linear => AttentionOut::Linear,
                AttentionConfig::NoOp if i == 0 => AttentionOut::ZeroLinear,
                AttentionConfig::NoOp => AttentionOut::None,
            };
            let ffn = match block.ffn {
                FfnConfig::SwiGlu { .. } => FfnOut::SwiGlu,
                FfnConfig::NoOp if attention == AttentionOut::None => FfnOut::None,
                FfnConfig::NoOp => FfnOut::ZeroSwiGlu,
                FfnConfig::Linear => {
                    return Err(format!(
                        "layer {i}: a linear FFN after an attention, which llama.cpp's `deci` graph has no path \
                         for (it computes a SwiGLU or nothing; a linear FFN alone is written as a linear attention)"
                    ));
                }
            };
            Ok((attention, ffn))
        })
        .collect::<Result<_, String>>()?;
    Ok((arch, layers))
}

/// Every tensor to write, in the converter's order: (GGUF name, shape, source).
fn tensor_sources(
    checkpoint: &impl TensorSource,
    path: &Path,
    arch: GgufArch,
    layers: &[(AttentionOut, FfnOut)],
    rope_freqs: Option<Vec<f32>>,
) -> Result<Vec<(String, Vec<usize>, Source)>, CheckpointError> {
    let config = checkpoint.config();
    let h = config.hidden_size;
    let mut out = Vec::new();
    if let Some(values) = rope_freqs {
        out.push((ROPE_FREQS.to_string(), vec![values.len()], Source::Values(values)));
    }
    let mut expected = expected_tensors(config).into_iter().peekable();
    // The embedding, before the layers.
    if let Some((hf, shape)) = expected.next_if(|(hf, _)| !hf.starts_with("model.layers.")) {
        out.push((gguf_name(&hf).expect("a global tensor"), shape, weight(hf, None)));
    }
    for (i, (attention, ffn)) in layers.iter().enumerate() {
        let prefix = format!("model.layers.{i}.");
        let interleave = |hf: &str| {
            let rows = |heads| arch.interleaved_rope().then_some(heads);
            if hf.contains("self_attn.q_proj.") {
                rows(config.num_attention_heads)
            } else if hf.contains("self_attn.k_proj.") {
                match attention {
                    AttentionOut::Gqa { kv_heads } => rows(*kv_heads),
                    _ => None,
                }
            } else {
                None
            }
        };
        while let Some((hf, shape)) = expected.next_if(|(hf, _)| hf.starts_with(&prefix)) {
            if hf.ends_with("self_attn.linear_attn.bias") {
                if checkpoint.tensor(&hf)?.values().iter().any(|&v| v != 0.0) {
                    return Err(CheckpointError::Unsupported {
                        path: path.to_path_buf(),
                        problem: format!(
                            "layer {i}: the linear attention has a non-zero bias (W_o·b_v of a parent with value \
                             biases), which llama.cpp's `deci` graph does not add"
                        ),
                    });
                }
                continue;
            }
            let name = match (attention, hf.strip_prefix(&prefix)) {
                (AttentionOut::LinearFfn, Some("post_attention_layernorm.weight")) => {
                    format!("blk.{i}.attn_norm.weight")
                }
                (AttentionOut::LinearFfn, Some("mlp.linear_mlp.weight")) => format!("blk.{i}.attn_output.weight"),
                _ => gguf_name(&hf).expect("every other tensor has a GGUF name"),
            };
            let source = weight(hf.clone(), interleave(&hf));
            out.push((name, shape, source));
        }
        let blk = |suffix: &str| format!("blk.{i}.{suffix}");
        if *attention == AttentionOut::ZeroLinear {
            out.push((blk("attn_norm.weight"), vec![h], Source::Ones));
            out.push((blk("attn_output.weight"), vec![h, h], Source::Zeros));
        }
        if *ffn == FfnOut::ZeroSwiGlu {
            let n = ZERO_FFN_WIDTH;
            out.push((blk("ffn_norm.weight"), vec![h], Source::Ones));
            out.push((blk("ffn_gate.weight"), vec![n, h], Source::Zeros));
            out.push((blk("ffn_up.weight"), vec![n, h], Source::Zeros));
            out.push((blk("ffn_down.weight"), vec![h, n], Source::Zeros));
        }
    }
    for (hf, shape) in expected {
        out.push((gguf_name(&hf).expect("a global tensor"), shape, weight(hf, None)));
    }
    Ok(out)
}

fn weight(hf: String, interleave: Option<usize>) -> Source {
    Source::Weight { hf, interleave }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::model::weights::random_weights;

    #[test]
    fn deci_encodes_what_llama_cpp_cannot_run_and_refuses_the_rest() {
        let mut config = ModelConfig::tiny_heterogeneous(64);
        // Layer 1's linear FFN after an attention has no llama.cpp path; alone, it is a linear
        // attention.
        let err = plan(&config).unwrap_err();
        assert!(err.starts_with("layer 1: a linear FFN after an attention"), "{err}");
        config.blocks[1].attention = AttentionConfig::NoOp;
        assert_eq!(
            plan(&config).unwrap().1[1],
            (AttentionOut::LinearFfn, FfnOut::ZeroSwiGlu)
        );
        config.blocks[1].ffn = FfnConfig::SwiGlu { intermediate: 64 };
        config.blocks[0].attention = AttentionConfig::NoOp;
        let (arch, layers) = plan(&config).unwrap();
        assert_eq!(arch, GgufArch::Deci);
        assert_eq!(layers[0].0, AttentionOut::ZeroLinear);
        assert_eq!(layers[4], (AttentionOut::Gqa { kv_heads: 2 }, FfnOut::ZeroSwiGlu));
        assert_eq!(layers[5], (AttentionOut::None, FfnOut::None));
        let mut qk = config.clone();
        qk.qk_norm = true;
        assert!(plan(&qk).unwrap_err().contains("q/k RMSNorm"));
        let mut window = ModelConfig::uniform(64, 64, 2, 4, 2, 64, 64);
        window.sliding_window = Some(16);
        assert!(plan(&window).unwrap_err().contains("sliding window"));
        window.sliding_window = Some(64);
        assert_eq!(plan(&window).unwrap().0, GgufArch::Llama);
        let checkpoint = Checkpoint {
            weights: random_weights(&config, 1),
            config,
            parent_layers: None,
        };
        let (arch, layers) = plan(&checkpoint.config).unwrap();
        let names: Vec<String> = tensor_sources(&checkpoint, Path::new("test.gguf"), arch, &layers, None)
            .unwrap()
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        assert!(names.contains(&"blk.0.attn_output.weight".to_string()));
        assert!(names.contains(&"blk.4.ffn_down.weight".to_string()));
        assert!(!names.iter().any(|n| n.starts_with("blk.5.")));
    }
}
