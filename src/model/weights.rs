//! Named host tensors in the HF / DeciLM layout (`[out, in]` matrices, rotate-half RoPE), and
//! the one mapping between those names and the model's modules. Every checkpoint format reads
//! and writes this map; none of them knows the burn module tree.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

use super::attention::{Attention, GqaAttention};
use super::config::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};
use super::ffn::{Ffn, SwiGlu};
use super::llama::{Block, Head, Llama};
use super::rope::Rope;

/// A dense f32 array on the host (ndarray), always kept in standard (row-major) layout.
pub type HostTensor = ArrayD<f32>;

/// Tensors by checkpoint name, sorted so that files are written deterministically.
pub type TensorMap = BTreeMap<String, HostTensor>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightError {
    #[error("tensor `{name}` is missing")]
    Missing { name: String },
    #[error("tensor `{name}` has shape {found:?}, but the config needs {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` is not part of a model with this config")]
    Unexpected { name: String },
}

/// A host tensor of `shape` holding `data` in row-major order.
pub fn host_tensor(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("data fills the shape")
}

/// Host tensors read as flat row-major values.
pub trait HostValues {
    fn values(&self) -> &[f32];
}

impl HostValues for HostTensor {
    fn values(&self) -> &[f32] {
        self.as_slice().expect("host tensors are kept in standard layout")
    }
}

/// A burn tensor copied to the host.
pub fn from_burn<const D: usize>(tensor: Tensor<D>) -> HostTensor {
    let shape = tensor.dims().to_vec();
    host_tensor(shape, to_host_vec(tensor))
}

/// A host tensor moved to `device`.
pub fn to_burn<const D: usize>(tensor: HostTensor, device: &Device) -> Tensor<D> {
    let shape = tensor.shape().to_vec();
    let data = tensor.into_raw_vec_and_offset().0;
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A matrix with its two axes swapped (`[out, in]` <-> burn's `[in, out]`), in standard layout.
pub fn transposed(matrix: &HostTensor) -> HostTensor {
    matrix.t().as_standard_layout().into_owned()
}

/// Copies a float tensor to the host as f32.
pub fn to_host_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("a float tensor converts to f32")
}

/// Every tensor name a model with `config` has, with its shape, in checkpoint order.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![embedding_tensor(config)];
    for (i, block) in config.blocks.iter().enumerate() {
        out.extend(block_tensors(config, i, block));
    }
    out.extend(head_tensors(config));
    out
}

/// The embedding table's name and shape.
fn embedding_tensor(config: &ModelConfig) -> (String, Vec<usize>) {
    (
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, config.hidden_size],
    )
}

/// The final norm's and (untied) LM head's names and shapes.
fn head_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let mut out = vec![("model.norm.weight".to_string(), vec![h])];
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}

/// The tensors of `block` placed at layer `layer` of a model shaped like `config` (the block's
/// own entry in `config.blocks` is not consulted): names and shapes, in checkpoint order.
pub fn block_tensors(config: &ModelConfig, layer: usize, block: &BlockConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let p = format!("model.layers.{layer}");
    let mut out = Vec::new();
    if block.attention != AttentionConfig::NoOp {
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
    }
    let bias = config.attention_bias;
    match block.attention {
        AttentionConfig::Gqa { kv_heads } => {
            let kv = kv_heads * config.head_dim;
            for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                out.push((format!("{p}.self_attn.{name}.weight"), vec![rows, h]));
                if bias.on_qkv() {
                    out.push((format!("{p}.self_attn.{name}.bias"), vec![rows]));
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            if bias.on_output() {
                out.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
            }
            if config.qk_norm {
                out.push((format!("{p}.self_attn.q_norm.weight"), vec![config.head_dim]));
                out.push((format!("{p}.self_attn.k_norm.weight"), vec![config.head_dim]));
            }
        }
        AttentionConfig::Linear => {
            out.push((format!("{p}.self_attn.linear_attn.weight"), vec![h, h]));
            // The folded value bias (`W_o · b_v`) of a parent whose projections have biases.
            if bias.on_qkv() {
                out.push((format!("{p}.self_attn.linear_attn.bias"), vec![h]));
            }
        }
        AttentionConfig::NoOp => {}
    }
    if block.ffn != FfnConfig::NoOp {
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    match block.ffn {
        FfnConfig::SwiGlu { intermediate: n } => {
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![n, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![n, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, n]));
        }
        FfnConfig::Linear => out.push((format!("{p}.mlp.linear_mlp.weight"), vec![h, h])),
        FfnConfig::NoOp => {}
    }
    out
}

/// Checks that `weights` holds exactly the tensors of `config` with the right shapes. Buffers
/// HF stores for RoPE (`rotary_emb.inv_freq`) are recomputed, so they are allowed and ignored.
pub fn check_weights(config: &ModelConfig, weights: &TensorMap) -> Result<(), WeightError> {
    check_tensors(&expected_tensors(config), weights)
}

/// Checks that `weights` holds exactly the `expected` tensors (RoPE buffers aside).
pub fn check_tensors(expected: &[(String, Vec<usize>)], weights: &TensorMap) -> Result<(), WeightError> {
    let shapes = weights.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
    check_shapes(expected, &shapes)
}

/// Checks that the tensors `found` (names and shapes) are exactly the `expected` ones (RoPE
/// buffers aside), before any value is read.
pub fn check_shapes(
    expected: &[(String, Vec<usize>)],
    found: &BTreeMap<String, Vec<usize>>,
) -> Result<(), WeightError> {
    for (name, shape) in expected {
        let found = found
            .get(name)
            .ok_or_else(|| WeightError::Missing { name: name.clone() })?;
        if found != shape {
            return Err(WeightError::Shape {
                name: name.clone(),
                expected: shape.clone(),
                found: found.clone(),
            });
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(name) = found
        .keys()
        .find(|n| !known.contains(n.as_str()) && !n.ends_with("rotary_emb.inv_freq"))
    {
        return Err(WeightError::Unexpected { name: name.clone() });
    }
    Ok(())
}

/// Builds the model from checkpoint tensors after checking them against the config.
pub fn build_model(config: &ModelConfig, weights: &TensorMap, device: &Device) -> Result<Llama, WeightError> {
    check_weights(config, weights)?;
    build_model_in_parts(config, device, |part| {
        Ok::<_, WeightError>(
            part.iter()
                .map(|(name, _)| (name.clone(), weights[name].clone()))
                .collect(),
        )
    })
}

/// Builds the model one part at a time: `part` is asked for the tensors (names and shapes) of
/// the embedding, of each layer in turn, then of the final norm and head, and what it gives is
/// checked against them, so that a caller reading from disk holds one part's host tensors
/// beside the model, never the whole checkpoint.
pub fn build_model_in_parts<E: From<WeightError>>(
    config: &ModelConfig,
    device: &Device,
    mut part: impl FnMut(&[(String, Vec<usize>)]) -> Result<TensorMap, E>,
) -> Result<Llama, E> {
    let mut checked = |expected: &[(String, Vec<usize>)]| -> Result<TensorMap, E> {
        let tensors = part(expected)?;
        check_tensors(expected, &tensors)?;
        Ok(tensors)
    };
    let embedding = embedding_tensor(config);
    let mut embed = checked(std::slice::from_ref(&embedding))?;
    let embed_tokens = Embedding {
        weight: Param::from_tensor(to_burn(embed.remove(&embedding.0).expect("checked"), device)),
    };
    let layers = config
        .blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let weights = checked(&block_tensors(config, i, block))?;
            Ok(assemble_block(config, i, block, &weights, device))
        })
        .collect::<Result<Vec<_>, E>>()?;
    let head = checked(&head_tensors(config))?;
    Ok(Llama {
        embed_tokens,
        layers,
        norm: norm_module(config, &head["model.norm.weight"], device),
        lm_head: (!config.tie_word_embeddings).then(|| linear_module(&head["lm_head.weight"], None, device)),
        rope: Rope::for_config(config),
        config: config.clone(),
    })
}

/// The final norm and LM head of a model with `config` from `weights`, which hold
/// `model.norm.weight` and `lm_head.weight` (the embedding matrix when the head is tied).
pub fn build_head(config: &ModelConfig, mut weights: TensorMap, device: &Device) -> Result<Head, WeightError> {
    let mut take = |name: &str| {
        weights
            .remove(name)
            .ok_or_else(|| WeightError::Missing { name: name.to_string() })
    };
    let norm = norm_module(config, &take("model.norm.weight")?, device);
    // The `[vocab, hidden]` matrix moved to the device and read through a transposed view
    // either way: no second copy of the largest tensor of most models.
    let name = if config.tie_word_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let weight = to_burn::<2>(take(name)?, device).transpose();
    Ok(Head { norm, weight })
}

/// Builds `block` as layer `layer` of a model shaped like `config` from its tensors (named as in
/// a checkpoint, `model.layers.{layer}.…`); `weights` must hold exactly those tensors.
pub fn build_block(
    config: &ModelConfig,
    layer: usize,
    block: &BlockConfig,
    weights: &TensorMap,
    device: &Device,
) -> Result<Block, WeightError> {
    check_tensors(&block_tensors(config, layer, block), weights)?;
    Ok(assemble_block(config, layer, block, weights, device))
}

fn linear_module(weight: &HostTensor, bias: Option<&HostTensor>, device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(to_burn(transposed(weight), device)),
        bias: bias.map(|b| Param::from_tensor(to_burn(b.clone(), device))),
    }
}

fn norm_module(config: &ModelConfig, gamma: &HostTensor, device: &Device) -> RmsNorm {
    RmsNorm {
        gamma: Param::from_tensor(to_burn(gamma.clone(), device)),
        epsilon: config.rms_norm_eps,
    }
}

/// Builds one block from tensors already checked against its config.
fn assemble_block(
    config: &ModelConfig,
    layer: usize,
    block: &BlockConfig,
    weights: &TensorMap,
    device: &Device,
) -> Block {
    let p = format!("model.layers.{layer}");
    // A linear map `NAME.weight` with its `NAME.bias` when the checkpoint has one.
    let linear = |name: &str| {
        let bias = weights.get(&format!("{p}.{name}.bias"));
        linear_module(&weights[&format!("{p}.{name}.weight")], bias, device)
    };
    let norm = |name: &str| norm_module(config, &weights[&format!("{p}.{name}")], device);
    let attention_op = match block.attention {
        AttentionConfig::Gqa { kv_heads } => Some(Attention::Gqa(GqaAttention {
            q_proj: linear("self_attn.q_proj"),
            k_proj: linear("self_attn.k_proj"),
            v_proj: linear("self_attn.v_proj"),
            o_proj: linear("self_attn.o_proj"),
            qk_norm: config
                .qk_norm
                .then(|| (norm("self_attn.q_norm.weight"), norm("self_attn.k_norm.weight"))),
            num_heads: config.num_attention_heads,
            kv_heads,
            head_dim: config.head_dim,
            window: config.sliding_window,
        })),
        AttentionConfig::Linear => Some(Attention::Linear(linear("self_attn.linear_attn"))),
        AttentionConfig::NoOp => None,
    };
    let ffn_op = match block.ffn {
        FfnConfig::SwiGlu { .. } => Some(Ffn::SwiGlu(SwiGlu {
            gate_proj: linear("mlp.gate_proj"),
            up_proj: linear("mlp.up_proj"),
            down_proj: linear("mlp.down_proj"),
        })),
        FfnConfig::Linear => Some(Ffn::Linear(linear("mlp.linear_mlp"))),
        FfnConfig::NoOp => None,
    };
    Block {
        attention: attention_op.map(|op| (norm("input_layernorm.weight"), op)),
        ffn: ffn_op.map(|op| (norm("post_attention_layernorm.weight"), op)),
    }
}

/// The model's tensors under their checkpoint names, in the checkpoint layout.
pub fn model_weights(model: &Llama) -> TensorMap {
    let mut out = TensorMap::new();
    out.insert(
        "model.embed_tokens.weight".into(),
        from_burn(model.embed_tokens.weight.val()),
    );
    for (i, block) in model.layers.iter().enumerate() {
        out.extend(block_weights(block, i));
    }
    out.insert("model.norm.weight".into(), from_burn(model.norm.gamma.val()));
    if let Some(head) = &model.lm_head {
        out.insert("lm_head.weight".into(), transposed(&from_burn(head.weight.val())));
    }
    out
}

/// One block's tensors under the checkpoint names of layer `layer`.
pub fn block_weights(block: &Block, layer: usize) -> TensorMap {
    let p = format!("model.layers.{layer}");
    let mut out = TensorMap::new();
    let put_linear = |out: &mut TensorMap, name: &str, l: &Linear| {
        out.insert(format!("{p}.{name}.weight"), transposed(&from_burn(l.weight.val())));
        if let Some(bias) = &l.bias {
            out.insert(format!("{p}.{name}.bias"), from_burn(bias.val()));
        }
    };
    if let Some((norm, attention)) = &block.attention {
        out.insert(format!("{p}.input_layernorm.weight"), from_burn(norm.gamma.val()));
        match attention {
            Attention::Gqa(a) => {
                put_linear(&mut out, "self_attn.q_proj", &a.q_proj);
                put_linear(&mut out, "self_attn.k_proj", &a.k_proj);
                put_linear(&mut out, "self_attn.v_proj", &a.v_proj);
                put_linear(&mut out, "self_attn.o_proj", &a.o_proj);
                if let Some((q_norm, k_norm)) = &a.qk_norm {
                    out.insert(format!("{p}.self_attn.q_norm.weight"), from_burn(q_norm.gamma.val()));
                    out.insert(format!("{p}.self_attn.k_norm.weight"), from_burn(k_norm.gamma.val()));
                }
            }
            Attention::Linear(l) => put_linear(&mut out, "self_attn.linear_attn", l),
        }
    }
    if let Some((norm, ffn)) = &block.ffn {
        out.insert(
            format!("{p}.post_attention_layernorm.weight"),
            from_burn(norm.gamma.val()),
        );
        match ffn {
            Ffn::SwiGlu(f) => {
                put_linear(&mut out, "mlp.gate_proj", &f.gate_proj);
                put_linear(&mut out, "mlp.up_proj", &f.up_proj);
                put_linear(&mut out, "mlp.down_proj", &f.down_proj);
            }
            Ffn::Linear(l) => put_linear(&mut out, "mlp.linear_mlp", l),
        }
    }
    out
}

/// The standard deviation of a fresh model's matrices and biases, before residual scaling.
pub const INIT_STD: f32 = 0.02;

/// How one tensor of a fresh model starts (see [`random_weights`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TensorInit {
    /// Norm weights: all ones.
    Ones,
    /// `scale` × N(0, [`INIT_STD`]): matrices and biases.
    Normal { scale: f32 },
}

impl TensorInit {
    /// The start of tensor `name` of `shape` in a model of `layers` layers: unit norms and
    /// N(0, 0.02) matrices and biases, except that the maps writing into the residual stream
    /// (`o_proj`, `down_proj`) are scaled by 1/√(2·layers), GPT-2's scheme.
    pub fn of(name: &str, shape: &[usize], layers: usize) -> Self {
        if shape.len() == 1 && !name.ends_with(".bias") {
            TensorInit::Ones
        } else if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
            TensorInit::Normal {
                scale: (2.0 * layers.max(1) as f32).powf(-0.5),
            }
        } else {
            TensorInit::Normal { scale: 1.0 }
        }
    }

    /// Fills `out` with this start's values, drawn from `rng` in order (nothing is drawn for ones).
    pub fn fill<R: rand::Rng + ?Sized>(self, rng: &mut R, out: &mut [f32]) {
        match self {
            TensorInit::Ones => out.fill(1.0),
            TensorInit::Normal { scale } => {
                let normal = Normal::new(0.0f32, INIT_STD).expect("valid normal");
                out.iter_mut().for_each(|v| *v = scale * normal.sample(rng));
            }
        }
    }
}

/// Seeded random weights for `config` (tests, benchmarks, training from scratch), each tensor
/// started as [`TensorInit::of`] says, drawn from one generator in checkpoint order. The residual
/// scaling matters: the default 8-layer parent after 560 steps, seed 1, answered 3.5% of
/// held-out tasks with plain N(0, 0.02), 33.5% with `o_proj` and `down_proj` scaled by ¼.
pub fn random_weights(config: &ModelConfig, seed: u64) -> TensorMap {
    random_part(
        &expected_tensors(config),
        config.num_layers(),
        &mut StdRng::seed_from_u64(seed),
    )
}

/// The model of [`random_weights`] (equal values), built one part at a time: one layer's host
/// tensors beside the model instead of the whole map, for the models profiling times.
pub fn random_model(config: &ModelConfig, seed: u64, device: &Device) -> Llama {
    let mut rng = StdRng::seed_from_u64(seed);
    build_model_in_parts(config, device, |part| {
        Ok::<_, WeightError>(random_part(part, config.num_layers(), &mut rng))
    })
    .expect("random parts fit the config")
}

/// The tensors `part` names, drawn from `rng` in order as [`TensorInit::of`] says for a model of
/// `layers` layers.
fn random_part(part: &[(String, Vec<usize>)], layers: usize, rng: &mut StdRng) -> TensorMap {
    part.iter()
        .map(|(name, shape)| {
            let mut data = vec![0.0; shape.iter().product()];
            TensorInit::of(name, shape, layers).fill(rng, &mut data);
            (name.clone(), host_tensor(shape.clone(), data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(weights: &TensorMap, name: &str) -> f64 {
        let data = weights[name].values();
        let mean_square = data.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / data.len() as f64;
        mean_square.sqrt()
    }

    #[test]
    fn a_random_model_built_in_parts_has_the_random_weights() {
        let mut config = ModelConfig::uniform(64, 48, 3, 4, 2, 96, 16);
        config.blocks[1] = BlockConfig {
            attention: AttentionConfig::Linear,
            ffn: FfnConfig::NoOp,
        };
        for tied in [true, false] {
            config.tie_word_embeddings = tied;
            let model = random_model(&config, 5, &Device::flex());
            assert_eq!(model_weights(&model), random_weights(&config, 5));
        }
    }

    #[test]
    fn residual_outputs_start_smaller_the_deeper_the_model() {
        for layers in [2, 8] {
            let config = ModelConfig::uniform(64, 64, layers, 4, 2, 128, 32);
            let weights = random_weights(&config, 5);
            let residual = 0.02 / (2.0 * layers as f64).sqrt();
            for (name, expected) in [
                ("model.layers.0.self_attn.q_proj.weight", 0.02),
                ("model.layers.0.mlp.up_proj.weight", 0.02),
                ("model.layers.1.self_attn.o_proj.weight", residual),
                ("model.layers.1.mlp.down_proj.weight", residual),
            ] {
                let measured = std_of(&weights, name);
                assert!(
                    (measured / expected - 1.0).abs() < 0.05,
                    "{name}: {measured} vs {expected}"
                );
            }
        }
    }
}
