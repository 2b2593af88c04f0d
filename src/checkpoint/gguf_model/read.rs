//! Reading a GGUF model: the `ModelConfig` from its keys and tensors (every key accounted for:
//! read, known to be harmless, or refused by name), and its tensors under their HF names,
//! lazily, one at a time.

use std::collections::HashMap;
use std::path::Path;

use super::rope::{SCALING_KEYS, YARN_ATTN_FACTOR, YARN_DEFAULTS, llama3_from_divisors, scaling_from_keys};
use super::{GgufArch, GgufSlot, MAX_LAYERS, ROPE_FREQS, f32_as_decimal, gguf_name, hf_name, slot};
use crate::checkpoint::gguf::{GgufFile, MetaValue, TensorRef};
use crate::checkpoint::llama2c::permute_rope_rows;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::model::config::{AttentionBias, AttentionConfig, BlockConfig, Family, FfnConfig, ModelConfig, RopeScaling};
use crate::model::weights::{HostTensor, expected_tensors, host_tensor};

/// The `{arch}.` keys read here, besides the RoPE scaling keys of `rope`.
const ARCH_KEYS: [&str; 12] = [
    "block_count",
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.layer_norm_rms_epsilon",
    "attention.key_length",
    "attention.value_length",
    "rope.dimension_count",
    "rope.freq_base",
    "vocab_size",
];

/// `{arch}.` keys known to change nothing tessera computes.
const HARMLESS_ARCH_KEYS: [&str; 1] = [
    // Whether the model was fine-tuned with its RoPE scaling: bookkeeping.
    "rope.scaling.finetuned",
];

/// Key prefixes that describe rather than define the model: `general.*` (name, license,
/// provenance; its three structural keys, architecture, alignment and file type, are the
/// container's or checked here), `tokenizer.*` (read by `tokenizer::gguf`, which checks its own
/// keys) and `quantize.*` (llama-quantize's notes on the importance matrix it used).
const DESCRIPTIVE_PREFIXES: [&str; 3] = ["general.", "tokenizer.", "quantize."];

/// An open GGUF model: the file, its architecture, the config it describes and where each HF
/// tensor lies in it.
#[derive(Debug)]
pub struct GgufModel {
    file: GgufFile,
    arch: GgufArch,
    config: ModelConfig,
    /// (HF name, GGUF name) of every tensor, in checkpoint order.
    names: Vec<(String, String)>,
}

/// One tensor as the file stores it (type, shape, raw bytes), under its HF name.
#[derive(Clone, Copy, Debug)]
pub struct StoredTensor<'a> {
    pub tensor: TensorRef<'a>,
    /// `Some(heads)` when the rows are in llama.cpp's interleaved RoPE layout (q/k weights and
    /// biases of `llama` and `deci` files): within each of `heads` heads, row `2i + s` of the
    /// file is row `s·head_dim/2 + i` of tessera's rotate-half layout. Rows move whole, so the
    /// permutation applies to quantised rows as well.
    pub interleaved_heads: Option<usize>,
}

/// The heads, KV heads and FFN width llama.cpp reads for each layer.
struct LayerCounts {
    heads: Vec<u32>,
    kv_heads: Vec<u32>,
    ffn: Vec<u32>,
}

/// The file's architecture, one tessera reads, in a file that holds a model.
fn architecture_of(file: &GgufFile) -> Result<GgufArch, CheckpointError> {
    let path = file.path();
    let arch_name = file.get_str("general.architecture")?;
    let arch = GgufArch::from_name(arch_name).ok_or_else(|| {
        CheckpointError::field(
            path,
            "general.architecture",
            format!("`{arch_name}` is not an architecture tessera reads (llama, qwen2, qwen3, deci)"),
        )
    })?;
    if let Some(MetaValue::Str(kind)) = file.get("general.type")
        && kind != "model"
    {
        return Err(CheckpointError::field(
            path,
            "general.type",
            format!("`{kind}`: this file is not a model"),
        ));
    }
    Ok(arch)
}

/// The attention biases the tensors present (HF names first in `names`) describe.
fn attention_bias_of(path: &Path, names: &[(String, String)]) -> Result<AttentionBias, CheckpointError> {
    let has = |suffix: &str| names.iter().any(|(hf, _)| hf.ends_with(suffix));
    match (has("q_proj.bias"), has("o_proj.bias")) {
        (false, false) => Ok(AttentionBias::None),
        (true, false) => Ok(AttentionBias::Qkv),
        (true, true) => Ok(AttentionBias::QkvO),
        (false, true) => Err(CheckpointError::format(
            path,
            "`attn_output.bias` without q/k/v biases: tessera has no such layout",
        )),
    }
}

/// The embedding's rows, which a declared `<arch>.vocab_size` must equal.
fn vocab_size_of(file: &GgufFile, arch: GgufArch) -> Result<usize, CheckpointError> {
    let embedding = file.tensor("token_embd.weight")?;
    let vocab_size = embedding.shape().first().copied().unwrap_or(0);
    let key = arch.key("vocab_size");
    if let Some(declared) = file.get(&key).and_then(MetaValue::integer)
        && declared != vocab_size as i128
    {
        return Err(CheckpointError::field(
            file.path(),
            key,
            format!("{declared}, but `token_embd.weight` has {vocab_size} rows"),
        ));
    }
    Ok(vocab_size)
}

impl GgufModel {
    /// Opens `path` and derives the model it holds; no tensor data is read except what the
    /// config depends on (`rope_freqs.weight`, and in `deci` files the first bytes of the
    /// tensors that might encode removed sub-blocks).
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let file = GgufFile::open(path)?;
        let arch = architecture_of(&file)?;
        check_keys(&file, arch)?;
        let key = |suffix: &str| arch.key(suffix);
        let n_layers = file.get_u32(&key("block_count"))? as usize;
        if n_layers == 0 || n_layers > MAX_LAYERS {
            return Err(CheckpointError::field(
                path,
                key("block_count"),
                format!("{n_layers} layers (llama.cpp reads 1 to {MAX_LAYERS})"),
            ));
        }
        let counts = layer_counts(&file, arch, n_layers)?;
        let mut blocks = blocks_of(path, arch, &counts)?;
        let hidden = file.get_u32(&key("embedding_length"))? as usize;
        let (heads, head_dim) = heads_of(&file, arch, &blocks, &counts, hidden)?;
        let context_length = file.get_u32(&key("context_length"))? as usize;
        let theta = match file.get(&key("rope.freq_base")) {
            None => 10000.0,
            Some(_) => f32_as_decimal(file.get_f32(&key("rope.freq_base"))?),
        };
        let rope_scaling = rope_scaling_of(&file, arch, theta, head_dim, context_length)?;

        let names = tensor_names(&file, arch, &blocks)?;
        if arch == GgufArch::Deci {
            drop_zero_sub_blocks(&file, &names, &mut blocks);
        }
        let names: Vec<(String, String)> = names.into_iter().filter(|(hf, _)| !removed_by(hf, &blocks)).collect();
        let attention_bias = attention_bias_of(path, &names)?;
        let vocab_size = vocab_size_of(&file, arch)?;
        let (bos, eos) = special_tokens(&file)?;
        let config = ModelConfig {
            vocab_size,
            hidden_size: hidden,
            num_attention_heads: heads,
            head_dim,
            max_position_embeddings: context_length,
            rope_theta: theta,
            rms_norm_eps: f32_as_decimal(file.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
            tie_word_embeddings: !names.iter().any(|(hf, _)| hf == "lm_head.weight"),
            bos_token_id: bos,
            eos_token_id: eos,
            blocks,
            rope_scaling,
            attention_bias,
            qk_norm: arch.has_qk_norm(),
            sliding_window: None,
            family: match arch {
                GgufArch::Llama | GgufArch::Deci => Family::Llama,
                GgufArch::Qwen2 => Family::Qwen2,
                GgufArch::Qwen3 => Family::Qwen3,
            },
        };
        config.validate().map_err(|cause| CheckpointError::Config {
            path: path.to_path_buf(),
            cause,
        })?;
        let model = Self {
            file,
            arch,
            config,
            names,
        };
        model.check_shapes()?;
        Ok(model)
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The container, for its metadata (the tokenizer reads its keys from it).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn arch(&self) -> GgufArch {
        self.arch
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The HF names of the model's tensors, in checkpoint order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|(hf, _)| hf.as_str())
    }

    /// The tensor named `hf` as stored: nothing is read or converted.
    pub fn stored(&self, hf: &str) -> Result<StoredTensor<'_>, CheckpointError> {
        let (_, gguf) = self
            .names
            .iter()
            .find(|(name, _)| name == hf)
            .ok_or_else(|| CheckpointError::format(self.path(), format!("the model has no tensor `{hf}`")))?;
        Ok(StoredTensor {
            tensor: self.file.tensor(gguf)?,
            interleaved_heads: self.interleaved_heads(hf),
        })
    }

    /// The tensor named `hf` as f32 in tessera's layout (dequantised; q/k rows rotate-half).
    pub fn read_tensor(&self, hf: &str) -> Result<HostTensor, CheckpointError> {
        let stored = self.stored(hf)?;
        let tensor = host_tensor(stored.tensor.shape(), stored.tensor.to_f32()?);
        self.file.release(stored.tensor.data());
        Ok(match stored.interleaved_heads {
            Some(heads) => permute_rope_rows(&tensor, heads, true),
            None => tensor,
        })
    }

    /// Every tensor read and converted: the whole model in memory, as f32.
    pub fn to_checkpoint(&self) -> Result<Checkpoint, CheckpointError> {
        let weights = self
            .tensor_names()
            .map(|hf| Ok((hf.to_string(), self.read_tensor(hf)?)))
            .collect::<Result<_, CheckpointError>>()?;
        Ok(Checkpoint {
            config: self.config.clone(),
            weights,
            parent_layers: None,
        })
    }

    fn interleaved_heads(&self, hf: &str) -> Option<usize> {
        if !self.arch.interleaved_rope() {
            return None;
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, tensor) = rest.split_once('.')?;
        match tensor {
            "self_attn.q_proj.weight" | "self_attn.q_proj.bias" => Some(self.config.num_attention_heads),
            "self_attn.k_proj.weight" | "self_attn.k_proj.bias" => {
                match self.config.blocks.get(layer.parse::<usize>().ok()?)?.attention {
                    AttentionConfig::Gqa { kv_heads } => Some(kv_heads),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Every tensor the config needs is there with its shape, and no other.
    fn check_shapes(&self) -> Result<(), CheckpointError> {
        let stored: HashMap<&str, &str> = self.names.iter().map(|(h, g)| (h.as_str(), g.as_str())).collect();
        let expected = expected_tensors(&self.config);
        let problem = |p: String| Err(CheckpointError::format(self.path(), p));
        let arch = self.arch.name();
        for (hf, shape) in &expected {
            let gguf = gguf_name(hf).unwrap_or_else(|| hf.clone());
            let Some(name) = stored.get(hf.as_str()) else {
                return problem(format!(
                    "tensor `{gguf}` is missing: the `{arch}` model its keys describe needs it ({hf}, shape {shape:?})"
                ));
            };
            let found = self.file.tensor(name)?.shape();
            if found != *shape {
                return problem(format!(
                    "tensor `{name}` has shape {found:?} (outermost first), but the `{arch}` model its keys \
                     describe needs {shape:?}"
                ));
            }
        }
        if let Some((_, gguf)) = self.names.iter().find(|(hf, _)| !expected.iter().any(|(e, _)| e == hf)) {
            return problem(format!(
                "tensor `{gguf}` does not belong to the `{arch}` model its keys describe"
            ));
        }
        Ok(())
    }
}

/// Refuses the first key that is neither read, nor known to be harmless.
fn check_keys(file: &GgufFile, arch: GgufArch) -> Result<(), CheckpointError> {
    let prefix = format!("{}.", arch.name());
    for (key, value) in file.metadata() {
        let refuse = |problem: &str| Err(CheckpointError::field(file.path(), key, problem));
        if key == "split.count" && value.integer().is_some_and(|n| n > 1) {
            return refuse("one part of a split GGUF; merge the parts first (llama-gguf-split --merge)");
        }
        if DESCRIPTIVE_PREFIXES.iter().any(|p| key.starts_with(p)) || key.starts_with("split.") {
            continue;
        }
        let Some(suffix) = key.strip_prefix(&prefix) else {
            return refuse(&format!(
                "a key of neither the `{}` architecture nor the file's description; tessera does not know \
                 what it does and refuses rather than guess",
                arch.name()
            ));
        };
        let read = ARCH_KEYS
            .iter()
            .chain(&SCALING_KEYS)
            .chain(YARN_DEFAULTS.iter().map(|(k, _)| k))
            .chain([&YARN_ATTN_FACTOR])
            .chain(&HARMLESS_ARCH_KEYS)
            .any(|k| *k == suffix);
        if !read {
            return refuse(if suffix.starts_with("attention.sliding_window") {
                "a sliding window: llama.cpp's graph for this architecture has none, so the file does not say \
                 what it computes; tessera refuses rather than guess"
            } else {
                "tessera does not understand this key and it may change what the model computes; refusing \
                 rather than guessing"
            });
        }
    }
    Ok(())
}

/// `{arch}.{suffix}` as one value per layer: a scalar repeated, or an array of `n` entries.
fn per_layer(file: &GgufFile, key: &str, n: usize) -> Result<Vec<u32>, CheckpointError> {
    match file.get(key) {
        Some(MetaValue::Array(_)) => {
            let values = file.get_u32_array(key)?;
            if values.len() != n {
                return Err(CheckpointError::field(
                    file.path(),
                    key,
                    format!("{} values for {n} layers", values.len()),
                ));
            }
            Ok(values)
        }
        _ => Ok(vec![file.get_u32(key)?; n]),
    }
}

fn layer_counts(file: &GgufFile, arch: GgufArch, n: usize) -> Result<LayerCounts, CheckpointError> {
    let heads = per_layer(file, &arch.key("attention.head_count"), n)?;
    let kv_key = arch.key("attention.head_count_kv");
    let kv_heads = match file.get(&kv_key) {
        None => heads.clone(),
        Some(_) => per_layer(file, &kv_key, n)?,
    };
    Ok(LayerCounts {
        heads,
        kv_heads,
        ffn: per_layer(file, &arch.key("feed_forward_length"), n)?,
    })
}

/// Each layer's block as llama.cpp's graph for `arch` computes it: in `deci`, 0 heads is an
/// attention-free layer, heads without KV heads a linear attention, FFN length 0 no FFN.
fn blocks_of(path: &Path, arch: GgufArch, counts: &LayerCounts) -> Result<Vec<BlockConfig>, CheckpointError> {
    let deci = arch == GgufArch::Deci;
    (0..counts.heads.len())
        .map(|i| {
            let (heads, kv, ffn) = (counts.heads[i], counts.kv_heads[i], counts.ffn[i]);
            let bad = |key: &str, problem: String| Err(CheckpointError::field(path, arch.key(key), problem));
            let attention = match (heads, kv) {
                (0, 0) if deci => AttentionConfig::NoOp,
                (_, 0) if deci => AttentionConfig::Linear,
                (h, kv) if h > 0 && kv > 0 => AttentionConfig::Gqa { kv_heads: kv as usize },
                (h, kv) => {
                    return bad(
                        "attention.head_count",
                        format!(
                            "layer {i}: {h} heads, {kv} KV heads: only `deci` has attention-free and linear layers"
                        ),
                    );
                }
            };
            let ffn = match ffn {
                0 if deci => FfnConfig::NoOp,
                0 => {
                    return bad(
                        "feed_forward_length",
                        format!("layer {i}: 0: only `deci` has layers without an FFN"),
                    );
                }
                n => FfnConfig::SwiGlu {
                    intermediate: n as usize,
                },
            };
            Ok(BlockConfig { attention, ffn })
        })
        .collect()
}

/// The query heads (one count for every attention layer) and the head dim.
fn heads_of(
    file: &GgufFile,
    arch: GgufArch,
    blocks: &[BlockConfig],
    counts: &LayerCounts,
    hidden: usize,
) -> Result<(usize, usize), CheckpointError> {
    let path = file.path();
    let gqa: Vec<usize> = (0..blocks.len())
        .filter(|&i| matches!(blocks[i].attention, AttentionConfig::Gqa { .. }))
        .collect();
    let heads = match gqa.first() {
        Some(&first) => counts.heads[first] as usize,
        None => counts.heads.iter().copied().find(|&h| h > 0).unwrap_or(1) as usize,
    };
    if let Some(&i) = gqa.iter().find(|&&i| counts.heads[i] as usize != heads) {
        return Err(CheckpointError::field(
            path,
            arch.key("attention.head_count"),
            format!(
                "layer {i} has {} query heads and layer {} has {heads}: tessera keeps one count for every layer",
                counts.heads[i], gqa[0]
            ),
        ));
    }
    let optional = |suffix: &str| -> Result<Option<usize>, CheckpointError> {
        let key = arch.key(suffix);
        Ok(match file.get(&key) {
            None => None,
            Some(_) => Some(file.get_u32(&key)? as usize),
        })
    };
    let head_dim = match optional("attention.key_length")? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return Err(CheckpointError::field(
                path,
                arch.key("attention.key_length"),
                format!("missing, and {heads} heads do not divide the embedding length {hidden}"),
            ));
        }
    };
    for suffix in ["attention.value_length", "rope.dimension_count"] {
        if let Some(d) = optional(suffix)?
            && d != head_dim
        {
            return Err(CheckpointError::field(
                path,
                arch.key(suffix),
                format!("{d}, but heads are {head_dim} wide; tessera computes one head size and rotates all of it"),
            ));
        }
    }
    Ok((heads, head_dim))
}

fn rope_scaling_of(
    file: &GgufFile,
    arch: GgufArch,
    theta: f64,
    head_dim: usize,
    context_length: usize,
) -> Result<RopeScaling, CheckpointError> {
    let path = file.path();
    let from_keys = scaling_from_keys(file, arch, context_length)
        .map_err(|(key, problem)| CheckpointError::field(path, key, problem))?;
    let Ok(freqs) = file.tensor(ROPE_FREQS) else {
        return Ok(from_keys);
    };
    let refuse = |problem: String| {
        Err(CheckpointError::format(
            path,
            format!("tensor `{ROPE_FREQS}`: {problem}"),
        ))
    };
    if !arch.reads_rope_freqs() {
        return refuse(format!(
            "llama.cpp's `{}` graph ignores it, so the file does not say what it computes",
            arch.name()
        ));
    }
    if from_keys != RopeScaling::None {
        return refuse("together with `rope.scaling.*` keys: two scalings at once".into());
    }
    llama3_from_divisors(theta, head_dim, &freqs.to_f32()?).or_else(refuse)
}

/// (GGUF name, HF name) of every tensor but `rope_freqs.weight`; a tensor the architecture does
/// not have is refused by name.
fn tensor_names(
    file: &GgufFile,
    arch: GgufArch,
    blocks: &[BlockConfig],
) -> Result<Vec<(String, String)>, CheckpointError> {
    let mut names = Vec::new();
    for info in file.tensor_infos() {
        let name = info.name.as_str();
        if name == ROPE_FREQS {
            continue;
        }
        let allowed = |suffix: &str| match suffix {
            "attn_output.bias" => arch.has_output_bias(),
            "attn_q_norm.weight" | "attn_k_norm.weight" => arch.has_qk_norm(),
            _ => true,
        };
        let hf = match slot(name) {
            Some(GgufSlot::Global(hf)) => Some(hf.to_string()),
            Some(GgufSlot::Layer(i, suffix)) if i < blocks.len() && allowed(suffix) => {
                hf_name(i, suffix, blocks[i].attention == AttentionConfig::Linear)
            }
            _ => None,
        };
        let hf = hf.ok_or_else(|| {
            CheckpointError::format(
                file.path(),
                format!(
                    "tensor `{name}` is not part of a `{}` model as tessera reads it (fused `attn_qkv`, \
                     MoE, FFN biases and extra heads are not supported)",
                    arch.name()
                ),
            )
        })?;
        names.push((hf, name.to_string()));
    }
    names.sort_by_key(|(hf, _)| checkpoint_order(hf));
    Ok(names)
}

/// Sorts embedding first, layers in order, then the final norm and head (as `expected_tensors`).
fn checkpoint_order(hf: &str) -> (usize, usize, String) {
    match hf.strip_prefix("model.layers.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) => (1, layer.parse().unwrap_or(usize::MAX), rest.to_string()),
        None if hf == "model.embed_tokens.weight" => (0, 0, String::new()),
        None => (2, 0, hf.to_string()),
    }
}

/// tessera's exact `deci` encodings of what llama.cpp's graph cannot express (`write`), read
/// back as what they are: an all-zero linear attention adds nothing (attention-free layer 0),
/// nor does a SwiGLU whose down projection is all zeros (no FFN after an attention). All-zero
/// bytes are zero in every ggml type, and a real matrix has a non-zero byte early, so this reads
/// almost nothing.
fn drop_zero_sub_blocks(file: &GgufFile, names: &[(String, String)], blocks: &mut [BlockConfig]) {
    let zero = |hf: &str| {
        names
            .iter()
            .find(|(h, _)| h == hf)
            .and_then(|(_, g)| file.tensor(g).ok())
            .is_some_and(|t| t.data().iter().all(|&b| b == 0))
    };
    for (i, block) in blocks.iter_mut().enumerate() {
        if block.attention == AttentionConfig::Linear && zero(&format!("model.layers.{i}.self_attn.linear_attn.weight"))
        {
            block.attention = AttentionConfig::NoOp;
        }
        if matches!(block.ffn, FfnConfig::SwiGlu { .. }) && zero(&format!("model.layers.{i}.mlp.down_proj.weight")) {
            block.ffn = FfnConfig::NoOp;
        }
    }
}

/// Whether `hf` belongs to a sub-block that `drop_zero_sub_blocks` removed.
fn removed_by(hf: &str, blocks: &[BlockConfig]) -> bool {
    let Some((layer, rest)) = hf.strip_prefix("model.layers.").and_then(|r| r.split_once('.')) else {
        return false;
    };
    let Some(block) = layer.parse::<usize>().ok().and_then(|i| blocks.get(i)) else {
        return false;
    };
    let attention = rest == "input_layernorm.weight" || rest.starts_with("self_attn.");
    let ffn = rest == "post_attention_layernorm.weight" || rest.starts_with("mlp.");
    (attention && block.attention == AttentionConfig::NoOp) || (ffn && block.ffn == FfnConfig::NoOp)
}

/// BOS and EOS ids, with llama.cpp's defaults for the vocabulary type when the keys are absent.
fn special_tokens(file: &GgufFile) -> Result<(u32, u32), CheckpointError> {
    let (bos, eos) = match file.get("tokenizer.ggml.model") {
        Some(MetaValue::Str(m)) if m == "gpt2" => (11, 11),
        _ => (1, 2),
    };
    let id = |key: &str, default: u32| -> Result<u32, CheckpointError> {
        Ok(match file.get(key) {
            None => default,
            Some(_) => file.get_u32(key)?,
        })
    };
    Ok((
        id("tokenizer.ggml.bos_token_id", bos)?,
        id("tokenizer.ggml.eos_token_id", eos)?,
    ))
}
