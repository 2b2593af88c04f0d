//! The `tessera` command: parses arguments and calls library functions, nothing more.

// burn-flex allocates and frees large tensor buffers at every op; glibc returns them to the
// system each time, and re-faulting the pages cost about a quarter of a training step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use tessera::bench::{
    bench_bld, bench_forward, bench_search, bench_train, gemm_peak_gflops, random_25m_config, read_bandwidth_gbs,
    shape_8m,
};
use tessera::checkpoint::{Checkpoint, ExportOptions, Llama2cVersion, StoreDtype, load_model};
use tessera::cost::measure::{Runner, request_runner, time_interleaved};
use tessera::cost::{Precision, ProfileOptions, Scenario, gpu_table, profile_library};
use tessera::data::{read_documents, tokenize_corpus};
use tessera::device::DeviceChoice;
use tessera::eval::{AccuracyReport, AccuracySummary, mean_nll, read_task_file, switch_accuracy, task_accuracy};
use tessera::fusion::{FusionAnalysis, analyze, fuse_runs, parse_runs, write_analysis};
use tessera::library::{
    BldMode, BldSettings, BuildOptions, Library, LinearInit, Origin, Shard, Stage, build_library, choice_from_json,
    merge_libraries,
};
use tessera::model::{Llama, Sampling, build_model, generate, random_weights};
use tessera::parent::{ParentOptions, default_parent_config, train_parent};
use tessera::pipeline::{Outcome, Pipeline, RunOptions, run_pipeline};
use tessera::posttrain::{
    DistillLoss, DistillOptions, GrpoSettings, RlOptions, RlReport, SftOptions, SftReport, SftStage, builtin_chats,
    distill, layer_matches, read_chat_file, rl, sft,
};
use tessera::report::{write_dependency_heatmap, write_pareto};
use tessera::score::{Reference, Scoring, compare_items, record_metrics, record_scores, write_item_table};
use tessera::search::{
    ConstraintFile, Limits, Objective, SearchInput, SearchSpec, SolutionReport, SolveOptions, SolverKind, Sweep,
    check_on_cpu, parse_limits, read_solution, search,
};
use tessera::source::TokenSource;
use tessera::tokenizer::Tokenizer;
use tessera::train::RunControl;
use tessera::world::{Split, Task, Thinking, World};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Build faster child models from a Llama-style parent"
)]
struct Cli {
    /// Compute device (wgpu / cuda need the cargo feature of that name).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu, global = true)]
    device: DeviceChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a model.
    Generate(GenerateArgs),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Write a model in another checkpoint format.
    Export(ExportArgs),
    /// Print a model's configuration and parameter count.
    Info {
        #[arg(long)]
        model: PathBuf,
    },
    /// Measure throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Train the default parent on the built-in world.
    #[command(subcommand)]
    Parent(ParentCommand),
    /// Turn text into token shards for training.
    #[command(subcommand)]
    Data(DataCommand),
    /// Build, inspect and merge block libraries (search space, initialisation, BLD).
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Replace-1-block scores of a library's blocks (KL to the parent, LM loss, cosine distance).
    Score(ScoreArgs),
    /// Costs of a library's blocks on a target: parameters, memory, KV cache, latency.
    Profile(ProfileArgs),
    /// Pick one block per layer that loses the least quality within limits (a MIP solved by CBC),
    /// next to the baselines.
    Search(SearchArgs),
    /// Sweep one limit and write the Pareto report (table, plots, page) into --out.
    Pareto(ParetoArgs),
    /// Build the child a search chose: a checkpoint directory from the library's trained blocks.
    Assemble(AssembleArgs),
    /// FFN fusion: the layer dependency matrix, and fusing runs of FFNs into one wide layer.
    #[command(subcommand)]
    Fuse(FuseCommand),
    /// Global distillation of a child (student) from its parent (teacher).
    Distill(DistillArgs),
    /// Supervised fine-tuning on chats with the `detailed thinking on/off` switch, in stages.
    Sft(SftArgs),
    /// Reinforcement learning with GRPO on verifiable tasks (accuracy + format rewards).
    Rl(RlArgs),
    /// The hardware table the roofline uses, with this machine's CPU measured.
    Hardware {
        #[arg(long)]
        json: bool,
    },
    /// The whole pipeline from a pipeline file (`pipelines/default.toml`: the built-in default,
    /// no download): parent → library → score → profile → search → assemble → fuse → distill →
    /// sft → rl → export → report. Stages that are up to date are skipped; a killed run resumes.
    Run {
        pipeline: PathBuf,
        /// Stage outputs go to RUNS/<name>/.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// The report goes to REPORTS/<name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct AssembleArgs {
    #[arg(long)]
    library: PathBuf,
    /// `solutions.json` of a search: `PATH` (the best), `PATH#k` (the k-th) or `PATH#greedy` (a baseline).
    #[arg(long)]
    solution: String,
    /// The parent, when it moved since the library was built.
    #[arg(long)]
    parent: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Held-out windows to measure on.
#[derive(Args)]
struct WindowArgs {
    /// `builtin`, `builtin:SEED`, `parent-samples:N`, a text file or token shards.
    #[arg(long, default_value = "builtin")]
    data: String,
    /// Tokenizer for text data (default: the model's tokenizer.json).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    windows: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
}

#[derive(Subcommand)]
enum FuseCommand {
    /// Write the pairwise dependency matrix (CSV and heat map) and every fusable run's M_max and M_sum.
    Analyze {
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        windows: WindowArgs,
        /// The automatic choice fuses runs whose largest dependency is at most this.
        #[arg(long, default_value_t = DEFAULT_MAX_DEPENDENCY)]
        max_dependency: f64,
        #[arg(long, default_value = "fusion")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write a checkpoint with runs of FFNs fused into one wide SwiGLU layer each.
    Apply {
        #[arg(long)]
        model: PathBuf,
        /// `auto` (from the dependency matrix) or inclusive layer ranges, e.g. `2-4,6-7`.
        #[arg(long)]
        runs: String,
        #[command(flatten)]
        windows: WindowArgs,
        #[arg(long, default_value_t = DEFAULT_MAX_DEPENDENCY)]
        max_dependency: f64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

const DEFAULT_MAX_DEPENDENCY: f64 = 0.5;

#[derive(Args)]
struct DistillArgs {
    #[arg(long)]
    student: PathBuf,
    #[arg(long)]
    teacher: PathBuf,
    #[command(flatten)]
    windows: WindowArgs,
    /// Training tokens in all.
    #[arg(long, default_value_t = 200_000)]
    tokens: usize,
    #[arg(long, value_enum, default_value_t = DistillLoss::CosineKl)]
    loss: DistillLoss,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 2)]
    micro_batches: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training windows drawn from the data.
    #[arg(long, default_value_t = 2048)]
    train_windows: usize,
    /// Stop (with a checkpoint) after this many steps; the same command resumes.
    #[arg(long)]
    stop_after: Option<usize>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

/// What `sft` and `rl` share: the model, the held-out tasks measured before and after, and
/// where the results go.
#[derive(Args)]
struct ChatRunArgs {
    /// A checkpoint directory with a tokenizer.json that has the chat markers.
    #[arg(long)]
    model: PathBuf,
    /// Seed of the built-in world (training data and held-out tasks).
    #[arg(long, default_value_t = 1)]
    world_seed: u64,
    /// `builtin` (held-out tasks of the built-in world) or a JSONL task file.
    #[arg(long, default_value = "builtin")]
    eval_tasks: String,
    #[arg(long, default_value_t = 500)]
    eval_count: usize,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SftArgs {
    #[command(flatten)]
    run: ChatRunArgs,
    /// `builtin` (the built-in world's training tasks, each with thinking on and off) or a JSONL
    /// file: `{"system", "user", "assistant"}` or `{"messages": [{"role", "content"}, …]}` per line.
    #[arg(long, default_value = "builtin")]
    data: String,
    /// Built-in tasks (each gives two chats).
    #[arg(long, default_value_t = 20_000)]
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
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop (with a checkpoint) after this many steps over all stages; the same command resumes.
    #[arg(long)]
    stop_after: Option<usize>,
}

#[derive(Args)]
struct RlArgs {
    /// `--model` is usually SFT's output.
    #[command(flatten)]
    run: ChatRunArgs,
    /// `builtin` (the built-in world's training tasks) or a JSONL task file: `{"question", "answer"}`
    /// per line; a GSM8K-style answer carries the number after `####`.
    #[arg(long, default_value = "builtin")]
    tasks: String,
    /// How many built-in tasks to survey (the solved ones are dropped).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Which switch setting prompts are asked with (`both`: alternating).
    #[arg(long, value_enum, default_value_t = ThinkingChoice::On)]
    thinking: ThinkingChoice,
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
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop (with a checkpoint) after this many rounds; the same command resumes.
    #[arg(long)]
    stop_after: Option<usize>,
}

/// What to optimise and under which limits: a constraint file, or an objective and raw limits.
#[derive(Args)]
struct SpecArgs {
    /// A library directory or any `block_library.json` in the interchange layout.
    #[arg(long)]
    library: PathBuf,
    /// A constraint file (constraints/*.toml).
    #[arg(long, conflicts_with_all = ["objective", "maximize", "limits"])]
    constraints: Option<PathBuf>,
    /// The library key to minimise (e.g. metrics.kl_div) when there is no constraint file.
    #[arg(long, required_unless_present = "constraints")]
    objective: Option<String>,
    #[arg(long)]
    maximize: bool,
    /// `KEY<=V`, `KEY>=V` or `KEY=LOW..HIGH` on any library key; repeatable.
    #[arg(long = "limit")]
    limits: Vec<String>,
    /// Diverse solutions to return (overrides the constraint file).
    #[arg(long)]
    solutions: Option<usize>,
    /// Layers in which each solution differs from every earlier one (overrides the file).
    #[arg(long)]
    min_diff: Option<usize>,
    #[arg(long, value_enum, default_value_t = SolverKind::Cbc)]
    solver: SolverKind,
    /// Seconds before the solver returns its best so far (overrides the file).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Relative optimality gap at which to stop (overrides the file).
    #[arg(long)]
    gap: Option<f64>,
    /// Skip the baselines.
    #[arg(long)]
    no_baselines: bool,
}

#[derive(Args)]
struct SearchArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Also write the solutions (the `--json` document) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Assemble the best child and time it against the parent on this CPU over this many
    /// interleaved rounds of whole requests (a tessera library and a cpu constraint file).
    #[arg(long, requires = "constraints")]
    measure: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ParetoArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// `KEY=FROM..TO:STEPS`: a limit of the constraint file or a library key (then `KEY<=value`).
    #[arg(long)]
    sweep: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ParentCommand {
    /// Train (or resume) the default parent and report held-out NLL and task accuracy.
    Train(ParentTrainArgs),
}

#[derive(Args)]
struct ParentTrainArgs {
    /// Output directory; a run interrupted there resumes from its last checkpoint.
    #[arg(long, default_value = "runs/parent")]
    out: PathBuf,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences per optimizer step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per step (run on parallel threads; gradients accumulated).
    #[arg(long)]
    micro_batches: Option<usize>,
    #[arg(long)]
    seq_len: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Held-out tasks scored per thinking mode.
    #[arg(long)]
    eval_tasks: Option<usize>,
    /// Stop after this many steps (with a checkpoint), as if interrupted.
    #[arg(long)]
    stop_after: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum LibraryCommand {
    /// Train a block library from a parent: every variant of the search space, initialised from
    /// the parent and trained by blockwise local distillation. Rerun to resume.
    Build(LibraryBuildArgs),
    /// Per-item state and held-out normalised MSE of a library.
    Status {
        library: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Join libraries built as shards (`--shard i/N`) of one build.
    Merge {
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct LibraryBuildArgs {
    /// The parent checkpoint (directory or llama2.c `.bin`).
    #[arg(long)]
    parent: PathBuf,
    /// Tokenizer for text data, when the parent directory has no tokenizer.json.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Search space TOML (see search_spaces/).
    #[arg(long)]
    space: PathBuf,
    /// `builtin`, `builtin:SEED`, `parent-samples:N`, a text file or token shards.
    #[arg(long)]
    data: String,
    /// Training tokens per item.
    #[arg(long, default_value_t = 131_072)]
    tokens: usize,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = BldMode::Decoupled)]
    mode: BldMode,
    /// Hybrid mode: a solutions JSON whose chosen blocks are trained as pairs.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Build only part `i` of `N` of the work (merge the parts afterwards).
    #[arg(long)]
    shard: Option<Shard>,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Windows per BLD step.
    #[arg(long, default_value_t = 8)]
    batch_windows: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = LinearInit::LeastSquares)]
    linear_init: LinearInit,
    /// Held-out windows for the normalised-MSE figures.
    #[arg(long, default_value_t = 32)]
    held_out_windows: usize,
    /// Items trained at once (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    #[arg(long)]
    library: PathBuf,
    /// Held-out text: `builtin`, `builtin:SEED`, `parent-samples:N`, a text file or token shards
    /// (default: the data the library was built from).
    #[arg(long)]
    data: Option<String>,
    /// Held-out windows scored.
    #[arg(long, default_value_t = 32)]
    windows: usize,
    /// The parent, when it moved since the library was built.
    #[arg(long)]
    parent: Option<PathBuf>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// `kl`, `lm_loss` and `cosine` come from one forward pass and are all written; `accuracy`
    /// answers tasks with each block in place (slower).
    #[arg(long, value_enum, default_value_t = ScoreMetric::Kl)]
    metric: ScoreMetric,
    /// For `--metric accuracy`: `builtin` (held-out built-in tasks) or a JSONL task file.
    #[arg(long, default_value = "builtin")]
    tasks: String,
    /// How many built-in tasks.
    #[arg(long, default_value_t = 50)]
    count: usize,
    #[arg(long, value_enum, default_value_t = ThinkingChoice::On)]
    thinking: ThinkingChoice,
    /// Score the library's own items (each in the otherwise unchanged parent) with their initial
    /// and their trained weights, instead of every block of the space.
    #[arg(long)]
    items: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScoreMetric {
    Kl,
    LmLoss,
    Cosine,
    Accuracy,
}

#[derive(Args)]
struct ProfileArgs {
    #[arg(long)]
    library: PathBuf,
    /// `cpu` (measured here) or a GPU of the table (estimated): h100, h200, a100, l40s, rtx4090.
    #[arg(long, default_value = "cpu")]
    target: String,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    dtype: Precision,
    /// `prefill:b=8,s=256` or `decode:b=64,c=1024`; repeat for several.
    #[arg(long = "scenario", required = true)]
    scenarios: Vec<String>,
    /// Timed rounds per measurement (cpu).
    #[arg(long, default_value_t = 15)]
    repeats: usize,
    /// Models measured end to end to calibrate whole-model predictions (cpu; 0 = none).
    #[arg(long, default_value_t = 8)]
    calibrate: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Text files to `train.tokens` / `heldout.tokens` shards (documents split by content hash).
    Tokenize {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long = "text", required = true)]
        texts: Vec<PathBuf>,
        /// Separator that splits each file into documents.
        #[arg(long)]
        split_on: Option<String>,
        /// One document in this many goes to the held-out shard (0 = none).
        #[arg(long, default_value_t = 20)]
        held_out_every: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ThinkingChoice {
    On,
    Off,
    Both,
}

impl ThinkingChoice {
    fn modes(self) -> &'static [Thinking] {
        match self {
            ThinkingChoice::On => &[Thinking::On],
            ThinkingChoice::Off => &[Thinking::Off],
            ThinkingChoice::Both => &[Thinking::On, Thinking::Off],
        }
    }
}

#[derive(Args)]
struct ModelArgs {
    /// A checkpoint directory (HF or DeciLM) or a llama2.c `.bin` file.
    #[arg(long)]
    model: PathBuf,
    /// `tokenizer.json` or llama2.c `tokenizer.bin`; defaults to the model directory's tokenizer.json.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[arg(long, conflicts_with_all = ["temperature", "top_p"])]
    greedy: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the token ids (BOS first), whitespace-separated.
    #[arg(long)]
    print_ids: bool,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Mean negative log-likelihood in nats per predicted token.
    Nll(NllArgs),
    /// Exact-match accuracy of greedy answers to tasks, with thinking on and/or off.
    Accuracy(AccuracyArgs),
    /// A model against its parent on held-out windows: KL of next-token distributions, LM loss,
    /// cosine distance of the last hidden state.
    Kl {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        parent: PathBuf,
        #[command(flatten)]
        windows: WindowArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct AccuracyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// `builtin` (held-out tasks of the built-in world) or a JSONL file of {"question", "answer"}.
    #[arg(long, default_value = "builtin")]
    tasks: String,
    /// How many built-in tasks.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Seed of the built-in world.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = ThinkingChoice::Both)]
    thinking: ThinkingChoice,
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct NllArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file; each piece is encoded with BOS.
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    text: Option<PathBuf>,
    /// Separator that splits the text into independent pieces.
    #[arg(long, requires = "text")]
    split_on: Option<String>,
    /// One whitespace-separated token id sequence per line, evaluated as given.
    #[arg(long)]
    ids: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Hf,
    Decilm,
    Llama2c,
    Llama2cV1,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output directory (HF / DeciLM) or `.bin` file (llama2.c).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = StoreDtype::F32)]
    dtype: StoreDtype,
    /// Split safetensors into shards of at most this many bytes.
    #[arg(long)]
    shard_bytes: Option<usize>,
    /// Give the LM head its own copy of tied embeddings.
    #[arg(long)]
    untie: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prefill and decode tokens/s with achieved GFLOP/s, next to the measured GEMM peak.
    Forward {
        /// Checkpoints to measure; `random-25m` is a random 25M-parameter Llama.
        #[arg(long = "model", default_values = ["random-25m"])]
        models: Vec<String>,
        #[arg(long, default_value_t = 128)]
        prompt_len: usize,
        #[arg(long, default_value_t = 64)]
        decode_tokens: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long)]
        json: bool,
    },
    /// Builds a block library into a scratch directory: wall time and BLD tokens/s per sub-block kind.
    Bld(BldBenchArgs),
    /// Whole requests (prefill, then one token at a time), the models interleaved round by round:
    /// median milliseconds per request and each model's speedup over the first.
    Request {
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        #[arg(long, default_value_t = 128)]
        generated: usize,
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// Replace-1-block scoring with prefix reuse against full recomputation: time and agreement.
    Score {
        #[arg(long)]
        library: PathBuf,
        #[arg(long)]
        data: Option<String>,
        #[arg(long, default_value_t = 32)]
        windows: usize,
        #[arg(long)]
        json: bool,
    },
    /// Solver speed on random libraries: median time per solve to proven optimality (two resource
    /// limits) and the time of a Pareto sweep.
    Search {
        #[arg(long, default_value_t = 80)]
        layers: usize,
        #[arg(long, default_value_t = 16)]
        variants: usize,
        /// Random libraries solved once each.
        #[arg(long, default_value_t = 21)]
        libraries: usize,
        #[arg(long, default_value_t = 50)]
        sweep_points: usize,
        /// Solvers to compare.
        #[arg(long = "solver", value_enum, default_values_t = [SolverKind::Cbc])]
        solvers: Vec<SolverKind>,
        /// Also write the libraries and limits here, for scripts/search_reference.py.
        #[arg(long)]
        dump: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Training tokens/s (forward, backward, clip, AdamW) of the default parent and an 8M shape.
    Train {
        #[arg(long = "shape", value_enum, default_values_t = [TrainShape::Parent, TrainShape::EightM])]
        shapes: Vec<TrainShape>,
        /// Sequences per step.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// The step's sequences are split into this many micro-batches, run on parallel threads.
        #[arg(long, default_value_t = 2)]
        micro_batches: usize,
        #[arg(long, default_value_t = 128)]
        seq_len: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 8)]
        steps: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct BldBenchArgs {
    /// The parent (for the default run: runs/default/parent-run/parent after `tessera run pipelines/default.toml`).
    #[arg(long)]
    parent: PathBuf,
    #[arg(long, default_value = "search_spaces/small.toml")]
    space: PathBuf,
    #[arg(long, default_value = "builtin")]
    data: String,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Training tokens per item.
    #[arg(long, default_value_t = 131_072)]
    tokens: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
enum TrainShape {
    /// The default parent.
    Parent,
    /// About 8M parameters.
    #[value(name = "8m")]
    EightM,
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = cli.device.device()?;
    match cli.command {
        Command::Generate(args) => generate_command(args, &device),
        Command::Eval(EvalCommand::Nll(args)) => nll_command(args, &device),
        Command::Export(args) => export_command(args),
        Command::Assemble(args) => assemble_command(args),
        Command::Fuse(command) => fuse_command(command, &device),
        Command::Distill(args) => distill_command(args, &device),
        Command::Sft(args) => sft_command(args, &device),
        Command::Rl(args) => rl_command(args, &device),
        Command::Info { model } => {
            let (checkpoint, format) = Checkpoint::read(&model)?;
            let params = checkpoint.config.num_params();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "format": format!("{format:?}"), "params": params, "config": checkpoint.config })
                )?
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Forward {
            models,
            prompt_len,
            decode_tokens,
            repeats,
            json,
        }) => bench_command(&models, prompt_len, decode_tokens, repeats, json, &device),
        Command::Bench(BenchCommand::Train {
            shapes,
            batch_size,
            micro_batches,
            seq_len,
            warmup,
            steps,
            json,
        }) => {
            let sizes = TrainBenchSizes {
                batch_size,
                micro_batches,
                seq_len,
                warmup,
                steps,
            };
            bench_train_command(&shapes, &sizes, json, &device)
        }
        Command::Bench(BenchCommand::Bld(args)) => bench_bld_command(args, &device),
        Command::Bench(BenchCommand::Request {
            models,
            batch,
            prompt,
            generated,
            rounds,
            json,
        }) => {
            let built = models
                .iter()
                .map(|m| load_model(m, &device).with_context(|| format!("loading {}", m.display())))
                .collect::<Result<Vec<_>>>()?;
            let runners = built
                .iter()
                .map(|m| request_runner(m, batch, prompt, generated))
                .collect::<Result<Vec<Runner>, _>>()?;
            let timings = time_interleaved(&runners, rounds);
            let rows: Vec<_> = models
                .iter()
                .zip(&timings)
                .map(|(m, t)| json!({ "model": m, "timing": t, "speedup": timings[0].median_ms / t.median_ms }))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!("batch {batch}, prompt {prompt}, {generated} generated tokens, {rounds} rounds interleaved:");
            for (model, t) in models.iter().zip(&timings) {
                println!(
                    "  {:<40} median {:>8.2} ms (min {:.2}, max {:.2})  {:.2}x",
                    model.display(),
                    t.median_ms,
                    t.min_ms,
                    t.max_ms,
                    timings[0].median_ms / t.median_ms
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Search {
            layers,
            variants,
            libraries,
            sweep_points,
            solvers,
            dump,
            json,
        }) => {
            let mut results = Vec::new();
            for solver in solvers {
                let result = bench_search(solver, layers, variants, libraries, sweep_points, dump.as_deref())?;
                if !json {
                    println!(
                        "{:?}: {layers} layers x {variants} variants, {libraries} libraries: median {:.1} ms per solve to optimality (max {:.1}, {} variables after dominance); {}-point sweep {:.2} s",
                        result.solver,
                        result.median_solve_ms,
                        result.max_solve_ms,
                        result.median_variables,
                        result.sweep_points,
                        result.sweep_s
                    );
                }
                results.push(result);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Score {
            library,
            data,
            windows,
            json,
        }) => {
            let library = Library::open(&library)?;
            let source: TokenSource = data.as_deref().unwrap_or(&library.manifest.settings.data).parse()?;
            let scoring = Scoring::new(&library, None, &source, None, windows, &device)?;
            let check = scoring.check_prefix_reuse(&library, &library.candidates())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&check)?);
            } else {
                println!(
                    "{} blocks on {} windows of {} tokens: prefix reuse {:.2} s, full recomputation {:.2} s ({:.2}x); max |Δ| KL {:.1e}, LM loss {:.1e}, cosine {:.1e}",
                    check.blocks,
                    scoring.windows,
                    scoring.tokens_per_window,
                    check.reuse_seconds,
                    check.full_seconds,
                    check.speedup,
                    check.max_abs_diff_kl,
                    check.max_abs_diff_lm_loss,
                    check.max_abs_diff_cosine
                );
            }
            Ok(())
        }
        Command::Parent(ParentCommand::Train(args)) => parent_train_command(args, &device),
        Command::Eval(EvalCommand::Accuracy(args)) => accuracy_command(args, &device),
        Command::Eval(EvalCommand::Kl {
            model,
            parent,
            windows,
            json,
        }) => {
            let parent_model = load_model(&parent, &device).context("loading the parent")?;
            let child = load_model(&model, &device).context("loading the model")?;
            anyhow::ensure!(
                child.config().vocab_size == parent_model.config().vocab_size,
                "{} has {} tokens in its vocabulary but the parent {} has {}",
                model.display(),
                child.config().vocab_size,
                parent.display(),
                parent_model.config().vocab_size
            );
            let data = data_windows(&windows, &parent_model, &parent, 0)?;
            let scores = Reference::new(&parent_model, &data.held_out)?.score_model(&child)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "windows": data.held_out.len(), "scores": scores }))?
                );
            } else {
                println!(
                    "{} vs {} on {} held-out windows of {} tokens: KL {:.5}  LM loss {:.4}  cosine distance {:.5}",
                    model.display(),
                    parent.display(),
                    data.held_out.len(),
                    windows.seq_len,
                    scores.kl_div,
                    scores.lm_loss,
                    scores.cosine_distance
                );
            }
            Ok(())
        }
        Command::Data(DataCommand::Tokenize {
            tokenizer,
            texts,
            split_on,
            held_out_every,
            out,
            json,
        }) => {
            let tok = Tokenizer::read(&tokenizer).context("loading the tokenizer")?;
            let mut documents = Vec::new();
            for path in &texts {
                documents.extend(
                    read_documents(path, split_on.as_deref())?
                        .into_iter()
                        .map(|d| (path.clone(), d)),
                );
            }
            let report = tokenize_corpus(
                &tok,
                documents.iter().map(|(p, d)| (p.as_path(), d.as_str())),
                held_out_every,
                &out,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} documents, {} tokens -> {}\n{} documents, {} tokens -> {}",
                    report.train_documents,
                    report.train_tokens,
                    report.train.display(),
                    report.held_out_documents,
                    report.held_out_tokens,
                    report.held_out.display()
                );
            }
            Ok(())
        }
        Command::Library(command) => library_command(command, &device),
        Command::Score(args) => score_command(args, &device),
        Command::Profile(args) => profile_command(args, &device),
        Command::Search(args) => search_command(args, &device),
        Command::Pareto(args) => pareto_command(args),
        Command::Hardware { json } => hardware_command(json, &device),
        Command::Run {
            pipeline,
            runs,
            reports,
            json,
        } => run_command(&pipeline, runs, reports, json, &device),
    }
}

fn parent_train_command(args: ParentTrainArgs, device: &burn::prelude::Device) -> Result<()> {
    let defaults = ParentOptions::default();
    let options = ParentOptions {
        layers: args.layers.unwrap_or(defaults.layers),
        steps: args.steps.unwrap_or(defaults.steps),
        batch_size: args.batch_size.unwrap_or(defaults.batch_size),
        micro_batches: args.micro_batches.unwrap_or(defaults.micro_batches),
        seq_len: args.seq_len.unwrap_or(defaults.seq_len),
        peak_lr: args.lr.unwrap_or(defaults.peak_lr),
        seed: args.seed.unwrap_or(defaults.seed),
        eval_tasks: args.eval_tasks.unwrap_or(defaults.eval_tasks),
        control: RunControl {
            stop_after: args.stop_after,
            progress: !args.json,
            ..defaults.control
        },
        ..defaults
    };
    let report = train_parent(&args.out, &options, device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn accuracy_command(args: AccuracyArgs, device: &burn::prelude::Device) -> Result<()> {
    let (model, tokenizer) = load(&args.model, device)?;
    let tokenizer = tokenizer.context("task accuracy needs a tokenizer: pass --tokenizer")?;
    let tasks = eval_task_set(&args.tasks, args.count, args.seed)?;
    let modes = args.thinking.modes();
    let mut reports = Vec::new();
    for &mode in modes {
        reports.push(task_accuracy(
            &model,
            &tokenizer,
            &tasks,
            mode,
            args.max_tokens,
            args.batch_size,
        )?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tasks": args.tasks, "results": reports }))?
        );
    } else {
        for r in &reports {
            println!(
                "thinking {:?}: accuracy {:.1}% ({}/{}), format ok {:.1}%",
                r.thinking,
                100.0 * r.accuracy,
                r.correct,
                r.tasks,
                100.0 * r.format_ok
            );
        }
    }
    Ok(())
}

struct TrainBenchSizes {
    batch_size: usize,
    micro_batches: usize,
    seq_len: usize,
    warmup: usize,
    steps: usize,
}

fn bench_train_command(
    shapes: &[TrainShape],
    sizes: &TrainBenchSizes,
    json: bool,
    device: &burn::prelude::Device,
) -> Result<()> {
    let TrainBenchSizes {
        batch_size,
        micro_batches,
        seq_len,
        warmup,
        steps,
    } = *sizes;
    let mut rows = Vec::new();
    for &shape in shapes {
        let parent = default_parent_config(ParentOptions::default().layers);
        let config = match shape {
            TrainShape::Parent => parent,
            TrainShape::EightM => shape_8m(parent.vocab_size),
        };
        rows.push((
            shape,
            bench_train(&config, batch_size, micro_batches, seq_len, warmup, steps, device)?,
        ));
    }
    if json {
        let rows: Vec<_> = rows.iter().map(|(s, r)| json!({ "shape": s, "result": r })).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "engine": "tessera", "shapes": rows }))?
        );
        return Ok(());
    }
    println!(
        "{:<8} {:>10} {:>7} {:>12} {:>14} {:>9}",
        "shape", "params", "tokens", "step ms", "tokens/s", "GFLOP/s"
    );
    for (shape, r) in &rows {
        let name = if *shape == TrainShape::Parent { "parent" } else { "8m" };
        println!(
            "{:<8} {:>10} {:>7} {:>12.1} {:>14.0} {:>9.1}",
            name,
            r.params,
            r.batch_size * r.seq_len,
            r.median_step_ms,
            r.median_tokens_per_s,
            r.gflops
        );
    }
    println!(
        "(medians of {steps} steps after {warmup} warm-up steps; batch {batch_size} x {seq_len} tokens in {micro_batches} micro-batches)"
    );
    Ok(())
}

fn load_tokenizer(args: &ModelArgs) -> Result<Option<Tokenizer>> {
    let path = args.tokenizer.clone().or_else(|| Tokenizer::beside_model(&args.model));
    path.map(|p| Tokenizer::read(&p).context("loading the tokenizer"))
        .transpose()
}

fn load(args: &ModelArgs, device: &burn::prelude::Device) -> Result<(Llama, Option<Tokenizer>)> {
    let model = load_model(&args.model, device).context("loading the model")?;
    Ok((model, load_tokenizer(args)?))
}

fn generate_command(args: GenerateArgs, device: &burn::prelude::Device) -> Result<()> {
    let (model, tokenizer) = load(&args.model, device)?;
    let bos = model.config().bos_token_id;
    let prompt = match (&tokenizer, &args.prompt) {
        (Some(t), Some(text)) => t.encode(text, true)?,
        (None, Some(_)) => bail!("--prompt needs a tokenizer: pass --tokenizer"),
        (_, None) => vec![bos],
    };
    let sampling = if args.greedy {
        Sampling::Greedy
    } else {
        Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }
    };
    let stop = [model.config().eos_token_id, bos];
    let tokens = generate(&model, &prompt, args.max_tokens, sampling, &stop)?;
    if args.print_ids {
        println!("{}", tokens.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    } else {
        let tokenizer = tokenizer.context("printing text needs a tokenizer: pass --tokenizer, or use --print-ids")?;
        println!("{}", tokenizer.decode(&tokens)?);
    }
    Ok(())
}

fn read_id_file(path: &Path) -> Result<Vec<Vec<u32>>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            line.split_whitespace()
                .map(|word| {
                    word.parse::<u32>()
                        .with_context(|| format!("{}: line {}: `{word}` is not a token id", path.display(), n + 1))
                })
                .collect()
        })
        .collect()
}

fn nll_command(args: NllArgs, device: &burn::prelude::Device) -> Result<()> {
    let (model, tokenizer) = load(&args.model, device)?;
    let sequences = match (&args.text, &args.ids) {
        (Some(path), _) => {
            let tokenizer = tokenizer.context("--text needs a tokenizer: pass --tokenizer")?;
            let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let pieces: Vec<&str> = match &args.split_on {
                Some(sep) => text.split(sep.as_str()).collect(),
                None => vec![text.as_str()],
            };
            pieces
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| tokenizer.encode(p, true))
                .collect::<Result<Vec<_>, _>>()?
        }
        (None, Some(path)) => read_id_file(path)?,
        (None, None) => unreachable!("clap requires --text or --ids"),
    };
    let source = args.ids.as_ref().or(args.text.as_ref()).expect("one input");
    let report = mean_nll(&model, &sequences).with_context(|| format!("evaluating {}", source.display()))?;
    if report.tokens == 0 {
        bail!("{}: no sequence of two or more tokens to evaluate", source.display());
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "mean NLL {:.4} nats/token over {} tokens",
            report.mean_nll, report.tokens
        );
    }
    Ok(())
}

/// Copies the tokenizer beside `from` (a model directory), if any, into `to`.
fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    if let Some(tokenizer) = Tokenizer::beside_model(from) {
        fs::copy(&tokenizer, to.join("tokenizer.json")).with_context(|| format!("copying {}", tokenizer.display()))?;
    }
    Ok(())
}

/// Writes `checkpoint` as a DeciLM directory at `out` (replacing what was there) with the
/// tokenizer of `source`.
fn write_child(checkpoint: &Checkpoint, source: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    checkpoint.write_decilm(out, ExportOptions::default())?;
    copy_tokenizer(source, out)
}

fn child_summary(checkpoint: &Checkpoint) -> serde_json::Value {
    json!({
        "layers": checkpoint.config.num_layers(),
        "params": checkpoint.config.num_params(),
        "parent_layers": checkpoint.layer_spans(),
        "blocks": checkpoint.config.blocks.iter().map(tessera::library::block_name).collect::<Vec<_>>(),
    })
}

fn assemble_command(args: AssembleArgs) -> Result<()> {
    let library = Library::open(&args.library)?;
    let solution = read_solution(&args.solution)?;
    let spans = choice_from_json(&solution.choice)
        .map_err(|problem| anyhow::anyhow!("{}: {}: {problem}", solution.path.display(), solution.label))?;
    let parent = library.parent(args.parent.as_deref())?;
    let child = library
        .assemble_spans(&parent, &spans)
        .with_context(|| format!("assembling {} of {}", solution.label, solution.path.display()))?;
    let parent_dir = args.parent.clone().unwrap_or(library.manifest.parent.source.clone());
    write_child(&child, &parent_dir, &args.out)?;
    let summary = child_summary(&child);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "out": args.out, "child": summary }))?
        );
    } else {
        println!(
            "{} of {}: {} layers, {} parameters (parent {}), written to {}",
            solution.label,
            solution.path.display(),
            child.config.num_layers(),
            child.config.num_params(),
            parent.config.num_params(),
            args.out.display()
        );
    }
    Ok(())
}

/// Held-out (and training) windows of `args.data` for `model`.
fn data_windows(args: &WindowArgs, model: &Llama, model_dir: &Path, train: usize) -> Result<tessera::source::Windows> {
    let source: TokenSource = args.data.parse()?;
    let tokenizer = args
        .tokenizer
        .clone()
        .or_else(|| Tokenizer::beside_model(model_dir))
        .map(|p| Tokenizer::read(&p))
        .transpose()?;
    let windows = source.windows(model, tokenizer.as_ref(), args.seq_len + 1, train, args.windows)?;
    anyhow::ensure!(
        !windows.held_out.is_empty(),
        "--data {} gave no held-out window of {} tokens",
        args.data,
        args.seq_len + 1
    );
    Ok(windows)
}

/// The fusion analysis of `model` on the inputs of the held-out windows in `data`.
fn fusion_analysis(model: &Llama, data: &tessera::source::Windows, max_dependency: f64) -> Result<FusionAnalysis> {
    let inputs: Vec<Vec<u32>> = data.held_out.iter().map(|w| w[..w.len() - 1].to_vec()).collect();
    Ok(analyze(model, &inputs, max_dependency)?)
}

fn fuse_command(command: FuseCommand, device: &burn::prelude::Device) -> Result<()> {
    match command {
        FuseCommand::Analyze {
            model,
            windows,
            max_dependency,
            out,
            json,
        } => {
            let built = load_model(&model, device)?;
            let data = data_windows(&windows, &built, &model, 0)?;
            let analysis = fusion_analysis(&built, &data, max_dependency)?;
            write_analysis(&out, &analysis)?;
            write_dependency_heatmap(&out.join("dependency"), &analysis.matrix.values)
                .map_err(|e| anyhow::anyhow!("drawing the heat map: {e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&analysis)?);
                return Ok(());
            }
            print_matrix(&analysis);
            println!("{:<8} {:>8} {:>8} {:>7}", "run", "M_max", "M_sum", "chosen");
            for run in &analysis.candidates {
                let chosen = analysis.chosen.iter().any(|c| c.span() == run.span());
                println!(
                    "{:<8} {:>8.4} {:>8.4} {:>7}",
                    run.span().to_string(),
                    run.m_max,
                    run.m_sum,
                    if chosen { "yes" } else { "" }
                );
            }
            if analysis.candidates.is_empty() {
                println!("no run to fuse: every layer after the first of a run must have no attention");
            }
            println!(
                "wrote {}/{{dependency.csv, dependency.svg, dependency.png, runs.csv, runs.parquet, analysis.json}}",
                out.display()
            );
            Ok(())
        }
        FuseCommand::Apply {
            model,
            runs,
            windows,
            max_dependency,
            out,
            json,
        } => {
            let (checkpoint, _) = Checkpoint::read(&model)?;
            let unfused = checkpoint.build(device)?;
            let data = data_windows(&windows, &unfused, &model, 0)?;
            let spans = if runs == "auto" {
                let analysis = fusion_analysis(&unfused, &data, max_dependency)?;
                anyhow::ensure!(
                    !analysis.chosen.is_empty(),
                    "no run of {} can be fused with every dependency at most --max-dependency {max_dependency} ({} candidate runs; see `tessera fuse analyze`)",
                    model.display(),
                    analysis.candidates.len()
                );
                analysis.chosen.iter().map(|r| r.span()).collect()
            } else {
                parse_runs(&runs)?
            };
            let fused = fuse_runs(&checkpoint, &spans)?;
            write_child(&fused, &model, &out)?;
            // What "parallel instead of sequential" changed: the fused model against the one it came from.
            let change = Reference::new(&unfused, &data.held_out)?.score_model(&fused.build(device)?)?;
            let summary = child_summary(&fused);
            if json {
                let report = json!({ "out": out, "runs": spans, "child": summary, "change_from_unfused": change });
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let names: Vec<String> = spans.iter().map(ToString::to_string).collect();
                println!(
                    "fused runs [{}]: {} layers -> {}, written to {}",
                    names.join(", "),
                    checkpoint.config.num_layers(),
                    fused.config.num_layers(),
                    out.display()
                );
                println!(
                    "parallel instead of sequential, against the unfused model on {} held-out windows: KL {:.5}, cosine distance of the last hidden state {:.5}",
                    data.held_out.len(),
                    change.kl_div,
                    change.cosine_distance
                );
            }
            Ok(())
        }
    }
}

fn print_matrix(analysis: &FusionAnalysis) {
    let n = analysis.matrix.layers;
    print!("{:>6}", "i \\ j");
    for j in 0..n {
        print!("{j:>7}");
    }
    println!();
    for (i, row) in analysis.matrix.values.iter().enumerate() {
        print!("{i:>6}");
        for (j, value) in row.iter().enumerate() {
            if j > i {
                print!("{value:>7.3}");
            } else {
                print!("{:>7}", "");
            }
        }
        println!();
    }
}

fn distill_command(args: DistillArgs, device: &burn::prelude::Device) -> Result<()> {
    let (student, _) = Checkpoint::read(&args.student).context("reading the student")?;
    let teacher = load_model(&args.teacher, device).context("loading the teacher")?;
    layer_matches(&student, teacher.config())?;
    let windows = data_windows(&args.windows, &teacher, &args.teacher, args.train_windows)?;
    let options = DistillOptions {
        loss: args.loss,
        tokens: args.tokens,
        batch_size: args.batch_size,
        micro_batches: args.micro_batches,
        seq_len: args.windows.seq_len,
        peak_lr: args.lr,
        seed: args.seed,
        control: RunControl {
            stop_after: args.stop_after,
            progress: !args.json,
            ..DistillOptions::default().control
        },
    };
    let (child, report) = distill(&student, &teacher, &windows, &options, &args.out.join("train"))?;
    anyhow::ensure!(
        report.finished,
        "stopped after step {} as asked; run the same command again to resume",
        report.steps
    );
    let model_dir = args.out.join("model");
    write_child(&child, &args.student, &model_dir)?;
    let report_path = args.out.join("distill.json");
    fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{:?} distillation, {} steps, {} tokens in {:.1} s; held-out ({} windows) vs the teacher:",
        report.loss, report.steps, report.tokens_seen, report.seconds, report.held_out_windows
    );
    println!(
        "  KL {:.4} -> {:.4}   LM loss {:.4} -> {:.4}   cosine distance {:.4} -> {:.4}",
        report.before.kl_div,
        report.after.kl_div,
        report.before.lm_loss,
        report.after.lm_loss,
        report.before.cosine_distance,
        report.after.cosine_distance
    );
    println!("wrote {} and {}", model_dir.display(), report_path.display());
    Ok(())
}

/// Held-out tasks for before/after measurements: the built-in world's or a task file.
fn eval_task_set(spec: &str, count: usize, world_seed: u64) -> Result<Vec<Task>> {
    Ok(if spec == "builtin" {
        World::new(world_seed).tasks(Split::HeldOut, count)
    } else {
        read_task_file(Path::new(spec))?
    })
}

fn print_switch_change(before: &[AccuracyReport; 2], after: &[AccuracyReport; 2]) {
    for (b, a) in before.iter().zip(after) {
        println!(
            "  thinking {:<3}  accuracy {:5.1}% -> {:5.1}%   format ok {:5.1}% -> {:5.1}%",
            format!("{:?}", a.thinking).to_lowercase(),
            100.0 * b.accuracy,
            100.0 * a.accuracy,
            100.0 * b.format_ok,
            100.0 * a.format_ok
        );
    }
}

/// A checkpoint and the tokenizer.json beside it, which chat training needs.
fn read_chat_model(path: &Path) -> Result<(Checkpoint, Tokenizer)> {
    let (model, _) = Checkpoint::read(path).context("reading the model")?;
    let tokenizer_path = Tokenizer::beside_model(path).with_context(|| {
        format!(
            "{} has no tokenizer.json; chat training needs one with the chat markers",
            path.display()
        )
    })?;
    Ok((model, Tokenizer::read(&tokenizer_path)?))
}

fn accuracy_summaries(reports: &[AccuracyReport; 2]) -> serde_json::Value {
    json!({ "on": AccuracySummary::from(&reports[0]), "off": AccuracySummary::from(&reports[1]) })
}

/// What a chat-training command (`sft`, `rl`) ran, measured and wrote.
struct ChatStageOutcome<R> {
    report: R,
    before: [AccuracyReport; 2],
    after: [AccuracyReport; 2],
    model_dir: PathBuf,
    report_path: PathBuf,
    /// What `NAME.json` holds.
    written: serde_json::Value,
}

/// A training report that says whether the run finished or stopped early as asked.
trait Finishes {
    fn finished(&self) -> bool;
}

impl Finishes for SftReport {
    fn finished(&self) -> bool {
        self.finished
    }
}

impl Finishes for RlReport {
    fn finished(&self) -> bool {
        self.finished
    }
}

/// Measures `run.model` on the held-out tasks, trains it with `stage` (which returns the trained
/// checkpoint and its report), measures again, and writes `run.out/model` and
/// `run.out/NAME.json` (with `details`).
fn run_chat_stage<R: serde::Serialize + Finishes>(
    name: &str,
    run: &ChatRunArgs,
    details: serde_json::Value,
    device: &burn::prelude::Device,
    stage: impl FnOnce(&Checkpoint, &Tokenizer) -> Result<(Checkpoint, R)>,
) -> Result<ChatStageOutcome<R>> {
    let eval_tasks = &eval_task_set(&run.eval_tasks, run.eval_count, run.world_seed)?;
    let (model, tokenizer) = read_chat_model(&run.model)?;
    let before = switch_accuracy(&model.build(device)?, &tokenizer, eval_tasks)?;
    let (trained, report) = stage(&model, &tokenizer)?;
    anyhow::ensure!(
        report.finished(),
        "stopped early as asked; run the same command again to resume"
    );
    let after = switch_accuracy(&trained.build(device)?, &tokenizer, eval_tasks)?;
    let model_dir = run.out.join("model");
    write_child(&trained, &run.model, &model_dir)?;
    let mut result = json!({
        "model": model_dir,
        "eval_tasks": eval_tasks.len(),
        "before": accuracy_summaries(&before),
        "after": accuracy_summaries(&after),
        "details": details,
    });
    result[name] = serde_json::to_value(&report)?;
    let report_path = run.out.join(format!("{name}.json"));
    fs::write(&report_path, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    Ok(ChatStageOutcome {
        report,
        before,
        after,
        model_dir,
        report_path,
        written: result,
    })
}

impl<R> ChatStageOutcome<R> {
    /// Prints the JSON written (and returns true) when asked for JSON.
    fn print_json(&self, json_out: bool) -> Result<bool> {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&self.written)?);
        }
        Ok(json_out)
    }

    fn print_accuracy_and_paths(&self) {
        println!("held-out tasks ({}), greedy:", self.after[0].tasks);
        print_switch_change(&self.before, &self.after);
        println!("wrote {} and {}", self.model_dir.display(), self.report_path.display());
    }
}

fn rl_command(args: RlArgs, device: &burn::prelude::Device) -> Result<()> {
    let tasks = if args.tasks == "builtin" {
        World::new(args.run.world_seed).tasks(Split::Train, args.count)
    } else {
        read_task_file(Path::new(&args.tasks))?
    };
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
        modes: args.thinking.modes().to_vec(),
        seed: args.seed,
        control: RunControl {
            stop_after: args.stop_after,
            progress: !args.run.json,
            ..RlOptions::default().control
        },
    };
    let details = json!({ "tasks": args.tasks, "task_count": tasks.len() });
    let outcome = run_chat_stage("rl", &args.run, details, device, |model, tokenizer| {
        Ok(rl(
            model,
            &tasks,
            tokenizer,
            &options,
            &args.run.out.join("train"),
            device,
        )?)
    })?;
    if outcome.print_json(args.run.json)? {
        return Ok(());
    }
    let report = &outcome.report;
    println!(
        "{} prompts, {} already solved (pass rate >= {}) dropped; the rest start at pass rate {:.3}",
        report.prompts, report.solved, args.solved_pass_rate, report.kept_pass_rate
    );
    println!(
        "{:>5} {:>6} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7}",
        "round", "step", "reward", "pass", "format", "KL", "entropy", "clipped"
    );
    for h in report
        .history
        .iter()
        .filter(|h| h.step % (10 * args.updates_per_round) == 0 || h.step == report.steps)
    {
        println!(
            "{:>5} {:>6} {:>8.3} {:>8.3} {:>7.3} {:>8.5} {:>8.4} {:>7.4}",
            h.round, h.step, h.reward, h.accuracy, h.format, h.kl, h.entropy, h.clipped
        );
    }
    println!(
        "{} rounds, {} steps in {:.1} s; largest KL to the start {:.5}",
        report.rounds, report.steps, report.seconds, report.max_kl
    );
    outcome.print_accuracy_and_paths();
    Ok(())
}

fn sft_command(args: SftArgs, device: &burn::prelude::Device) -> Result<()> {
    let chats = if args.data == "builtin" {
        builtin_chats(args.run.world_seed, args.builtin_tasks)
    } else {
        read_chat_file(Path::new(&args.data))?
    };
    let defaults = SftOptions::default();
    let options = SftOptions {
        stages: if args.stages.is_empty() {
            defaults.stages.clone()
        } else {
            args.stages
        },
        batch_size: args.batch_size,
        micro_batches: args.micro_batches,
        peak_lr: args.lr,
        seed: args.seed,
        control: RunControl {
            stop_after: args.stop_after,
            progress: !args.run.json,
            ..defaults.control
        },
    };
    let details = json!({ "data": args.data, "chats": chats.len() });
    let outcome = run_chat_stage("sft", &args.run, details, device, |model, tokenizer| {
        Ok(sft(
            model,
            &chats,
            tokenizer,
            &options,
            &args.run.out.join("train"),
            device,
        )?)
    })?;
    if outcome.print_json(args.run.json)? {
        return Ok(());
    }
    for (k, stage) in outcome.report.stages.iter().enumerate() {
        println!(
            "stage {} ({:?} chats, {} in the pool): {} steps, {} assistant tokens in {:.1} s, loss {:.4} -> {:.4}",
            k + 1,
            stage.chats,
            stage.pool,
            stage.steps,
            stage.tokens_seen,
            stage.seconds,
            stage.first_loss,
            stage.final_loss
        );
    }
    outcome.print_accuracy_and_paths();
    Ok(())
}

fn export_command(args: ExportArgs) -> Result<()> {
    let (mut checkpoint, _) = Checkpoint::read(&args.model).context("reading the model")?;
    if args.untie {
        checkpoint = checkpoint.untied();
    }
    let options = ExportOptions {
        dtype: args.dtype,
        max_shard_bytes: args.shard_bytes,
    };
    match args.format {
        ExportFormat::Hf => checkpoint.write_hf(&args.out, options)?,
        ExportFormat::Decilm => checkpoint.write_decilm(&args.out, options)?,
        ExportFormat::Llama2c => checkpoint.write_llama2c(&args.out, Llama2cVersion::Legacy)?,
        ExportFormat::Llama2cV1 => checkpoint.write_llama2c(&args.out, Llama2cVersion::V1)?,
    }
    if let (true, Some(tokenizer)) = (args.out.is_dir(), Tokenizer::beside_model(&args.model)) {
        fs::copy(&tokenizer, args.out.join("tokenizer.json")).context("copying tokenizer.json")?;
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

fn bench_command(
    models: &[String],
    prompt_len: usize,
    decode_tokens: usize,
    repeats: usize,
    json: bool,
    device: &burn::prelude::Device,
) -> Result<()> {
    let peak = gemm_peak_gflops(device, 1024, repeats.max(3));
    let bandwidth = read_bandwidth_gbs(device, repeats.max(3));
    let mut rows = Vec::new();
    for name in models {
        let model = if name == "random-25m" {
            let config = random_25m_config();
            build_model(&config, &random_weights(&config, 0), device)?
        } else {
            load_model(Path::new(name), device)?
        };
        let prompt_len = prompt_len
            .min(model.config().max_position_embeddings.saturating_sub(decode_tokens))
            .max(1);
        let result = bench_forward(&model, prompt_len, decode_tokens, repeats)?;
        rows.push((name.clone(), result));
    }
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(name, r)| json!({ "model": name, "result": r }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "gemm_peak_gflops": peak, "read_bandwidth_gbs": bandwidth, "models": rows })
            )?
        );
        return Ok(());
    }
    println!("machine: f32 GEMM peak {peak:.1} GFLOP/s (1024³, best run); read bandwidth {bandwidth:.1} GB/s");
    println!(
        "{:<22} {:>10} | {:>13} {:>8} {:>6} | {:>12} {:>8} {:>6} {:>12} {:>6}",
        "model",
        "params",
        "prefill tok/s",
        "GFLOP/s",
        "%peak",
        "decode tok/s",
        "GFLOP/s",
        "%peak",
        "weights GB/s",
        "%bw"
    );
    for (name, r) in &rows {
        let short = Path::new(&name)
            .file_name()
            .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
        println!(
            "{:<22} {:>10} | {:>13.1} {:>8.2} {:>5.1}% | {:>12.1} {:>8.2} {:>5.1}% {:>12.2} {:>5.1}%",
            short,
            r.params,
            r.prefill_tokens_per_s,
            r.prefill_gflops,
            100.0 * r.prefill_gflops / peak,
            r.decode_tokens_per_s,
            r.decode_gflops,
            100.0 * r.decode_gflops / peak,
            r.decode_weight_gbs,
            100.0 * r.decode_weight_gbs / bandwidth
        );
    }
    if let Some((_, r)) = rows.first() {
        println!(
            "(medians of {} runs; prefill of {} tokens at batch 1, then {} cached decode steps)",
            r.runs, r.prompt_len, r.decode_tokens
        );
    }
    Ok(())
}

fn run_command(
    pipeline: &Path,
    runs: PathBuf,
    reports: PathBuf,
    json: bool,
    device: &burn::prelude::Device,
) -> Result<()> {
    let pipeline = Pipeline::read(pipeline)?;
    let options = RunOptions {
        runs_dir: runs,
        reports_dir: reports,
        progress: !json,
    };
    let report = run_pipeline(&pipeline, &options, device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("stage        outcome      seconds");
    for stage in &report.stages {
        let outcome = match stage.outcome {
            Outcome::Ran => "ran",
            Outcome::UpToDate => "up to date",
        };
        println!("{:<12} {outcome:<12} {:>7.1}", stage.stage, stage.seconds);
    }
    for note in &report.notes {
        println!("{note}");
    }
    println!("{}", report.summary);
    println!("outputs: {}/ (one folder per stage)", report.run_dir.display());
    println!("report:  {}", report.report.display());
    Ok(())
}

fn library_command(command: LibraryCommand, device: &burn::prelude::Device) -> Result<()> {
    match command {
        LibraryCommand::Build(args) => {
            let options = BuildOptions {
                tokenizer: args.tokenizer,
                mode: args.mode,
                seq_len: args.seq_len,
                held_out_windows: args.held_out_windows,
                linear_init: args.linear_init,
                bld: BldSettings {
                    tokens: args.tokens,
                    batch_windows: args.batch_windows,
                    peak_lr: args.lr,
                    seed: args.seed,
                },
                pairs: args.pairs,
                shard: args.shard,
                workers: args.workers,
                progress: !args.json,
                ..BuildOptions::new(&args.parent, &args.space, args.data.parse()?)
            };
            let report = build_library(&args.out, &options, device)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{}: {} items trained now, {} were already trained ({} with their own training), {:.1} s",
                    report.dir.display(),
                    report.trained_now,
                    report.already_trained,
                    report.trainable,
                    report.seconds
                );
                print_library_table(&Library::open(&args.out)?);
            }
            Ok(())
        }
        LibraryCommand::Status { library, json } => {
            let library = Library::open(&library)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&library.manifest.items)?);
            } else {
                print_library_table(&library);
            }
            Ok(())
        }
        LibraryCommand::Merge { parts, out } => {
            let parts: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
            let merged = merge_libraries(&parts, &out)?;
            println!("merged {} libraries into {}", parts.len(), out.display());
            print_library_table(&merged);
            Ok(())
        }
    }
}

fn print_library_table(library: &Library) {
    let m = &library.manifest;
    println!(
        "parent {} ({}), space {}, mode {:?}{}",
        m.parent.source.display(),
        m.parent.fingerprint,
        m.space.name,
        m.settings.mode,
        m.shard
            .map_or(String::new(), |s| format!(", shard {}/{}", s.index, s.count))
    );
    println!(
        "{:<24} {:<12} {:>10} {:>12} {:>12} {:>8} {:>7}",
        "item", "state", "tokens", "nMSE init", "nMSE BLD", "ratio", "s"
    );
    let figure = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.5}"));
    for (key, r) in &m.items {
        let state = match r.origin {
            Origin::Trained => format!("{:?}", r.state).to_lowercase(),
            other => format!("{other:?}").to_lowercase(),
        };
        let ratio = match (r.nmse_init, r.nmse_trained) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.3}", b / a),
            _ => "-".into(),
        };
        println!(
            "{:<24} {:<12} {:>10} {:>12} {:>12} {:>8} {:>7.1}",
            key,
            state,
            r.tokens_seen,
            figure(r.nmse_init),
            figure(r.nmse_trained),
            ratio,
            r.seconds
        );
    }
}

fn score_command(args: ScoreArgs, device: &burn::prelude::Device) -> Result<()> {
    let library = Library::open(&args.library)?;
    let source: TokenSource = args
        .data
        .as_deref()
        .unwrap_or(&library.manifest.settings.data)
        .parse()?;
    let scoring = Scoring::new(
        &library,
        args.parent.as_deref(),
        &source,
        args.tokenizer.as_deref(),
        args.windows,
        device,
    )?;
    let progress = !args.json;
    if args.items {
        let (summary, rows) = compare_items(&library, &scoring, progress)?;
        let report = json!({ "summary": summary, "items": rows });
        let path = args.library.join("item_scores.json");
        fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        write_item_table(&args.library, &rows)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        println!(
            "{:<24} {:<8} {:>11} {:>11} {:>11} {:>11}",
            "item", "origin", "nMSE init", "nMSE BLD", "KL init", "KL BLD"
        );
        let figure = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.5}"));
        for r in &rows {
            println!(
                "{:<24} {:<8} {:>11} {:>11} {:>11.5} {:>11.5}",
                r.item,
                format!("{:?}", r.origin).to_lowercase(),
                figure(r.nmse_init),
                figure(r.nmse_trained),
                r.init.kl_div,
                r.trained.kl_div
            );
        }
        println!(
            "BLD lowered held-out nMSE for {}/{n} trainable items and replace-1-block KL for {}/{n} ({} windows of {} tokens); written to {}",
            summary.nmse_lower_after_bld,
            summary.kl_lower_after_bld,
            summary.windows,
            summary.tokens_per_window,
            path.display(),
            n = summary.trainable
        );
        return Ok(());
    }
    if args.metric == ScoreMetric::Accuracy {
        let tasks = if args.tasks == "builtin" {
            World::new(1).tasks(Split::HeldOut, args.count)
        } else {
            read_task_file(Path::new(&args.tasks))?
        };
        let thinking = match args.thinking {
            ThinkingChoice::Off => Thinking::Off,
            _ => Thinking::On,
        };
        let rows = scoring.accuracy(&library, &library.candidates(), &tasks, thinking, progress)?;
        record_metrics(
            &args.library,
            rows.iter().map(|(l, b, a)| (*l, b.as_str(), "accuracy", *a)),
        )?;
        if args.json {
            let rows: Vec<_> = rows
                .iter()
                .map(|(l, b, a)| json!({ "layer": format!("layer_{l}"), "block": b, "accuracy": a }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "tasks": tasks.len(), "scores": rows }))?
            );
        } else {
            for (span, block, accuracy) in &rows {
                println!("{:<6} {block:<24} {:>6.1}%", span.to_string(), 100.0 * accuracy);
            }
            println!(
                "metrics.accuracy written to {}",
                args.library.join("block_library.json").display()
            );
        }
        return Ok(());
    }
    let rows = scoring.score(&library, &library.candidates(), Stage::Trained, progress)?;
    record_scores(&args.library, &rows)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "scores": rows }))?);
    } else {
        println!(
            "{:<8} {:<24} {:>10} {:>10} {:>10}",
            "layer", "block", "KL", "LM loss", "cos dist"
        );
        for r in &rows {
            println!(
                "{:<8} {:<24} {:>10.5} {:>10.4} {:>10.6}",
                r.span.to_string(),
                r.variant,
                r.scores.kl_div,
                r.scores.lm_loss,
                r.scores.cosine_distance
            );
        }
        println!(
            "metrics written to {}; table in {}.csv / .parquet",
            args.library.join("block_library.json").display(),
            args.library.join("scores").display()
        );
    }
    Ok(())
}

fn bench_bld_command(args: BldBenchArgs, device: &burn::prelude::Device) -> Result<()> {
    let mut options = BuildOptions::new(&args.parent, &args.space, args.data.parse()?);
    options.tokenizer = args.tokenizer;
    options.bld.tokens = args.tokens;
    options.progress = !args.json;
    let result = bench_bld(&options, device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    println!(
        "built {} items of {} tokens each in {:.1} s wall ({} cores)",
        result.items,
        result.tokens_per_item,
        result.wall_seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<40} {:>6} {:>16} {:>14}",
        "sub-block kind", "items", "median tok/s", "median item s"
    );
    for k in &result.kinds {
        println!(
            "{:<40} {:>6} {:>16.0} {:>14.2}",
            k.kind, k.items, k.median_tokens_per_s, k.median_item_seconds
        );
    }
    println!("(tokens/s of one item's training while the other cores train other items)");
    Ok(())
}

fn profile_command(args: ProfileArgs, device: &burn::prelude::Device) -> Result<()> {
    let library = Library::open(&args.library)?;
    let options = ProfileOptions {
        target: args.target.parse()?,
        precision: args.dtype,
        scenarios: args
            .scenarios
            .iter()
            .map(|s| s.parse::<Scenario>())
            .collect::<Result<_, _>>()?,
        repeats: args.repeats,
        calibration_models: args.calibrate,
        progress: !args.json,
    };
    let report = profile_library(&library, &options, device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let names: Vec<String> = report.scenarios.iter().map(|s| format!("{s} ms")).collect();
    println!(
        "{:<6} {:<24} {:>10} {:>10} {:>9} {}",
        "layer",
        "block",
        "params",
        "MiB",
        "KV B/tok",
        names.iter().map(|n| format!("{n:>22}")).collect::<String>()
    );
    for r in &report.rows {
        println!(
            "{:<6} {:<24} {:>10} {:>10.4} {:>9} {}",
            r.span.to_string(),
            r.block,
            r.num_params,
            r.memory_mib,
            r.kv_bytes_per_token,
            r.runtime_ms.iter().map(|ms| format!("{ms:>22.4}")).collect::<String>()
        );
    }
    for (latency, name) in report.latency.iter().zip(&names) {
        println!(
            "{name}: outside the blocks {:.4} ms; whole model = blocks + outside + {:.4} ms",
            latency.outside_ms, latency.offset_ms
        );
    }
    for calibration in &report.calibration {
        println!("calibration, {}:", calibration.latency.scenario);
        for m in &calibration.models {
            println!(
                "  {:<10} {:<6} predicted {:>9.3} ms  measured {:>9.3} ms  error {:>+6.1}%",
                m.name,
                if m.fitted { "fit" } else { "check" },
                m.predicted_ms,
                m.measured_ms,
                m.error_pct
            );
        }
        println!(
            "  mean |error| over checked models: {:.1}% (sum of blocks alone: {:.1}%)",
            calibration.mean_abs_error_pct, calibration.raw_mean_abs_error_pct
        );
    }
    println!(
        "written to {} and {}",
        args.library.join("block_library.json").display(),
        report.costs_file.display()
    );
    Ok(())
}

fn hardware_command(json: bool, device: &burn::prelude::Device) -> Result<()> {
    let peak = gemm_peak_gflops(device, 1024, 5);
    let bandwidth = read_bandwidth_gbs(device, 5);
    let table = gpu_table();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "gpus": table, "cpu": { "gemm_peak_gflops_f32": peak, "read_bandwidth_gbs": bandwidth } })
            )?
        );
        return Ok(());
    }
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "device", "f32 TF/s", "bf16 TF/s", "fp8 TF/s", "GB/s", "GB"
    );
    let tf = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}", v / 1e12));
    for h in &table {
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>10.0} {:>8.0}",
            h.name,
            tf(Some(h.peak_f32)),
            tf(h.peak_bf16),
            tf(h.peak_fp8),
            h.bandwidth / 1e9,
            h.memory_bytes / 1e9
        );
    }
    println!(
        "{:<8} {:>10.3} {:>10} {:>10} {:>10.1} {:>8}   (measured now: 1024³ f32 GEMM, sum of 256 MiB)",
        "cpu",
        peak / 1e3,
        "-",
        "-",
        bandwidth,
        "-"
    );
    println!("dense peaks (datasheets quote twice that with sparsity); sources:");
    for h in &table {
        println!("  {}: {}", h.name, h.source);
    }
    Ok(())
}

fn search_spec(args: &SpecArgs) -> Result<SearchSpec> {
    let mut spec = match &args.constraints {
        Some(path) => SearchSpec::from_file(ConstraintFile::read(path)?, args.solver),
        None => {
            let mut limits = Vec::new();
            for text in &args.limits {
                limits.extend(parse_limits(text)?);
            }
            SearchSpec {
                objective: Objective {
                    key: args.objective.clone().expect("clap requires it without --constraints"),
                    maximize: args.maximize,
                },
                limits: Limits::Raw(limits),
                options: SolveOptions {
                    solver: args.solver,
                    ..SolveOptions::default()
                },
                baselines: true,
            }
        }
    };
    if let Some(n) = args.solutions {
        anyhow::ensure!(n >= 1, "--solutions must be at least 1");
        spec.options.solutions = n;
    }
    if let Some(d) = args.min_diff {
        spec.options.min_diff = d;
    }
    if let Some(t) = args.time_limit {
        anyhow::ensure!(
            t.is_finite() && t > 0.0,
            "--time-limit must be a positive number of seconds"
        );
        spec.options.time_limit_s = Some(t);
    }
    if let Some(g) = args.gap {
        anyhow::ensure!(g.is_finite() && g >= 0.0, "--gap must be a non-negative number");
        spec.options.gap = Some(g);
    }
    spec.baselines = !args.no_baselines;
    Ok(spec)
}

fn print_solution(solution: &SolutionReport) {
    let totals: Vec<String> = solution
        .totals
        .iter()
        .map(|(k, v)| format!("{k} = {}", v.as_f64().map_or(v.to_string(), |x| format!("{x:.6}"))))
        .collect();
    println!(
        "{:<12} objective {:.6}  [{:?}{}, {:.1} ms]  {}",
        solution.method,
        solution.objective,
        solution.status,
        solution.batch_size.map_or(String::new(), |b| format!(", batch {b}")),
        solution.solve_ms,
        totals.join(", ")
    );
}

fn search_command(args: SearchArgs, device: &burn::prelude::Device) -> Result<()> {
    let spec = search_spec(&args.spec)?;
    let input = SearchInput::open(&args.spec.library)?;
    let report = search(&input, &spec)?;
    let check = match (args.measure, &spec.limits) {
        (Some(rounds), Limits::File(file)) => Some(check_on_cpu(
            &args.spec.library,
            file,
            &[&report.solutions[0]],
            rounds,
            device,
        )?),
        _ => None,
    };
    let document = serde_json::to_string_pretty(&json!({
        "objective": report.objective,
        "limits": report.limits,
        "solutions": report.solutions,
        "baselines": report.baselines,
        "baselines_without": report.baselines_without,
        "measured": check,
    }))?;
    if let Some(out) = &args.out {
        std::fs::write(out, &document).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        println!("{document}");
        return Ok(());
    }
    for limit in &report.limits {
        println!(
            "limit: {} {} {:.6}  ({})",
            limit.name,
            limit.sense.symbol(),
            limit.bound,
            limit.origin
        );
    }
    for (k, solution) in report.solutions.iter().enumerate() {
        println!("solution {k}:");
        print_solution(solution);
        for (layer, name) in &solution.choice {
            println!("    {layer:<10} {}", name.as_str().unwrap_or_default());
        }
    }
    for baseline in &report.baselines {
        print_solution(baseline);
    }
    for name in &report.baselines_without {
        println!("{name:<12} found no choice within the limits");
    }
    if let Some(check) = &check {
        let child = &check.children[0];
        println!(
            "measured on this CPU: child {:.2} ms (predicted {:.2}) vs parent {:.2} ms per request, speedup {:.2}x (predicted {:.2}x)",
            child.measured.median_ms,
            child.predicted_ms,
            check.parents[0].measured.median_ms,
            child.measured_speedup,
            child.predicted_speedup
        );
    }
    if let Some(out) = &args.out {
        println!("solutions written to {}", out.display());
    }
    Ok(())
}

fn pareto_command(args: ParetoArgs) -> Result<()> {
    let spec = search_spec(&args.spec)?;
    let sweep: Sweep = args.sweep.parse()?;
    let input = SearchInput::open(&args.spec.library)?;
    let points = tessera::search::sweep(&input, &spec, &sweep, !args.json)?;
    let report = write_pareto(&args.out, &sweep, &points)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "report": report, "points": points }))?
        );
        return Ok(());
    }
    let feasible = points.iter().filter(|p| p.report.is_some()).count();
    println!(
        "{feasible}/{} points feasible; table {}, {} plots, page {}",
        points.len(),
        report.table.display(),
        report.plots.len(),
        report.page.display()
    );
    Ok(())
}
