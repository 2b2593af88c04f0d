//! llama2.c `.bin` checkpoints: the legacy layout (seven int32 then fp32 weights, RoPE tables
//! included, negative vocab = untied head) and version 1 (magic `ak42`, 256-byte header).
//! llama2.c uses the interleaved RoPE layout; q/k rows are permuted to rotate-half on import
//! and back on export, which moves values without changing them.

use std::fs;
use std::path::Path;

use super::error::CheckpointError;
use crate::model::config::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig};
use crate::model::weights::{HostTensor, HostValues, TensorMap, expected_tensors, host_tensor};

const MAGIC: u32 = 0x616b_3432;
const V1_HEADER_BYTES: usize = 256;
const LEGACY_HEADER_BYTES: usize = 28;

/// Which on-disk layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Llama2cVersion {
    Legacy,
    V1,
}

struct Header {
    dim: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    seq_len: usize,
    shared_classifier: bool,
}

/// Permutes the rows of a `[heads * head_dim, cols]` matrix (or a `[heads * head_dim]` bias)
/// between the interleaved RoPE layout (pairs `2i, 2i+1`) and rotate-half (pairs
/// `i, i + head_dim/2`). GGUF's `llama` and `deci` files use the interleaved layout too.
pub(crate) fn permute_rope_rows(t: &HostTensor, heads: usize, to_rotate_half: bool) -> HostTensor {
    let rows = t.shape()[0];
    let (cols, head_dim) = (t.len() / rows.max(1), rows / heads);
    let half = head_dim / 2;
    let values = t.values();
    let mut data = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let interleaved = h * head_dim + 2 * i + j;
                let rotate_half = h * head_dim + j * half + i;
                let (src, dst) = if to_rotate_half {
                    (interleaved, rotate_half)
                } else {
                    (rotate_half, interleaved)
                };
                data[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    host_tensor(t.shape().to_vec(), data)
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<(Header, usize), CheckpointError> {
    let int = |i: usize| -> Result<i32, CheckpointError> {
        bytes
            .get(i * 4..i * 4 + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| CheckpointError::format(path, format!("truncated llama2.c header: {} bytes", bytes.len())))
    };
    let is_v1 = int(0)? as u32 == MAGIC;
    let (first, data_start) = if is_v1 {
        let version = int(1)?;
        if version != 1 {
            return Err(CheckpointError::format(
                path,
                format!("llama2.c version {version} is not supported (only legacy and version 1)"),
            ));
        }
        (2, V1_HEADER_BYTES)
    } else {
        (0, LEGACY_HEADER_BYTES)
    };
    let names = [
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ];
    let mut values = [0i32; 7];
    for (k, value) in values.iter_mut().enumerate() {
        *value = int(first + k)?;
    }
    for (k, name) in names.iter().enumerate() {
        let v = values[k];
        if v == 0 || (v < 0 && *name != "vocab_size") {
            return Err(CheckpointError::field(path, *name, format!("{v} is not a valid size")));
        }
    }
    let shared_classifier = if is_v1 {
        *bytes
            .get(36)
            .ok_or_else(|| CheckpointError::format(path, "truncated llama2.c version 1 header"))?
            != 0
    } else {
        values[5] > 0
    };
    let [dim, hidden, layers, heads, kv_heads, vocab, seq_len] = values.map(|v| v.unsigned_abs() as usize);
    if bytes.len() < data_start {
        return Err(CheckpointError::format(
            path,
            format!("truncated llama2.c header: {} bytes", bytes.len()),
        ));
    }
    if dim % heads != 0 || heads % kv_heads != 0 {
        return Err(CheckpointError::field(
            path,
            "n_heads",
            format!("dim {dim}, n_heads {heads} and n_kv_heads {kv_heads} do not divide"),
        ));
    }
    Ok((
        Header {
            dim,
            hidden,
            layers,
            heads,
            kv_heads,
            vocab,
            seq_len,
            shared_classifier,
        },
        data_start,
    ))
}

fn config_of(h: &Header) -> ModelConfig {
    ModelConfig {
        tie_word_embeddings: h.shared_classifier,
        ..ModelConfig::uniform(h.vocab, h.dim, h.layers, h.heads, h.kv_heads, h.hidden, h.seq_len)
    }
}

/// One entry of the on-disk sequence: a per-layer tensor (HF name part), a single tensor, or
/// one of the legacy RoPE tables (`[seq_len, head_dim / 2]`, recomputed, so skipped on import).
enum Entry {
    PerLayer(&'static str),
    Single(&'static str),
    RopeTable { cos: bool },
}

/// What the file holds, in order.
enum Item {
    Tensor(String, Vec<usize>),
    RopeTable { cos: bool },
}

impl Item {
    fn floats(&self, h: &Header) -> usize {
        match self {
            Item::Tensor(_, shape) => shape.iter().product(),
            Item::RopeTable { .. } => h.seq_len * (h.dim / h.heads) / 2,
        }
    }
}

fn layout(version: Llama2cVersion, h: &Header) -> Vec<Entry> {
    use Entry::*;
    let mut entries = match version {
        Llama2cVersion::Legacy => vec![
            Single("model.embed_tokens.weight"),
            PerLayer("input_layernorm"),
            PerLayer("self_attn.q_proj"),
            PerLayer("self_attn.k_proj"),
            PerLayer("self_attn.v_proj"),
            PerLayer("self_attn.o_proj"),
            PerLayer("post_attention_layernorm"),
            PerLayer("mlp.gate_proj"),
            PerLayer("mlp.down_proj"),
            PerLayer("mlp.up_proj"),
            Single("model.norm.weight"),
            RopeTable { cos: true },
            RopeTable { cos: false },
        ],
        Llama2cVersion::V1 => vec![
            PerLayer("input_layernorm"),
            PerLayer("post_attention_layernorm"),
            Single("model.norm.weight"),
            Single("model.embed_tokens.weight"),
            PerLayer("self_attn.q_proj"),
            PerLayer("self_attn.k_proj"),
            PerLayer("self_attn.v_proj"),
            PerLayer("self_attn.o_proj"),
            PerLayer("mlp.gate_proj"),
            PerLayer("mlp.down_proj"),
            PerLayer("mlp.up_proj"),
        ],
    };
    if !h.shared_classifier {
        entries.push(Single("lm_head.weight"));
    }
    entries
}

fn file_order(version: Llama2cVersion, h: &Header, config: &ModelConfig) -> Vec<Item> {
    let shapes: std::collections::HashMap<String, Vec<usize>> = expected_tensors(config).into_iter().collect();
    let mut order = Vec::new();
    for entry in layout(version, h) {
        match entry {
            Entry::Single(name) => order.push(Item::Tensor(name.to_string(), shapes[name].clone())),
            Entry::PerLayer(part) => {
                for i in 0..h.layers {
                    let name = format!("model.layers.{i}.{part}.weight");
                    let shape = shapes[&name].clone();
                    order.push(Item::Tensor(name, shape));
                }
            }
            Entry::RopeTable { cos } => order.push(Item::RopeTable { cos }),
        }
    }
    order
}

fn rope_row_permutation(name: &str, h: &Header) -> Option<usize> {
    if name.ends_with("q_proj.weight") {
        Some(h.heads)
    } else if name.ends_with("k_proj.weight") {
        Some(h.kv_heads)
    } else {
        None
    }
}

/// Reads a llama2.c checkpoint into HF-layout tensors.
/// The configuration alone, from the header (the weights are not read).
pub fn read_config(path: &Path) -> Result<ModelConfig, CheckpointError> {
    use std::io::Read;
    let mut header = Vec::with_capacity(V1_HEADER_BYTES);
    fs::File::open(path)
        .and_then(|f| f.take(V1_HEADER_BYTES as u64).read_to_end(&mut header))
        .map_err(CheckpointError::io(path))?;
    Ok(config_of(&parse_header(path, &header)?.0))
}

pub fn read(path: &Path) -> Result<(ModelConfig, TensorMap), CheckpointError> {
    let bytes = fs::read(path).map_err(CheckpointError::io(path))?;
    let (header, data_start) = parse_header(path, &bytes)?;
    let version = if data_start == V1_HEADER_BYTES {
        Llama2cVersion::V1
    } else {
        Llama2cVersion::Legacy
    };
    let config = config_of(&header);
    let order = file_order(version, &header, &config);
    let needed: usize = order.iter().map(|item| item.floats(&header)).sum::<usize>() * 4;
    let available = bytes.len() - data_start;
    if available < needed {
        return Err(CheckpointError::format(
            path,
            format!(
                "truncated llama2.c checkpoint: the header needs {needed} bytes of weights, the file has {available}"
            ),
        ));
    }
    if available > needed {
        return Err(CheckpointError::format(
            path,
            format!(
                "{} unexpected bytes after the weights: the header does not describe this file",
                available - needed
            ),
        ));
    }
    let mut floats = bytes[data_start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut tensors = TensorMap::new();
    for item in order {
        let count = item.floats(&header);
        match item {
            Item::RopeTable { .. } => floats.by_ref().take(count).for_each(drop),
            Item::Tensor(name, shape) => {
                let mut t = host_tensor(shape, floats.by_ref().take(count).collect());
                if let Some(heads) = rope_row_permutation(&name, &header) {
                    t = permute_rope_rows(&t, heads, true);
                }
                tensors.insert(name, t);
            }
        }
    }
    Ok((config, tensors))
}

/// Writes a homogeneous GQA + SwiGLU model as a llama2.c checkpoint.
pub fn write(
    path: &Path,
    config: &ModelConfig,
    tensors: &TensorMap,
    version: Llama2cVersion,
) -> Result<(), CheckpointError> {
    let unsupported = |problem: String| CheckpointError::Unsupported {
        path: path.to_path_buf(),
        problem,
    };
    let Some(BlockConfig {
        attention: AttentionConfig::Gqa { kv_heads },
        ffn: FfnConfig::SwiGlu { intermediate },
    }) = config.homogeneous_block()
    else {
        return Err(unsupported(
            "llama2.c holds only models whose layers are all GQA + SwiGLU of one size".into(),
        ));
    };
    if config.head_dim * config.num_attention_heads != config.hidden_size
        || config.rope_theta != 10000.0
        || config.rms_norm_eps != 1e-5
    {
        return Err(unsupported(
            "llama2.c fixes head_dim = dim / n_heads, rope_theta = 10000 and rms_norm_eps = 1e-5".into(),
        ));
    }
    let header = Header {
        dim: config.hidden_size,
        hidden: intermediate,
        layers: config.num_layers(),
        heads: config.num_attention_heads,
        kv_heads,
        vocab: config.vocab_size,
        seq_len: config.max_position_embeddings,
        shared_classifier: config.tie_word_embeddings,
    };
    let ints = [
        header.dim,
        header.hidden,
        header.layers,
        header.heads,
        header.kv_heads,
        header.vocab,
        header.seq_len,
    ]
    .map(|v| v as i32);
    let mut out: Vec<u8> = Vec::new();
    match version {
        Llama2cVersion::Legacy => {
            let mut ints = ints;
            if !header.shared_classifier {
                ints[5] = -ints[5];
            }
            ints.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
        Llama2cVersion::V1 => {
            out.extend(MAGIC.to_le_bytes());
            out.extend(1i32.to_le_bytes());
            ints.iter().for_each(|v| out.extend(v.to_le_bytes()));
            out.push(u8::from(header.shared_classifier));
            out.resize(V1_HEADER_BYTES, 0);
        }
    }
    let head_dim = config.head_dim;
    for item in file_order(version, &header, config) {
        match item {
            Item::RopeTable { cos } => {
                for pos in 0..header.seq_len {
                    for i in 0..head_dim / 2 {
                        let angle = pos as f32 / 10000f32.powf(2.0 * i as f32 / head_dim as f32);
                        out.extend((if cos { angle.cos() } else { angle.sin() }).to_le_bytes());
                    }
                }
            }
            Item::Tensor(name, _) => {
                let t = tensors
                    .get(&name)
                    .ok_or_else(|| unsupported(format!("tensor `{name}` is missing")))?;
                let permuted = rope_row_permutation(&name, &header).map(|heads| permute_rope_rows(t, heads, false));
                permuted
                    .as_ref()
                    .unwrap_or(t)
                    .values()
                    .iter()
                    .for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }
    fs::write(path, out).map_err(CheckpointError::io(path))
}
