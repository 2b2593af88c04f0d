//! FFN fusion: exactness as a parallel sum, the dependency matrix's definition, the automatic
//! run choice, fused checkpoints on disk, and bad runs.

mod common;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera::checkpoint::TensorSource;
use tessera::checkpoint::{Checkpoint, ExportOptions, LayerSpan};
use tessera::fusion::{
    DependencyMatrix, FusionError, choose_runs, dependency_matrix, eligible_runs, fuse_runs, parse_runs,
};
use tessera::model::{AttentionConfig, BlockConfig, FfnConfig, ModelConfig, random_weights};

/// Layer 0 full, layers 1..=3 without attention and with SwiGLUs of different widths, layer 4
/// full again; every norm weight random (so folding them matters).
fn child_with_a_run() -> Checkpoint {
    let widths = [96, 48, 64, 32, 96];
    let blocks = widths
        .iter()
        .enumerate()
        .map(|(i, &intermediate)| BlockConfig {
            attention: if (1..=3).contains(&i) {
                AttentionConfig::NoOp
            } else {
                AttentionConfig::Gqa { kv_heads: 2 }
            },
            ffn: FfnConfig::SwiGlu { intermediate },
        })
        .collect();
    let config = ModelConfig {
        blocks,
        ..ModelConfig::uniform(64, 32, 0, 4, 2, 0, 64)
    };
    let mut weights = random_weights(&config, 11);
    let mut rng = StdRng::seed_from_u64(4);
    for (name, tensor) in weights.iter_mut() {
        if name.ends_with("layernorm.weight") {
            tensor.iter_mut().for_each(|w| *w = rng.random_range(0.5..1.5));
        }
        if name.contains("mlp.") {
            // Larger FFN outputs, so that sequential and parallel differ visibly.
            tensor.iter_mut().for_each(|w| *w *= 4.0);
        }
    }
    Checkpoint {
        config,
        weights,
        parent_layers: None,
    }
}

fn max_rel_diff(a: Tensor<3>, b: Tensor<3>) -> f64 {
    let scale = b.clone().abs().max().into_scalar::<f32>() as f64;
    (a - b).abs().max().into_scalar::<f32>() as f64 / scale
}

#[test]
fn a_fused_layer_is_the_parallel_sum_of_its_members() {
    let device = Device::flex();
    let original = child_with_a_run();
    let model = original.build(&device).unwrap();
    let run = LayerSpan { first: 0, last: 3 };
    let fused = fuse_runs(&original, &[run]).unwrap();
    assert_eq!(fused.config.num_layers(), 2);
    assert_eq!(
        fused.config.blocks[0],
        BlockConfig {
            attention: AttentionConfig::Gqa { kv_heads: 2 },
            ffn: FfnConfig::SwiGlu {
                intermediate: 96 + 48 + 64 + 32
            },
        }
    );
    assert_eq!(fused.layer_spans(), vec![run, LayerSpan::single(4)]);
    let fused_model = fused.build(&device).unwrap();

    let x = Tensor::<3>::random([2, 7, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let rope = model.rope_tables(0, 7);
    let after_attention = model.layers[0].forward_attention(x.clone(), 0, 0, &rope, None);
    let parallel = (0..=3).fold(after_attention.clone(), |sum, k| {
        sum + model.layers[k].forward_ffn(after_attention.clone()) - after_attention.clone()
    });
    let fused_out = fused_model.layers[0].forward(x.clone(), 0, 0, &fused_model.rope_tables(0, 7), None);
    let exact = max_rel_diff(fused_out.clone(), parallel);
    assert!(exact <= 1e-5, "fused vs parallel sum: {exact:e}");

    let sequential = model.run_layers(x, 0..4);
    let approximation = max_rel_diff(fused_out, sequential);
    eprintln!("fused vs parallel sum {exact:.2e}; fused vs sequential (the approximation) {approximation:.3}");
    assert!(
        approximation > 1e-3,
        "the test weights should make parallel differ from sequential"
    );
}

#[test]
fn a_fused_child_round_trips_through_decilm_with_its_layer_spans() {
    let fused = fuse_runs(&child_with_a_run(), &[LayerSpan { first: 1, last: 3 }]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fused");
    fused.write_decilm(&out, ExportOptions::default()).unwrap();
    let (back, _) = Checkpoint::read(&out).unwrap();
    assert_eq!(back, fused);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let fused_block = &config["block_configs"][1];
    assert_eq!(fused_block["attention"]["no_op"], true);
    assert_eq!(fused_block["ffn"]["intermediate_size"], 48 + 64 + 32);
    assert_eq!(config["parent_layers"][1], serde_json::json!({ "first": 1, "last": 3 }));

    // A malformed span list is refused with the field named.
    let mut bad = config.clone();
    bad["parent_layers"][1]["first"] = 2.into();
    std::fs::write(out.join("config.json"), bad.to_string()).unwrap();
    let error = Checkpoint::read(&out).unwrap_err().to_string();
    assert!(error.contains("parent_layers") && error.contains("entry 1"), "{error}");
}

#[test]
fn a_layer_that_contributes_nothing_has_no_dependants() {
    let device = Device::flex();
    let mut child = child_with_a_run();
    for tensor in ["mlp.down_proj", "self_attn.o_proj"] {
        if let Some(t) = child.weights.get_mut(&format!("model.layers.0.{tensor}.weight")) {
            t.iter_mut().for_each(|w| *w = 0.0);
        }
    }
    let model = child.build(&device).unwrap();
    let windows: Vec<Vec<u32>> = (0..3)
        .map(|r| (0..12).map(|t| (r * 7 + t * 5) % 64).collect())
        .collect();
    let matrix = dependency_matrix(&model, &windows).unwrap();
    for j in 1..5 {
        assert!(matrix.get(0, j).abs() < 1e-5, "M[0][{j}] = {}", matrix.get(0, j));
    }
    // The others do depend on what runs before them, and the figures are cosine distances.
    assert!(matrix.get(1, 2) > 1e-4, "{matrix:?}");
    for i in 0..5 {
        for j in i + 1..5 {
            assert!((0.0..=2.0).contains(&matrix.get(i, j)), "{matrix:?}");
        }
    }
}

#[test]
fn the_automatic_choice_takes_the_longest_runs_under_the_threshold() {
    let config = child_with_a_run().config;
    let eligible = eligible_runs(&config);
    assert_eq!(eligible, vec![LayerSpan { first: 0, last: 3 }]);
    let mut values = ndarray::Array2::zeros((5, 5));
    values[[0, 1]] = 0.9; // layer 1 depends strongly on layer 0
    values[[1, 2]] = 0.1;
    values[[1, 3]] = 0.2;
    values[[2, 3]] = 0.15;
    let matrix = DependencyMatrix { layers: 5, values };
    let chosen = choose_runs(&matrix, &eligible, 0.3);
    let spans: Vec<LayerSpan> = chosen.iter().map(|r| r.span()).collect();
    assert_eq!(spans, vec![LayerSpan { first: 1, last: 3 }]);
    assert!((chosen[0].m_max - 0.2).abs() < 1e-12 && (chosen[0].m_sum - 0.45).abs() < 1e-12);
    assert!(choose_runs(&matrix, &eligible, 0.05).is_empty());
    assert_eq!(
        choose_runs(&matrix, &eligible, 1.0)[0].span(),
        LayerSpan { first: 0, last: 3 }
    );
}

#[test]
fn bad_runs_are_refused_with_the_reason() {
    let child = child_with_a_run();
    let cases = [
        ("1-3,3-4", "run 3-4"),
        ("3-7", "the model has 5 layers"),
        ("2-2", "at least two layers"),
        ("3-1", "backwards"),
        ("3-4", "layer 4 still has attention"),
    ];
    for (spec, expected) in cases {
        let runs = parse_runs(spec).unwrap();
        let error = fuse_runs(&child, &runs).unwrap_err().to_string();
        assert!(error.contains(expected), "{spec}: {error}");
    }
    let overlap = fuse_runs(
        &child,
        &[LayerSpan { first: 0, last: 2 }, LayerSpan { first: 1, last: 3 }],
    )
    .unwrap_err();
    assert!(matches!(overlap, FusionError::Splice(_)), "{overlap}");
    assert!(overlap.to_string().contains("overlap"), "{overlap}");
    for spec in ["1", "a-b", "1-2,"] {
        let error = parse_runs(spec).unwrap_err().to_string();
        assert!(error.starts_with(&format!("--runs `{spec}`")), "{error}");
    }
}

/// [`child_with_a_run`] on the built-in world's vocabulary, saved with its tokenizer.
fn saved_child(dir: &std::path::Path) -> std::path::PathBuf {
    use tessera::world::tokenizer::{VOCAB_SIZE, write_tokenizer};
    let mut child = child_with_a_run();
    child.config.vocab_size = VOCAB_SIZE;
    let fresh = random_weights(&child.config, 12);
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        if let Some(t) = fresh.get(name) {
            child.weights.insert(name.to_string(), t.clone());
        }
    }
    let path = dir.join("child");
    child.write_decilm(&path, ExportOptions::default()).unwrap();
    write_tokenizer(&path).unwrap();
    path
}

#[test]
fn fuse_analyze_and_apply_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let child = saved_child(dir.path());
    let analysis = dir.path().join("analysis");
    let run = common::tessera()
        .args(["fuse", "analyze", "--model"])
        .arg(&child)
        .args(["--windows", "4", "--seq-len", "16", "--max-dependency", "2", "--out"])
        .arg(&analysis)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for file in [
        "dependency.csv",
        "dependency.svg",
        "dependency.png",
        "runs.csv",
        "runs.parquet",
        "analysis.json",
    ] {
        assert!(analysis.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(analysis.join("dependency.csv")).unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    let runs = std::fs::read_to_string(analysis.join("runs.csv")).unwrap();
    assert!(runs.starts_with("first,last,m_max,m_sum,chosen\n"), "{runs}");
    // Layers 0..=3 may fuse (1 to 3 have no attention): 6 sub-runs, the whole run chosen.
    assert_eq!(runs.lines().count(), 1 + 6, "{runs}");
    assert!(
        runs.lines().any(|l| l.starts_with("0,3,") && l.ends_with(",1")),
        "{runs}"
    );

    let fused = dir.path().join("fused");
    let run = common::tessera()
        .args(["fuse", "apply", "--model"])
        .arg(&child)
        .args([
            "--runs",
            "auto",
            "--windows",
            "4",
            "--seq-len",
            "16",
            "--max-dependency",
            "2",
            "--out",
        ])
        .arg(&fused)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("fused runs [0-3]: 5 layers -> 2"), "{stdout}");
    assert!(stdout.contains("parallel instead of sequential"), "{stdout}");
    let (back, _) = Checkpoint::read(&fused.join("model")).unwrap();
    assert_eq!(
        back.layer_spans(),
        vec![LayerSpan { first: 0, last: 3 }, LayerSpan::single(4)]
    );

    let bad = common::tessera()
        .args(["fuse", "apply", "--model"])
        .arg(&child)
        .args(["--runs", "2-4", "--out"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(stderr.contains("run 2-4: layer 4 still has attention"), "{stderr}");
    assert!(!dir.path().join("bad").exists());
}
