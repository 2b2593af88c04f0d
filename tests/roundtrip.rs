//! Import → export → import round trips: weights bit-identical and configs equal, for HF,
//! DeciLM and llama2.c sources (random models here; the real stories260K when it is present);
//! a random parent written from a `config.json` reads back as that config.

mod common;

use burn::prelude::Device;
use tessera::checkpoint::TensorSource;
use tessera::checkpoint::gguf::GgmlType;
use tessera::checkpoint::hf_config::parse_config;
use tessera::checkpoint::{
    Checkpoint, ExportOptions, Llama2cVersion, RandomParentOptions, SourceFormat, StoreDtype, write_random_parent,
};
use tessera::model::config::RopeScaling;
use tessera::model::weights::expected_tensors;
use tessera::model::{AttentionConfig, BlockConfig, FfnConfig, HostValues, ModelConfig, TensorMap, random_weights};

fn random_checkpoint(config: ModelConfig, seed: u64) -> Checkpoint {
    let weights = random_weights(&config, seed);
    Checkpoint {
        config,
        weights,
        parent_layers: None,
    }
}

fn rounded(checkpoint: &Checkpoint, dtype: StoreDtype) -> Checkpoint {
    let mut out = checkpoint.clone();
    out.weights
        .values_mut()
        .for_each(|t| t.iter_mut().for_each(|v| *v = dtype.round_trip(*v)));
    out
}

/// Writes `checkpoint` in `format`, reads it back, writes that again and reads it again: both
/// reads must equal the source (after rounding to `dtype`).
fn round_trip(checkpoint: &Checkpoint, format: SourceFormat, dtype: StoreDtype, shard: Option<usize>) {
    let tmp = tempfile::tempdir().unwrap();
    let options = ExportOptions {
        dtype,
        max_shard_bytes: shard,
    };
    let write = |c: &Checkpoint, path: &std::path::Path| match format {
        SourceFormat::Hf => c.write_hf(path, options).unwrap(),
        SourceFormat::DeciLm => c.write_decilm(path, options).unwrap(),
        SourceFormat::Llama2c => c.write_llama2c(path, Llama2cVersion::V1).unwrap(),
        SourceFormat::Gguf => {
            let ty = match dtype {
                StoreDtype::F32 => GgmlType::F32,
                StoreDtype::F16 => GgmlType::F16,
                StoreDtype::Bf16 => GgmlType::BF16,
            };
            c.write_gguf(path, ty, &[]).unwrap()
        }
    };
    let expected = rounded(checkpoint, dtype);
    let first = tmp.path().join("first");
    write(checkpoint, &first);
    let (read1, found) = Checkpoint::read(&first).unwrap();
    assert_eq!(found, format);
    assert_eq!(read1.config, expected.config);
    assert!(
        read1.weights == expected.weights,
        "weights changed on the first round trip"
    );
    let second = tmp.path().join("second");
    write(&read1, &second);
    let (read2, _) = Checkpoint::read(&second).unwrap();
    assert_eq!(read2, read1, "the second round trip is not bit-identical");
}

#[test]
fn decilm_round_trips_every_block_kind_exactly() {
    let checkpoint = random_checkpoint(ModelConfig::tiny_heterogeneous(300), 1);
    round_trip(&checkpoint, SourceFormat::DeciLm, StoreDtype::F32, None);
    round_trip(&checkpoint, SourceFormat::DeciLm, StoreDtype::Bf16, Some(40_000));
    round_trip(&checkpoint, SourceFormat::DeciLm, StoreDtype::F16, None);
}

#[test]
fn decilm_writes_ffn_mult_alone_when_the_width_rule_reproduces_it() {
    let mut config = ModelConfig::uniform(128, 128, 2, 4, 2, 512, 32);
    config.blocks[1] = BlockConfig {
        attention: AttentionConfig::Gqa { kv_heads: 1 },
        ffn: FfnConfig::SwiGlu { intermediate: 300 },
    };
    let checkpoint = random_checkpoint(config, 2);
    let tmp = tempfile::tempdir().unwrap();
    checkpoint
        .write_decilm(&tmp.path().join("d"), ExportOptions::default())
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("d/config.json")).unwrap()).unwrap();
    let blocks = json["block_configs"].as_array().unwrap();
    assert_eq!(blocks[0]["ffn"]["ffn_mult"], 6.0);
    assert!(blocks[0]["ffn"].get("intermediate_size").is_none());
    assert_eq!(blocks[1]["ffn"]["intermediate_size"], 300);
    assert_eq!(blocks[1]["attention"]["n_heads_in_group"], 4);
    round_trip(&checkpoint, SourceFormat::DeciLm, StoreDtype::F32, None);
}

#[test]
fn hf_round_trips_tied_and_untied_in_every_dtype() {
    let tied = random_checkpoint(ModelConfig::uniform(200, 64, 3, 4, 2, 160, 48), 3);
    let untied = tied.clone().untied();
    for dtype in [StoreDtype::F32, StoreDtype::F16, StoreDtype::Bf16] {
        round_trip(&tied, SourceFormat::Hf, dtype, None);
        round_trip(&untied, SourceFormat::Hf, dtype, Some(30_000));
    }
}

#[test]
fn gguf_round_trips_tied_and_untied_in_every_dtype() {
    // Norm weights are ones, so keeping 1-D tensors in F32 rounds nothing here either.
    let tied = random_checkpoint(ModelConfig::uniform(200, 64, 3, 4, 2, 160, 48), 3);
    let untied = tied.clone().untied();
    for dtype in [StoreDtype::F32, StoreDtype::F16, StoreDtype::Bf16] {
        round_trip(&tied, SourceFormat::Gguf, dtype, None);
        round_trip(&untied, SourceFormat::Gguf, dtype, None);
    }
}

#[test]
fn llama2c_round_trips_in_both_versions() {
    let tied = random_checkpoint(ModelConfig::uniform(100, 32, 2, 4, 2, 72, 16), 4);
    let untied = tied.clone().untied();
    round_trip(&tied, SourceFormat::Llama2c, StoreDtype::F32, None);
    round_trip(&untied, SourceFormat::Llama2c, StoreDtype::F32, None);
    let tmp = tempfile::tempdir().unwrap();
    for (checkpoint, name) in [(&tied, "tied.bin"), (&untied, "untied.bin")] {
        let path = tmp.path().join(name);
        checkpoint.write_llama2c(&path, Llama2cVersion::Legacy).unwrap();
        let (read, format) = Checkpoint::read(&path).unwrap();
        assert_eq!(format, SourceFormat::Llama2c);
        assert_eq!(&read, checkpoint);
    }
}

#[test]
fn hf_export_refuses_a_heterogeneous_child() {
    let checkpoint = random_checkpoint(ModelConfig::tiny_heterogeneous(64), 5);
    let tmp = tempfile::tempdir().unwrap();
    let error = checkpoint
        .write_hf(&tmp.path().join("hf"), ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("DeciLM"), "{error}");
}

#[test]
fn stories260k_round_trips_through_every_format() {
    let Some(data) = common::shared_data("stories260k_round_trips_through_every_format") else {
        return;
    };
    let (source, format) = Checkpoint::read(&common::stories_bin(&data)).unwrap();
    assert_eq!(format, SourceFormat::Llama2c);
    assert!(source.config.tie_word_embeddings);
    // llama2.c source → llama2.c, HF and DeciLM.
    round_trip(&source, SourceFormat::Llama2c, StoreDtype::F32, None);
    round_trip(&source, SourceFormat::Hf, StoreDtype::F32, Some(300_000));
    round_trip(&source, SourceFormat::DeciLm, StoreDtype::F32, None);
    // The legacy file tessera writes equals the original in every weight byte (RoPE tables aside).
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("legacy.bin");
    source.write_llama2c(&path, Llama2cVersion::Legacy).unwrap();
    let (original, written) = (
        std::fs::read(common::stories_bin(&data)).unwrap(),
        std::fs::read(&path).unwrap(),
    );
    assert_eq!(original.len(), written.len());
    let rope_start = original.len() - 2 * 512 * 4 * 4;
    assert_eq!(original[..rope_start], written[..rope_start]);
    assert!(source.build(&Device::flex()).is_ok());
}

/// The `config.json` of a DeciLM export, field by field against the `nemotron-nas` schema of
/// DESIGN §2, for a child with every block kind (and the safetensors names its blocks imply).
#[test]
fn decilm_config_follows_the_nemotron_nas_schema_field_by_field() {
    use serde_json::{Value, json};
    let config = ModelConfig::tiny_heterogeneous(300);
    let checkpoint = random_checkpoint(config.clone(), 6);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    checkpoint
        .write_decilm(
            &dir,
            ExportOptions {
                dtype: StoreDtype::Bf16,
                max_shard_bytes: None,
            },
        )
        .unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["architectures"], json!(["DeciLMForCausalLM"]));
    assert_eq!(json["model_type"], "nemotron-nas");
    assert_eq!(json["torch_dtype"], "bfloat16");
    for (key, value) in [
        ("vocab_size", json!(300)),
        ("hidden_size", json!(config.hidden_size)),
        ("num_attention_heads", json!(config.num_attention_heads)),
        ("num_hidden_layers", json!(config.num_layers())),
        ("max_position_embeddings", json!(config.max_position_embeddings)),
        ("tie_word_embeddings", json!(false)),
        ("hidden_act", json!("silu")),
    ] {
        assert_eq!(json[key], value, "{key}");
    }
    let blocks = json["block_configs"].as_array().unwrap();
    assert_eq!(blocks.len(), config.num_layers());
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for (block, raw) in config.blocks.iter().zip(blocks) {
        assert_eq!(keys(raw), ["attention", "ffn"]);
        let attention = &raw["attention"];
        assert_eq!(keys(attention), ["n_heads_in_group", "no_op", "replace_with_linear"]);
        assert_eq!(attention["no_op"], json!(block.attention == AttentionConfig::NoOp));
        assert_eq!(
            attention["replace_with_linear"],
            json!(block.attention == AttentionConfig::Linear)
        );
        match block.attention {
            AttentionConfig::Gqa { kv_heads } => {
                assert_eq!(
                    attention["n_heads_in_group"],
                    json!(config.num_attention_heads / kv_heads)
                )
            }
            _ => assert!(attention["n_heads_in_group"].is_null()),
        }
        let ffn = &raw["ffn"];
        assert_eq!(ffn["no_op"], json!(block.ffn == FfnConfig::NoOp));
        assert_eq!(ffn["replace_with_linear"], json!(block.ffn == FfnConfig::Linear));
        match block.ffn {
            FfnConfig::SwiGlu { intermediate } => {
                let mult = ffn["ffn_mult"].as_f64().unwrap();
                // DeciLM's own rule, unless the exact width is stored beside it.
                let rule = ((2.0 * mult * config.hidden_size as f64 / 3.0) as usize).div_ceil(256) * 256;
                match ffn.get("intermediate_size") {
                    Some(exact) => {
                        assert_eq!(exact, &json!(intermediate));
                        assert_ne!(rule, intermediate);
                    }
                    None => assert_eq!(rule, intermediate),
                }
                assert!((mult - intermediate as f64 * 3.0 / (2.0 * config.hidden_size as f64)).abs() < 1e-12);
            }
            _ => {
                assert_eq!(keys(ffn), ["ffn_mult", "no_op", "replace_with_linear"]);
                assert!(ffn["ffn_mult"].is_null());
            }
        }
    }
    // No-op sub-blocks have neither weights nor norm; linear ones one [hidden, hidden] weight.
    let (read, _) = Checkpoint::read(&dir).unwrap();
    let h = config.hidden_size;
    for (i, block) in config.blocks.iter().enumerate() {
        let has = |name: &str| read.weights.contains_key(&format!("model.layers.{i}.{name}.weight"));
        assert_eq!(
            has("input_layernorm"),
            block.attention != AttentionConfig::NoOp,
            "layer {i}"
        );
        assert_eq!(
            has("post_attention_layernorm"),
            block.ffn != FfnConfig::NoOp,
            "layer {i}"
        );
        if block.attention == AttentionConfig::Linear {
            assert_eq!(
                read.weights[&format!("model.layers.{i}.self_attn.linear_attn.weight")].shape(),
                [h, h]
            );
        }
        if block.ffn == FfnConfig::Linear {
            assert_eq!(
                read.weights[&format!("model.layers.{i}.mlp.linear_mlp.weight")].shape(),
                [h, h]
            );
        }
    }
    assert!(
        json.get("parent_layers").is_none(),
        "an unfused child needs no layer spans"
    );
}

/// A tiny Llama 3-style `config.json`: GQA, untied, `llama3` RoPE scaling, several end tokens.
const TINY_LLAMA3_CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": [2, 3],
  "hidden_size": 64,
  "intermediate_size": 192,
  "max_position_embeddings": 512,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 4,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 128, "rope_type": "llama3"},
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "float32",
  "vocab_size": 1000
}"#;

/// Mean and standard deviation of every value of the tensors whose name ends with `suffix`.
fn moments(weights: &TensorMap, suffix: &str) -> (f64, f64, usize) {
    let values: Vec<f64> = weights
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .flat_map(|(_, t)| t.values().iter().map(|&v| v as f64))
        .collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt(), values.len())
}

#[test]
fn random_parent_reads_back_with_its_config_shapes_and_bf16_normals() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tmp.path().join("config.json");
    std::fs::write(&config_path, TINY_LLAMA3_CONFIG).unwrap();
    let (config, _) = parse_config(&config_path, TINY_LLAMA3_CONFIG).unwrap();
    let options = RandomParentOptions {
        seed: 7,
        max_shard_bytes: 100_000,
        ..RandomParentOptions::default()
    };
    let out = tmp.path().join("parent");
    let summary = write_random_parent(&config_path, &out, &options).unwrap();
    assert_eq!((summary.layers, summary.params), (4, config.num_params()));
    assert!(summary.bytes > 2 * config.num_params() as u64);

    let (read, format) = Checkpoint::read(&out).unwrap();
    assert_eq!(format, SourceFormat::Hf);
    assert_eq!(read.config, config);
    for (name, shape) in expected_tensors(&config) {
        assert_eq!(read.weights[&name].shape(), shape.as_slice(), "{name}");
    }
    let shards = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("model-"))
        .count();
    assert!(shards > 2 && out.join("model.safetensors.index.json").is_file());
    // The config as given, but for the dtype it now describes.
    let mut written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(written["torch_dtype"], "bfloat16");
    written["torch_dtype"] = "float32".into();
    assert_eq!(
        written,
        serde_json::from_str::<serde_json::Value>(TINY_LLAMA3_CONFIG).unwrap()
    );

    for (name, tensor) in &read.weights {
        let values = tensor.values();
        assert!(
            values.iter().all(|&v| StoreDtype::Bf16.round_trip(v) == v),
            "{name} is not bf16"
        );
        if tensor.ndim() == 1 {
            assert!(values.iter().all(|&v| v == 1.0), "norm {name} does not start at one");
        }
    }
    let residual = 0.02 / (2.0 * 4.0f64).sqrt();
    for (suffix, std) in [
        ("embed_tokens.weight", 0.02),
        ("lm_head.weight", 0.02),
        ("q_proj.weight", 0.02),
        ("gate_proj.weight", 0.02),
        ("o_proj.weight", residual),
        ("down_proj.weight", residual),
    ] {
        let (mean, measured, n) = moments(&read.weights, suffix);
        assert!(
            (measured / std - 1.0).abs() < 0.03,
            "{suffix}: std {measured}, expected {std}"
        );
        assert!(mean.abs() < 5.0 * std / (n as f64).sqrt(), "{suffix}: mean {mean}");
    }

    // The seed alone decides the values: another shard size gives the same model, another seed
    // another one.
    let one_file = tmp.path().join("one-file");
    let options = RandomParentOptions {
        max_shard_bytes: usize::MAX,
        ..options
    };
    write_random_parent(&config_path, &one_file, &options).unwrap();
    assert!(one_file.join("model.safetensors").is_file());
    assert!(Checkpoint::read(&one_file).unwrap().0 == read);
    let reseeded = tmp.path().join("reseeded");
    write_random_parent(&config_path, &reseeded, &RandomParentOptions { seed: 8, ..options }).unwrap();
    let other = Checkpoint::read(&reseeded).unwrap().0;
    assert_ne!(
        other.weights["model.embed_tokens.weight"],
        read.weights["model.embed_tokens.weight"]
    );
}

#[test]
fn shipped_configs_read_as_the_published_llama_models() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for (file, layers, params) in [
        ("llama-3.1-8b.json", 32, 8_030_261_248usize),
        ("llama-3.3-70b.json", 80, 70_553_706_496),
    ] {
        let path = dir.join(file);
        let (config, _) = parse_config(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((config.num_layers(), config.num_params()), (layers, params), "{file}");
        assert_eq!((config.vocab_size, config.head_dim), (128_256, 128), "{file}");
        assert_eq!(
            config.rope_scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            "{file}"
        );
    }
}
