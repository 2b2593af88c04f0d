//! `config.json` of the HF families tessera computes — `LlamaForCausalLM` (Llama 1–3.x),
//! `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM` — and of DeciLM /
//! `nemotron-nas` (`DeciLMForCausalLM`, one `block_configs` entry per layer), to and from
//! `ModelConfig`, as transformers 4.x (`rope_theta` + `rope_scaling`) and 5.x
//! (`rope_parameters`) write them.
//!
//! Every key is accounted for: a key that changes the computation is applied, or refused with an
//! error naming it; the keys known to change nothing at inference are listed in `IGNORED` (and
//! in `docs/formats.md`); any other key is refused, since tessera cannot know what it does.
//!
//! DeciLM derives an FFN's width from `ffn_mult` as
//! `ceil_to_multiple(int(2 * ffn_mult * hidden / 3), 256)`. A width that rule cannot produce is
//! written as an extra `intermediate_size` key in that block's `ffn` entry, which tessera reads
//! first, so every child round-trips exactly. A heterogeneous child of a Qwen parent is written
//! as DeciLM with two keys of tessera's own, `qkv_bias` and `qk_norm` (no serving engine reads
//! them; tessera reads them back exactly).
//!
//! A child with fused layers also carries `parent_layers`: for each of its layers, the parent
//! layers `{first, last}` it stands for (serving engines ignore the key; distillation reads it).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::CheckpointError;
use super::splice::LayerSpan;
use crate::model::config::{AttentionBias, AttentionConfig, BlockConfig, Family, FfnConfig, ModelConfig, RopeScaling};

/// Which `config.json` flavour a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFlavor {
    /// One of the HF families (`Llama`, `Mistral`, `Qwen2`, `Qwen3`).
    Hf(Family),
    DeciLm,
}

/// Keys that do not change what the model computes at inference: bookkeeping, generation
/// defaults, training-only settings. Every other key must be understood.
pub const IGNORED: &[&str] = &[
    "_name_or_path",
    "add_cross_attention",
    "architectures",
    "attention_dropout",
    "attn_implementation",
    "auto_map",
    "bad_words_ids",
    "begin_suppress_tokens",
    "bos_token_id",
    "chunk_size_feed_forward",
    "cross_attention_hidden_size",
    "decoder_start_token_id",
    "diversity_penalty",
    "do_sample",
    "dtype",
    "early_stopping",
    "encoder_no_repeat_ngram_size",
    "eos_token_id",
    "exponential_decay_length_penalty",
    "finetuning_task",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "id2label",
    "initializer_range",
    "is_decoder",
    "is_encoder_decoder",
    "label2id",
    "length_penalty",
    "max_length",
    "min_length",
    "model_type",
    "no_repeat_ngram_size",
    "num_beam_groups",
    "num_beams",
    "num_return_sequences",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "pad_token_id",
    "prefix",
    "pretraining_tp",
    "problem_type",
    "remove_invalid_values",
    "repetition_penalty",
    "return_dict",
    "return_dict_in_generate",
    "sep_token_id",
    "suppress_tokens",
    "task_specific_params",
    "temperature",
    "tf_legacy_loss",
    "tie_encoder_decoder",
    "tokenizer_class",
    "top_k",
    "top_p",
    "torch_dtype",
    "torchscript",
    "transformers_version",
    "typical_p",
    "use_bfloat16",
    "use_cache",
];

/// More layers than any real model has; a config asking for more is refused before tensors are
/// listed for them.
const MAX_LAYERS: usize = 10_000;

/// The top-level `config.json` key of a fused child's layer spans.
pub const PARENT_LAYERS_KEY: &str = "parent_layers";

/// A `config.json` being read: its keys, the ones read so far, and the file for errors.
struct Fields<'a> {
    path: &'a Path,
    map: Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn error(&self, field: &str, problem: impl Into<String>) -> CheckpointError {
        CheckpointError::field(self.path, field, problem)
    }

    /// The value of `key` (absent and `null` alike read as `None`), marked as understood.
    fn get(&mut self, key: &'static str) -> Option<Value> {
        self.used.push(key);
        self.map.get(key).filter(|v| !v.is_null()).cloned()
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, key: &'static str) -> Result<Option<T>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| self.error(key, format!("{value} is not valid here: {e}"))),
        }
    }

    fn required<T: serde::de::DeserializeOwned>(&mut self, key: &'static str) -> Result<T, CheckpointError> {
        self.parse(key)?.ok_or_else(|| self.error(key, "missing"))
    }

    fn or<T: serde::de::DeserializeOwned>(&mut self, key: &'static str, default: T) -> Result<T, CheckpointError> {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Errors on the first key that is neither understood nor known to be harmless.
    fn check_all_understood(&self) -> Result<(), CheckpointError> {
        match self
            .map
            .keys()
            .find(|k| !self.used.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()))
        {
            Some(key) => Err(self.error(
                key,
                "tessera does not understand this key and it may change what the model computes; \
                 refusing rather than guessing (docs/formats.md lists the keys it reads and ignores)",
            )),
            None => Ok(()),
        }
    }
}

/// The family a config declares through `architectures` (or, without it, `model_type`).
fn family_of(fields: &mut Fields) -> Result<ConfigFlavor, CheckpointError> {
    let architectures: Vec<String> = fields.or("architectures", Vec::new())?;
    let model_type: Option<String> = fields.parse("model_type")?;
    let known = [
        ("LlamaForCausalLM", "llama", ConfigFlavor::Hf(Family::Llama)),
        ("MistralForCausalLM", "mistral", ConfigFlavor::Hf(Family::Mistral)),
        ("Qwen2ForCausalLM", "qwen2", ConfigFlavor::Hf(Family::Qwen2)),
        ("Qwen3ForCausalLM", "qwen3", ConfigFlavor::Hf(Family::Qwen3)),
        ("DeciLMForCausalLM", "nemotron-nas", ConfigFlavor::DeciLm),
    ];
    let by_architecture = architectures.first().map(|a| {
        known
            .iter()
            .find(|(arch, _, _)| arch == a)
            .ok_or(("architectures", a.clone()))
    });
    let by_type = model_type
        .as_ref()
        .map(|t| known.iter().find(|(_, ty, _)| ty == t).ok_or(("model_type", t.clone())));
    let unknown = |(key, name): (&str, String)| {
        fields.error(
            key,
            format!(
                "`{name}` is not a family tessera computes (LlamaForCausalLM, MistralForCausalLM, \
                 Qwen2ForCausalLM, Qwen3ForCausalLM, DeciLMForCausalLM)"
            ),
        )
    };
    match (by_architecture, by_type) {
        (Some(found), _) => Ok(found.map_err(unknown)?.2),
        (None, Some(found)) => Ok(found.map_err(unknown)?.2),
        // A config without either is read as Llama, as tessera has always written its own.
        (None, None) => Ok(ConfigFlavor::Hf(Family::Llama)),
    }
}

/// `rope_theta` and the scaling, from transformers 5's `rope_parameters` or 4's top-level
/// `rope_theta` + `rope_scaling` (`type` or `rope_type`). A theta inside `rope_parameters` wins.
fn rope_of(fields: &mut Fields, max_positions: usize) -> Result<(f64, RopeScaling), CheckpointError> {
    let top_theta: Option<f64> = fields.parse("rope_theta")?;
    let (key, dict) = match (fields.get("rope_parameters"), fields.get("rope_scaling")) {
        (Some(_), Some(_)) => {
            return Err(fields.error(
                "rope_parameters",
                "both `rope_parameters` (transformers 5) and `rope_scaling` (transformers 4) are set",
            ));
        }
        (Some(p), None) => ("rope_parameters", p),
        (None, Some(s)) => ("rope_scaling", s),
        (None, None) => ("rope_parameters", json!({})),
    };
    let Value::Object(dict) = dict else {
        return Err(fields.error(key, "expected an object"));
    };
    let rope = RopeFields { fields, key, dict };
    let theta = rope.number("rope_theta")?.or(top_theta).unwrap_or(10000.0);
    let rope_type = rope.rope_type()?;
    let (scaling, allowed) = rope.scaling(&rope_type, max_positions)?;
    if let Some(p) = rope.number("partial_rotary_factor")?.filter(|p| *p != 1.0) {
        return Err(rope.error(
            "partial_rotary_factor",
            format!("{p}: partial rotation is not supported"),
        ));
    }
    let understood =
        |k: &str| ["rope_type", "type", "rope_theta", "partial_rotary_factor"].contains(&k) || allowed.contains(&k);
    if let Some(k) = rope.dict.keys().find(|k| !understood(k)) {
        return Err(rope.error(
            k,
            format!("not a parameter of RoPE type `{rope_type}` that tessera applies"),
        ));
    }
    Ok((theta, scaling))
}

/// The RoPE dictionary of a config (`rope_parameters` or `rope_scaling`, named `key`), read
/// field by field with errors naming `key.field`.
struct RopeFields<'f, 'a> {
    fields: &'f Fields<'a>,
    key: &'static str,
    dict: Map<String, Value>,
}

impl RopeFields<'_, '_> {
    fn error(&self, name: &str, problem: impl Into<String>) -> CheckpointError {
        self.fields.error(&format!("{}.{name}", self.key), problem)
    }

    fn number(&self, name: &str) -> Result<Option<f64>, CheckpointError> {
        match self.dict.get(name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(name, format!("{v} is not a number"))),
        }
    }

    fn required(&self, name: &str, rope_type: &str) -> Result<f64, CheckpointError> {
        self.number(name)?
            .ok_or_else(|| self.error(name, format!("missing for `{rope_type}`")))
    }

    fn original(&self, max_positions: usize) -> Result<usize, CheckpointError> {
        Ok(self
            .number("original_max_position_embeddings")?
            .map_or(max_positions, |v| v as usize))
    }

    fn rope_type(&self) -> Result<String, CheckpointError> {
        match (self.dict.get("rope_type"), self.dict.get("type")) {
            (Some(Value::String(t)), _) | (None, Some(Value::String(t))) => Ok(t.clone()),
            (None, None) => Ok("default".into()),
            (Some(other), _) | (None, Some(other)) => Err(self.error("rope_type", format!("{other} is not a name"))),
        }
    }

    /// The scaling `rope_type` describes and the parameters it takes.
    fn scaling(
        &self,
        rope_type: &str,
        max_positions: usize,
    ) -> Result<(RopeScaling, &'static [&'static str]), CheckpointError> {
        Ok(match rope_type {
            // `dynamic` changes nothing while sequences stay within `max_position_embeddings`, and
            // the model refuses longer ones.
            "default" | "dynamic" => (RopeScaling::None, &["factor"]),
            "linear" => (
                RopeScaling::Linear {
                    factor: self.required("factor", rope_type)?,
                },
                &["factor"],
            ),
            "llama3" => (
                RopeScaling::Llama3 {
                    factor: self.required("factor", rope_type)?,
                    low_freq_factor: self.required("low_freq_factor", rope_type)?,
                    high_freq_factor: self.required("high_freq_factor", rope_type)?,
                    original_max_position_embeddings: self.original(max_positions)?,
                },
                &[
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ],
            ),
            "yarn" => (
                self.yarn(max_positions)?,
                &[
                    "factor",
                    "original_max_position_embeddings",
                    "beta_fast",
                    "beta_slow",
                    "attention_factor",
                    "mscale",
                    "mscale_all_dim",
                    "truncate",
                ],
            ),
            other => {
                return Err(self.error(
                    "rope_type",
                    format!("RoPE type `{other}` is not supported (default, linear, llama3, yarn, dynamic)"),
                ));
            }
        })
    }

    /// YaRN's parameters with transformers' defaults, the attention factor from `mscale` and
    /// `mscale_all_dim` when it is not given.
    fn yarn(&self, max_positions: usize) -> Result<RopeScaling, CheckpointError> {
        let factor = self.required("factor", "yarn")?;
        let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
        let attention_factor = match (
            self.number("attention_factor")?,
            self.number("mscale")?,
            self.number("mscale_all_dim")?,
        ) {
            (Some(a), _, _) => a,
            (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(factor, m) / mscale(factor, all),
            _ => mscale(factor, 1.0),
        };
        let truncate = match self.dict.get("truncate") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(t)) => *t,
            Some(other) => return Err(self.error("truncate", format!("{other} is not true or false"))),
        };
        Ok(RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: self.original(max_positions)?,
            beta_fast: self.number("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0),
            beta_slow: self.number("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0),
            attention_factor,
            truncate,
        })
    }
}

/// The attention biases, q/k norms and sliding window the family's keys describe.
fn attention_of(fields: &mut Fields, family: Family) -> Result<(AttentionBias, bool, Option<usize>), CheckpointError> {
    let bias_flag: bool = match family {
        Family::Llama | Family::Qwen3 => fields.or("attention_bias", false)?,
        Family::Mistral | Family::Qwen2 => false,
    };
    let bias = match (family, bias_flag) {
        (Family::Qwen2, _) => AttentionBias::Qkv,
        (_, true) => AttentionBias::QkvO,
        (_, false) => AttentionBias::None,
    };
    let window = match family {
        Family::Llama => None,
        // transformers' class default when the key is absent.
        Family::Mistral => match fields.map.get("sliding_window") {
            None => Some(4096),
            Some(_) => fields.parse("sliding_window")?,
        },
        Family::Qwen2 | Family::Qwen3 => qwen_window(fields)?,
    };
    Ok((bias, family == Family::Qwen3, window))
}

/// Qwen's window: used only with `use_sliding_window`, and then only from layer
/// `max_window_layers` on (or where `layer_types` says). tessera applies one window to every
/// layer, so a window on some layers only is refused.
fn qwen_window(fields: &mut Fields) -> Result<Option<usize>, CheckpointError> {
    let layers: usize = fields.required("num_hidden_layers")?;
    let window: Option<usize> = fields.parse("sliding_window")?;
    let used = fields.or("use_sliding_window", false)?;
    let from: usize = fields.or("max_window_layers", 28)?;
    let types: Option<Vec<String>> = fields.parse("layer_types")?;
    let sliding: Vec<bool> = match &types {
        Some(types) => {
            if let Some(t) = types
                .iter()
                .find(|t| *t != "full_attention" && *t != "sliding_attention")
            {
                return Err(fields.error("layer_types", format!("`{t}` is not an attention type tessera knows")));
            }
            types.iter().map(|t| t == "sliding_attention").collect()
        }
        None => (0..layers).map(|i| used && window.is_some() && i >= from).collect(),
    };
    match (sliding.iter().any(|s| *s), sliding.iter().all(|s| *s), used, window) {
        (false, _, _, _) => Ok(None),
        (true, _, false, _) | (true, _, true, None) => Err(fields.error(
            "layer_types",
            "some layers slide but `use_sliding_window` is off or `sliding_window` is missing",
        )),
        (true, true, true, Some(w)) => Ok(Some(w)),
        (true, false, true, Some(_)) => Err(fields.error(
            "max_window_layers",
            "only some layers use the sliding window; tessera applies one window to every layer or none",
        )),
    }
}

/// Parses a `config.json`; `path` is used in errors only.
pub fn parse_config(path: &Path, text: &str) -> Result<(ModelConfig, ConfigFlavor), CheckpointError> {
    let map = match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(CheckpointError::format(path, "invalid config: expected a JSON object")),
        Err(e) => return Err(CheckpointError::format(path, format!("invalid config: {e}"))),
    };
    let mut fields = Fields {
        path,
        map,
        used: vec![PARENT_LAYERS_KEY],
    };
    let flavor = family_of(&mut fields)?;
    let mut family = match flavor {
        ConfigFlavor::Hf(family) => family,
        ConfigFlavor::DeciLm => Family::Llama,
    };
    let hidden_act: String = fields.or("hidden_act", "silu".to_string())?;
    if hidden_act != "silu" && hidden_act != "swish" {
        return Err(fields.error("hidden_act", format!("`{hidden_act}` is not supported (only `silu`)")));
    }
    if fields.or("mlp_bias", false)? {
        return Err(fields.error("mlp_bias", "FFN biases are not supported"));
    }
    for key in ["quantization_config", "pruned_heads"] {
        if fields.get(key).is_some_and(|v| v != json!({})) {
            return Err(fields.error(
                key,
                "quantised or pruned checkpoints are not supported; use the full weights",
            ));
        }
    }
    let heads: usize = fields.required("num_attention_heads")?;
    let hidden: usize = fields.required("hidden_size")?;
    if heads == 0 || hidden == 0 {
        return Err(fields.error("num_attention_heads", "must be positive, as must hidden_size"));
    }
    let default_head_dim = if family == Family::Qwen3 { 128 } else { hidden / heads };
    let max_positions = fields.or("max_position_embeddings", 2048)?;
    let (rope_theta, rope_scaling) = rope_of(&mut fields, max_positions)?;
    let (mut attention_bias, mut qk_norm, mut sliding_window) = attention_of(&mut fields, family)?;
    let blocks = match flavor {
        ConfigFlavor::DeciLm => {
            let (blocks, window) = decilm_blocks(&mut fields, heads, hidden)?;
            (attention_bias, qk_norm) = decilm_extensions(&mut fields)?;
            sliding_window = window;
            // The family a DeciLM child came from, as far as it shows (it changes no number).
            family = match (qk_norm, attention_bias, window) {
                (true, _, _) => Family::Qwen3,
                (false, AttentionBias::Qkv, _) => Family::Qwen2,
                (false, _, Some(_)) => Family::Mistral,
                _ => Family::Llama,
            };
            blocks
        }
        ConfigFlavor::Hf(_) => uniform_blocks(&mut fields, family, heads)?,
    };
    let config = ModelConfig {
        vocab_size: fields.required("vocab_size")?,
        hidden_size: hidden,
        num_attention_heads: heads,
        head_dim: fields.or("head_dim", default_head_dim)?,
        max_position_embeddings: max_positions,
        rope_theta,
        rms_norm_eps: fields.or("rms_norm_eps", 1e-6)?,
        tie_word_embeddings: fields.or("tie_word_embeddings", false)?,
        bos_token_id: token_id(&fields, "bos_token_id", 1)?,
        eos_token_id: token_id(&fields, "eos_token_id", 2)?,
        blocks,
        rope_scaling,
        attention_bias,
        qk_norm,
        sliding_window,
        family,
    };
    fields.check_all_understood()?;
    config.validate().map_err(|cause| CheckpointError::Config {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok((config, flavor))
}

/// Every layer of an HF family: GQA with `num_key_value_heads` (the family's default when
/// absent) and a SwiGLU of `intermediate_size`.
fn uniform_blocks(fields: &mut Fields, family: Family, heads: usize) -> Result<Vec<BlockConfig>, CheckpointError> {
    let default_kv = match family {
        Family::Llama => heads,
        Family::Mistral => 8,
        Family::Qwen2 | Family::Qwen3 => 32,
    };
    let kv_heads = fields.or("num_key_value_heads", default_kv)?;
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(fields.error(
            "num_key_value_heads",
            format!("{kv_heads} does not divide num_attention_heads = {heads}"),
        ));
    }
    let intermediate = fields.required("intermediate_size")?;
    let layers: usize = fields.required("num_hidden_layers")?;
    if layers > MAX_LAYERS {
        return Err(fields.error(
            "num_hidden_layers",
            format!("{layers} layers: more than {MAX_LAYERS} is not a real model (Llama 3.1 405B has 126)"),
        ));
    }
    Ok(vec![
        BlockConfig {
            attention: AttentionConfig::Gqa { kv_heads },
            ffn: FfnConfig::SwiGlu { intermediate }
        };
        layers
    ])
}

/// Token ids are bookkeeping (listed in `IGNORED`), but the first of each is kept.
fn token_id(fields: &Fields, field: &str, default: u32) -> Result<u32, CheckpointError> {
    let bad = || fields.error(field, "expected a token id or a list of token ids");
    match fields.map.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u32).ok_or_else(bad),
        // Llama 3 lists several end tokens; the first is the canonical one.
        Some(Value::Array(items)) => items.first().and_then(Value::as_u64).map(|n| n as u32).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    attention: RawAttention,
    ffn: RawFfn,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAttention {
    #[serde(default)]
    no_op: bool,
    #[serde(default)]
    replace_with_linear: bool,
    #[serde(default)]
    n_heads_in_group: Option<usize>,
    /// Sliding window; tessera writes the model's window here and applies it when every
    /// softmax layer has the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_length: Option<usize>,
    /// Sink attention: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_sink_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unshifted_sink: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    use_prefill_window_in_sink_attention: bool,
    /// Only a training-time gradient hook in DeciLM: nothing changes at inference.
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    sparsify: Option<Value>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFfn {
    #[serde(default)]
    no_op: bool,
    #[serde(default)]
    replace_with_linear: bool,
    #[serde(default)]
    ffn_mult: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intermediate_size: Option<usize>,
    /// As for attention: a training-time hook only.
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    sparsify: Option<Value>,
}

/// DeciLM's per-layer blocks and the window every softmax layer shares (if any).
fn decilm_blocks(
    fields: &mut Fields,
    heads: usize,
    hidden: usize,
) -> Result<(Vec<BlockConfig>, Option<usize>), CheckpointError> {
    for key in ["intermediate_size", "num_key_value_heads", "position_embedding_type"] {
        match (key, fields.get(key)) {
            (_, None) => {}
            ("position_embedding_type", Some(Value::String(t))) if t == "rope" => {}
            (_, Some(v)) => {
                return Err(fields.error(key, format!("{v}: a DeciLM config sets this per block (or not at all)")));
            }
        }
    }
    let raw: Vec<RawBlock> = fields.required("block_configs")?;
    let layers: usize = fields.required("num_hidden_layers")?;
    if raw.len() != layers {
        return Err(fields.error(
            "block_configs",
            format!("has {} entries but num_hidden_layers is {layers}", raw.len()),
        ));
    }
    let mut windows = Vec::new();
    let mut blocks = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let a = &b.attention;
        if a.num_sink_tokens.is_some() || a.unshifted_sink || a.use_prefill_window_in_sink_attention {
            return Err(fields.error(
                &format!("block_configs[{i}].attention"),
                "sink attention is not supported",
            ));
        }
        let block = decilm_block(fields, i, b, heads, hidden)?;
        if matches!(block.attention, AttentionConfig::Gqa { .. }) {
            windows.push(a.window_length);
        }
        blocks.push(block);
    }
    let window = windows.first().copied().flatten();
    if windows.iter().any(|w| *w != window) {
        return Err(fields.error(
            "block_configs",
            "the layers have different `window_length`s; tessera applies one window to every layer or none",
        ));
    }
    Ok((blocks, window))
}

/// tessera's own DeciLM keys for children of Qwen parents: `qkv_bias` (Qwen2's q/k/v biases)
/// and `qk_norm` (Qwen3's per-head norms); Llama's `attention_bias` means q, k, v and o.
fn decilm_extensions(fields: &mut Fields) -> Result<(AttentionBias, bool), CheckpointError> {
    let bias = match (fields.or("attention_bias", false)?, fields.or("qkv_bias", false)?) {
        (true, _) => AttentionBias::QkvO,
        (false, true) => AttentionBias::Qkv,
        (false, false) => AttentionBias::None,
    };
    Ok((bias, fields.or("qk_norm", false)?))
}

fn decilm_block(
    fields: &Fields,
    i: usize,
    b: &RawBlock,
    heads: usize,
    hidden: usize,
) -> Result<BlockConfig, CheckpointError> {
    let field = |name: &str| format!("block_configs[{i}].{name}");
    let attention = match (b.attention.no_op, b.attention.replace_with_linear) {
        (true, true) => {
            return Err(fields.error(&field("attention"), "no_op and replace_with_linear are both set"));
        }
        (true, false) => AttentionConfig::NoOp,
        (false, true) => AttentionConfig::Linear,
        (false, false) => {
            let group = b
                .attention
                .n_heads_in_group
                .ok_or_else(|| fields.error(&field("attention.n_heads_in_group"), "missing"))?;
            if group == 0 || !heads.is_multiple_of(group) {
                return Err(fields.error(
                    &field("attention.n_heads_in_group"),
                    format!("{group} does not divide num_attention_heads = {heads}"),
                ));
            }
            AttentionConfig::Gqa {
                kv_heads: heads / group,
            }
        }
    };
    let ffn = match (b.ffn.no_op, b.ffn.replace_with_linear) {
        (true, true) => return Err(fields.error(&field("ffn"), "no_op and replace_with_linear are both set")),
        (true, false) => FfnConfig::NoOp,
        (false, true) => FfnConfig::Linear,
        (false, false) => {
            let intermediate = match (b.ffn.intermediate_size, b.ffn.ffn_mult) {
                (Some(n), _) => n,
                (None, Some(mult)) if mult > 0.0 => ffn_mult_to_intermediate(mult, hidden),
                (None, Some(mult)) => {
                    return Err(fields.error(&field("ffn.ffn_mult"), format!("{mult} is not positive")));
                }
                (None, None) => return Err(fields.error(&field("ffn.ffn_mult"), "missing")),
            };
            FfnConfig::SwiGlu { intermediate }
        }
    };
    Ok(BlockConfig { attention, ffn })
}

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

/// `rope_theta` and `rope_scaling` as transformers 4 writes them (transformers 5 reads them too).
fn rope_fields(config: &ModelConfig) -> Value {
    let scaling = match config.rope_scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => json!({ "rope_type": "linear", "factor": factor }),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            beta_fast,
            beta_slow,
            attention_factor,
            truncate,
        } => json!({
            "rope_type": "yarn",
            "factor": factor,
            "original_max_position_embeddings": original_max_position_embeddings,
            "beta_fast": beta_fast,
            "beta_slow": beta_slow,
            "attention_factor": attention_factor,
            "truncate": truncate,
        }),
    };
    json!({ "rope_theta": config.rope_theta, "rope_scaling": scaling })
}

fn common_fields(config: &ModelConfig, torch_dtype: &str) -> Map<String, Value> {
    let value = json!({
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers(),
        "num_attention_heads": config.num_attention_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "use_cache": true,
        "torch_dtype": torch_dtype,
    });
    let (Value::Object(mut map), Value::Object(rope)) = (value, rope_fields(config)) else {
        unreachable!("json! of objects")
    };
    map.extend(rope);
    map
}

/// The config of a homogeneous child in its family's own HF layout (`LlamaForCausalLM`,
/// `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`); `None` when the layers differ
/// (DeciLM holds those).
pub fn family_config_json(config: &ModelConfig, torch_dtype: &str) -> Option<Value> {
    let BlockConfig {
        attention: AttentionConfig::Gqa { kv_heads },
        ffn: FfnConfig::SwiGlu { intermediate },
    } = config.homogeneous_block()?
    else {
        return None;
    };
    let mut map = common_fields(config, torch_dtype);
    let (architecture, model_type) = match config.family {
        Family::Llama => ("LlamaForCausalLM", "llama"),
        Family::Mistral => ("MistralForCausalLM", "mistral"),
        Family::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Family::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
    };
    map.insert("architectures".into(), json!([architecture]));
    map.insert("model_type".into(), json!(model_type));
    map.insert("num_key_value_heads".into(), json!(kv_heads));
    map.insert("intermediate_size".into(), json!(intermediate));
    let window = config.sliding_window;
    match config.family {
        Family::Llama => {
            map.insert("attention_bias".into(), json!(config.attention_bias.on_qkv()));
            map.insert("mlp_bias".into(), json!(false));
        }
        Family::Mistral => {
            map.insert("sliding_window".into(), json!(window));
        }
        Family::Qwen2 | Family::Qwen3 => {
            map.insert("use_sliding_window".into(), json!(window.is_some()));
            map.insert("sliding_window".into(), json!(window));
            map.insert("max_window_layers".into(), json!(0));
            if config.family == Family::Qwen3 {
                map.insert("attention_bias".into(), json!(config.attention_bias.on_output()));
            }
        }
    }
    // A family whose layout cannot say what this config computes is written as DeciLM.
    let (expected_bias, expected_norm) = match config.family {
        Family::Qwen2 => (AttentionBias::Qkv, false),
        Family::Qwen3 => (config.attention_bias, true),
        Family::Mistral => (AttentionBias::None, false),
        Family::Llama => (config.attention_bias, false),
    };
    let expressible = config.attention_bias == expected_bias
        && config.qk_norm == expected_norm
        && (config.attention_bias != AttentionBias::Qkv || config.family == Family::Qwen2)
        && (window.is_none() || config.family != Family::Llama);
    expressible.then_some(Value::Object(map))
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
                window_length: match b.attention {
                    AttentionConfig::Gqa { .. } => config.sliding_window,
                    _ => None,
                },
                num_sink_tokens: None,
                unshifted_sink: false,
                use_prefill_window_in_sink_attention: false,
                sparsify: None,
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
                        sparsify: None,
                    }
                }
                other => RawFfn {
                    no_op: other == FfnConfig::NoOp,
                    replace_with_linear: other == FfnConfig::Linear,
                    ffn_mult: None,
                    intermediate_size: None,
                    sparsify: None,
                },
            },
        })
        .collect();
    let mut map = common_fields(config, torch_dtype);
    map.insert("architectures".into(), json!(["DeciLMForCausalLM"]));
    map.insert("model_type".into(), json!("nemotron-nas"));
    map.insert(
        "attention_bias".into(),
        json!(config.attention_bias == AttentionBias::QkvO),
    );
    if config.attention_bias == AttentionBias::Qkv {
        map.insert("qkv_bias".into(), json!(true));
    }
    if config.qk_norm {
        map.insert("qk_norm".into(), json!(true));
    }
    map.insert("mlp_bias".into(), json!(false));
    map.insert(
        "block_configs".into(),
        serde_json::to_value(blocks).expect("block configs serialise"),
    );
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

    fn parse(text: &str) -> Result<ModelConfig, String> {
        parse_config(Path::new("config.json"), text)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    const BASE: &str = r#""vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32"#;

    #[test]
    fn both_transformers_styles_give_one_rope() {
        let v4 = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_theta": 500000.0, "rope_scaling": {{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}}}"#
        ))
        .unwrap();
        let v5 = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_parameters": {{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"}}}}"#
        ))
        .unwrap();
        assert_eq!(v4, v5);
        assert_eq!(v5.rope_theta, 500000.0);
        assert!(matches!(v5.rope_scaling, RopeScaling::Llama3 { factor: 8.0, .. }));
        let theta_only = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_parameters": {{"rope_theta": 123.0, "rope_type": "default"}}}}"#
        ))
        .unwrap();
        assert_eq!(
            (theta_only.rope_theta, theta_only.rope_scaling),
            (123.0, RopeScaling::None)
        );
        // A whole rotation, said explicitly, is the rotation tessera applies.
        let whole = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_parameters": {{"rope_theta": 123.0, "rope_type": "default", "partial_rotary_factor": 1.0}}}}"#
        ))
        .unwrap();
        assert_eq!(whole, theta_only);
    }

    #[test]
    fn what_changes_the_maths_and_is_not_understood_is_refused() {
        for (extra, key) in [
            (
                r#""rope_scaling": {"type": "longrope", "factor": 2.0}"#,
                "rope_scaling.rope_type",
            ),
            (
                r#""rope_parameters": {"rope_type": "linear", "factor": 2.0, "extra_knob": 1}"#,
                "rope_parameters.extra_knob",
            ),
            (r#""hidden_act": "gelu""#, "hidden_act"),
            (r#""mlp_bias": true"#, "mlp_bias"),
            (r#""logit_softcapping": 30.0"#, "logit_softcapping"),
            (
                r#""rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}"#,
                "partial_rotary_factor",
            ),
        ] {
            let error = parse(&format!(
                r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, {extra}}}"#
            ))
            .unwrap_err();
            assert!(error.contains(key), "{extra}: {error}");
        }
        let family = parse(&format!(r#"{{"architectures": ["GemmaForCausalLM"], {BASE}}}"#)).unwrap_err();
        assert!(family.contains("GemmaForCausalLM"), "{family}");
    }

    #[test]
    fn families_bring_their_own_pieces() {
        let qwen2 = parse(&format!(r#"{{"architectures": ["Qwen2ForCausalLM"], {BASE}, "use_sliding_window": false, "sliding_window": 4096, "max_window_layers": 28}}"#)).unwrap();
        assert_eq!(
            (qwen2.attention_bias, qwen2.qk_norm, qwen2.sliding_window),
            (AttentionBias::Qkv, false, None)
        );
        let qwen3 = parse(&format!(
            r#"{{"architectures": ["Qwen3ForCausalLM"], {BASE}, "head_dim": 8}}"#
        ))
        .unwrap();
        assert_eq!(
            (qwen3.attention_bias, qwen3.qk_norm, qwen3.head_dim),
            (AttentionBias::None, true, 8)
        );
        let mistral = parse(&format!(
            r#"{{"architectures": ["MistralForCausalLM"], {BASE}, "sliding_window": 8}}"#
        ))
        .unwrap();
        assert_eq!(mistral.sliding_window, Some(8));
        let partly = parse(&format!(r#"{{"architectures": ["Qwen2ForCausalLM"], {BASE}, "use_sliding_window": true, "sliding_window": 8, "max_window_layers": 1}}"#)).unwrap_err();
        assert!(partly.contains("max_window_layers"), "{partly}");
    }
}
