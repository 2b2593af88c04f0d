//! Real model families against transformers: tiny Llama (llama3, yarn and linear RoPE scaling,
//! an explicit head_dim), Mistral (a sliding window shorter than the sequence), Qwen2 (q/k/v
//! biases) and Qwen3 (per-head q/k norms) checkpoints made by transformers 5 and saved by
//! transformers 5 and 4 (`tests/fixtures/hf/`, see its README): tessera's mean NLL on the same
//! ids must be transformers' own within 2e-3 nats/token, in both config styles.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde_json::Value;
use tessera::checkpoint::Checkpoint;
use tessera::checkpoint::TensorSource;
use tessera::eval::mean_nll;
use tessera::model::config::{AttentionBias, Family, RopeScaling};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn reference(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap()).unwrap()
}

/// The mean NLL tessera computes for `dir` on the reference's sequences.
fn tessera_nll(dir: &Path, reference: &Value) -> f64 {
    let (checkpoint, _) = Checkpoint::read(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let model = checkpoint.build(&Device::flex()).unwrap();
    let sequences: Vec<Vec<u32>> = serde_json::from_value(reference["sequences"].clone()).unwrap();
    mean_nll(&model, &sequences).unwrap().mean_nll
}

const NAMES: [&str; 6] = [
    "llama3_rope",
    "llama_yarn",
    "llama_linear_hd24",
    "mistral_swa",
    "qwen2_bias",
    "qwen3_qknorm",
];

#[test]
fn every_family_computes_what_transformers_computes_in_both_config_styles() {
    for name in NAMES {
        let reference = reference(name);
        let expected = reference["mean_nll"].as_f64().unwrap();
        for style in ["v4", "v5"] {
            let found = tessera_nll(&fixture(name).join(style), &reference);
            eprintln!(
                "{name} {style}: tessera {found:.7}, transformers {expected:.7}, |Δ| {:.1e}",
                (found - expected).abs()
            );
            assert!(
                (found - expected).abs() <= 2e-3,
                "{name} ({style}): tessera {found} against transformers {expected}"
            );
        }
    }
}

#[test]
fn each_family_is_read_as_what_it_is() {
    let config = |name: &str| Checkpoint::read(&fixture(name).join("v5")).unwrap().0.config;
    assert!(matches!(config("llama3_rope").rope_scaling, RopeScaling::Llama3 { .. }));
    assert!(matches!(config("llama_yarn").rope_scaling, RopeScaling::Yarn { .. }));
    let linear = config("llama_linear_hd24");
    assert_eq!(
        (linear.rope_scaling, linear.head_dim),
        (RopeScaling::Linear { factor: 2.0 }, 24)
    );
    let mistral = config("mistral_swa");
    assert_eq!((mistral.family, mistral.sliding_window), (Family::Mistral, Some(8)));
    let qwen2 = config("qwen2_bias");
    assert_eq!(
        (qwen2.family, qwen2.attention_bias),
        (Family::Qwen2, AttentionBias::Qkv)
    );
    let qwen3 = config("qwen3_qknorm");
    assert_eq!((qwen3.family, qwen3.qk_norm, qwen3.head_dim), (Family::Qwen3, true, 32));
    for name in NAMES {
        assert_eq!(
            Checkpoint::read(&fixture(name).join("v4")).unwrap().0.config,
            config(name),
            "{name}: the transformers-4 and -5 configs must describe one model"
        );
    }
}

/// A tiny random parent of `family` with the given pieces, on the built-in world's vocabulary,
/// written in its own HF layout with the world's tokenizer.
fn random_parent(dir: &Path, family: Family, bias: AttentionBias, qk_norm: bool, window: Option<usize>) -> PathBuf {
    use tessera::checkpoint::ExportOptions;
    use tessera::model::{ModelConfig, random_weights};
    use tessera::world::tokenizer::{VOCAB_SIZE, write_tokenizer};
    let config = ModelConfig {
        family,
        attention_bias: bias,
        qk_norm,
        sliding_window: window,
        rope_theta: 500000.0,
        rope_scaling: RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        },
        ..ModelConfig::uniform(VOCAB_SIZE, 32, 2, 4, 2, 64, 64)
    };
    let path = dir.join(format!("{family:?}"));
    let checkpoint = Checkpoint {
        weights: random_weights(&config, 7),
        config,
        parent_layers: None,
    };
    checkpoint.write_hf(&path, ExportOptions::default()).unwrap();
    write_tokenizer(&path).unwrap();
    assert_eq!(Checkpoint::read(&path).unwrap().0, checkpoint, "{family:?} round-trips");
    path
}

/// Library build → score → profile → search → assemble → export (DeciLM) → re-import, on
/// parents with q/k/v(/o) biases, q/k norms, llama3 RoPE and a sliding window: every stage
/// carries the new pieces, and the exported child computes what the child built in memory does.
#[test]
fn every_stage_runs_on_parents_with_the_new_pieces() {
    use tessera::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let parents = [
        random_parent(dir.path(), Family::Qwen3, AttentionBias::QkvO, true, None),
        random_parent(dir.path(), Family::Qwen2, AttentionBias::Qkv, false, None),
        random_parent(dir.path(), Family::Mistral, AttentionBias::None, false, Some(6)),
    ];
    let space = dir.path().join("space.toml");
    std::fs::write(
        &space,
        "[all]\nattention = [\"kv/1\", \"kv/2\", \"linear\", \"no_op\"]\nffn = [1.0, 0.5, \"no_op\"]\n",
    )
    .unwrap();
    for parent in &parents {
        let name = parent.file_name().unwrap().to_string_lossy().into_owned();
        let lib = dir.path().join(format!("lib-{name}"));
        let mut build = BuildOptions::new(parent, &space, TokenSource::Builtin { seed: 2 });
        (
            build.seq_len,
            build.held_out_windows,
            build.calibration_tokens,
            build.bld.tokens,
        ) = (16, 2, 128, 256);
        build_library(&lib, &build, &device).unwrap();
        let scores = ScoreOptions {
            windows: 2,
            ..ScoreOptions::default()
        };
        score_library(&lib, &scores, &device).unwrap();
        let costs = ProfileOptions {
            target: "h100".parse().unwrap(),
            precision: Precision::Bf16,
            scenarios: vec!["decode:b=1,c=16".parse().unwrap()],
            calibration_models: 0,
            ..ProfileOptions::default()
        };
        profile_library(&lib, &costs, &device).unwrap();
        let objective = tessera::search::Objective {
            key: "metrics.kl_div".into(),
            maximize: false,
        };
        let limit = tessera::search::parse_limits("stats.kv_bytes_per_token<=48").unwrap();
        let solutions = dir.path().join(format!("solutions-{name}.json"));
        let found = search_library(&lib, &SearchSpec::raw(objective, limit), Some(&solutions), &device).unwrap();
        let choice = &found.solutions[0].choice;
        let assembled = assemble_child(
            &dir.path().join(format!("child-{name}")),
            &AssembleOptions {
                library: lib.clone(),
                solution: solutions.display().to_string().parse().unwrap(),
                parent: None,
                dtype: tessera::checkpoint::StoreDtype::F32,
            },
        )
        .unwrap();
        let library = Library::open(&lib).unwrap();
        let in_memory = library.assemble_spans(&library.parent(None).unwrap(), choice).unwrap();
        let (read_back, _) = Checkpoint::read(&assembled.child.model).unwrap();
        assert_eq!(read_back.config, in_memory.config, "{name}: {choice:?}");
        let ids = vec![(0..12u32).map(|t| 40 + 3 * t).collect::<Vec<_>>()];
        let logits = |c: &Checkpoint| {
            let model = c.build(&device).unwrap();
            model
                .forward(model.tokens_tensor(&ids).unwrap(), None, false)
                .unwrap()
                .logits
                .into_data()
        };
        logits(&read_back).assert_approx_eq::<f32>(&logits(&in_memory), burn::tensor::Tolerance::absolute(1e-6));
        eprintln!(
            "{name}: child {:?} ({} parameters)",
            in_memory.config.blocks,
            in_memory.config.num_params()
        );
    }
}

/// A token that attends only to itself sees `W_o (W_v x + b_v) + b_o`: the product
/// initialisation of linear attention must be exactly the parent's attention on a one-token
/// sequence, biases folded in; and pooling a layer's KV heads into as many heads changes nothing.
#[test]
fn linear_attention_folds_the_biases_and_pooling_keeps_them() {
    use tessera::library::WorkItem;
    use tessera::library::init::{Calibration, LinearInit, initial_weights};
    use tessera::model::{AttentionConfig, BlockConfig, ModelConfig, build_block, random_weights};
    let device = Device::flex();
    for bias in [AttentionBias::Qkv, AttentionBias::QkvO] {
        let config = ModelConfig {
            attention_bias: bias,
            qk_norm: true,
            ..ModelConfig::uniform(64, 32, 1, 4, 2, 64, 16)
        };
        let weights = random_weights(&config, 11);
        let parent_block = config.blocks[0];
        let attention_only = |attention| BlockConfig {
            attention,
            ffn: tessera::model::FfnConfig::NoOp,
        };
        let x = burn::tensor::Tensor::<3>::random([3, 1, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let run = |block: &BlockConfig, tensors: &tessera::model::TensorMap| {
            let built = build_block(&config, 0, block, tensors, &device).unwrap();
            let rope = tessera::model::rope::Rope::for_config(&config).tables(0, 1, &device);
            built.forward_attention(x.clone(), 0, 0, &rope, None).into_data()
        };
        let parent_tensors: tessera::model::TensorMap =
            tessera::model::block_tensors(&config, 0, &attention_only(parent_block.attention))
                .into_iter()
                .map(|(name, _)| (name.clone(), weights[&name].clone()))
                .collect();
        let expected = run(&attention_only(parent_block.attention), &parent_tensors);
        for attention in [AttentionConfig::Linear, AttentionConfig::Gqa { kv_heads: 2 }] {
            let item = WorkItem::attention(0, attention);
            let init = initial_weights(
                &config,
                &parent_block,
                &item,
                &weights,
                &Calibration::default(),
                LinearInit::Product,
            )
            .unwrap();
            run(&attention_only(attention), &init)
                .assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::absolute(1e-5));
        }
    }
}
