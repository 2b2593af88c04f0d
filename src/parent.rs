//! The parent stage. The default parent: a small GQA Llama trained from scratch on the built-in
//! world, so that the whole pipeline runs on a fresh machine with no download. Writes the
//! world's token shards, trains with the shared engine (resuming an interrupted run in the same
//! output directory), exports an HF checkpoint with its tokenizer, and reports held-out NLL
//! against the corpus's unigram entropy and task accuracy with thinking on and off. A pretrained
//! parent (`adopt_parent`) is measured the same way and left where it is.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::json;

use crate::checkpoint::{Checkpoint, ExportOptions, TensorSource};
use crate::data::{ShardWriter, TokenWindows};
use crate::eval::{SwitchAccuracy, SwitchSummary, TaskSet, mean_nll, switch_accuracy, unigram_entropy};
use crate::memory_budget::Estimate;
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, Llama, ModelConfig, build_model, random_weights};
use crate::source::WindowSpec;
use crate::tokenizer::Tokenizer;
use crate::train::footprint::lm_training_estimate;
use crate::train::{RunControl, TrainConfig, lm_micro_batch, train};
use crate::world::tokenizer::{BOS, EOS, VOCAB_SIZE, token_id, write_tokenizer};
use crate::world::{Split, Task, TaskKind, Thinking, World};

/// The default parent's shape: 8 layers, d_model 128, 4 query heads sharing 2 KV heads, SwiGLU
/// 384 wide, tied embeddings, on the world's byte-level vocabulary.
pub fn default_parent_config(layers: usize) -> ModelConfig {
    ModelConfig {
        bos_token_id: token_id(BOS),
        eos_token_id: token_id(EOS),
        blocks: vec![
            BlockConfig {
                attention: AttentionConfig::Gqa { kv_heads: 2 },
                ffn: FfnConfig::SwiGlu { intermediate: 384 },
            };
            layers
        ],
        ..ModelConfig::uniform(VOCAB_SIZE, 128, layers, 4, 2, 384, 256)
    }
}

/// Everything `tessera parent train` can set; `Default` is the built-in default run.
#[derive(Clone, Debug, Serialize)]
pub struct ParentOptions {
    pub layers: usize,
    pub steps: usize,
    /// Sequences per optimizer step, split evenly over `micro_batches`.
    pub batch_size: usize,
    pub micro_batches: usize,
    pub seq_len: usize,
    pub peak_lr: f64,
    pub seed: u64,
    /// Training documents: arithmetic chats, with one-step chats beside them
    /// ([`World::task_mix`]), half of each with thinking on; and stories.
    pub train_tasks: usize,
    pub train_stories: usize,
    pub eval_tasks: usize,
    pub eval_stories: usize,
    #[serde(skip)]
    pub control: RunControl,
}

impl Default for ParentOptions {
    fn default() -> Self {
        Self {
            layers: 8,
            steps: 1400,
            batch_size: 16,
            micro_batches: 2,
            seq_len: 128,
            peak_lr: 3e-3,
            seed: crate::world::DEFAULT_SEED,
            train_tasks: 40_000,
            train_stories: 1_000,
            eval_tasks: 200,
            eval_stories: 300,
            control: RunControl {
                checkpoint_every: 50,
                stop_after: None,
                progress: true,
            },
        }
    }
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ParentReport {
    pub model_dir: PathBuf,
    pub params: usize,
    pub layers: usize,
    /// How the parent was trained; none for a parent read from a checkpoint.
    #[serde(flatten)]
    pub training: Option<ParentTraining>,
    pub held_out_nll: f64,
    pub held_out_tokens: usize,
    pub unigram_entropy: f64,
    pub accuracy: SwitchSummary,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ParentTraining {
    /// The training checkpoints (and their loss history).
    pub train_dir: PathBuf,
    pub steps: usize,
    pub resumed_from: Option<usize>,
    pub train_tokens: u64,
    pub train_seconds: f64,
    pub median_tokens_per_s: f64,
    pub final_train_loss: f64,
}

/// Writes the world's training documents (shuffled chats and stories) and held-out stories as
/// token shards in `dir`; returns (train shard, held-out shard).
pub fn write_world_shards(
    world: &World,
    options: &ParentOptions,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut documents: Vec<String> = world
        .task_mix(Split::Train, options.train_tasks)
        .iter()
        .enumerate()
        .map(|(i, t)| t.render(if i % 2 == 0 { Thinking::On } else { Thinking::Off }))
        .collect();
    documents.extend(
        world
            .stories(Split::Train, options.train_stories)
            .into_iter()
            .map(|s| format!("{BOS}{s}{EOS}")),
    );
    documents.shuffle(&mut StdRng::seed_from_u64(world.seed));
    let held_out: Vec<String> = world
        .stories(Split::HeldOut, options.eval_stories)
        .into_iter()
        .map(|s| format!("{BOS}{s}{EOS}"))
        .collect();
    let paths = (dir.join("train.tokens"), dir.join("heldout.tokens"));
    for (path, docs) in [(&paths.0, &documents), (&paths.1, &held_out)] {
        let mut writer = ShardWriter::create(path, VOCAB_SIZE)?;
        for doc in docs {
            writer.push(&tokenizer.encode(doc, false)?)?;
        }
        writer.finish()?;
    }
    Ok(paths)
}

/// Held-out NLL on the story shard, the shard's unigram entropy, and task accuracy on held-out
/// tasks with thinking on and off (and on one-step tasks with it off).
pub fn evaluate_parent(
    model: &Llama,
    tokenizer: &Tokenizer,
    world: &World,
    held_out: &Path,
    options: &ParentOptions,
) -> Result<(f64, usize, f64, SwitchAccuracy)> {
    let mut windows = TokenWindows::open(held_out)?;
    let sequences = windows.consecutive(options.seq_len + 1, usize::MAX)?;
    let tasks = world.tasks(Split::HeldOut, options.eval_tasks);
    let direct = world.tasks_of(TaskKind::OneStep, Split::HeldOut, options.eval_tasks);
    measure(model, tokenizer, &sequences, &tasks, &direct)
}

/// What a parent is judged by, trained here or not: mean NLL (and tokens) on `sequences`, their
/// unigram entropy, and the switch's accuracy on `tasks` and the one-step `direct` ones.
fn measure(
    model: &Llama,
    tokenizer: &Tokenizer,
    sequences: &[Vec<u32>],
    tasks: &[Task],
    direct: &[Task],
) -> Result<(f64, usize, f64, SwitchAccuracy)> {
    let nll = mean_nll(model, sequences)?;
    let accuracy = switch_accuracy(model, tokenizer, tasks, direct)?;
    Ok((nll.mean_nll, nll.tokens, unigram_entropy(sequences), accuracy))
}

/// Trains (or resumes) the default parent into `out` and evaluates it.
pub fn train_parent(out: &Path, options: &ParentOptions, device: &Device) -> Result<ParentReport> {
    let config = default_parent_config(options.layers);
    let estimate = lm_training_estimate(
        &config,
        options.batch_size,
        options.micro_batches,
        options.seq_len + 1,
        "windows",
    );
    crate::memory_budget::check(
        "parent",
        &estimate,
        "a smaller batch (--batch-size), shorter windows (--seq-len) or fewer layers (--layers), or more memory",
    )?;
    anyhow::ensure!(
        options.seq_len <= config.max_position_embeddings,
        "--seq-len {} is above the model's maximum of {} positions",
        options.seq_len,
        config.max_position_embeddings
    );
    let world = World::new(options.seed);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tokenizer_path =
        write_tokenizer(out).with_context(|| format!("writing the tokenizer into {}", out.display()))?;
    let tokenizer = Tokenizer::read(&tokenizer_path)?;
    let (train_shard, held_out_shard) = write_world_shards(&world, options, &tokenizer, &out.join("data"))?;

    anyhow::ensure!(
        options.micro_batches > 0 && options.batch_size.is_multiple_of(options.micro_batches),
        "--batch-size {} must be a positive multiple of the {} micro-batches",
        options.batch_size,
        options.micro_batches
    );
    let windows = TokenWindows::open(&train_shard)?;
    windows.check(options.seq_len + 1, config.vocab_size)?;
    let windows = Mutex::new(windows);
    let model = build_model(
        &config,
        &random_weights(&config, options.seed),
        &device.clone().autodiff(),
    )?;
    let train_config = TrainConfig::warmup_cosine(
        options.steps,
        options.micro_batches,
        options.peak_lr,
        options.seed,
        options.control,
    );
    let micro_size = options.batch_size / options.micro_batches;
    let started = Instant::now();
    let fingerprint = json!({ "model": config, "data": options });
    let outcome = train(
        model,
        &train_config,
        Some(&out.join("train")),
        fingerprint,
        |model, _, rng| lm_micro_batch(model, &windows, rng, micro_size, options.seq_len),
    )?;
    let train_seconds = started.elapsed().as_secs_f64();
    let model = outcome.model.valid();
    anyhow::ensure!(
        outcome.finished,
        "stopped after step {} of {} as asked; run the same command again to resume",
        outcome.steps_done,
        options.steps
    );

    let model_dir = out.join("parent");
    if model_dir.exists() {
        std::fs::remove_dir_all(&model_dir).with_context(|| format!("clearing {}", model_dir.display()))?;
    }
    Checkpoint::from_model(&model).write_hf(&model_dir, ExportOptions::default())?;
    write_tokenizer(&model_dir).with_context(|| format!("writing the tokenizer into {}", model_dir.display()))?;

    let (held_out_nll, held_out_tokens, entropy, accuracy) =
        evaluate_parent(&model, &tokenizer, &world, &held_out_shard, options)?;
    let rates: Vec<f64> = outcome.history.iter().map(|h| h.tokens_per_s).collect();
    let report = ParentReport {
        model_dir,
        params: config.num_params(),
        layers: options.layers,
        training: Some(ParentTraining {
            train_dir: out.join("train"),
            steps: outcome.steps_done,
            resumed_from: outcome.resumed_from,
            train_tokens: outcome.tokens_seen,
            train_seconds,
            median_tokens_per_s: crate::stats::median(&rates),
            final_train_loss: outcome.history.last().map_or(f64::NAN, |h| h.loss),
        }),
        held_out_nll,
        held_out_tokens,
        unigram_entropy: entropy,
        accuracy: (&accuracy).into(),
    };
    write_report(out, report)
}

fn write_report(out: &Path, report: ParentReport) -> Result<ParentReport> {
    let report_path = out.join("parent_report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    Ok(report)
}

/// How a parent read from a checkpoint is measured: NLL on held-out windows of its own text,
/// the switch's accuracy on held-out tasks (multi-step with thinking on and off, one-step off).
#[derive(Clone, Debug, Serialize)]
pub struct ParentEval {
    pub windows: WindowSpec,
    pub tasks: TaskSet,
    pub direct: Option<TaskSet>,
}

/// The peak of measuring a pretrained parent of `config`, known before it is read: the parent
/// whole as f32 twice (its tensors and the model built from them) and one held-out window's
/// logits with their log-probabilities. Measured: SmolLM2-135M's parent stage 1.10 GiB.
pub fn adopt_estimate(config: &ModelConfig, eval: &ParentEval) -> Estimate {
    let window = (eval.windows.seq_len + 1).min(config.max_position_embeddings) as u64;
    Estimate::new()
        .with(
            "the parent as f32, tensors and model",
            2 * 4 * config.num_params() as u64,
        )
        .with(
            "one window's logits and log-probabilities",
            3 * 4 * window * config.vocab_size as u64,
        )
}

/// A pretrained parent (a checkpoint directory, GGUF or llama2.c file) taken as it is: measured
/// like a trained one, its report written into `out`; the model stays where it is. Refused
/// before it is read when it will not fit in memory.
pub fn adopt_parent(checkpoint: &Path, out: &Path, eval: &ParentEval, device: &Device) -> Result<ParentReport> {
    let config = Checkpoint::read_config(checkpoint)?;
    crate::memory_budget::check(
        "parent",
        &adopt_estimate(&config, eval),
        "more memory: a pretrained parent is measured whole as f32",
    )?;
    let model = crate::checkpoint::load_model(checkpoint, device)?;
    let tokenizer_path = Tokenizer::beside_model(checkpoint)
        .with_context(|| format!("{}: the parent carries no tokenizer", checkpoint.display()))?;
    let tokenizer = Tokenizer::read(&tokenizer_path)?;
    let windows = eval.windows.windows(&model, checkpoint)?.held_out;
    let tasks = eval.tasks.tasks()?;
    let direct = TaskSet::tasks_if_any(eval.direct.as_ref())?;
    let (held_out_nll, held_out_tokens, entropy, accuracy) = measure(&model, &tokenizer, &windows, &tasks, &direct)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_report(
        out,
        ParentReport {
            model_dir: checkpoint.to_path_buf(),
            params: config.num_params(),
            layers: config.num_layers(),
            training: None,
            held_out_nll,
            held_out_tokens,
            unigram_entropy: entropy,
            accuracy: (&accuracy).into(),
        },
    )
}

impl std::fmt::Display for ParentReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "parent: {} layers, {} parameters, written to {}",
            self.layers,
            self.params,
            self.model_dir.display()
        )?;
        match &self.training {
            Some(t) => writeln!(
                f,
                "trained {} steps, {} tokens in {:.0} s (median {:.0} tokens/s), final train loss {:.4}",
                t.steps, t.train_tokens, t.train_seconds, t.median_tokens_per_s, t.final_train_loss
            )?,
            None => writeln!(f, "pretrained (read from its checkpoint, not trained here)")?,
        }
        writeln!(
            f,
            "held-out NLL {:.4} nats/token over {} tokens (unigram entropy {:.4})",
            self.held_out_nll, self.held_out_tokens, self.unigram_entropy
        )?;
        for (name, a) in self.accuracy.labelled() {
            writeln!(
                f,
                "task accuracy, thinking {name}: {:.1}% ({}/{}), format ok {:.1}%",
                100.0 * a.accuracy,
                a.correct,
                a.tasks,
                100.0 * a.format_ok
            )?;
        }
        Ok(())
    }
}
