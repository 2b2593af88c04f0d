//! Scores and costs of a library: the parent's own blocks score zero, prefix reuse changes no
//! figure, whole-model latency predicted from block latencies matches measurements of children
//! of the default parent's shape, and bad input is refused with the reason.

mod common;

use std::path::Path;

use burn::prelude::*;
use tessera::cost::{Precision, ProfileOptions, Scenario, measure_and_calibrate, profile_library, random_children};
use tessera::library::Library;
use tessera::model::BlockConfig;
use tessera::parent::default_parent_config;

#[test]
fn parent_blocks_score_zero_and_prefix_reuse_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let library = Library::open(&common::tiny_library(dir.path(), 1024)).unwrap();
    let scoring = common::builtin_scoring(&library, 6);
    let blocks = library.candidates();
    let rows = scoring
        .score(&library, &blocks, tessera::library::Stage::Trained, false)
        .unwrap();
    let parent_block = library.manifest.parent.config.blocks[0];
    for ((_, block), row) in blocks.iter().zip(&rows) {
        if *block == parent_block {
            assert!(row.scores.kl_div.abs() <= 1e-6, "{row:?}");
            assert!(row.scores.cosine_distance.abs() <= 1e-6, "{row:?}");
        } else {
            assert!(row.scores.kl_div > 0.0, "{row:?}");
        }
    }
    tessera::score::record_scores(&library.dir, &rows).unwrap();
    let table = std::fs::read_to_string(library.dir.join("scores.csv")).unwrap();
    assert_eq!(table.lines().count(), 1 + blocks.len());
    assert!(
        table.starts_with("layer,last_layer,block,kl_div,lm_loss,cosine_distance\n0,0,kv2 + ffn64,0.0,"),
        "{table}"
    );
    assert!(library.dir.join("scores.parquet").is_file());
    let check = scoring.check_prefix_reuse(&library, &blocks).unwrap();
    eprintln!("{check:?}");
    assert!(check.max_abs_diff_kl <= 1e-5, "{check:?}");
    assert!(check.max_abs_diff_lm_loss <= 1e-5, "{check:?}");
    assert!(check.max_abs_diff_cosine <= 1e-5, "{check:?}");
}

#[test]
fn whole_model_latency_is_predicted_from_block_latencies() {
    let parent = default_parent_config(8);
    let choices: Vec<Vec<BlockConfig>> = {
        use tessera::model::{AttentionConfig as A, FfnConfig as F};
        let attention = [A::Gqa { kv_heads: 2 }, A::Gqa { kv_heads: 1 }, A::Linear, A::NoOp];
        let ffn = [
            F::SwiGlu { intermediate: 384 },
            F::SwiGlu { intermediate: 192 },
            F::SwiGlu { intermediate: 96 },
            F::Linear,
            F::NoOp,
        ];
        let blocks: Vec<BlockConfig> = attention
            .iter()
            .flat_map(|&attention| ffn.iter().map(move |&ffn| BlockConfig { attention, ffn }))
            .collect();
        vec![blocks; 8]
    };
    let blocks: Vec<BlockConfig> = choices[0].clone();
    let mut models = vec![("parent".to_string(), parent.clone())];
    models.extend(random_children(&parent, &choices, 13, 5));
    for scenario in [
        Scenario::Prefill { batch: 1, seq: 64 },
        Scenario::Decode { batch: 1, context: 64 },
    ] {
        let report = measure_and_calibrate(&parent, &blocks, &models, 3, &scenario, 7, &Device::flex()).unwrap();
        let checked = report.models.iter().filter(|m| !m.fitted).count();
        eprintln!(
            "{scenario}: mean |error| {:.1}% over {checked} children (blocks alone {:.1}%)",
            report.mean_abs_error_pct, report.raw_mean_abs_error_pct
        );
        assert!(checked >= 10);
        // Generous: this runs beside other tests on a shared machine.
        assert!(report.mean_abs_error_pct <= 30.0, "{report:#?}");
    }
}

fn tessera(args: &[&str]) -> (bool, String) {
    let out = common::tessera().args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_cost_and_score_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 512);
    let lib = lib.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--target", "tpu", "--scenario", "decode:b=1,c=8"],
            "unknown target `tpu`",
        ),
        (
            vec!["--target", "cpu", "--scenario", "decode:b=1"],
            "scenario `decode:b=1`: `c` is missing",
        ),
        (
            vec!["--target", "cpu", "--dtype", "bf16", "--scenario", "decode:b=1,c=8"],
            "computes in f32",
        ),
        (
            vec!["--target", "a100", "--dtype", "fp8", "--scenario", "decode:b=1,c=8"],
            "a100 has no fp8",
        ),
    ] {
        let mut full = vec!["profile", "--library", lib];
        full.extend(args);
        let (ok, stderr) = tessera(&full);
        assert!(!ok && stderr.contains(expected), "{full:?}: {stderr}");
    }
    // A library whose items have not been trained cannot be scored: the item is named.
    let manifest = Path::new(lib).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["items"]["layer_1/kv1"]["state"] = serde_json::json!("pending");
    std::fs::write(&manifest, value.to_string()).unwrap();
    let (ok, stderr) = tessera(&["score", "--library", lib]);
    assert!(
        !ok && stderr.contains("layer_1/kv1") && stderr.contains("has no trained weights"),
        "{stderr}"
    );
    let report = profile_library(
        Path::new(lib),
        &ProfileOptions {
            target: "h100".parse().unwrap(),
            precision: Precision::Fp8,
            scenarios: vec![],
            repeats: 1,
            calibration_models: 0,
            ..ProfileOptions::default()
        },
        &Device::flex(),
    );
    assert!(report.unwrap_err().to_string().contains("--scenario"));
}

#[test]
fn profiling_writes_costs_into_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 512);
    let scenarios = vec![
        Scenario::Prefill { batch: 2, seq: 16 },
        Scenario::Decode { batch: 4, context: 32 },
    ];
    for (target, precision) in [("cpu", Precision::F32), ("h100", Precision::Bf16)] {
        let report = profile_library(
            &lib,
            &ProfileOptions {
                target: target.parse().unwrap(),
                precision,
                scenarios: scenarios.clone(),
                repeats: 3,
                calibration_models: 4,
                ..ProfileOptions::default()
            },
            &Device::flex(),
        )
        .unwrap();
        assert_eq!(report.rows.len(), 2 * 4 * 5);
        assert!(
            report
                .rows
                .iter()
                .all(|r| r.runtime_ms.iter().all(|ms| ms.is_finite() && *ms >= 0.0))
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lib.join("block_library.json")).unwrap()).unwrap();
    let stats = &json["layer_1"]["kv1 + ffn_noop"]["stats"];
    assert_eq!(stats["kv_bytes_per_token_bf16"], 2 * 8 * 2);
    assert_eq!(stats["kv_bytes_per_token"], 2 * 8 * 2);
    assert!(stats["runtime_ms_cpu_f32_decode_b4_c32"].as_f64().unwrap() > 0.0);
    assert!(stats["runtime_ms_h100_bf16_prefill_b2_s16"].as_f64().unwrap() > 0.0);
    assert_eq!(json["layer_0"]["attn_noop + ffn_noop"]["stats"]["num_params"], 0);
    assert!(lib.join("costs/cpu_f32.json").is_file() && lib.join("costs/h100_bf16.json").is_file());
    let table = std::fs::read_to_string(lib.join("costs/h100_bf16.csv")).unwrap();
    assert!(
        table.starts_with(
            "layer,last_layer,block,num_params,memory_mib,kv_bytes_per_token,runtime_ms_prefill_b2_s16,runtime_ms_decode_b4_c32\n"
        ),
        "{table}"
    );
    assert!(lib.join("costs/cpu_f32.parquet").is_file());
}

#[test]
fn a_profile_or_a_score_that_will_not_fit_is_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 512);
    let output = common::tessera()
        .env("TESSERA_MEMORY_LIMIT", "64MiB")
        .args(["profile", "--library"])
        .arg(&lib)
        .args(["--scenario", "prefill:b=1,s=16", "--calibrate", "4"])
        .output()
        .unwrap();
    common::assert_fails_with(
        &output,
        &[
            "profile would need about",
            "block stacks of the parent's depth",
            "4 calibration models",
            "only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)",
            "--calibrate 0",
        ],
    );
    assert!(!lib.join("costs").exists(), "a refused profile writes nothing");

    let output = common::tessera()
        .env("TESSERA_MEMORY_LIMIT", "64MiB")
        .args(["score", "--library"])
        .arg(&lib)
        .args(["--windows", "8"])
        .output()
        .unwrap();
    common::assert_fails_with(
        &output,
        &["score would need about", "reference on 8 windows", "--windows"],
    );
    assert!(!lib.join("scores.csv").exists(), "a refused score writes nothing");
}
