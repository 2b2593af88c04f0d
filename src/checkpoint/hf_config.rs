//! `config.json` of HF Llama (`LlamaForCausalLM`, homogeneous) and DeciLM / `nemotron-nas`
//! (`DeciLMForCausalLM`, one `block_configs` entry per layer), to and from `ModelConfig`.
//!
//! DeciLM derives an FFN's width from `ffn_mult` as
//! `ceil_to_multiple(int(2 * ffn_mult * hidden / 3), 256)`. A width that rule cannot produce is
//! written as an extra `intermediate_size` key in that block's `ffn` entry, which tessera reads
//! first, so every child round-trips exactly.
//!
//! A child with fused layers also carries `parent_layers`: for each of its layers, the parent
//! layers `{first, last}` it stands for (serving engines ignore the key; distillation reads it).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::CheckpointError;
use super::splice::LayerSpan;
use crate::model::config::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};

/// Which `config.json` flavour a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFlavor {
    Llama,
    DeciLm,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    intermediate_size: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    bos_token_id: Option<Value>,
    #[serde(default)]
    eos_token_id: Option<Value>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    block_configs: Option<Vec<RawBlock>>,
}

#[derive(Deserialize, Serialize)]
struct RawBlock {
    attention: RawAttention,
    ffn: RawFfn,
}

#[derive(Deserialize, Serialize)]
struct RawAttention {
    #[serde(default)]
    no_op: bool,
    #[serde(default)]
    replace_with_linear: bool,
    #[serde(default)]
    n_heads_in_group: Option<usize>,
}

#[derive(Deserialize, Serialize)]
struct RawFfn {
    #[serde(default)]
    no_op: bool,
    #[serde(default)]
    replace_with_linear: bool,
    #[serde(default)]
    ffn_mult: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intermediate_size: Option<usize>,
}

fn default_max_positions() -> usize {
    2048
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}

/// The top-level `config.json` key of a fused child's layer spans.
pub const PARENT_LAYERS_KEY: &str = "parent_layers";

/// The `parent_layers` of a config with `layers` layers, checked: one span per layer, covering
/// parent layers from 0 in order without gaps. `None` when absent.
pub fn parse_parent_layers(path: &Path, text: &str, layers: usize) -> Result<Option<Vec<LayerSpan>>, CheckpointError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| CheckpointError::format(path, format!("invalid config: {e}")))?;
    let Some(raw) = value.get(PARENT_LAYERS_KEY).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |problem: String| CheckpointError::field(path, PARENT_LAYERS_KEY, problem);
    let spans: Vec<LayerSpan> = serde_json::from_value(raw.clone())
        .map_err(|e| bad(format!("expected a list of {{\"first\": i, \"last\": j}}: {e}")))?;
    if spans.len() != layers {
        return Err(bad(format!(
            "has {} entries but the model has {layers} layers",
            spans.len()
        )));
    }
    let mut next = 0;
    for (i, span) in spans.iter().enumerate() {
        if span.first != next || span.last < span.first {
            return Err(bad(format!(
                "entry {i} is {}..={}, but must start at parent layer {next} and not run backwards",
                span.first, span.last
            )));
        }
        next = span.last + 1;
    }
    Ok(Some(spans))
}

/// DeciLM's width rule (`_ffn_mult_to_intermediate_size`).
pub fn ffn_mult_to_intermediate(ffn_mult: f64, hidden: usize) -> usize {
    let raw = (2.0 * ffn_mult * hidden as f64 / 3.0) as usize;
    raw.div_ceil(256) * 256
}

fn token_id(path: &Path, field: &str, value: Option<Value>, default: u32) -> Result<u32, CheckpointError> {
    let bad = || CheckpointError::field(path, field, "expected a token id or a list of token ids");
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u32).ok_or_else(bad),
        // Llama 3 lists several end tokens; the first is the canonical one.
        Some(Value::Array(items)) => items.first().and_then(Value::as_u64).map(|n| n as u32).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// Refuses what tessera does not compute: another activation, RoPE scaling, biases.
fn check_supported(path: &Path, raw: &RawConfig) -> Result<(), CheckpointError> {
    if let Some(act) = &raw.hidden_act
        && act != "silu"
    {
        return Err(CheckpointError::field(
            path,
            "hidden_act",
            format!("`{act}` is not supported (only `silu`)"),
        ));
    }
    if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(CheckpointError::field(
            path,
            "rope_scaling",
            "RoPE scaling is not supported",
        ));
    }
    for (field, set) in [("attention_bias", raw.attention_bias), ("mlp_bias", raw.mlp_bias)] {
        if set {
            return Err(CheckpointError::field(path, field, "biases are not supported"));
        }
    }
    Ok(())
}

/// Every layer's block: DeciLM's `block_configs`, or one GQA + SwiGLU block repeated.
fn blocks_of(path: &Path, raw: &RawConfig, is_decilm: bool, heads: usize) -> Result<Vec<BlockConfig>, CheckpointError> {
    if is_decilm {
        let entries = raw
            .block_configs
            .as_ref()
            .ok_or_else(|| CheckpointError::field(path, "block_configs", "missing in a DeciLM config"))?;
        if entries.len() != raw.num_hidden_layers {
            return Err(CheckpointError::field(
                path,
                "block_configs",
                format!(
                    "has {} entries but num_hidden_layers is {}",
                    entries.len(),
                    raw.num_hidden_layers
                ),
            ));
        }
        return entries
            .iter()
            .enumerate()
            .map(|(i, b)| decilm_block(path, i, b, heads, raw.hidden_size))
            .collect();
    }
    let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(CheckpointError::field(
            path,
            "num_key_value_heads",
            format!("{kv_heads} does not divide num_attention_heads = {heads}"),
        ));
    }
    let intermediate = raw
        .intermediate_size
        .ok_or_else(|| CheckpointError::field(path, "intermediate_size", "missing"))?;
    Ok(vec![
        BlockConfig {
            attention: AttentionConfig::Gqa { kv_heads },
            ffn: FfnConfig::SwiGlu { intermediate }
        };
        raw.num_hidden_layers
    ])
}

/// Parses a `config.json`; `path` is used in errors only.
pub fn parse_config(path: &Path, text: &str) -> Result<(ModelConfig, ConfigFlavor), CheckpointError> {
    let raw: RawConfig =
        serde_json::from_str(text).map_err(|e| CheckpointError::format(path, format!("invalid config: {e}")))?;
    check_supported(path, &raw)?;
    let heads = raw.num_attention_heads;
    if heads == 0 || raw.hidden_size == 0 {
        return Err(CheckpointError::field(
            path,
            "num_attention_heads",
            "must be positive, as must hidden_size",
        ));
    }
    let is_decilm = raw.block_configs.is_some()
        || raw.model_type.as_deref() == Some("nemotron-nas")
        || raw.architectures.iter().any(|a| a == "DeciLMForCausalLM");
    let config = ModelConfig {
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        num_attention_heads: heads,
        head_dim: raw.head_dim.unwrap_or(raw.hidden_size / heads),
        max_position_embeddings: raw.max_position_embeddings,
        rope_theta: raw.rope_theta,
        rms_norm_eps: raw.rms_norm_eps,
        tie_word_embeddings: raw.tie_word_embeddings,
        bos_token_id: token_id(path, "bos_token_id", raw.bos_token_id.clone(), 1)?,
        eos_token_id: token_id(path, "eos_token_id", raw.eos_token_id.clone(), 2)?,
        blocks: blocks_of(path, &raw, is_decilm, heads)?,
    };
    config.validate().map_err(|cause| CheckpointError::Config {
        path: path.to_path_buf(),
        cause,
    })?;
    let flavor = if is_decilm {
        ConfigFlavor::DeciLm
    } else {
        ConfigFlavor::Llama
    };
    Ok((config, flavor))
}

fn decilm_block(
    path: &Path,
    i: usize,
    b: &RawBlock,
    heads: usize,
    hidden: usize,
) -> Result<BlockConfig, CheckpointError> {
    let field = |name: &str| format!("block_configs[{i}].{name}");
    let attention = match (b.attention.no_op, b.attention.replace_with_linear) {
        (true, true) => {
            return Err(CheckpointError::field(
                path,
                field("attention"),
                "no_op and replace_with_linear are both set",
            ));
        }
        (true, false) => AttentionConfig::NoOp,
        (false, true) => AttentionConfig::Linear,
        (false, false) => {
            let group = b
                .attention
                .n_heads_in_group
                .ok_or_else(|| CheckpointError::field(path, field("attention.n_heads_in_group"), "missing"))?;
            if group == 0 || !heads.is_multiple_of(group) {
                return Err(CheckpointError::field(
                    path,
                    field("attention.n_heads_in_group"),
                    format!("{group} does not divide num_attention_heads = {heads}"),
                ));
            }
            AttentionConfig::Gqa {
                kv_heads: heads / group,
            }
        }
    };
    let ffn = match (b.ffn.no_op, b.ffn.replace_with_linear) {
        (true, true) => {
            return Err(CheckpointError::field(
                path,
                field("ffn"),
                "no_op and replace_with_linear are both set",
            ));
        }
        (true, false) => FfnConfig::NoOp,
        (false, true) => FfnConfig::Linear,
        (false, false) => {
            let intermediate = match (b.ffn.intermediate_size, b.ffn.ffn_mult) {
                (Some(n), _) => n,
                (None, Some(mult)) if mult > 0.0 => ffn_mult_to_intermediate(mult, hidden),
                (None, Some(mult)) => {
                    return Err(CheckpointError::field(
                        path,
                        field("ffn.ffn_mult"),
                        format!("{mult} is not positive"),
                    ));
                }
                (None, None) => {
                    return Err(CheckpointError::field(path, field("ffn.ffn_mult"), "missing"));
                }
            };
            FfnConfig::SwiGlu { intermediate }
        }
    };
    Ok(BlockConfig { attention, ffn })
}

fn common_fields(config: &ModelConfig) -> serde_json::Map<String, Value> {
    let value = json!({
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers(),
        "num_attention_heads": config.num_attention_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_norm_eps,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "rope_scaling": null,
        "initializer_range": 0.02,
        "use_cache": true,
    });
    let Value::Object(map) = value else {
        unreachable!("json! of an object")
    };
    map
}

/// An HF `LlamaForCausalLM` config; `None` when the layers differ (only DeciLM can hold it).
pub fn llama_config_json(config: &ModelConfig, torch_dtype: &str) -> Option<Value> {
    let BlockConfig {
        attention: AttentionConfig::Gqa { kv_heads },
        ffn: FfnConfig::SwiGlu { intermediate },
    } = config.homogeneous_block()?
    else {
        return None;
    };
    let mut map = serde_json::Map::new();
    map.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    map.insert("model_type".into(), json!("llama"));
    map.extend(common_fields(config));
    map.insert("num_key_value_heads".into(), json!(kv_heads));
    map.insert("intermediate_size".into(), json!(intermediate));
    map.insert("torch_dtype".into(), json!(torch_dtype));
    Some(Value::Object(map))
}

/// A DeciLM / `nemotron-nas` config for any child.
pub fn decilm_config_json(config: &ModelConfig, torch_dtype: &str) -> Value {
    let hidden = config.hidden_size;
    let blocks: Vec<RawBlock> = config
        .blocks
        .iter()
        .map(|b| RawBlock {
            attention: RawAttention {
                no_op: b.attention == AttentionConfig::NoOp,
                replace_with_linear: b.attention == AttentionConfig::Linear,
                n_heads_in_group: match b.attention {
                    AttentionConfig::Gqa { kv_heads } => Some(config.num_attention_heads / kv_heads),
                    _ => None,
                },
            },
            ffn: match b.ffn {
                FfnConfig::SwiGlu { intermediate } => {
                    let ffn_mult = intermediate as f64 * 3.0 / (2.0 * hidden as f64);
                    let exact = ffn_mult_to_intermediate(ffn_mult, hidden) == intermediate;
                    RawFfn {
                        no_op: false,
                        replace_with_linear: false,
                        ffn_mult: Some(ffn_mult),
                        intermediate_size: (!exact).then_some(intermediate),
                    }
                }
                other => RawFfn {
                    no_op: other == FfnConfig::NoOp,
                    replace_with_linear: other == FfnConfig::Linear,
                    ffn_mult: None,
                    intermediate_size: None,
                },
            },
        })
        .collect();
    let mut map = serde_json::Map::new();
    map.insert("architectures".into(), json!(["DeciLMForCausalLM"]));
    map.insert("model_type".into(), json!("nemotron-nas"));
    map.extend(common_fields(config));
    map.insert(
        "block_configs".into(),
        serde_json::to_value(blocks).expect("block configs serialise"),
    );
    map.insert("torch_dtype".into(), json!(torch_dtype));
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffn_mult_rule_matches_nemotron_checkpoints() {
        // Llama-3.1-Nemotron-70B-derived children: hidden 8192, ffn_mult 5.25 is the parent's 28672.
        assert_eq!(ffn_mult_to_intermediate(5.25, 8192), 28672);
        // A width the rule rounds up to the next multiple of 256.
        assert_eq!(ffn_mult_to_intermediate(1.0, 4096), 2816);
        assert_eq!(ffn_mult_to_intermediate(0.5, 64), 256);
    }
}
