//! From a search solution to a trained child: fused runs as multi-layer library candidates
//! (scored, profiled, searched, assembled), `tessera assemble`, global distillation (it lowers
//! the KL to the parent and resumes exactly), and the errors on bad input.

mod common;

use std::path::Path;

use burn::prelude::Device;
use tessera::checkpoint::TensorSource;
use tessera::checkpoint::{Checkpoint, LayerSpan};
use tessera::cost::{Precision, ProfileOptions, Scenario, profile_library};
use tessera::library::{ChildChoice, Library, block_name};
use tessera::posttrain::{DistillError, DistillLoss, DistillOptions, distill, layer_matches};
use tessera::score::{Reference, record_scores};
use tessera::search::{Objective, SearchInput, SearchSpec, parse_limits, search};
use tessera::source::TokenSource;
use tessera::train::RunControl;

fn windows(model: &tessera::model::Llama, seq: usize, train: usize, held_out: usize) -> tessera::source::Windows {
    TokenSource::Builtin { seed: 5 }
        .windows(model, None, seq + 1, train, held_out)
        .unwrap()
}

#[test]
fn fused_runs_are_scored_profiled_searched_and_assembled_as_multi_layer_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library_in(dir.path(), 256, "fusion.toml");
    let library = Library::open(&lib).unwrap();
    let device = Device::flex();
    let candidates = library.candidates();
    let fused: Vec<_> = candidates.iter().filter(|(s, _)| s.layers() == 2).collect();
    // The parent's attention at layer 0, one KV head, or none; the two parent FFNs side by side.
    assert_eq!(fused.len(), 3, "{fused:?}");

    let scoring = common::builtin_scoring(&library, 4);
    let rows = scoring
        .score(&library, &candidates, tessera::library::Stage::Trained, false)
        .unwrap();
    record_scores(&lib, &rows).unwrap();
    // The score of a fused candidate is the KL of the child that the assembly builds from it.
    let parent = library.parent(None).unwrap();
    for row in rows.iter().filter(|r| r.span.layers() == 2) {
        let choice = ChildChoice(vec![(row.span, row.variant.clone())]);
        let child = library.assemble_spans(&parent, &choice).unwrap();
        assert_eq!(child.config.num_layers(), 1);
        assert_eq!(child.layer_spans(), vec![LayerSpan { first: 0, last: 1 }]);
        let whole = scoring.reference.score_model(&child.build(&device).unwrap()).unwrap();
        assert!(
            (whole.kl_div - row.scores.kl_div).abs() <= 1e-5 * (1.0 + whole.kl_div),
            "{}: {} vs {}",
            row.variant,
            whole.kl_div,
            row.scores.kl_div
        );
    }
    profile_library(
        &lib,
        &ProfileOptions {
            target: "cpu".parse().unwrap(),
            precision: Precision::F32,
            scenarios: vec![Scenario::Decode { batch: 1, context: 24 }],
            repeats: 3,
            calibration_models: 0,
            ..ProfileOptions::default()
        },
        &device,
    )
    .unwrap();
    let input = SearchInput::open(&lib).unwrap();
    let multi: Vec<_> = input
        .problem
        .candidates
        .iter()
        .filter(|c| !c.is_single_layer())
        .collect();
    assert_eq!(multi.len(), 3);
    for c in &multi {
        assert_eq!(c.span_key, "layer_0-1");
        for key in [
            "metrics.kl_div",
            "stats.num_params",
            "stats.runtime_ms_cpu_f32_decode_b1_c24",
        ] {
            assert!(c.values.contains_key(key), "{}: {key} missing", c.name);
        }
    }
    // Fewer parameters than any pair of single blocks with attention in both layers offers:
    // a fused block with attention, or attention dropped somewhere.
    let objective = Objective {
        key: "metrics.kl_div".into(),
        maximize: false,
    };
    let spec = SearchSpec {
        baselines: false,
        ..SearchSpec::raw(objective, parse_limits("stats.kv_bytes_per_token<=128").unwrap())
    };
    let report = search(&input, &spec).unwrap();
    let best = &report.solutions[0];
    let path = dir.path().join("solutions.json");
    report.write(&path).unwrap();

    let out = dir.path().join("child");
    let run = common::tessera()
        .args(["assemble", "--library"])
        .arg(&lib)
        .arg("--solution")
        .arg(format!("{}#0", path.display()))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (child, _) = Checkpoint::read(&out).unwrap();
    let expected_layers = best.choice.0.len();
    assert_eq!(child.config.num_layers(), expected_layers, "{:?}", best.choice);
    assert!(out.join("tokenizer.json").is_file());
    let names: Vec<String> = child.config.blocks.iter().map(block_name).collect();
    let chosen: Vec<&str> = best.choice.names();
    assert_eq!(names, chosen);

    // Built one layer at a time from the stored parent and the library (what `search --measure`
    // times), the child and the parent are the written ones, value for value.
    let stored = library.stored_parent(None).unwrap();
    let streamed = library.assemble_stored(&stored, &best.choice).unwrap();
    let built = |model: &tessera::model::Llama| tessera::model::model_weights(model);
    assert_eq!(
        built(&streamed.build_model(&device).unwrap()),
        built(&child.build(&device).unwrap())
    );
    let (parent, _) = Checkpoint::read(&library.manifest.parent.source).unwrap();
    assert_eq!(
        built(&stored.build_model(&device).unwrap()),
        built(&parent.build(&device).unwrap())
    );

    // Under a memory limit below their estimates, assembling, exporting and fusing are refused
    // before they read a weight, and write nothing.
    let refused = dir.path().join("refused");
    let solution = format!("{}#0", path.display());
    let commands: [(Vec<&std::ffi::OsStr>, &str, &str); 3] = [
        (
            vec![
                "assemble".as_ref(),
                "--library".as_ref(),
                lib.as_os_str(),
                "--solution".as_ref(),
                solution.as_ref(),
            ],
            "assemble would need about",
            "largest tensor",
        ),
        (
            vec![
                "export".as_ref(),
                "--model".as_ref(),
                out.as_os_str(),
                "--format".as_ref(),
                "decilm".as_ref(),
                "--dtype".as_ref(),
                "bf16".as_ref(),
            ],
            "export would need about",
            "largest tensor",
        ),
        (
            vec![
                "fuse".as_ref(),
                "apply".as_ref(),
                "--model".as_ref(),
                out.as_os_str(),
                "--runs".as_ref(),
                "auto".as_ref(),
            ],
            "fuse would need about",
            "the model as f32 four times",
        ),
    ];
    for (args, expected, detail) in commands {
        let run = common::tessera()
            .env("TESSERA_MEMORY_LIMIT", "16MiB")
            .args(&args)
            .arg("--out")
            .arg(&refused)
            .output()
            .unwrap();
        common::assert_fails_with(
            &run,
            &[
                expected,
                detail,
                "only 0.02 GiB are available (TESSERA_MEMORY_LIMIT=16MiB)",
                "more memory",
            ],
        );
        assert!(!refused.exists(), "a refused {:?} writes nothing", args[0]);
    }
}

fn assemble_error(lib: &Path, solution: &str, out: &Path) -> String {
    let run = common::tessera()
        .args(["assemble", "--library"])
        .arg(lib)
        .args(["--solution", solution, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn assemble_names_what_is_wrong_with_a_solution() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 64);
    let out = dir.path().join("child");
    let write = |name: &str, choice: serde_json::Value| {
        let path = dir.path().join(name);
        let solution = |method: &str| {
            serde_json::json!({ "method": method, "objective": 0.0, "totals": {}, "choice": choice,
                                "status": "optimal", "solve_ms": 0.0, "batch_size": null })
        };
        let report = serde_json::json!({
            "objective": { "key": "metrics.kl_div", "maximize": false }, "limits": [],
            "solutions": [solution("mip")], "baselines": [solution("greedy")], "baselines_without": [],
        });
        std::fs::write(&path, report.to_string()).unwrap();
        path.display().to_string()
    };
    let missing = write(
        "missing.json",
        serde_json::json!({ "layer_0": "kv2 + ffn64", "layer_1": "kv7 + ffn64" }),
    );
    let error = assemble_error(&lib, &missing, &out);
    assert!(error.contains("layer_1 offers no block `kv7 + ffn64`"), "{error}");
    let error = assemble_error(&lib, &format!("{missing}#3"), &out);
    assert!(
        error.contains("has no solutions[3]") && error.contains("1 solutions"),
        "{error}"
    );
    let error = assemble_error(&lib, &format!("{missing}#best"), &out);
    assert!(error.contains("baseline best") && error.contains("greedy"), "{error}");
    let short = write("short.json", serde_json::json!({ "layer_0": "kv2 + ffn64" }));
    let error = assemble_error(&lib, &short, &out);
    assert!(error.contains("stops before layer 1"), "{error}");
    let overlapping = write(
        "overlap.json",
        serde_json::json!({ "layer_0-1": "attn_noop + ffn128", "layer_1": "kv2 + ffn64" }),
    );
    let error = assemble_error(&lib, &overlapping, &out);
    assert!(
        error.contains("layer_1") && error.contains("parent layer 2 comes next"),
        "{error}"
    );
    let fused_not_offered = write("fused.json", serde_json::json!({ "layer_0-1": "attn_noop + ffn128" }));
    let error = assemble_error(&lib, &fused_not_offered, &out);
    assert!(error.contains("layer_0-1 offers no block"), "{error}");
    assert!(!out.exists(), "nothing is written on an error");
}

#[test]
fn distillation_lowers_the_kl_to_the_parent_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 256);
    let library = Library::open(&lib).unwrap();
    let device = Device::flex();
    let teacher = library.parent(None).unwrap();
    let student = library
        .assemble(
            &teacher,
            &["kv1 + ffn16".to_string(), "attn_noop + ffn_linear".to_string()],
        )
        .unwrap();
    let teacher_model = teacher.build(&device).unwrap();
    let data = windows(&teacher_model, 16, 64, 8);
    let options = DistillOptions {
        loss: DistillLoss::CosineKl,
        tokens: 40 * 8 * 16,
        batch_size: 8,
        micro_batches: 2,
        seq_len: 16,
        peak_lr: 3e-3,
        seed: 1,
        control: RunControl {
            checkpoint_every: 5,
            stop_after: None,
            progress: false,
        },
    };
    let (whole, report) = distill(&student, &teacher_model, &data, &options, &dir.path().join("a")).unwrap();
    eprintln!("KL {} -> {}", report.before.kl_div, report.after.kl_div);
    assert!(report.finished && report.steps == 40);
    assert!(report.after.kl_div < 0.8 * report.before.kl_div, "{report:?}");
    assert_eq!(whole.parent_layers, student.parent_layers);
    let reference = Reference::new(&teacher_model, &data.held_out).unwrap();
    let check = reference.score_model(&whole.build(&device).unwrap()).unwrap();
    assert!((check.kl_div - report.after.kl_div).abs() < 1e-6);

    let stopped = DistillOptions {
        control: RunControl {
            stop_after: Some(17),
            ..options.control
        },
        ..options.clone()
    };
    let work = dir.path().join("b");
    let (_, partial) = distill(&student, &teacher_model, &data, &stopped, &work).unwrap();
    assert!(!partial.finished && partial.steps == 17);
    let (resumed, report) = distill(&student, &teacher_model, &data, &options, &work).unwrap();
    assert!(report.finished);
    for (name, tensor) in &whole.weights {
        let other = &resumed.weights[name];
        let diff = tensor
            .iter()
            .zip(other.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "{name}: {diff}");
    }
}

#[test]
fn distillation_refuses_a_teacher_that_does_not_fit_the_student() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 64);
    let teacher = Library::open(&lib).unwrap().parent(None).unwrap();
    let mut other_vocab = teacher.clone();
    other_vocab.config.vocab_size += 1;
    let error = layer_matches(&teacher, &other_vocab.config).unwrap_err();
    assert!(matches!(error, DistillError::Vocabulary { .. }), "{error}");
    assert!(error.to_string().contains("must share one"), "{error}");
    let mut deeper = teacher.clone();
    deeper.config.blocks.push(deeper.config.blocks[0]);
    let error = layer_matches(&teacher, &deeper.config).unwrap_err().to_string();
    assert!(
        error.contains("parent layers 0..=1 but the teacher has 3 layers"),
        "{error}"
    );
    // A fused student matches each of its layers to the last parent layer it stands for.
    let fused = Checkpoint {
        parent_layers: Some(vec![LayerSpan { first: 0, last: 1 }]),
        config: tessera::model::ModelConfig {
            blocks: vec![teacher.config.blocks[0]],
            ..teacher.config.clone()
        },
        weights: Default::default(),
    };
    assert_eq!(layer_matches(&fused, &teacher.config).unwrap(), vec![(0, 1)]);
}
