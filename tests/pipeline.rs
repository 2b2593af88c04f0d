//! `tessera run`: a tiny pipeline run end to end as a real process, killed in the middle of a
//! stage and run again (finished stages are not redone), then run with a changed RL setting
//! (only RL and what follows it run again); the same pipeline stage by stage, and with library,
//! score and profile through a real Slurm, ends with the same summary. And bad pipeline files.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tessera;
use serde_json::Value;

fn tiny_pipeline(dir: &Path, rl_rounds: usize) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let constraints = dir.join("tiny-constraints.toml");
    std::fs::write(
        &constraints,
        "objective = \"metrics.kl_div\"\n[target]\nhardware = \"cpu\"\ndtype = \"f32\"\n\
         [scenario]\nbatch_sizes = [1]\nprompt_tokens = 32\ngenerated_tokens = 16\n\
         [limits]\nthroughput_speedup = 1.2\n",
    )
    .unwrap();
    let text = format!(
        r#"[run]
name = "tiny"
[parent]
layers = 2
steps = 30
batch_size = 8
train_tasks = 2000
train_stories = 100
eval_stories = 20
[library]
space = "{space}"
tokens = 2048
[score]
windows = 4
[profile]
repeats = 2
calibration_models = 3
[search]
constraints = "tiny-constraints.toml"
sweep = "throughput_speedup=1..1.4:2"
[fuse]
windows = 4
[distill]
tokens = 4096
[sft]
stages = ["on:4", "both:4"]
batch_size = 8
[rl]
rounds = {rl_rounds}
survey_tasks = 24
prompts_per_round = 4
group_size = 4
max_new_tokens = 24
[eval]
tasks = 16
request_rounds = 2
"#,
        space = repo.join("search_spaces/small.toml").display()
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The run's JSON report and what it printed on stderr.
fn run_json(pipeline: &Path, dir: &Path) -> (Value, String) {
    let output = tessera()
        .args(["run", pipeline.to_str().unwrap(), "--json", "--runs"])
        .arg(dir.join("runs"))
        .arg("--reports")
        .arg(dir.join("reports"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tessera run failed:\n{stderr}");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stderr}"));
    (report, stderr.into_owned())
}

fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn stamp_id(run: &Path, stage: &str) -> String {
    let text = std::fs::read_to_string(run.join("stages").join(format!("{stage}.json"))).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_run_killed_mid_stage_resumes_without_redoing_finished_stages() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = tiny_pipeline(dir.path(), 8);
    let run = dir.path().join("runs/tiny");

    // Kill the process once RL has started (SFT stamped, RL's work folder made).
    let mut child = tessera()
        .args(["run", pipeline.to_str().unwrap(), "--json", "--runs"])
        .arg(dir.path().join("runs"))
        .arg("--reports")
        .arg(dir.path().join("reports"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if run.join("stages/sft.json").is_file() && run.join("rl/train").is_dir() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tessera run ended ({status}) before RL started");
        }
        assert!(started.elapsed() < Duration::from_secs(1200), "RL never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !run.join("stages/rl.json").exists(),
        "the kill came after RL finished; it was meant to land inside the stage"
    );
    let finished = [
        "parent", "library", "score", "profile", "search", "assemble", "fuse", "distill", "sft",
    ];
    let ids_before: Vec<String> = finished.iter().map(|s| stamp_id(&run, s)).collect();
    let parent_weights = run.join("parent-run/parent/model.safetensors");
    let parent_written = modified(&parent_weights);
    let library_written = modified(&run.join("library/manifest.json"));

    let (report, log) = run_json(&pipeline, dir.path());
    assert!(
        log.contains("rl: resuming"),
        "RL started afresh instead of resuming:\n{log}"
    );
    let resumed = outcomes(&report);
    let expected: Vec<(String, String)> = finished
        .iter()
        .map(|s| (s.to_string(), "up_to_date".to_string()))
        .chain(
            ["rl", "export", "report"]
                .iter()
                .map(|s| (s.to_string(), "ran".to_string())),
        )
        .collect();
    assert_eq!(resumed, expected);
    let ids_after: Vec<String> = finished.iter().map(|s| stamp_id(&run, s)).collect();
    assert_eq!(ids_before, ids_after, "a finished stage was stamped again");
    assert_eq!(
        modified(&parent_weights),
        parent_written,
        "the parent was written again"
    );
    assert_eq!(modified(&run.join("library/manifest.json")), library_written);
    // Each stage that ran says how much memory it took, on stderr and in the report (Linux).
    if std::path::Path::new("/proc/self/status").exists() {
        for stage in report["stages"].as_array().unwrap() {
            let peak = stage["peak_bytes"].as_u64().unwrap_or(0);
            assert!(peak > 1 << 20, "{stage}");
        }
        assert!(log.contains("rl: done in") && log.contains("MiB"), "{log}");
    }

    // The run ends with its summary and its report.
    let rows = report["summary"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "parent, assembled, distilled, final");
    assert_eq!(rows[0]["model"], "parent");
    assert!(rows[0]["request_ms"].as_f64().unwrap() > 0.0);
    assert!(rows[3]["kl_to_parent"].as_f64().unwrap() > 0.0);
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes[0].contains("held-out NLL") && notes[0].contains("unigram entropy"),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.starts_with("GRPO")), "{notes:?}");
    let page = PathBuf::from(report["report"].as_str().unwrap());
    let html = std::fs::read_to_string(&page).unwrap();
    for part in [
        "Parent and child",
        "architecture.svg",
        "dependency.svg",
        "curve-0.svg",
        "pareto-",
    ] {
        assert!(html.contains(part), "the report lacks {part}");
    }
    for picture in ["architecture.svg", "dependency.svg", "curve-0.svg"] {
        assert!(page.with_file_name(picture).is_file(), "{picture} is missing");
    }

    // Nothing changed: nothing runs.
    let (again, _) = run_json(&pipeline, dir.path());
    assert!(
        outcomes(&again).iter().all(|(_, o)| o == "up_to_date"),
        "{:?}",
        outcomes(&again)
    );

    // A changed RL setting reruns RL and what follows it, nothing before.
    let pipeline = tiny_pipeline(dir.path(), 9);
    let (changed, log) = run_json(&pipeline, dir.path());
    assert!(
        log.contains("rl: running"),
        "RL with other settings must start afresh:\n{log}"
    );
    let ran: Vec<String> = outcomes(&changed)
        .into_iter()
        .filter(|(_, o)| o == "ran")
        .map(|(s, _)| s)
        .collect();
    assert_eq!(ran, ["rl", "export", "report"]);

    // The report holds every model whole: under a limit below its estimate it is refused
    // before it reads one, and the stages before it stay done.
    std::fs::remove_file(run.join("stages/report.json")).unwrap();
    run_refused(
        &pipeline,
        dir.path(),
        "64MiB",
        &[
            "report would need about",
            "models built as f32, and one checkpoint while it is built",
            "only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)",
        ],
    );
    assert!(run.join("stages/rl.json").is_file(), "the stages before stay done");
}

/// Runs `pipeline` into `dir` under a memory limit and checks that it fails with `parts` in its
/// error.
fn run_refused(pipeline: &Path, dir: &Path, limit: &str, parts: &[&str]) {
    let output = tessera()
        .env("TESSERA_MEMORY_LIMIT", limit)
        .arg("run")
        .arg(pipeline)
        .arg("--runs")
        .arg(dir.join("runs"))
        .arg("--reports")
        .arg(dir.join("reports"))
        .output()
        .unwrap();
    common::assert_fails_with(&output, parts);
}

fn run_error(pipeline_text: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, pipeline_text.replace("REPO", repo.to_str().unwrap())).unwrap();
    let output = tessera()
        .args(["run", path.to_str().unwrap(), "--runs"])
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        !dir.path().join("runs").exists(),
        "a bad pipeline file must stop before writing"
    );
    (String::from_utf8_lossy(&output.stderr).into_owned(), path)
}

#[test]
fn bad_pipeline_files_are_refused_naming_file_and_field() {
    let good_search = "[library]\nspace = \"REPO/search_spaces/small.toml\"\n[search]\nconstraints = \"REPO/constraints/cpu-2x.toml\"\n";
    let cases = [
        (
            format!("[run]\nname = \"x\"\n{good_search}[rl]\nrouns = 3\n"),
            vec!["bad.toml", "line 8", "unknown field `rouns`"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[sft]\nstages = [\"on:ten\"]\n"),
            vec!["bad.toml", "`sft.stages`", "STEPS must be a whole number"],
        ),
        (
            "[run]\nname = \"x\"\n[library]\nspace = \"REPO/search_spaces/small.toml\"\n[search]\nconstraints = \"nowhere.toml\"\n".to_string(),
            vec!["bad.toml", "`search.constraints`", "nowhere.toml is not a file"],
        ),
        (
            format!("[run]\nname = \"../x\"\n{good_search}"),
            vec!["bad.toml", "`run.name`", "plain folder name"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[distill]\nloss = \"mse\"\n"),
            vec!["bad.toml", "line 8", "unknown variant `mse`"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[rl]\ngroup_size = 1\n"),
            vec!["bad.toml", "`rl.group_size`", "at least 2"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[sft]\nbatch_size = 7\n"),
            vec!["bad.toml", "`sft.batch_size`", "7 must be a multiple of 2"],
        ),
        (good_search.to_string(), vec!["bad.toml", "missing field `run`"]),
        (
            format!("[run]\nname = \"x\"\n[parent]\ncheckpoint = \"REPO/Cargo.toml\"\nsteps = 5\n{good_search}"),
            vec!["bad.toml", "`parent.checkpoint`", "not trained here: remove `parent.steps`"],
        ),
        (
            format!("[run]\nname = \"x\"\n[parent]\ncheckpoint = \"no-such-model.gguf\"\n{good_search}"),
            vec!["bad.toml", "`parent.checkpoint`", "no-such-model.gguf does not exist"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[data]\ntext = \"missing.txt\"\n"),
            vec!["bad.toml", "`data.text`", "missing.txt is not a file"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[export]\ngguf = \"q4_k\"\n"),
            vec!["bad.toml", "`export.gguf`", "`q4_k`"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[distill]\nlr = -1e-4\n"),
            vec!["bad.toml", "`distill.lr`", "above 0, got -0.0001"],
        ),
        (
            format!("[run]\nname = \"x\"\n{good_search}[eval]\nwindows = 0\n"),
            vec!["bad.toml", "`eval.windows`", "at least 1"],
        ),
        (
            "[run]\nname = \"x\"\n[library]\nspace = \"REPO/search_spaces/small.toml\"\n[search]\n\
             constraints = \"REPO/constraints/h100-throughput-2x.toml\"\nmeasure_rounds = 9\n"
                .to_string(),
            vec!["bad.toml", "`search.measure_rounds`", "timed on this machine's CPU", "targets h100"],
        ),
    ];
    for (text, expected) in cases {
        let (error, _) = run_error(&text);
        for part in expected {
            assert!(error.contains(part), "expected `{part}` in:\n{error}\nfor:\n{text}");
        }
    }
}

#[test]
fn the_smollm2_pipeline_file_reads_a_pretrained_parent_and_real_text() {
    use tessera::checkpoint::ExportDtype;
    use tessera::pipeline::{ParentSource, Pipeline};
    use tessera::source::TokenSource;
    let Some(data) = common::shared_data("the SmolLM2 pipeline file") else {
        return;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/smollm2.toml");
    let p = Pipeline::read(&path).unwrap();
    let ParentSource::Checkpoint(parent) = &p.parent_source else {
        panic!("SmolLM2 is read, not trained: {:?}", p.parent_source);
    };
    assert_eq!(
        parent.canonicalize().unwrap(),
        data.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
            .canonicalize()
            .unwrap()
    );
    let TokenSource::Text { path: text } = p.data() else {
        panic!("the stages read WikiText-2, not the built-in world: {}", p.data());
    };
    assert!(text.ends_with("wikitext-2/valid.txt"));
    let TokenSource::Text { path: held_out } = p.eval_windows().data else {
        panic!("the table measures on WikiText-2's test split");
    };
    assert!(held_out.ends_with("wikitext-2/test.txt"));
    assert_eq!(p.export_gguf, Some(ExportDtype::Q8_0));
    // GRPO asks multi-step tasks with thinking on only (the child solves no one-step sum).
    assert!(!p.rl.direct_tasks);
    assert_eq!(p.rl_prompts().len(), 1);
    // Its parent stage measures SmolLM2 whole: refused under a limit below its estimate, before
    // the parent is read, with nothing written.
    let dir = tempfile::tempdir().unwrap();
    run_refused(
        &path,
        dir.path(),
        "256MiB",
        &[
            "parent would need about",
            "the parent as f32, tensors and model 1.00",
            "only 0.25 GiB are available (TESSERA_MEMORY_LIMIT=256MiB)",
        ],
    );
    assert!(!dir.path().join("runs/smollm2/parent-run/parent_report.json").exists());
}

/// The pipeline of the equivalence test: tiny, with block costs from the H100 roofline (no
/// timing noise reaches the search) and a space without linear variants (their least-squares
/// initialisation moved to f64 Gram matrices in faer with the stage functions; everything else
/// must compute what it computed before).
fn equivalence_pipeline(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("h100.toml"),
        "objective = \"metrics.kl_div\"\n[target]\nhardware = \"h100\"\ndtype = \"bf16\"\n\
         [scenario]\nbatch_sizes = [1]\nprompt_tokens = 32\ngenerated_tokens = 16\n\
         [limits]\nthroughput_speedup = 1.3\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("space.toml"),
        "[all]\nattention = [\"kv/1\", \"kv/2\", \"no_op\"]\nffn = [1.0, 0.5, 0.25, \"no_op\"]\n",
    )
    .unwrap();
    let text = "[run]\nname = \"tinynl\"\n[parent]\nlayers = 2\nsteps = 30\nbatch_size = 8\ntrain_tasks = 2000\n\
                train_stories = 100\neval_stories = 20\n[library]\nspace = \"space.toml\"\ntokens = 2048\n\
                [score]\nwindows = 4\n[profile]\nrepeats = 2\ncalibration_models = 3\n[search]\n\
                constraints = \"h100.toml\"\nsweep = \"throughput_speedup=1..1.4:2\"\n[fuse]\nwindows = 4\n\
                [distill]\ntokens = 4096\n[sft]\nstages = [\"on:4\", \"both:4\"]\nbatch_size = 8\n[rl]\nrounds = 3\n\
                survey_tasks = 24\nprompts_per_round = 4\ngroup_size = 4\nmax_new_tokens = 24\n[eval]\ntasks = 16\n\
                request_rounds = 2\n[slurm]\nitems_per_task = 4\nmax_parallel = 2\npoll_seconds = 0.5\n";
    let path = dir.join("tinynl.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The summary rows without their timings.
fn untimed(rows: &Value) -> Vec<Value> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut row = row.clone();
            let object = row.as_object_mut().unwrap();
            object.remove("request_ms");
            object.remove("speedup");
            row
        })
        .collect()
}

fn assert_rows_close(found: &[Value], expected: &[Value], tolerance: f64, what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}");
    for (f, e) in found.iter().zip(expected) {
        assert_close(f, e, tolerance, &format!("{what}: {}", e["model"]));
    }
}

/// Every field of `expected` (nested objects field by field) in `found`, numbers within a
/// relative `tolerance`.
fn assert_close(found: &Value, expected: &Value, tolerance: f64, what: &str) {
    match (expected.as_f64(), found.as_f64(), expected.as_object()) {
        (Some(a), Some(b), _) => assert!(
            (a - b).abs() <= tolerance * a.abs().max(1e-12),
            "{what}: {b} against {a}"
        ),
        (_, _, Some(fields)) => {
            for (key, value) in fields {
                assert_close(&found[key], value, tolerance, &format!("{what} {key}"));
            }
        }
        _ => assert_eq!(found, expected, "{what}"),
    }
}

#[test]
fn stage_functions_one_by_one_give_what_tessera_run_gives_and_what_it_gave_when_recorded() {
    use tessera::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let path = equivalence_pipeline(dir.path());
    let (report, _) = run_json(&path, dir.path());
    let by_run = untimed(&report["summary"]["rows"]);

    // As a notebook would: each stage function with the options the pipeline file gives.
    let p = Pipeline::read(&path).unwrap();
    let device = DeviceChoice::Cpu.device().unwrap();
    let dirs = RunDirs::new(&dir.path().join("by-hand"), &p);
    let parent = train_parent(&dirs.parent(), &p.parent_options(false), &device).unwrap();
    let library = build_library(&dirs.library(), &p.build_options(&parent.model_dir, false), &device).unwrap();
    let score = score_library(&dirs.library(), &p.score_options(false), &device).unwrap();
    let profile = profile_library(&dirs.library(), &p.profile_options(false), &device).unwrap();
    let search = search_library(&dirs.library(), &p.search_spec(), Some(&dirs.solutions()), &device).unwrap();
    let pareto = pareto_front(
        &dirs.library(),
        &p.search_spec(),
        &p.search.sweep,
        &dirs.pareto(),
        false,
    )
    .unwrap();
    let assembled = assemble_child(&dirs.child(), &p.assemble_options(&dirs)).unwrap();
    let fused = fuse_model(&assembled.child.model, &dirs.fuse(), &p.fuse_options(), &device).unwrap();
    let distill_options = p.distill_options(&parent.model_dir, false);
    let unfused = (!fused.runs.is_empty()).then_some(assembled.child.model.as_path());
    let (distilled, distilled_unfused) =
        distill_fused(&fused.child.model, unfused, &dirs.distill(), &distill_options, &device).unwrap();
    let (chats, eval) = (p.sft_chats(), p.chat_eval());
    let tuned = sft_model(
        &distilled.child.model,
        &dirs.sft(),
        &chats,
        &p.sft_options(false),
        &eval,
        &device,
    )
    .unwrap();
    let rl_options = p.rl_options(false);
    let reinforced = rl_model(
        &tuned.child.model,
        &dirs.rl(),
        &p.rl_prompts(),
        &rl_options,
        &eval,
        &device,
    )
    .unwrap();
    let exported = export_models(&reinforced.child.model, &p.exports(&dirs)).unwrap();
    let run = RunInputs {
        name: &p.name,
        parent: &parent,
        library: &library,
        score: &score,
        profile: &profile,
        search: &search,
        pareto: &pareto,
        assembled: &assembled,
        fused: &fused,
        distilled: &distilled,
        distilled_unfused: distilled_unfused.as_ref(),
        tuned: &tuned,
        reinforced: &reinforced,
        exported: &exported[0],
        exported_gguf: exported.get(1),
        stages: &[],
    };
    let page = write_run_report(&dir.path().join("by-hand-report"), &run, &p.run_eval(), &device).unwrap();
    let by_hand = untimed(&serde_json::to_value(&page.summary).unwrap()["rows"]);
    assert_rows_close(&by_hand, &by_run, 1e-9, "stage by stage against tessera run");
    assert!(
        fused.child.layers < assembled.child.layers,
        "this pipeline fuses: {fused:?}"
    );
    // The table shows the fused child and what fusion cost, the unfused child distilled beside it.
    let fusion = page.summary.fusion.as_ref().expect("a fused run reports fusion");
    assert_eq!(
        (fusion.layers_before, fusion.layers_after),
        (assembled.child.layers, fused.child.layers)
    );
    assert!(page.summary.rows.iter().any(|r| r.model == "child, fused"));
    // The unfused child is distilled the same way, beside the fused one.
    let unfused = distilled_unfused.as_ref().expect("the unfused child is distilled too");
    assert_eq!(unfused.distill.steps, distilled.distill.steps);
    assert!(
        unfused
            .child
            .model
            .starts_with(dirs.distill().join(tessera::posttrain::UNFUSED_DIR))
    );

    // The trained parent read back from its checkpoint (as `[parent] checkpoint` does) measures
    // what training measured: the same task accuracy, and on the report's windows the NLL the
    // table shows (mean_nll there, the scorer's log-softmax here).
    let adopted = adopt_parent(
        &parent.model_dir,
        &dir.path().join("adopted"),
        &p.parent_eval(),
        &device,
    )
    .unwrap();
    assert!(adopted.training.is_none());
    assert_eq!(
        serde_json::to_value(&adopted.accuracy).unwrap(),
        serde_json::to_value(&parent.accuracy).unwrap()
    );
    let parent_row = &page.summary.rows[0];
    assert!(
        (adopted.held_out_nll - parent_row.held_out_nll).abs() <= 1e-5 * parent_row.held_out_nll,
        "adopted parent NLL {} against the table's {}",
        adopted.held_out_nll,
        parent_row.held_out_nll
    );

    // Library, score and profile as Slurm array jobs, the rest here: the same summary.
    if let Some(env) = common::slurm::cluster("the pipeline through Slurm (tessera run --executor slurm)") {
        let output = tessera()
            .envs(env)
            .args(["run", path.to_str().unwrap(), "--json", "--executor", "slurm", "--runs"])
            .arg(dir.path().join("slurm-runs"))
            .arg("--reports")
            .arg(dir.path().join("slurm-reports"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "tessera run --executor slurm failed:\n{stderr}"
        );
        let by_slurm: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_rows_close(
            &untimed(&by_slurm["summary"]["rows"]),
            &by_run,
            0.0,
            "through Slurm against here",
        );
    }

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/summary_recorded.json");
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    assert_rows_close(
        &by_run,
        recorded["rows"].as_array().unwrap(),
        1e-5,
        "against the recorded rows",
    );
}
