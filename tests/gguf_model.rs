//! GGUF models in and out, against llama.cpp's own files (tests/fixtures/gguf/, made by its
//! converter and llama-quantize; the figures beside each file come from gguf-py, llama.cpp and
//! an exact numpy forward, see tests/fixtures/README.md):
//! - every fixture loads through `Checkpoint::read`, and each tensor, put back in llama.cpp's
//!   layout by an index formula written here, hashes to gguf-py's dequantised values; the F32
//!   file equals its HF source bit for bit;
//! - tessera's mean NLL on the fixture ids is within 2e-3 of the exact figure;
//! - the tokenizer in each file gives llama.cpp's ids;
//! - GGUF → tessera → GGUF (f32) → tessera is the identity; a heterogeneous child goes out as
//!   `deci` and comes back equal; what `deci` cannot express is refused, naming the layer;
//! - bad files (truncated, unknown tensor type, unknown architecture, shapes that disagree,
//!   unknown pre-tokenizer, keys that change the maths) fail with the file and the problem named.
//!
//! SmolLM2-135M-Instruct against llama.cpp's and numpy's figures is `#[ignore]`d (it needs the
//! shared model and the reference JSONs of scripts/smollm2_reference.py, see its test).

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde_json::Value;
use tessera::checkpoint::TensorSource;
use tessera::checkpoint::gguf::{GgmlType, GgufFile, GgufWriter, MetaValue};
use tessera::checkpoint::gguf_model::GgufModel;
use tessera::checkpoint::{
    Checkpoint, CheckpointError, ExportDtype, ExportFormat, ExportRequest, SourceFormat, export_model,
};
use tessera::eval::mean_nll;
use tessera::model::config::{AttentionConfig, FfnConfig, RopeScaling};
use tessera::model::{ModelConfig, Sampling, generate, random_weights};
use tessera::tokenizer::Tokenizer;
use tessera::tokenizer::gguf::gguf_entries;

use common::sha256_hex;

const FIXTURES: [&str; 15] = [
    "llama-f32",
    "llama-f16",
    "llama-bf16",
    "llama-q8_0",
    "llama-q4_0",
    "llama-q4_1",
    "llama-q5_0",
    "llama-q5_1",
    "llama_k-q4_k",
    "llama_k-q5_k",
    "llama_k-q6_k",
    "qwen2_bias-f32",
    "qwen3_qknorm-f32",
    "llama3_rope-f16",
    "deci-f16",
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

fn gguf(name: &str) -> PathBuf {
    fixture_dir().join(format!("{name}.gguf"))
}

fn reference(name: &str) -> Value {
    let path = fixture_dir().join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn read(path: &Path) -> Checkpoint {
    let (checkpoint, format) = Checkpoint::read(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format, SourceFormat::Gguf);
    checkpoint
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// A rotate-half `[heads·d, cols]` matrix (or bias) in llama.cpp's interleaved layout: row
/// `h·d + 2i + s` of the file is row `h·d + s·d/2 + i` of the HF layout.
fn interleaved(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let (cols, d) = (values.len() / rows, rows / heads);
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for s in 0..2 {
                let (file, hf) = (h * d + 2 * i + s, h * d + s * d / 2 + i);
                out[file * cols..(file + 1) * cols].copy_from_slice(&values[hf * cols..(hf + 1) * cols]);
            }
        }
    }
    out
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn every_fixture_tensor_is_gguf_py_s_dequantisation() {
    for name in FIXTURES {
        let path = gguf(name);
        let checkpoint = read(&path);
        let model = GgufModel::open(&path).unwrap();
        let config = &checkpoint.config;
        let interleave = matches!(model.arch().name(), "llama" | "deci");
        let want = reference(name);
        let mut checked = 0;
        for hf in model.tensor_names() {
            let stored = model.stored(hf).unwrap();
            let gguf_name = stored.tensor.name();
            let entry = want["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == gguf_name)
                .unwrap_or_else(|| panic!("{name}: {gguf_name} not in the reference"));
            let tensor = &checkpoint.weights[hf];
            let values = tensor.as_slice().unwrap();
            let layer = hf.split('.').nth(2).and_then(|l| l.parse::<usize>().ok());
            let heads = match (hf.contains("q_proj"), hf.contains("k_proj"), layer) {
                (true, _, _) => Some(config.num_attention_heads),
                (_, true, Some(i)) => match config.blocks[i].attention {
                    AttentionConfig::Gqa { kv_heads } => Some(kv_heads),
                    _ => None,
                },
                _ => None,
            };
            let bytes = match heads.filter(|_| interleave) {
                Some(heads) => le_bytes(&interleaved(values, tensor.shape()[0], heads)),
                None => le_bytes(values),
            };
            assert_eq!(
                sha256_hex(&bytes),
                entry["dequant_sha256"].as_str().unwrap(),
                "{name}: {gguf_name} ({hf})"
            );
            checked += 1;
        }
        let rope_freqs = usize::from(
            want["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "rope_freqs.weight"),
        );
        assert_eq!(
            checked + rope_freqs,
            want["tensors"].as_array().unwrap().len(),
            "{name}"
        );
    }
}

#[test]
fn the_f32_file_is_its_hf_source_bit_for_bit() {
    let from_gguf = read(&gguf("llama-f32"));
    let (from_hf, _) = Checkpoint::read(&fixture_dir().join("src_llama_spm")).unwrap();
    assert_eq!(from_gguf.weights, from_hf.weights);
    assert_eq!(from_gguf.config, from_hf.config);
}

#[test]
fn configs_follow_the_files() {
    let qwen2 = read(&gguf("qwen2_bias-f32")).config;
    assert_eq!(qwen2.family, tessera::model::config::Family::Qwen2);
    assert_eq!(qwen2.attention_bias, tessera::model::config::AttentionBias::Qkv);
    assert!(qwen2.tie_word_embeddings);
    let qwen3 = read(&gguf("qwen3_qknorm-f32")).config;
    assert!(qwen3.qk_norm);
    assert_eq!(qwen3.head_dim, 32);
    // The converter wrote llama3's factor 8, low 1, high 4 and 32 original positions as divisors.
    let llama3 = read(&gguf("llama3_rope-f16")).config;
    assert_eq!(
        llama3.rope_scaling,
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        }
    );
    assert_eq!(llama3.rope_theta, 500000.0);
    let deci = read(&gguf("deci-f16")).config;
    let (a, f) = (
        deci.blocks.iter().map(|b| b.attention).collect::<Vec<_>>(),
        deci.blocks.iter().map(|b| b.ffn).collect::<Vec<_>>(),
    );
    use AttentionConfig as A;
    use FfnConfig as F;
    assert_eq!(
        a,
        [
            A::Gqa { kv_heads: 2 },
            A::NoOp,
            A::Linear,
            A::NoOp,
            A::Gqa { kv_heads: 1 }
        ]
    );
    let swiglu = |intermediate| F::SwiGlu { intermediate };
    assert_eq!(f, [swiglu(256), swiglu(512), swiglu(256), F::NoOp, swiglu(256)]);
    let (deci_dir, _) =
        Checkpoint::read(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deci")).unwrap();
    assert_eq!(deci.blocks, deci_dir.config.blocks);
    assert_eq!(deci.rope_scaling, deci_dir.config.rope_scaling);
}

#[test]
fn nll_matches_the_exact_reference() {
    let device = Device::flex();
    for name in FIXTURES {
        let want = reference(name);
        let sequences: Vec<Vec<u32>> = want["sequences"].as_array().unwrap().iter().map(ids).collect();
        let model = read(&gguf(name)).build(&device).unwrap();
        let nll = mean_nll(&model, &sequences).unwrap().mean_nll;
        let exact = want["numpy_mean_nll"].as_f64().unwrap();
        let llama_cpp = want["llama_cpp_mean_nll"].as_f64().unwrap();
        eprintln!(
            "{name:18} tessera {nll:.6}  exact {exact:.6} (Δ {:+.1e})  llama.cpp {llama_cpp:.6} (Δ {:+.1e})",
            nll - exact,
            nll - llama_cpp
        );
        assert!((nll - exact).abs() < 1e-4, "{name}: {nll} vs {exact}");
    }
}

#[test]
fn tokenizers_give_llama_cpp_s_ids() {
    for name in FIXTURES {
        let tokenizer = Tokenizer::read(&gguf(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = reference(name);
        for (i, (text, ways)) in want["llama_cpp_tokenize"].as_object().unwrap().iter().enumerate() {
            let plain = tokenizer.encode(text, false).unwrap();
            assert_eq!(plain, ids(&ways["add_bos_false_special_true"]), "{name}: {text:?}");
            // The first probe has no special-token text, so parsing specials changes nothing there.
            if i == 0 || !text.contains("<|") {
                let with_bos = tokenizer.encode(text, true).unwrap();
                assert_eq!(
                    with_bos,
                    ids(&ways["add_bos_true_special_false"]),
                    "{name}: {text:?} with BOS"
                );
            }
        }
        assert_eq!(
            Tokenizer::beside_model(&gguf(name)).as_deref(),
            Some(gguf(name).as_path())
        );
        // The chat template travels with the special tokens it writes.
        let file = GgufFile::open(gguf(name)).unwrap();
        match file.get("tokenizer.chat_template") {
            None => assert!(tokenizer.chat_spec().is_none(), "{name}"),
            Some(_) => {
                let spec = tokenizer.chat_spec().unwrap();
                assert_eq!(spec.template, file.get_str("tokenizer.chat_template").unwrap());
                let tokens = file.get_str_array("tokenizer.ggml.tokens").unwrap();
                let id = |key: &str| file.get_u32(key).unwrap() as usize;
                assert_eq!(
                    spec.bos_token.as_ref(),
                    Some(&tokens[id("tokenizer.ggml.bos_token_id")])
                );
                assert_eq!(
                    spec.eos_token.as_ref(),
                    Some(&tokens[id("tokenizer.ggml.eos_token_id")])
                );
            }
        }
    }
}

#[test]
fn gguf_round_trips_through_tessera() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let original = read(&gguf(name));
        let out = tmp.path().join(format!("{name}.gguf"));
        export_model(&gguf(name), &gguf_f32(), &out).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = read(&out);
        assert_eq!(again.config, original.config, "{name}");
        assert_eq!(again.weights, original.weights, "{name}");
        let source = GgufFile::open(gguf(name)).unwrap();
        let written = GgufFile::open(&out).unwrap();
        assert_eq!(gguf_entries(&written), gguf_entries(&source), "{name}: tokenizer");
        assert_eq!(
            written.get_str("general.architecture").unwrap(),
            source.get_str("general.architecture").unwrap()
        );
        // 1-D tensors stay F32 whatever the matrices are stored in.
        let out = tmp.path().join(format!("{name}-q8.gguf"));
        export_model(
            &gguf(name),
            &ExportRequest {
                dtype: ExportDtype::Q8_0,
                ..gguf_f32()
            },
            &out,
        )
        .unwrap();
        let q8 = GgufFile::open(&out).unwrap();
        for t in q8.tensors() {
            let want = match t.dims().len() {
                1 => GgmlType::F32,
                _ if t.dims()[0] % 32 != 0 => GgmlType::F16,
                _ => GgmlType::Q8_0,
            };
            assert_eq!(t.ggml_type(), want, "{name}: {}", t.name());
        }
        assert_eq!(read(&out).config, original.config, "{name}");
    }
}

/// tessera's GGUF export of the HF (and DeciLM) sources of the fixtures equals what llama.cpp's
/// converter wrote from them: every tensor's name, type, dims and bytes (q/k permuted per layer,
/// norms in F32), and every architecture key.
#[test]
fn exports_equal_llama_cpp_s_converter() {
    let tmp = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (source, name, ty) in [
        ("gguf/src_llama_spm", "llama-f32", GgmlType::F32),
        ("hf/qwen2_bias/v5", "qwen2_bias-f32", GgmlType::F32),
        ("hf/qwen3_qknorm/v5", "qwen3_qknorm-f32", GgmlType::F32),
        ("hf/llama3_rope/v5", "llama3_rope-f16", GgmlType::F16),
        ("deci", "deci-f16", GgmlType::F16),
    ] {
        let (checkpoint, _) = Checkpoint::read(&root.join(source)).unwrap();
        let converted = GgufFile::open(gguf(name)).unwrap();
        let out = tmp.path().join(format!("{name}.gguf"));
        checkpoint.write_gguf(&out, ty, &gguf_entries(&converted)).unwrap();
        let ours = GgufFile::open(&out).unwrap();
        assert_eq!(ours.tensor_infos().len(), converted.tensor_infos().len(), "{name}");
        for theirs in converted.tensors() {
            let mine = ours.tensor(theirs.name()).unwrap();
            assert_eq!(
                (mine.ggml_type(), mine.dims()),
                (theirs.ggml_type(), theirs.dims()),
                "{name}: {}",
                theirs.name()
            );
            if theirs.name() == "rope_freqs.weight" {
                // The converter computes the llama3 divisors in float32.
                let (a, b) = (mine.to_f32().unwrap(), theirs.to_f32().unwrap());
                assert!(
                    a.iter().zip(&b).all(|(x, y)| (x / y - 1.0).abs() < 1e-6),
                    "{a:?} vs {b:?}"
                );
            } else {
                assert!(mine.data() == theirs.data(), "{name}: {} differs", theirs.name());
            }
        }
        let arch = converted.get_str("general.architecture").unwrap();
        for (key, value) in converted.metadata().filter(|(k, _)| k.starts_with(&format!("{arch}."))) {
            assert_eq!(ours.get(key), Some(value), "{name}: {key}");
        }
    }
}

/// A byte-level BPE `tokenizer.json` becomes the `tokenizer.*` keys llama.cpp's converter writes,
/// and an HF directory exports with it; a SentencePiece one is refused with the reason.
#[test]
fn hf_tokenizers_go_into_gguf_as_the_converter_writes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let request = gguf_f32();
    for (source, name) in [
        ("hf/qwen2_bias/v5", "qwen2_bias-f32"),
        ("hf/qwen3_qknorm/v5", "qwen3_qknorm-f32"),
    ] {
        let out = tmp.path().join(format!("{name}.gguf"));
        export_model(&root.join(source), &request, &out).unwrap();
        let (ours, theirs) = (GgufFile::open(&out).unwrap(), GgufFile::open(gguf(name)).unwrap());
        for key in [
            "tokenizer.ggml.model",
            "tokenizer.ggml.pre",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.add_bos_token",
            "tokenizer.chat_template",
        ] {
            assert_eq!(ours.get(key), theirs.get(key), "{name}: {key}");
        }
        assert_eq!(read(&out).weights, read(&gguf(name)).weights, "{name}");
    }
    let err = export_model(&root.join("gguf/src_llama_spm"), &request, &tmp.path().join("spm.gguf"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("byte-level BPE"),
        "{err}"
    );
}

/// A stage that writes a model directory from a GGUF parent keeps its tokenizer: an HF
/// `tokenizer.json` giving the same ids (for byte-level BPE), the chat template, and the GGUF
/// entries, which a GGUF export of the directory carries unchanged.
#[test]
fn model_directories_made_from_gguf_keep_its_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["qwen2_bias-f32", "llama-q8_0"] {
        let dir = tmp.path().join(name);
        let checkpoint = read(&gguf(name));
        checkpoint
            .write_model_dir(&dir, tessera::checkpoint::StoreDtype::F32, &gguf(name))
            .unwrap();
        let from_dir = Tokenizer::read(&dir.join("tokenizer.json")).unwrap();
        let from_file = Tokenizer::read(&gguf(name)).unwrap();
        let text = "Hello world! 12 apples, 3.14 pies; naïve café  \n\n  ROMEO: O, she doth teach";
        assert_eq!(
            from_dir.encode(text, false).unwrap(),
            from_file.encode(text, false).unwrap(),
            "{name}"
        );
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(
            config["chat_template"].as_str(),
            from_file.chat_spec().map(|c| c.template.as_str())
        );
        let out = tmp.path().join(format!("{name}.gguf"));
        let request = gguf_f32();
        export_model(&dir, &request, &out).unwrap();
        let (ours, theirs) = (GgufFile::open(&out).unwrap(), GgufFile::open(gguf(name)).unwrap());
        assert_eq!(gguf_entries(&ours), gguf_entries(&theirs), "{name}");
    }
}

/// A GGUF export at F32.
fn gguf_f32() -> ExportRequest {
    ExportRequest {
        format: ExportFormat::Gguf,
        dtype: ExportDtype::F32,
        max_shard_bytes: None,
        untie: false,
    }
}

/// A child with every sub-block kind `deci` can carry, including the two it needs an encoding
/// for: no attention in layer 0, and an attention without FFN.
fn deci_child() -> Checkpoint {
    let mut config = ModelConfig::tiny_heterogeneous(96);
    config.blocks[0].attention = AttentionConfig::NoOp;
    config.blocks[1].ffn = FfnConfig::SwiGlu { intermediate: 64 };
    config.rope_theta = 50000.0;
    config.rope_scaling = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 16,
    };
    Checkpoint {
        weights: random_weights(&config, 7),
        config,
        parent_layers: None,
    }
}

#[test]
fn a_heterogeneous_child_goes_out_as_deci_and_comes_back_equal() {
    let tmp = tempfile::tempdir().unwrap();
    let child = deci_child();
    let path = tmp.path().join("child.gguf");
    child.write_gguf(&path, GgmlType::F32, &[]).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get_str("general.architecture").unwrap(), "deci");
    assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), "none");
    assert_eq!(Tokenizer::beside_model(&path), None);
    // Layer 0 is written as a zero linear attention, layer 4's missing FFN as a zero SwiGLU.
    assert_eq!(
        file.get_i32_array("deci.attention.head_count").unwrap(),
        [8, 8, 8, 0, 8, 0]
    );
    assert_eq!(
        file.get_i32_array("deci.attention.head_count_kv").unwrap(),
        [0, 1, 0, 0, 2, 0]
    );
    assert_eq!(
        file.get_i32_array("deci.feed_forward_length").unwrap(),
        [96, 64, 40, 64, 32, 0]
    );
    let back = read(&path);
    assert_eq!(back.config, child.config);
    assert_eq!(back.weights, child.weights);

    // At Q8_0 the blocks are the same, the values within a quantisation step.
    let q8 = tmp.path().join("child-q8.gguf");
    child.write_gguf(&q8, GgmlType::Q8_0, &[]).unwrap();
    let back = read(&q8);
    assert_eq!(back.config, child.config);
    for (name, t) in &child.weights {
        let (a, b) = (t.as_slice().unwrap(), back.weights[name].as_slice().unwrap());
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= scale / 127.0), "{name}");
    }

    // The same child computes the same logits from its GGUF file.
    let device = Device::flex();
    let tokens = vec![vec![1, 5, 9, 2, 77, 3, 14, 15]];
    let direct = mean_nll(&child.build(&device).unwrap(), &tokens).unwrap();
    let from_file = mean_nll(&read(&path).build(&device).unwrap(), &tokens).unwrap();
    assert_eq!(direct, from_file);
}

/// An attention-free layer with a linear FFN computes `x + W·norm(x)`, as a `deci` linear
/// attention does: it is written as one and read back as one, and the model computes the same.
#[test]
fn a_lone_linear_ffn_goes_out_as_a_linear_attention() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = deci_child();
    child.config.blocks[3].ffn = FfnConfig::Linear;
    child.weights = random_weights(&child.config, 7);
    let path = tmp.path().join("child.gguf");
    child.write_gguf(&path, GgmlType::F32, &[]).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get_i32_array("deci.attention.head_count").unwrap()[3], 8);
    assert_eq!(file.get_i32_array("deci.attention.head_count_kv").unwrap()[3], 0);
    let back = read(&path);
    assert_eq!(back.config.blocks[3].attention, AttentionConfig::Linear);
    assert_eq!(back.config.blocks[3].ffn, FfnConfig::NoOp);
    let device = Device::flex();
    let tokens = vec![vec![1, 5, 9, 2, 77, 3, 14, 15]];
    let direct = mean_nll(&child.build(&device).unwrap(), &tokens).unwrap().mean_nll;
    let from_file = mean_nll(&back.build(&device).unwrap(), &tokens).unwrap().mean_nll;
    assert!(
        (direct - from_file).abs() <= 1e-6 * direct.abs(),
        "{direct} vs {from_file}"
    );
}

#[test]
fn what_deci_cannot_express_is_refused_by_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.gguf");
    let refused = |mut child: Checkpoint, edit: &dyn Fn(&mut Checkpoint)| -> String {
        edit(&mut child);
        child.weights = random_weights(&child.config, 1);
        let err = child.write_gguf(&path, GgmlType::F32, &[]).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!path.exists());
        err
    };
    let linear_ffn = refused(deci_child(), &|c| c.config.blocks[1].ffn = FfnConfig::Linear);
    assert!(
        linear_ffn.contains("layer 1: a linear FFN after an attention"),
        "{linear_ffn}"
    );
    let qk_norm = refused(deci_child(), &|c| c.config.qk_norm = true);
    assert!(qk_norm.contains("layer 1: per-head q/k RMSNorm"), "{qk_norm}");
    let window = refused(deci_child(), &|c| c.config.sliding_window = Some(8));
    assert!(window.contains("sliding window of 8 tokens"), "{window}");
    let yarn = refused(deci_child(), &|c| {
        c.config.rope_scaling = RopeScaling::Yarn {
            factor: 4.0,
            original_max_position_embeddings: 16,
            beta_fast: 16.0,
            beta_slow: 1.0,
            attention_factor: 1.0,
            truncate: true,
        }
    });
    assert!(yarn.contains("beta_fast 16"), "{yarn}");
    // A linear attention with a folded value bias: llama.cpp's deci adds no bias there.
    let mut biased = deci_child();
    biased.config.attention_bias = tessera::model::config::AttentionBias::Qkv;
    biased.weights = random_weights(&biased.config, 1);
    let err = biased.write_gguf(&path, GgmlType::F32, &[]).unwrap_err().to_string();
    assert!(
        err.contains("layer 2: the linear attention has a non-zero bias"),
        "{err}"
    );
    for (name, t) in biased.weights.iter_mut() {
        if name.ends_with("linear_attn.bias") {
            t.fill(0.0);
        }
    }
    biased.write_gguf(&path, GgmlType::F32, &[]).unwrap();
}

/// The metadata and tensors of a fixture, rewritten with `edit` applied to the metadata.
fn rewritten(name: &str, out: &Path, edit: impl Fn(&mut Vec<(String, MetaValue)>)) -> PathBuf {
    let source = GgufFile::open(gguf(name)).unwrap();
    let mut metadata: Vec<(String, MetaValue)> = source.metadata().map(|(k, v)| (k.to_string(), v.clone())).collect();
    edit(&mut metadata);
    let mut writer = GgufWriter::new(out);
    for (k, v) in metadata {
        writer.add_metadata(k, v).unwrap();
    }
    for t in source.tensors() {
        writer.add_tensor(t.name(), &t.shape(), GgmlType::F32).unwrap();
    }
    writer
        .write(|spec| source.tensor(&spec.name).unwrap().to_f32())
        .unwrap();
    out.to_path_buf()
}

fn set(metadata: &mut Vec<(String, MetaValue)>, key: &str, value: MetaValue) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => metadata.push((key.to_string(), value)),
    }
}

fn model_error(path: &Path) -> String {
    let err: CheckpointError = Checkpoint::read(path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    message
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gguf("llama-f32")).unwrap();

    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(model_error(&truncated).contains("truncated"));

    // The type id of `output_norm.weight`: after its name, n_dims (u32), the dims (u64 each).
    let unknown_type = tmp.path().join("unknown_type.gguf");
    let mut patched = bytes.clone();
    let name = b"output_norm.weight";
    let at = patched.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(patched[at..at + 4].try_into().unwrap()) as usize;
    patched[at + 4 + 8 * n_dims..at + 8 + 8 * n_dims].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&unknown_type, &patched).unwrap();
    let err = model_error(&unknown_type);
    assert!(
        err.contains("output_norm.weight") && err.contains("unknown ggml type id 99"),
        "{err}"
    );

    // A dim that makes the tensor bigger than the bytes it has.
    let grown = tmp.path().join("grown.gguf");
    let mut patched = bytes.clone();
    patched[at + 4..at + 12].copy_from_slice(&65u64.to_le_bytes());
    std::fs::write(&grown, &patched).unwrap();
    let err = model_error(&grown);
    assert!(err.contains("output_norm.weight"), "{err}");

    let cases: [(&str, &str, MetaValue, &str); 6] = [
        (
            "general.architecture",
            "arch",
            MetaValue::Str("gemma2".into()),
            "`gemma2` is not an architecture",
        ),
        // Tensors that disagree with the keys.
        (
            "llama.feed_forward_length",
            "ffn",
            MetaValue::U32(160),
            "blk.0.ffn_gate.weight",
        ),
        (
            "llama.attention.scale",
            "scale",
            MetaValue::F32(0.5),
            "llama.attention.scale",
        ),
        (
            "llama.attention.sliding_window",
            "window",
            MetaValue::U32(8),
            "sliding window",
        ),
        (
            "llama.rope.scaling.yarn_beta_fast",
            "beta",
            MetaValue::F32(16.0),
            "yarn_beta_fast",
        ),
        (
            "llama.rope.scaling.type",
            "longrope",
            MetaValue::Str("longrope".into()),
            "`longrope`",
        ),
    ];
    for (key, file, value, expected) in cases {
        let path = rewritten("llama-f32", &tmp.path().join(format!("{file}.gguf")), |m| {
            set(m, key, value.clone())
        });
        let err = model_error(&path);
        assert!(err.contains(expected), "{key}: {err}");
    }
    let linear_and_yarn = rewritten("llama-f32", &tmp.path().join("scale.gguf"), |m| {
        set(m, "llama.rope.scaling.attn_factor", MetaValue::F32(2.0))
    });
    assert!(model_error(&linear_and_yarn).contains("rope.scaling.attn_factor"));
    // llama.cpp's qwen2 graph ignores rope_freqs.weight: a qwen2 file with it says nothing exact.
    let source = GgufFile::open(gguf("qwen2_bias-f32")).unwrap();
    let qwen_freqs = tmp.path().join("qwen_freqs.gguf");
    let mut writer = GgufWriter::new(&qwen_freqs);
    for (k, v) in source.metadata() {
        writer.add_metadata(k, v.clone()).unwrap();
    }
    writer.add_tensor("rope_freqs.weight", &[8], GgmlType::F32).unwrap();
    for t in source.tensors() {
        writer.add_tensor(t.name(), &t.shape(), t.ggml_type()).unwrap();
    }
    writer
        .write(|spec| match spec.name.as_str() {
            "rope_freqs.weight" => Ok(vec![1.0; 8]),
            name => source.tensor(name).unwrap().to_f32(),
        })
        .unwrap();
    assert!(model_error(&qwen_freqs).contains("rope_freqs.weight"));

    // Tokenizers: an unknown pre-tokenizer, and a key that changes tokenisation.
    for (key, file, value, expected) in [
        (
            "tokenizer.ggml.pre",
            "pre",
            MetaValue::Str("qwen9".into()),
            "`qwen9` is not a pre-tokenizer",
        ),
        (
            "tokenizer.ggml.add_eos_token",
            "eos",
            MetaValue::Bool(true),
            "tokenizer.ggml.add_eos_token",
        ),
    ] {
        let path = rewritten("qwen2_bias-f32", &tmp.path().join(format!("{file}.gguf")), |m| {
            set(m, key, value.clone())
        });
        let err = Tokenizer::read(&path).err().unwrap().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains(expected),
            "{err}"
        );
    }
}

/// `SMOLLM2_REFERENCE` (the output folder of scripts/smollm2_reference.py) and the shared
/// SmolLM2 GGUF, or `None` after saying why the test is skipped.
fn smollm2() -> Option<(PathBuf, PathBuf)> {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let reference = std::env::var_os("SMOLLM2_REFERENCE").map(PathBuf::from);
    match reference {
        Some(dir) if model.is_file() && dir.join("nll.json").is_file() => Some((model, dir)),
        _ => {
            let reason = "SKIPPED smollm2_matches_llama_cpp: needs ../shared/data/models/smollm2-135m-instruct \
                          and SMOLLM2_REFERENCE=<scripts/smollm2_reference.py output>\n";
            let _ = std::io::Write::write_all(&mut std::io::stderr(), reason.as_bytes());
            None
        }
    }
}

/// SmolLM2 from its Q4_1 GGUF against numpy (exact) and llama.cpp: mean NLL on 512 WikiText-2
/// ids, 30 greedy tokens, and the tokenizer on every reference text (mismatches counted).
#[test]
#[ignore = "needs the shared SmolLM2 GGUF and SMOLLM2_REFERENCE; ~1 minute"]
fn smollm2_matches_llama_cpp() {
    let Some((path, dir)) = smollm2() else { return };
    let json =
        |name: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap() };
    let tokenizer = Tokenizer::read(&path).unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let mut mismatches = 0;
    let mut check = |what: &str, text: &str, want: &Value| {
        let got = tokenizer.encode(text, false).unwrap();
        let want = ids(want);
        let same = got == want;
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        eprintln!(
            "tokenizer {what}: {} ids, {}",
            want.len(),
            if same {
                "identical".into()
            } else {
                format!("DIFFERENT (got {}, first at {first:?})", got.len())
            }
        );
        mismatches += usize::from(!same);
    };
    let stories = json("tokenize_tinystories.json");
    let text = std::fs::read_to_string(data.join(stories["file"].as_str().unwrap())).unwrap();
    check("TinyStories (specials parsed)", &text, &stories["whole_file"]["ids"]);
    let texts = stories["stories"]["texts"].as_array().unwrap();
    for (i, (story, want)) in texts
        .iter()
        .zip(stories["stories"]["ids"].as_array().unwrap())
        .enumerate()
    {
        check(&format!("TinyStories story {i}"), story.as_str().unwrap(), want);
    }
    let shakespeare = json("tokenize_tinyshakespeare_20k.json");
    let text = std::fs::read_to_string(data.join(shakespeare["file"].as_str().unwrap())).unwrap();
    let first_20k: String = text.chars().take(20_000).collect();
    check("tiny-shakespeare 20k chars", &first_20k, &shakespeare["ids"]);
    let wiki = json("tokenize_wikitext2_test.json");
    let text = std::fs::read_to_string(data.join(wiki["file"].as_str().unwrap())).unwrap();
    check("WikiText-2 test", &text, &wiki["ids"]);
    let gsm = json("tokenize_gsm8k_200.json");
    for (i, (q, want)) in gsm["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(gsm["ids"].as_array().unwrap())
        .enumerate()
    {
        check(&format!("GSM8K {i}"), q.as_str().unwrap(), want);
    }
    let chat = json("chat.json");
    for (i, c) in chat["conversations"].as_array().unwrap().iter().enumerate() {
        check(&format!("chat {i}"), c["rendered"].as_str().unwrap(), &c["ids"]);
    }
    eprintln!("tokenizer: {mismatches} texts differ");

    let device = Device::flex();
    let model = read(&path).build(&device).unwrap();
    let nll = json("nll.json");
    let got = mean_nll(&model, &[ids(&nll["ids"])]).unwrap().mean_nll;
    let exact = nll["numpy"]["mean_nll"].as_f64().unwrap();
    eprintln!(
        "SmolLM2 mean NLL: tessera {got:.6}, numpy {exact:.6} (Δ {:+.1e}), llama.cpp F32 {:.6}, llama.cpp Q4_1 {:.6}",
        got - exact,
        nll["llama_cpp_f32"]["mean_nll"].as_f64().unwrap(),
        nll["llama_cpp"]["mean_nll"].as_f64().unwrap()
    );
    let chat = tokenizer.chat_spec().unwrap();
    assert_eq!(
        (chat.bos_token.as_deref(), chat.eos_token.as_deref()),
        (Some("<|im_start|>"), Some("<|im_end|>"))
    );
    let greedy = json("greedy.json");
    let prompt = ids(&greedy["prompt_ids"]);
    assert_eq!(
        tokenizer
            .encode(greedy["prompt_rendered"].as_str().unwrap(), false)
            .unwrap(),
        prompt
    );
    let out = generate(&model, &prompt, 30, Sampling::Greedy, &[]).unwrap();
    let continuation = out[prompt.len()..].to_vec();
    eprintln!("greedy: {continuation:?}");
    assert_eq!(continuation, ids(&greedy["numpy"]["ids"]));
    assert!((got - exact).abs() < 2e-3);
    assert_eq!(mismatches, 0);
}

/// A heterogeneous child of SmolLM2 (untrained: KV heads mean-pooled to 1, attention removed or
/// made linear (`W_o·W_v`), FFNs pruned to half by `‖W_down‖` columns or removed, layer 0
/// without attention), written as `deci` GGUF at f32 and q8_0 with SmolLM2's tokenizer into
/// `GGUF_CHILD_OUT`, with the 512 WikiText ids of `SMOLLM2_REFERENCE/nll.json` as `ids.txt`,
/// for llama.cpp to check:
///
/// ```text
/// SMOLLM2_REFERENCE=/work/pyref/out/smollm2 GGUF_CHILD_OUT=/tmp/child \
///     cargo test --test gguf_model smollm2_child -- --ignored --nocapture
/// python scripts/llamacpp_crosscheck.py /tmp/child/child-f32.gguf /tmp/child/ids.txt
/// python scripts/llamacpp_crosscheck.py /tmp/child/child-q8_0.gguf /tmp/child/ids.txt
/// ```
#[test]
#[ignore = "needs the shared SmolLM2 GGUF, SMOLLM2_REFERENCE and GGUF_CHILD_OUT; writes ~0.7 GB"]
fn smollm2_child_as_deci_for_llama_cpp() {
    use ndarray::Ix2;
    use tessera::library::init::{channel_contributions, prune_ffn, regroup_kv_heads, top_channels};
    let (Some((path, dir)), Some(out)) = (smollm2(), std::env::var_os("GGUF_CHILD_OUT").map(PathBuf::from)) else {
        eprintln!("SKIPPED smollm2_child_as_deci_for_llama_cpp: set SMOLLM2_REFERENCE and GGUF_CHILD_OUT");
        return;
    };
    let mut child = read(&path);
    let (config, weights) = (&mut child.config, &mut child.weights);
    let head_dim = config.head_dim;
    let layer = |i: usize| format!("model.layers.{i}");
    let drop_attention = |w: &mut tessera::model::TensorMap, i: usize| {
        w.retain(|name, _| {
            !(name.starts_with(&format!("{}.self_attn.", layer(i)))
                || *name == format!("{}.input_layernorm.weight", layer(i)))
        });
    };
    for i in [20, 21, 28] {
        config.blocks[i].attention = AttentionConfig::NoOp;
        drop_attention(weights, i);
    }
    for i in [4, 9, 17] {
        config.blocks[i].attention = AttentionConfig::Gqa { kv_heads: 1 };
        for p in ["k_proj", "v_proj"] {
            let name = format!("{}.self_attn.{p}.weight", layer(i));
            let pooled = regroup_kv_heads(&weights[&name], head_dim, 1);
            weights.insert(name, pooled);
        }
    }
    // Layer 14: each token attends to itself only, `W_o · W_v` (KV heads repeated per query head).
    let attention = |p: &str| format!("{}.self_attn.{p}.weight", layer(14));
    let v = regroup_kv_heads(&weights[&attention("v_proj")], head_dim, config.num_attention_heads);
    let o = weights[&attention("o_proj")]
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap();
    let product = o.dot(&v.view().into_dimensionality::<Ix2>().unwrap()).into_dyn();
    for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        weights.remove(&attention(p));
    }
    weights.insert(attention("linear_attn"), product);
    config.blocks[14].attention = AttentionConfig::Linear;
    for i in [10, 16, 24] {
        let prefix = layer(i);
        let down = &weights[&format!("{prefix}.mlp.down_proj.weight")];
        let keep = top_channels(&channel_contributions(&vec![1.0; down.shape()[1]], down), 768);
        let pruned = prune_ffn(weights, &prefix, &keep);
        weights.extend(pruned);
        config.blocks[i].ffn = FfnConfig::SwiGlu { intermediate: 768 };
    }
    for i in [26, 28] {
        config.blocks[i].ffn = FfnConfig::NoOp;
        weights.retain(|name, _| {
            !(name.starts_with(&format!("{}.mlp.", layer(i)))
                || *name == format!("{}.post_attention_layernorm.weight", layer(i)))
        });
    }
    std::fs::create_dir_all(&out).unwrap();
    let tokenizer = gguf_entries(&GgufFile::open(&path).unwrap());
    let ids_json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("nll.json")).unwrap()).unwrap();
    let sequence = ids(&ids_json["ids"]);
    let text: Vec<String> = sequence.iter().map(u32::to_string).collect();
    std::fs::write(out.join("ids.txt"), text.join(" ") + "\n").unwrap();
    let device = Device::flex();
    let nll = mean_nll(&child.build(&device).unwrap(), std::slice::from_ref(&sequence))
        .unwrap()
        .mean_nll;
    eprintln!(
        "child: {} parameters; tessera mean NLL in memory {nll:.6}",
        child.config.num_params()
    );
    for (ty, name) in [(GgmlType::F32, "child-f32.gguf"), (GgmlType::Q8_0, "child-q8_0.gguf")] {
        let file = out.join(name);
        child.write_gguf(&file, ty, &tokenizer).unwrap();
        let back = read(&file);
        assert_eq!(back.config, child.config);
        let model = back.build(&device).unwrap();
        let nll = mean_nll(&model, std::slice::from_ref(&sequence)).unwrap().mean_nll;
        let greedy = generate(&model, &sequence[..1], 30, Sampling::Greedy, &[]).unwrap();
        eprintln!("{name}: tessera mean NLL {nll:.6} (read back from the file); greedy from the first id {greedy:?}");
    }
}

/// The built-in world's tokenizer (byte-level, no merges, no splitting regex) goes into GGUF as
/// GPT-2's pre-tokenizer: without merges every token is one byte, so the splitting changes no
/// id, and the GGUF file tokenizes exactly as the `tokenizer.json` beside the model does.
#[test]
fn the_built_in_tokenizer_goes_into_gguf_with_the_same_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(tmp.path());
    let out = tmp.path().join("parent.gguf");
    let request = gguf_f32();
    export_model(&parent, &request, &out).unwrap();
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.get("tokenizer.ggml.pre"), Some(&MetaValue::Str("gpt-2".into())));
    let json = Tokenizer::read(&parent.join("tokenizer.json")).unwrap();
    let gguf = Tokenizer::read(&out).unwrap();
    for text in [
        "Tom has 12 apples, and 3.5 pears!  Then: <think>7+8=15</think> done.",
        "  leading spaces\tand tabs\nnew lines ünïcödé",
    ] {
        assert_eq!(
            gguf.encode(text, false).unwrap(),
            json.encode(text, false).unwrap(),
            "{text}"
        );
    }
}
