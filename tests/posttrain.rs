//! SFT with the reasoning switch and GRPO on a tiny random model: SFT teaches the format (think
//! tags iff thinking is on), both stages resume after a kill to the same weights, GRPO's log
//! starts at zero KL and stays finite, KL to the parent on chats equals a row-by-row
//! computation, and bad chat or task files get clear errors.

mod common;

use std::path::Path;

use burn::prelude::Device;
use tessera::checkpoint::Checkpoint;
use tessera::eval::{ParentChats, SWITCH_REPLY_TOKENS, switch_accuracy};
use tessera::model::{Llama, Sampling, generate};
use tessera::posttrain::{
    GrpoSettings, RlOptions, SftOptions, SftStage, StageChats, builtin_chats, read_chat_file, rl, sft,
};
use tessera::tokenizer::Tokenizer;
use tessera::train::RunControl;
use tessera::world::{ChatFormat, Split, Task, TaskKind, Thinking, World};

fn sft_options(stop_after: Option<usize>) -> SftOptions {
    SftOptions {
        stages: vec![
            SftStage {
                chats: StageChats::On,
                steps: 150,
            },
            SftStage {
                chats: StageChats::Both,
                steps: 150,
            },
        ],
        batch_size: 16,
        micro_batches: 2,
        peak_lr: 3e-3,
        seed: 4,
        control: RunControl {
            checkpoint_every: 10,
            stop_after,
            progress: false,
        },
    }
}

fn rl_options(stop_after: Option<usize>) -> RlOptions {
    RlOptions {
        rounds: 3,
        updates_per_round: 2,
        prompts_per_round: 4,
        group_size: 4,
        micro_batches: 2,
        max_new_tokens: 40,
        temperature: 1.0,
        grpo: GrpoSettings::default(),
        peak_lr: 1e-3,
        // The tiny model solves nothing yet, so every prompt stays.
        solved_pass_rate: 0.75,
        seed: 5,
        control: RunControl {
            checkpoint_every: 1,
            stop_after,
            progress: false,
        },
    }
}

fn tokenizer_of(model: &Path) -> Tokenizer {
    Tokenizer::read(&Tokenizer::beside_model(model).unwrap()).unwrap()
}

#[test]
fn sft_teaches_the_switch_and_rl_runs_both_resuming_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let parent_dir = common::tiny_parent(tmp.path());
    let (parent, _) = Checkpoint::read(&parent_dir).unwrap();
    let tokenizer = tokenizer_of(&parent_dir);
    let device = Device::flex();
    let chats = builtin_chats(1, 1000);
    let held_out = World::new(1).tasks(Split::HeldOut, 60);

    let one_step = World::new(1).tasks_of(TaskKind::OneStep, Split::HeldOut, 20);
    let before = switch_accuracy(&parent.build(&device).unwrap(), &tokenizer, &held_out, &one_step).unwrap();
    assert!(
        before.on.format_ok < 0.1,
        "a random model opens no think block: {}",
        before.on.format_ok
    );

    // Killed in the second stage, then run again: the same weights as one uninterrupted run.
    let work = tmp.path().join("sft");
    let (_, stopped) = sft(&parent, &chats, &tokenizer, &sft_options(Some(200)), &work, &device).unwrap();
    assert!(!stopped.finished);
    assert_eq!(stopped.stages.iter().map(|s| s.steps).collect::<Vec<_>>(), [150, 50]);
    let (tuned, report) = sft(&parent, &chats, &tokenizer, &sft_options(None), &work, &device).unwrap();
    assert!(report.finished);
    let (straight, _) = sft(
        &parent,
        &chats,
        &tokenizer,
        &sft_options(None),
        &tmp.path().join("sft-straight"),
        &device,
    )
    .unwrap();
    assert_eq!(
        tuned.weights, straight.weights,
        "a resumed SFT run must end where an unbroken one does"
    );
    for stage in &report.stages {
        assert!(stage.final_loss < stage.first_loss, "{stage:?}");
    }

    let after = switch_accuracy(&tuned.build(&device).unwrap(), &tokenizer, &held_out, &one_step).unwrap();
    let [before, after] = [&before, &after].map(|s| [&s.on, &s.off, s.off_direct.as_ref().unwrap()]);
    for (b, a) in before.iter().zip(&after) {
        println!(
            "thinking {:?}: format ok {:.3} -> {:.3}, accuracy {:.3} -> {:.3}",
            a.thinking, b.format_ok, a.format_ok, b.accuracy, a.accuracy
        );
    }
    for report in &after {
        assert!(
            report.format_ok >= 0.95,
            "thinking {:?}: format ok {} after SFT; replies: {:?}",
            report.thinking,
            report.format_ok,
            report.answers.iter().take(3).map(|a| &a.reply).collect::<Vec<_>>()
        );
    }

    // KL to the parent on the parent's chats: zero against itself, and what a row-by-row
    // computation (one unpadded sequence at a time, greedy replies one prompt at a time) gives.
    let (teacher, student) = (parent.build(&device).unwrap(), tuned.build(&device).unwrap());
    for thinking in [Thinking::On, Thinking::Off] {
        let chats = ParentChats::generate(&teacher, &tokenizer, &held_out[..12], thinking).unwrap();
        let [itself, batched] = chats.kl(&teacher, &[teacher.clone(), student.clone()]).unwrap()[..] else {
            unreachable!("one KL per model")
        };
        assert!(itself.abs() < 1e-6);
        let by_row = kl_row_by_row(&teacher, &student, &tokenizer, &held_out[..12], thinking);
        println!("KL on chats, thinking {thinking:?}: {batched:.6} batched, {by_row:.6} row by row");
        assert!(
            batched > 1e-3 && (batched - by_row).abs() <= 1e-4 * by_row,
            "{batched} vs {by_row}"
        );
    }

    // GRPO from the tuned model, killed after round 2 of 3 and resumed.
    let tasks: Vec<(Task, Thinking)> = World::new(1)
        .tasks(Split::Train, 16)
        .into_iter()
        .zip([Thinking::On, Thinking::Off].into_iter().cycle())
        .collect();
    let work = tmp.path().join("rl");
    let (_, stopped) = rl(&tuned, &tasks, &tokenizer, &rl_options(Some(2)), &work, &device).unwrap();
    assert!(!stopped.finished);
    assert_eq!(stopped.steps, 4);
    let (trained, report) = rl(&tuned, &tasks, &tokenizer, &rl_options(None), &work, &device).unwrap();
    let (straight, _) = rl(
        &tuned,
        &tasks,
        &tokenizer,
        &rl_options(None),
        &tmp.path().join("rl-straight"),
        &device,
    )
    .unwrap();
    assert!(report.finished);
    assert_eq!(
        trained.weights, straight.weights,
        "a resumed RL run must end where an unbroken one does"
    );
    assert_ne!(trained.weights, tuned.weights);
    assert_eq!(report.history.len(), 6);
    let first = &report.history[0];
    assert!(
        first.kl.abs() < 1e-6,
        "the first step's policy is the reference: KL {}",
        first.kl
    );
    assert!(first.clipped == 0.0, "the first step's ratio is 1 everywhere");
    for h in &report.history {
        assert!(h.kl.is_finite() && h.kl >= -1e-6 && h.entropy > 0.0, "{h:?}");
        assert!(
            (0.0..=2.0).contains(&h.reward) && (0.0..=1.0).contains(&h.accuracy),
            "{h:?}"
        );
        assert_eq!(h.round, h.step.div_ceil(2));
    }
    assert!(report.history[1].kl > 0.0, "after one update the policy has moved");
}

/// Mean KL(teacher ‖ student) over the teacher's greedy reply tokens, each sequence on its own.
fn kl_row_by_row(teacher: &Llama, student: &Llama, tokenizer: &Tokenizer, tasks: &[Task], thinking: Thinking) -> f64 {
    let format = ChatFormat::of(tokenizer).unwrap();
    let stop = format.stop_tokens(teacher.config().eos_token_id);
    let log_softmax = |row: &[f32]| -> Vec<f64> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        row.iter().map(|&x| x as f64 - max - sum.ln()).collect()
    };
    let prompts: Vec<Vec<u32>> = tasks.iter().map(|t| format.prompt(t, thinking).unwrap()).collect();
    // Replies end where the longest prompt leaves no room in the model's context.
    let longest = prompts.iter().map(Vec::len).max().unwrap();
    let max_new = SWITCH_REPLY_TOKENS.min(teacher.config().max_position_embeddings - longest);
    let (mut total, mut tokens) = (0.0, 0);
    for prompt in prompts {
        let row = generate(teacher, &prompt, max_new, Sampling::Greedy, &stop).unwrap();
        let input = &row[..row.len() - 1];
        let logits = |model: &Llama| {
            let out = model
                .forward(model.tokens_tensor(&[input.to_vec()]).unwrap(), None, false)
                .unwrap();
            tessera::model::weights::to_host_vec(out.logits)
        };
        let (p, q) = (logits(teacher), logits(student));
        let vocab = p.len() / input.len();
        // Position i predicts token i + 1; the reply's tokens are those after the prompt.
        for i in prompt.len() - 1..input.len() {
            let (lp, lq) = (
                log_softmax(&p[i * vocab..(i + 1) * vocab]),
                log_softmax(&q[i * vocab..(i + 1) * vocab]),
            );
            total += lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
            tokens += 1;
        }
    }
    total / tokens as f64
}

#[test]
fn a_distillation_that_will_not_fit_is_refused_before_either_model_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(tmp.path());
    let out = tmp.path().join("distilled");
    let distill = |limit: &str, batch: &str| {
        common::tessera()
            .env("TESSERA_MEMORY_LIMIT", limit)
            .args(["distill", "--student"])
            .arg(&parent)
            .arg("--teacher")
            .arg(&parent)
            .args([
                "--tokens",
                "256",
                "--batch-size",
                batch,
                "--seq-len",
                "16",
                "--windows",
                "4",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let output = distill("64MiB", "4");
    common::assert_fails_with(
        &output,
        &[
            "distillation would need about",
            "activations of a step (64 tokens)",
            "AdamW moments",
            "only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)",
            "--batch-size",
        ],
    );
    assert!(!out.exists(), "a refused distillation writes nothing");
    // Under a limit above the estimate it runs.
    let output = distill("1GiB", "4");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn sft_and_grpo_that_will_not_fit_are_refused_before_the_model_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(tmp.path());
    let run = |limit: &str, stage: &[&str], out: &Path| {
        common::tessera()
            .env("TESSERA_MEMORY_LIMIT", limit)
            .args(stage)
            .arg("--model")
            .arg(&parent)
            .args(["--eval-count", "2", "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let sft = ["sft", "--stage", "on:2", "--batch-size", "4"];
    let rl = [
        "rl",
        "--rounds",
        "1",
        "--count",
        "8",
        "--prompts-per-round",
        "2",
        "--group-size",
        "2",
        "--max-tokens",
        "8",
    ];
    const LIMIT: &str = "only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)";
    for (stage, expected) in [
        (
            &sft[..],
            [
                "SFT would need about",
                "activations of a step (4 chats of up to",
                "--batch-size",
                LIMIT,
            ],
        ),
        (
            &rl[..],
            ["GRPO would need about", "reference model (f32)", "--max-tokens", LIMIT],
        ),
    ] {
        let out = tmp.path().join(stage[0]);
        let output = run("64MiB", stage, &out);
        common::assert_fails_with(&output, &expected);
        assert!(!out.join("model").exists(), "a refused {} writes no model", stage[0]);
        // Under a limit above the estimate it runs.
        let output = run("2GiB", stage, &out);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_chat_files_name_the_line_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"system": "detailed thinking off", "user": "What is 2+2?", "assistant": "4"}"#;
    let cases = [
        (
            format!("{good}\n{{\"system\": \"detailed thinking on\", \"user\": \"hi\"}}\n"),
            ":2: missing field `assistant`",
        ),
        (
            r#"{"system": "You are helpful.", "user": "hi", "assistant": "yo"}"#.to_string(),
            "neither `detailed thinking on` nor `detailed thinking off`",
        ),
        (
            r#"{"system": "Detailed thinking on", "user": "hi", "assistant": "<think>x</think>yo"}"#.to_string(),
            "the switch must be exactly one of them",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#.to_string(),
            "the first message must be the system prompt",
        ),
        (
            r#"{"messages": [{"role": "system", "content": "detailed thinking off"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "hi"}]}"#.to_string(),
            "expected `user` then `assistant`",
        ),
        (
            r#"{"system": "detailed thinking on", "user": "What is 2+2?", "assistant": "4"}"#.to_string(),
            "lacks think tags but the system prompt is `detailed thinking on`",
        ),
        (
            r#"{"system": "detailed thinking off", "user": "What is 2+2?", "assistant": "<think>2+2=4</think>4"}"#.to_string(),
            "has think tags but the system prompt is `detailed thinking off`",
        ),
        (r#"{"system": "detailed thinking off", "user": 3, "assistant": "4"}"#.to_string(), "`user` must be a string"),
        ("not json\n".to_string(), ":1: not JSON"),
        ("\n\n".to_string(), "holds no chats"),
    ];
    for (k, (text, expected)) in cases.iter().enumerate() {
        let path = write(tmp.path(), &format!("chats{k}.jsonl"), text);
        let error = read_chat_file(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("chats{k}.jsonl")),
            "`{error}` does not name the file"
        );
        assert!(error.contains(expected), "`{error}` does not say `{expected}`");
    }
    let chats = read_chat_file(&write(tmp.path(), "good.jsonl", &format!("{good}\n\n{good}\n"))).unwrap();
    assert_eq!(chats.len(), 2);
}

#[test]
fn the_cli_rejects_bad_chat_and_task_files_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(tmp.path());
    let chats = write(
        tmp.path(),
        "chats.jsonl",
        r#"{"system": "think hard", "user": "hi", "assistant": "yo"}"#,
    );
    let empty = write(tmp.path(), "tasks.jsonl", "\n");
    let no_answer = write(tmp.path(), "no_answer.jsonl", "{\"question\": \"What is 2+2?\"}\n");
    for (args, expected) in [
        (
            vec!["sft", "--data", chats.to_str().unwrap()],
            "chats.jsonl:1: the system prompt \"think hard\"",
        ),
        (
            vec!["rl", "--tasks", empty.to_str().unwrap()],
            "tasks.jsonl: the task file holds no tasks",
        ),
        (
            vec!["rl", "--tasks", no_answer.to_str().unwrap()],
            "no_answer.jsonl:1: expected {\"question\": …, \"answer\": …}",
        ),
    ] {
        let out = common::tessera()
            .args(&args)
            .args([
                "--model",
                parent.to_str().unwrap(),
                "--out",
                tmp.path().join("out").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: `{stderr}` does not say `{expected}`"
        );
        assert!(!tmp.path().join("out").exists(), "{args:?} wrote output before failing");
    }
}
