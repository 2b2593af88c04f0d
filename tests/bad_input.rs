//! Bad input gets a clear error naming the file and the problem, never a panic.

mod common;

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use tessera::checkpoint::TensorSource;
use tessera::checkpoint::{Checkpoint, ExportOptions, Llama2cVersion};
use tessera::model::{ModelConfig, random_weights};

fn checkpoint(config: ModelConfig) -> Checkpoint {
    let weights = random_weights(&config, 9);
    Checkpoint {
        config,
        weights,
        parent_layers: None,
    }
}

/// A temporary directory holding a small HF checkpoint (vocab 64, 2 layers).
fn small_hf_checkpoint() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(ModelConfig::uniform(64, 32, 2, 4, 2, 48, 16))
        .write_hf(tmp.path(), ExportOptions::default())
        .unwrap();
    tmp
}

/// A temporary directory holding a DeciLM checkpoint with every block kind (6 layers, 8 heads).
fn small_decilm_checkpoint() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    checkpoint(ModelConfig::tiny_heterogeneous(64))
        .write_decilm(tmp.path(), ExportOptions::default())
        .unwrap();
    tmp
}

fn read_error(path: &Path) -> String {
    Checkpoint::read(path).map(|_| ()).unwrap_err().to_string()
}

fn assert_mentions(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "error `{error}` does not mention `{part}`");
    }
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
}

/// Rewrites `model.safetensors` in `dir` after `edit` changes the (name → dtype, shape, bytes) list.
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        &path,
        safetensors::serialize(views, None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
}

#[test]
fn truncated_llama2c_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.bin");
    checkpoint(ModelConfig::uniform(64, 32, 2, 4, 2, 48, 16))
        .write_llama2c(&path, Llama2cVersion::Legacy)
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    assert_mentions(&read_error(&path), &["model.bin", "truncated"]);
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert_mentions(&read_error(&path), &["model.bin", "truncated"]);
}

#[test]
fn llama2c_header_with_impossible_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.bin");
    let header: Vec<u8> = [64i32, 128, 2, 3, 2, 32, 16]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&path, header).unwrap();
    assert_mentions(&read_error(&path), &["bad.bin", "n_heads"]);
}

#[test]
fn safetensors_missing_a_tensor() {
    let tmp = small_hf_checkpoint();
    edit_tensors(tmp.path(), |t| {
        t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight")
    });
    assert_mentions(
        &read_error(tmp.path()),
        &[
            &tmp.path().display().to_string(),
            "model.layers.1.mlp.up_proj.weight",
            "missing",
        ],
    );
}

#[test]
fn safetensors_with_a_mis_shaped_tensor() {
    let tmp = small_hf_checkpoint();
    edit_tensors(tmp.path(), |t| {
        let entry = t
            .iter_mut()
            .find(|(n, ..)| n == "model.layers.0.self_attn.k_proj.weight")
            .unwrap();
        entry.2 = vec![32, 16];
    });
    assert_mentions(
        &read_error(tmp.path()),
        &["model.layers.0.self_attn.k_proj.weight", "[32, 16]", "[16, 32]"],
    );
}

#[test]
fn safetensors_with_an_unsupported_dtype() {
    let tmp = small_hf_checkpoint();
    edit_tensors(tmp.path(), |t| {
        let entry = t.iter_mut().find(|(n, ..)| n == "model.norm.weight").unwrap();
        entry.1 = Dtype::I32;
    });
    assert_mentions(
        &read_error(tmp.path()),
        &["model.safetensors", "model.norm.weight", "I32", "supported"],
    );
}

#[test]
fn block_configs_length_differs_from_num_hidden_layers() {
    let tmp = small_decilm_checkpoint();
    edit_config(tmp.path(), |c| c["num_hidden_layers"] = 5.into());
    assert_mentions(
        &read_error(tmp.path()),
        &["config.json", "block_configs", "6 entries", "num_hidden_layers is 5"],
    );
}

#[test]
fn n_heads_in_group_does_not_divide_num_attention_heads() {
    let tmp = small_decilm_checkpoint();
    edit_config(tmp.path(), |c| {
        c["block_configs"][1]["attention"]["n_heads_in_group"] = 3.into()
    });
    assert_mentions(
        &read_error(tmp.path()),
        &[
            "config.json",
            "block_configs[1].attention.n_heads_in_group",
            "3 does not divide",
        ],
    );
}

#[test]
fn malformed_config_json() {
    let tmp = small_hf_checkpoint();
    std::fs::write(tmp.path().join("config.json"), "{\"vocab_size\": 64").unwrap();
    assert_mentions(&read_error(tmp.path()), &["config.json", "invalid config"]);
    let missing = tmp.path().join("nowhere");
    std::fs::create_dir(&missing).unwrap();
    assert_mentions(&read_error(&missing), &["nowhere/config.json"]);
}

/// Runs `tessera eval nll --ids` on `model` with an id file holding `ids`.
fn eval_ids(model: &Path, ids: &str, json: bool) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.txt");
    std::fs::write(&path, ids).unwrap();
    let mut command = common::tessera();
    command
        .args(["eval", "nll"])
        .arg("--model")
        .arg(model)
        .arg("--ids")
        .arg(&path);
    if json {
        command.arg("--json");
    }
    command.output().unwrap()
}

#[test]
fn token_id_beyond_the_vocabulary_in_ids_file() {
    let model = small_hf_checkpoint();
    let output = eval_ids(model.path(), "1 5 9\n1 70 3\n", false);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_mentions(&stderr, &["ids.txt", "token id 70", "vocabulary of 64"]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let output = eval_ids(model.path(), "1 5 x\n", false);
    assert_mentions(
        &String::from_utf8_lossy(&output.stderr),
        &["ids.txt", "line 1", "`x` is not a token id"],
    );
}

#[test]
fn ids_file_is_evaluated_as_given() {
    let model = small_hf_checkpoint();
    let output = eval_ids(model.path(), "5 9 4 2\n7 7\n", true);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // No BOS is added: 3 + 1 predicted tokens, and the same NLL as the library on those rows.
    assert_eq!(report["tokens"], 4);
    let loaded = tessera::checkpoint::load_model(model.path(), &burn::prelude::Device::flex()).unwrap();
    let expected = tessera::eval::mean_nll(&loaded, &[vec![5, 9, 4, 2], vec![7, 7]]).unwrap();
    assert!(
        (report["mean_nll"].as_f64().unwrap() - expected.mean_nll).abs() < 1e-6,
        "{report} vs {expected:?}"
    );
}

#[test]
fn absurd_sizes_in_config_json_fail_fast_or_cost_nothing() {
    let tmp = small_hf_checkpoint();
    // Real configs declare up to millions of positions; RoPE tables follow the positions run.
    edit_config(tmp.path(), |c| {
        c["max_position_embeddings"] = serde_json::json!(1_000_000_000u64)
    });
    let started = std::time::Instant::now();
    let (checkpoint, _) = Checkpoint::read(tmp.path()).unwrap();
    let model = checkpoint.build(&burn::prelude::Device::flex()).unwrap();
    let ids = vec![vec![1u32, 5, 9, 3]];
    model.forward(model.tokens_tensor(&ids).unwrap(), None, false).unwrap();
    assert!(started.elapsed().as_secs_f64() < 10.0, "took {:?}", started.elapsed());
    // Layers that no tensor backs: refused before any weight is read for them.
    edit_config(tmp.path(), |c| {
        c["num_hidden_layers"] = serde_json::json!(1_000_000_000u64)
    });
    assert_mentions(&read_error(tmp.path()), &["config.json", "num_hidden_layers"]);
    edit_config(tmp.path(), |c| c["num_hidden_layers"] = serde_json::json!(3));
    assert_mentions(&read_error(tmp.path()), &["model.layers.2.", "missing"]);
}

#[test]
fn config_keys_that_change_the_maths_are_applied_or_refused_by_name() {
    let tmp = small_hf_checkpoint();
    let cases = [
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "longrope", "factor": 2.0}),
            "rope_scaling.rope_type",
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_type": "su"}),
            "rope_parameters.rope_type",
        ),
        ("hidden_act", serde_json::json!("gelu_pytorch_tanh"), "hidden_act"),
        (
            "final_logit_softcapping",
            serde_json::json!(30.0),
            "final_logit_softcapping",
        ),
        (
            "quantization_config",
            serde_json::json!({"quant_method": "gptq"}),
            "quantization_config",
        ),
    ];
    for (key, value, named) in cases {
        let original = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
        edit_config(tmp.path(), |c| c[key] = value.clone());
        assert_mentions(&read_error(tmp.path()), &["config.json", named]);
        std::fs::write(tmp.path().join("config.json"), original).unwrap();
    }
}

#[test]
fn random_parent_refuses_a_bad_config_by_file_and_field_and_a_used_directory() {
    let tmp = small_hf_checkpoint();
    let out = tmp.path().join("random");
    let random = |config: &Path| {
        let output = common::tessera()
            .args(["model", "random", "--dtype", "bf16", "--config"])
            .arg(config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let config = tmp.path().join("config.json");
    let (ok, stderr) = random(&config);
    assert!(ok, "{stderr}");
    // Written where something already is: refused, nothing mixed in.
    let (ok, stderr) = random(&config);
    assert!(!ok);
    assert_mentions(&stderr, &["random", "not empty"]);
    std::fs::remove_dir_all(&out).unwrap();
    edit_config(tmp.path(), |c| c["num_key_value_heads"] = serde_json::json!(3));
    let (ok, stderr) = random(&config);
    assert!(!ok && !out.exists());
    assert_mentions(&stderr, &["config.json", "num_key_value_heads", "does not divide"]);
    let (ok, stderr) = random(&tmp.path().join("absent.json"));
    assert!(!ok);
    assert_mentions(&stderr, &["absent.json"]);
}
