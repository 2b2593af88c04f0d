//! Library building through a real Slurm (`tests/common/slurm.rs`): the library a Slurm array
//! builds (split past `MaxArraySize`, submitted from another directory with `--chdir` and
//! `--export=NONE`) equals the local build; a task failed on purpose blocks the merge job,
//! `slurm status` names it with its log and `slurm resume` resubmits only it; a task cancelled
//! in the middle of an item resumes from the item's checkpoint; bad Slurm input is refused
//! naming the command and its message, with nothing submitted twice and items trained
//! meanwhile not submitted again.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::library_contents;
use serde_json::Value;

/// One test at a time: they share a two-CPU cluster.
static SERIAL: Mutex<()> = Mutex::new(());

fn space() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/small.toml")
}

/// `tessera` with Slurm's variables.
fn tessera(env: &[(String, String)]) -> Command {
    let mut command = common::tessera();
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// The arguments of a tiny library build (the same here and through Slurm).
fn build_args(parent: &Path, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["library", "build", "--data", "builtin:2", "--seq-len", "32"]
        .map(String::from)
        .to_vec();
    args.extend(["--held-out-windows", "8", "--tokens", "4096", "--checkpoint-every", "5"].map(String::from));
    args.extend(["--parent".into(), parent.display().to_string()]);
    args.extend(["--space".into(), space().display().to_string()]);
    args.extend(["--out".into(), out.display().to_string()]);
    args
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A tiny parent and the library built from it here, without Slurm.
fn parent_and_local_library(dir: &Path) -> (PathBuf, PathBuf) {
    let parent = common::tiny_parent(dir);
    let local = dir.join("local");
    succeeded(
        common::tessera().args(build_args(&parent, &local)).output().unwrap(),
        "the local build",
    );
    (parent, local)
}

fn status(env: &[(String, String)], lib: &Path) -> Value {
    let output = succeeded(
        tessera(env)
            .args(["slurm", "status", "--json"])
            .arg(lib)
            .output()
            .unwrap(),
        "slurm status",
    );
    serde_json::from_slice::<Value>(&output.stdout).unwrap()[0].clone()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "waited 10 minutes for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until the merge job can no longer run and no task is left to run.
fn wait_until_blocked(env: &[(String, String)], lib: &Path) -> Value {
    let mut last = Value::Null;
    wait_for("the merge job to be blocked and every task to end", || {
        last = status(env, lib);
        last["merge"]["phase"] == "blocked"
            && tasks_in(&last, "pending").is_empty()
            && tasks_in(&last, "running").is_empty()
    });
    last
}

fn tasks_in(status: &Value, phase: &str) -> Vec<Value> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["phase"] == phase)
        .cloned()
        .collect()
}

fn resume(env: &[(String, String)], lib: &Path) -> Value {
    let output = succeeded(
        tessera(env)
            .args(["slurm", "resume", "--json"])
            .arg(lib)
            .output()
            .unwrap(),
        "slurm resume",
    );
    serde_json::from_slice::<Value>(&output.stdout).unwrap()[0].clone()
}

fn wait_and_compare(env: &[(String, String)], lib: &Path, local: &Path) {
    succeeded(
        tessera(env).args(["slurm", "wait"]).arg(lib).output().unwrap(),
        "slurm wait",
    );
    assert_same_library(lib, local);
}

/// Equal item states and weights, and the same block library file.
fn assert_same_library(lib: &Path, local: &Path) {
    assert_eq!(library_contents(lib), library_contents(local));
    assert_eq!(
        std::fs::read_to_string(lib.join("block_library.json")).unwrap(),
        std::fs::read_to_string(local.join("block_library.json")).unwrap()
    );
}

#[test]
fn a_library_built_through_slurm_equals_the_local_build() {
    let Some(env) = common::slurm::cluster("a_library_built_through_slurm_equals_the_local_build") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (_, local) = parent_and_local_library(dir.path());
    // Submitted from another directory with relative paths; the jobs start in a third one and
    // without the submitting shell's environment.
    let (submitter, elsewhere) = (dir.path().join("submitter"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(&submitter).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut args = build_args(Path::new("../parent"), Path::new("lib"));
    args.extend(
        [
            "--slurm",
            "--wait",
            "--max-parallel",
            "2",
            "--items-per-task",
            "2",
            "--json",
        ]
        .map(String::from),
    );
    args.push(format!("--sbatch-arg=--chdir={}", elsewhere.display()));
    args.push("--sbatch-arg=--export=NONE".into());
    let output = succeeded(
        tessera(&env).current_dir(&submitter).args(&args).output().unwrap(),
        "the build through Slurm",
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["trained_now"], 10, "{report}");
    let lib = submitter.join("lib");
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(lib.join("slurm/library.submission.json")).unwrap()).unwrap();
    let arrays = record["arrays"].as_array().unwrap();
    // Five tasks of two items; MaxArraySize 4 allows indices 0 to 3: two arrays.
    let sizes: Vec<usize> = arrays.iter().map(|a| a["groups"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [4, 1], "{record}");
    assert_same_library(&lib, &local);
}

/// A local library built in `dir`, and the same build submitted through Slurm (two tasks at a
/// time) into `dir/lib` with the fault `fault` injected; returns (Slurm library, local one).
fn submit_with_fault(env: &[(String, String)], dir: &Path, fault: &str) -> (PathBuf, PathBuf) {
    let (parent, local) = parent_and_local_library(dir);
    let lib = dir.join("lib");
    let mut args = build_args(&parent, &lib);
    args.extend(["--slurm", "--max-parallel", "2", "--poll-seconds", "0.5"].map(String::from));
    succeeded(
        tessera(env)
            .args(&args)
            .env(tessera::fault::VARIABLE, fault)
            .output()
            .unwrap(),
        "the submission",
    );
    (lib, local)
}

#[test]
fn a_failed_task_blocks_the_merge_and_resume_resubmits_only_that_task() {
    let Some(env) = common::slurm::cluster("a_failed_task_blocks_the_merge_and_resume_resubmits_only_that_task") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (lib, local) = submit_with_fault(&env, dir.path(), "fail:layer_1/kv1");
    let last = wait_until_blocked(&env, &lib);
    let failed = tasks_in(&last, "failed");
    assert_eq!(failed.len(), 1, "{last:#}");
    assert_eq!(failed[0]["items"], serde_json::json!(["layer_1/kv1"]), "{last:#}");
    assert_eq!(tasks_in(&last, "done").len(), 9, "{last:#}");
    let log = PathBuf::from(failed[0]["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("injected fault"), "{}: {text}", log.display());
    assert!(!lib.join("slurm/library.report.json").exists(), "the merge job ran");

    let resubmitted = resume(&env, &lib);
    assert_eq!(
        resubmitted["groups"],
        serde_json::json!([failed[0]["group"]]),
        "{resubmitted}"
    );
    assert_eq!(resubmitted["cancelled_merge"], last["merge"]["job"], "{resubmitted}");
    // A second resume finds the task queued and submits nothing.
    let again = resume(&env, &lib);
    assert_eq!(again["groups"], serde_json::json!([]), "{again}");
    assert_eq!(again["merge"], Value::Null, "{again}");
    wait_and_compare(&env, &lib, &local);
}

#[test]
fn a_task_cancelled_in_the_middle_of_an_item_resumes_from_its_checkpoint() {
    let Some(env) = common::slurm::cluster("a_task_cancelled_in_the_middle_of_an_item_resumes_from_its_checkpoint")
    else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // 4096 tokens in steps of 8 windows of 32: 16 steps; checkpoints every 5, stalls after 10.
    let (lib, local) = submit_with_fault(&env, dir.path(), "stall:layer_0/kv1:10");
    let checkpoint = lib.join("checkpoints/layer_0.kv1/checkpoint/train_state.json");
    wait_for("the item's checkpoint", || checkpoint.is_file());
    let stalled = status(&env, &lib)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["items"] == serde_json::json!(["layer_0/kv1"]))
        .cloned()
        .unwrap();
    let task = format!("{}_{}", stalled["array"], stalled["index"]);
    succeeded(tessera_command("scancel", &env).arg(&task).output().unwrap(), "scancel");
    let last = wait_until_blocked(&env, &lib);
    let failed = tasks_in(&last, "failed");
    assert_eq!(failed.len(), 1, "{last:#}");
    assert!(
        failed[0]["slurm"].as_str().unwrap().starts_with("CANCELLED"),
        "{last:#}"
    );

    let resubmitted = resume(&env, &lib);
    assert_eq!(
        resubmitted["groups"],
        serde_json::json!([stalled["group"]]),
        "{resubmitted}"
    );
    wait_and_compare(&env, &lib, &local);
    let library = tessera::library::Library::open(&lib).unwrap();
    assert_eq!(library.manifest.items["layer_0/kv1"].resumed_from, Some(10));
}

/// A Slurm command with the cluster's variables.
fn tessera_command(program: &str, env: &[(String, String)]) -> Command {
    let mut command = Command::new(program);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

fn failure(output: Output) -> String {
    assert!(!output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn submitted_arrays(lib: &Path) -> usize {
    let record = std::fs::read_to_string(lib.join("slurm/library.submission.json")).unwrap();
    serde_json::from_str::<Value>(&record).unwrap()["arrays"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn without_slurm_commands_the_submission_names_the_missing_command() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let lib = dir.path().join("lib");
    let mut args = build_args(&parent, &lib);
    args.push("--slurm".into());
    let error = failure(common::tessera().args(&args).env("PATH", "").output().unwrap());
    assert!(error.contains("`scontrol` is not on PATH"), "{error}");
    assert_eq!(submitted_arrays(&lib), 0);
}

#[test]
fn refused_submissions_name_sbatch_and_its_message_and_submit_nothing_twice() {
    let Some(env) = common::slurm::cluster("refused_submissions_name_sbatch_and_its_message_and_submit_nothing_twice")
    else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (parent, local) = parent_and_local_library(dir.path());
    let lib = dir.path().join("lib");
    let mut args = build_args(&parent, &lib);
    args.extend(["--slurm", "--items-per-task", "5", "--poll-seconds", "0.5"].map(String::from));
    let refused = |extra: &[&str]| failure(tessera(&env).args(&args).args(extra).output().unwrap());
    let error = refused(&["--partition", "nosuch"]);
    assert!(
        error.contains("`sbatch") && error.contains("Invalid partition name specified"),
        "{error}"
    );
    assert_eq!(submitted_arrays(&lib), 0);
    let error = refused(&["--gpus-per-task", "1"]);
    assert!(
        error.contains("`sbatch") && error.contains("Invalid generic resource"),
        "{error}"
    );
    assert_eq!(submitted_arrays(&lib), 0);
    let error = refused(&["--sbatch-arg=--time=garbage"]);
    assert!(error.contains("Invalid --time specification"), "{error}");
    // Layer 0's items trained here meanwhile are not submitted again: with good settings one
    // array of one task (layer 1's five items) goes through.
    succeeded(
        common::tessera()
            .args(build_args(&parent, &lib))
            .args(["--layers", "0-0"])
            .output()
            .unwrap(),
        "layer 0 built here",
    );
    succeeded(
        tessera(&env).args(&args).arg("--wait").output().unwrap(),
        "the corrected submission",
    );
    let record = std::fs::read_to_string(lib.join("slurm/library.submission.json")).unwrap();
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["arrays"][0]["groups"], serde_json::json!([1]), "{record}");
    assert_eq!(submitted_arrays(&lib), 1);
    assert_eq!(library_contents(&lib), library_contents(&local));
    let error = failure(
        tessera(&env)
            .args(["slurm", "status"])
            .arg(dir.path().join("local"))
            .output()
            .unwrap(),
    );
    assert!(error.contains("no Slurm submission here"), "{error}");
}
