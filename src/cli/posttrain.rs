//! `fuse analyze|apply`, `distill`, `sft` and `rl`: what happens to a child after assembly.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Subcommand};

use super::args::{ThinkingChoice, WindowArgs, named};
use super::print;
use tessera::eval::TaskSet;
use tessera::fusion::{FuseOptions, RunChoice, analyze_fusion, fuse_model};
use tessera::posttrain::{
    ChatEval, ChatSource, DEFAULT_EVAL_TASKS, DEFAULT_RL_TASKS, DEFAULT_SFT_TASKS, DEFAULT_TRAIN_WINDOWS, DistillLoss,
    DistillOptions, DistillStageOptions, GrpoSettings, PromptSet, RlOptions, SftOptions, SftStage, distill_model,
    rl_model, sft_model,
};
use tessera::source::TokenSource;
use tessera::world::Split;

#[derive(Subcommand)]
pub enum FuseCommand {
    /// Write the pairwise dependency matrix (CSV and heat map) and every fusable run's M_max and M_sum.
    Analyze(FuseArgs),
    /// Write a checkpoint with runs of FFNs fused into one wide SwiGLU layer each (to OUT/model).
    Apply {
        /// `auto` (from the dependency matrix) or inclusive layer ranges, e.g. `2-4,6-7`.
        #[arg(long)]
        runs: RunChoice,
        #[command(flatten)]
        fuse: FuseArgs,
    },
}

#[derive(Args)]
pub struct FuseArgs {
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    windows: WindowArgs,
    /// The automatic choice fuses runs whose largest dependency is at most this.
    #[arg(long, default_value_t = FuseOptions::default().max_dependency)]
    max_dependency: f64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

impl FuseArgs {
    fn options(&self, runs: RunChoice) -> Result<FuseOptions> {
        Ok(FuseOptions {
            windows: self.windows.spec(0)?,
            max_dependency: self.max_dependency,
            runs,
        })
    }
}

pub fn fuse(command: FuseCommand, device: &Device) -> Result<()> {
    match command {
        FuseCommand::Analyze(a) => print(
            &analyze_fusion(&a.model, &a.out, &a.options(RunChoice::Auto)?, device)?,
            a.json,
        ),
        FuseCommand::Apply { runs, fuse: a } => {
            print(&fuse_model(&a.model, &a.out, &a.options(runs)?, device)?, a.json)
        }
    }
}

#[derive(Args)]
pub struct DistillArgs {
    #[arg(long)]
    student: PathBuf,
    #[arg(long)]
    teacher: PathBuf,
    #[command(flatten)]
    windows: WindowArgs,
    /// Training tokens in all.
    #[arg(long, default_value_t = DistillOptions::default().tokens)]
    tokens: usize,
    #[arg(long, default_value_t = DistillOptions::default().loss, value_parser = named::<DistillLoss>())]
    loss: DistillLoss,
    #[arg(long, default_value_t = DistillOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = DistillOptions::default().micro_batches)]
    micro_batches: usize,
    #[arg(long, default_value_t = DistillOptions::default().peak_lr)]
    lr: f64,
    #[arg(long, default_value_t = DistillOptions::default().seed)]
    seed: u64,
    /// Training windows drawn from the data.
    #[arg(long, default_value_t = DEFAULT_TRAIN_WINDOWS)]
    train_windows: usize,
    /// Stop (with a checkpoint) after this many steps; the same command resumes.
    #[arg(long)]
    stop_after: Option<usize>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn distill(args: DistillArgs, device: &Device) -> Result<()> {
    let windows = args.windows.spec(args.train_windows)?;
    let defaults = DistillOptions::default();
    let options = DistillStageOptions {
        teacher: args.teacher,
        train: DistillOptions {
            loss: args.loss,
            tokens: args.tokens,
            batch_size: args.batch_size,
            micro_batches: args.micro_batches,
            seq_len: windows.seq_len,
            peak_lr: args.lr,
            seed: args.seed,
            control: defaults
                .control
                .stopping_after(args.stop_after)
                .with_progress(!args.json),
        },
        data: windows,
    };
    print(&distill_model(&args.student, &args.out, &options, device)?, args.json)
}

/// What `sft` and `rl` share: the model, the held-out tasks measured before and after, and
/// where the results go.
#[derive(Args)]
pub struct ChatRunArgs {
    /// A checkpoint directory with a tokenizer.json and its chat template (tokenizer_config.json
    /// or chat_template.jinja beside it), or one that has the built-in world's chat markers.
    #[arg(long)]
    model: PathBuf,
    /// Seed of the built-in world (training data and held-out tasks).
    #[arg(long, default_value_t = tessera::world::DEFAULT_SEED)]
    world_seed: u64,
    /// `builtin` (held-out multi-step tasks of the built-in world) or a JSONL task file.
    #[arg(long, default_value = TaskSet::BUILTIN)]
    eval_tasks: String,
    /// One-step tasks answered with thinking off: `builtin-one-step` (the built-in world's),
    /// a JSONL task file, or `none`.
    #[arg(long, default_value = TaskSet::BUILTIN_ONE_STEP)]
    eval_direct_tasks: String,
    #[arg(long, default_value_t = DEFAULT_EVAL_TASKS)]
    eval_count: usize,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

impl ChatRunArgs {
    fn eval(&self) -> ChatEval {
        ChatEval {
            tasks: TaskSet::named(&self.eval_tasks, self.world_seed, Split::HeldOut, self.eval_count),
            direct: TaskSet::named_if_any(
                &self.eval_direct_tasks,
                self.world_seed,
                Split::HeldOut,
                self.eval_count,
            ),
            before: true,
        }
    }
}

#[derive(Args)]
pub struct SftArgs {
    #[command(flatten)]
    run: ChatRunArgs,
    /// `builtin` (the built-in world's training tasks, each with thinking on and off) or a JSONL
    /// file: `{"system", "user", "assistant"}` or `{"messages": [{"role", "content"}, …]}` per line.
    #[arg(long, default_value = TokenSource::BUILTIN)]
    data: String,
    /// Built-in tasks (each gives two chats).
    #[arg(long, default_value_t = DEFAULT_SFT_TASKS)]
    builtin_tasks: usize,
    /// A stage as CHATS:STEPS, CHATS one of on, off, both; repeat for several stages, in order.
    /// Default: on:100 then both:100 (reasoning first, then both modes mixed).
    #[arg(long = "stage")]
    stages: Vec<SftStage>,
    #[arg(long, default_value_t = SftOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = SftOptions::default().micro_batches)]
    micro_batches: usize,
    #[arg(long, default_value_t = SftOptions::default().peak_lr)]
    lr: f64,
    #[arg(long, default_value_t = SftOptions::default().seed)]
    seed: u64,
    /// Stop (with a checkpoint) after this many steps over all stages; the same command resumes.
    #[arg(long)]
    stop_after: Option<usize>,
}

pub fn sft(args: SftArgs, device: &Device) -> Result<()> {
    let chats = match args.data.as_str() {
        "builtin" => ChatSource::Builtin {
            seed: args.run.world_seed,
            tasks: args.builtin_tasks,
        },
        path => ChatSource::File { path: path.into() },
    };
    let defaults = SftOptions::default();
    let options = SftOptions {
        stages: match args.stages.is_empty() {
            true => defaults.stages.clone(),
            false => args.stages,
        },
        batch_size: args.batch_size,
        micro_batches: args.micro_batches,
        peak_lr: args.lr,
        seed: args.seed,
        control: defaults
            .control
            .stopping_after(args.stop_after)
            .with_progress(!args.run.json),
    };
    let report = sft_model(
        &args.run.model,
        &args.run.out,
        &chats,
        &options,
        &args.run.eval(),
        device,
    )?;
    print(&report, args.run.json)
}

#[derive(Args)]
pub struct RlArgs {
    /// `--model` is usually SFT's output.
    #[command(flatten)]
    run: ChatRunArgs,
    /// `builtin` (the built-in world's multi-step training tasks), `builtin-one-step` or a JSONL
    /// task file: `{"question", "answer"}` per line; a GSM8K-style answer carries the number
    /// after `####`.
    #[arg(long, default_value = TaskSet::BUILTIN)]
    tasks: String,
    /// How many built-in tasks of each kind to survey (the solved ones are dropped).
    #[arg(long, default_value_t = DEFAULT_RL_TASKS)]
    count: usize,
    /// Which switch setting `--tasks` are asked with (`both`: alternating).
    #[arg(long, value_enum, default_value_t = ThinkingChoice::On)]
    thinking: ThinkingChoice,
    /// Tasks asked with thinking off beside them, where answering directly is right:
    /// `builtin-one-step` (the built-in world's one-step sums), a JSONL task file, or `none`.
    #[arg(long, default_value = TaskSet::BUILTIN_ONE_STEP)]
    direct_tasks: String,
    #[arg(long, default_value_t = RlOptions::default().rounds)]
    rounds: usize,
    /// Optimizer steps on each round's samples.
    #[arg(long, default_value_t = RlOptions::default().updates_per_round)]
    updates_per_round: usize,
    #[arg(long, default_value_t = RlOptions::default().prompts_per_round)]
    prompts_per_round: usize,
    /// G, replies sampled per prompt.
    #[arg(long, default_value_t = RlOptions::default().group_size)]
    group_size: usize,
    #[arg(long, default_value_t = RlOptions::default().micro_batches)]
    micro_batches: usize,
    #[arg(long, default_value_t = RlOptions::default().max_new_tokens)]
    max_tokens: usize,
    #[arg(long, default_value_t = RlOptions::default().temperature)]
    temperature: f32,
    /// ε of the clipped importance ratio.
    #[arg(long, default_value_t = GrpoSettings::default().clip)]
    clip: f64,
    /// β, the weight of the KL penalty to the starting model.
    #[arg(long, default_value_t = GrpoSettings::default().kl_beta)]
    kl_beta: f64,
    #[arg(long, default_value_t = RlOptions::default().peak_lr)]
    lr: f64,
    /// Prompts the starting model solves at this pass rate or above are dropped.
    #[arg(long, default_value_t = RlOptions::default().solved_pass_rate)]
    solved_pass_rate: f64,
    #[arg(long, default_value_t = RlOptions::default().seed)]
    seed: u64,
    /// Stop (with a checkpoint) after this many rounds; the same command resumes.
    #[arg(long)]
    stop_after: Option<usize>,
}

pub fn rl(args: RlArgs, device: &Device) -> Result<()> {
    let seed = args.run.world_seed;
    let prompts = PromptSet::with_direct(
        TaskSet::named(&args.tasks, seed, Split::Train, args.count),
        args.thinking.modes(),
        TaskSet::named_if_any(&args.direct_tasks, seed, Split::Train, args.count),
    );
    let options = RlOptions {
        rounds: args.rounds,
        updates_per_round: args.updates_per_round,
        prompts_per_round: args.prompts_per_round,
        group_size: args.group_size,
        micro_batches: args.micro_batches,
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        grpo: GrpoSettings {
            clip: args.clip,
            kl_beta: args.kl_beta,
        },
        peak_lr: args.lr,
        solved_pass_rate: args.solved_pass_rate,
        seed: args.seed,
        control: RlOptions::default()
            .control
            .stopping_after(args.stop_after)
            .with_progress(!args.run.json),
    };
    let report = rl_model(
        &args.run.model,
        &args.run.out,
        &prompts,
        &options,
        &args.run.eval(),
        device,
    )?;
    print(&report, args.run.json)
}
