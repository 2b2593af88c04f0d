//! The training-related commands end to end: a tiny `parent train` run, `eval accuracy` on its
//! output, `data tokenize`, and clear errors for bad input (missing or empty corpus, a sequence
//! longer than the model's context, resuming a checkpoint of a different model, a broken task
//! file, a parent that will not fit in memory).

mod common;

use common::tessera;

fn run_ok(args: &[&str]) -> String {
    let out = tessera().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tessera {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn run_err(args: &[&str]) -> String {
    let out = tessera().args(args).output().unwrap();
    assert!(!out.status.success(), "tessera {args:?} should have failed");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "a panic instead of an error: {stderr}");
    stderr
}

const TINY: [&str; 8] = [
    "--steps",
    "4",
    "--batch-size",
    "2",
    "--seq-len",
    "32",
    "--eval-tasks",
    "3",
];

#[test]
fn tiny_parent_trains_resumes_and_is_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let mut args = vec!["parent", "train", "--out", out_s, "--layers", "1", "--json"];
    args.extend(TINY);
    let stopped = run_err(&[&args[..], &["--stop-after", "2"]].concat());
    assert!(stopped.contains("stopped after step 2 of 4"), "{stopped}");
    let report: serde_json::Value = serde_json::from_str(&run_ok(&args)).unwrap();
    assert_eq!(report["resumed_from"], 2);
    assert_eq!(report["steps"], 4);
    assert!(report["held_out_nll"].as_f64().unwrap() > 0.0);
    assert!(report["unigram_entropy"].as_f64().unwrap() > 1.0);
    assert_eq!(report["accuracy"]["on"]["tasks"], 3);
    assert_eq!(report["accuracy"]["off_direct"]["tasks"], 3);
    for file in [
        "parent/config.json",
        "parent/model.safetensors",
        "parent/tokenizer.json",
        "parent_report.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }

    let model = out.join("parent");
    let accuracy: serde_json::Value = serde_json::from_str(&run_ok(&[
        "eval",
        "accuracy",
        "--model",
        model.to_str().unwrap(),
        "--tasks",
        "builtin",
        "--count",
        "2",
        "--max-tokens",
        "8",
        "--json",
    ]))
    .unwrap();
    let results = accuracy["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "thinking on and off");
    assert_eq!(results[0]["thinking"], "On");
    assert_eq!(results[0]["tasks"], 2);

    let tasks = dir.path().join("tasks.jsonl");
    std::fs::write(
        &tasks,
        "{\"question\": \"What is 1+1?\", \"answer\": \"2\"}\n{\"question\": \"What is 2+2?\"}\n",
    )
    .unwrap();
    let err = run_err(&[
        "eval",
        "accuracy",
        "--model",
        model.to_str().unwrap(),
        "--tasks",
        tasks.to_str().unwrap(),
    ]);
    assert!(err.contains("tasks.jsonl:2:") && err.contains("answer"), "{err}");

    // Same output directory, different model: refused, naming what differs.
    let mut other = vec!["parent", "train", "--out", out_s, "--layers", "2"];
    other.extend(TINY);
    let err = run_err(&other);
    assert!(
        err.contains("different run") && err.contains("run.model.blocks"),
        "{err}"
    );
}

#[test]
fn sequence_longer_than_the_model_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(&[
        "parent",
        "train",
        "--out",
        dir.path().to_str().unwrap(),
        "--seq-len",
        "300",
    ]);
    assert!(
        err.contains("--seq-len 300 is above the model's maximum of 256"),
        "{err}"
    );
}

#[test]
fn a_parent_that_will_not_fit_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parent");
    let run = tessera()
        .env("TESSERA_MEMORY_LIMIT", "64MiB")
        .args(["parent", "train", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    common::assert_fails_with(
        &run,
        &[
            "parent would need about",
            "activations of a step (16 windows of up to 129 tokens)",
            "only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)",
            "--batch-size",
        ],
    );
    assert!(!out.exists(), "a refused parent writes nothing");
}

#[test]
fn data_tokenize_writes_shards_and_rejects_missing_or_empty_corpora() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(
        &tokenizer,
        serde_json::to_string(&tessera::world::tokenizer::tokenizer_json()).unwrap(),
    )
    .unwrap();
    let text = dir.path().join("corpus.txt");
    let documents: Vec<String> = (0..40).map(|i| format!("Story number {i} is short.")).collect();
    std::fs::write(&text, documents.join("\n===\n")).unwrap();
    let shards = dir.path().join("shards");
    let tokenize = |text: &std::path::Path, extra: &[&str]| -> Vec<String> {
        let base = [
            "data",
            "tokenize",
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
        ];
        let out = ["--out", shards.to_str().unwrap()];
        base.iter().chain(extra).chain(&out).map(|s| s.to_string()).collect()
    };
    let args = tokenize(&text, &["--split-on", "===", "--held-out-every", "4", "--json"]);
    let report: serde_json::Value =
        serde_json::from_str(&run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
    let (train, held_out) = (
        report["train_documents"].as_u64().unwrap(),
        report["held_out_documents"].as_u64().unwrap(),
    );
    assert_eq!(train + held_out, 40);
    assert!(held_out > 0 && train > held_out, "{train} / {held_out}");
    let shard = tessera::data::TokenShard::open(&shards.join("train.tokens")).unwrap();
    assert_eq!(shard.len(), report["train_tokens"].as_u64().unwrap());

    let missing = dir.path().join("missing.txt");
    let err = run_err(&tokenize(&missing, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("missing.txt"), "{err}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "  \n\n").unwrap();
    let err = run_err(&tokenize(&empty, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");
}
