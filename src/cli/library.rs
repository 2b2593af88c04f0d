//! `library build|status|merge`, `score` and `profile`: the block library and what is measured
//! of its blocks.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Subcommand};

use super::args::{ThinkingChoice, named};
use super::print;
use super::slurm::{SlurmArgs, run_stage};
use tessera::checkpoint::StoreDtype;
use tessera::cluster::StageWork;
use tessera::cost::Target;
use tessera::cost::{Precision, ProfileOptions};
use tessera::device::DeviceChoice;
use tessera::eval::TaskSet;
use tessera::library::{BldMode, BldSettings, BuildOptions, Library, LinearInit, merge_libraries};
use tessera::score::{ScoreMetric, ScoreOptions};
use tessera::search::SearchReport;
use tessera::selection::Selection;
use tessera::world::{Split, Thinking};

#[derive(Subcommand)]
pub enum LibraryCommand {
    /// Train a block library from a parent: every variant of the search space, initialised from
    /// the parent and trained by blockwise local distillation. Rerun to resume.
    Build(Box<BuildArgs>),
    /// Per-item state and held-out normalised MSE of a library.
    Status {
        library: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Join libraries built as parts (`--shard i/N`, `--layers A-B`) of one build.
    Merge {
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Which part of the work: one of `--shard`, `--layers`, `--items` (the stage's item order:
/// trainable items of a library build, candidates of score and profile).
#[derive(Args)]
#[group(multiple = false)]
pub struct SelectionArgs {
    /// Only part `i` of `N` of the items.
    #[arg(long, value_parser = Selection::shard)]
    shard: Option<Selection>,
    /// Only the items at layers A to B (inclusive), e.g. `30-31`.
    #[arg(long, value_parser = Selection::layers)]
    layers: Option<Selection>,
    /// Only the items with these indices in the stage's item order, e.g. `0,3,7`.
    #[arg(long, value_parser = Selection::items)]
    items: Option<Selection>,
}

impl SelectionArgs {
    fn selection(&self) -> Selection {
        [&self.shard, &self.layers, &self.items]
            .into_iter()
            .find_map(|s| s.clone())
            .unwrap_or_default()
    }
}

#[derive(Args)]
pub struct BuildArgs {
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
    #[arg(long, default_value_t = BldSettings::default().tokens)]
    tokens: usize,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = BldMode::Decoupled, value_parser = named::<BldMode>())]
    mode: BldMode,
    /// Hybrid mode: a solutions JSON whose chosen blocks are trained as pairs.
    #[arg(long)]
    pairs: Option<PathBuf>,
    #[command(flatten)]
    selection: SelectionArgs,
    #[arg(long, default_value_t = BuildOptions::default().seq_len)]
    seq_len: usize,
    /// Windows per BLD step.
    #[arg(long, default_value_t = BldSettings::default().batch_windows)]
    batch_windows: usize,
    #[arg(long, default_value_t = BldSettings::default().peak_lr)]
    lr: f64,
    #[arg(long, default_value_t = BldSettings::default().seed)]
    seed: u64,
    #[arg(long, default_value_t = LinearInit::default(), value_parser = named::<LinearInit>())]
    linear_init: LinearInit,
    /// Tokens of the parent's activations that initialisation fits to (channel pruning,
    /// least squares).
    #[arg(long, default_value_t = BuildOptions::default().calibration_tokens)]
    calibration_tokens: usize,
    /// Held-out windows for the normalised-MSE figures.
    #[arg(long, default_value_t = BuildOptions::default().held_out_windows)]
    held_out_windows: usize,
    /// Items trained at once (0 = one per core).
    #[arg(long, default_value_t = BuildOptions::default().workers)]
    workers: usize,
    /// Optimizer steps between an item's training checkpoints (0: none); a killed build
    /// resumes an item from its last one.
    #[arg(long, default_value_t = BuildOptions::default().checkpoint_every)]
    checkpoint_every: usize,
    /// The dtype (f32, f16, bf16) of the parent's activations cached on disk for BLD.
    #[arg(long, default_value_t = BuildOptions::default().activation_cache, value_parser = named::<StoreDtype>())]
    activation_cache: StoreDtype,
    #[command(flatten)]
    slurm: SlurmArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(command: LibraryCommand, choice: DeviceChoice, device: &Device) -> Result<()> {
    match command {
        LibraryCommand::Build(args) => {
            let args = *args;
            let pairs = match &args.pairs {
                Some(path) => SearchReport::read(path)?
                    .solutions
                    .into_iter()
                    .map(|s| s.choice)
                    .collect(),
                None => Vec::new(),
            };
            let options = BuildOptions {
                tokenizer: args.tokenizer,
                mode: args.mode,
                seq_len: args.seq_len,
                held_out_windows: args.held_out_windows,
                calibration_tokens: args.calibration_tokens,
                linear_init: args.linear_init,
                bld: BldSettings {
                    tokens: args.tokens,
                    batch_windows: args.batch_windows,
                    peak_lr: args.lr,
                    seed: args.seed,
                },
                pairs,
                selection: args.selection.selection(),
                workers: args.workers,
                checkpoint_every: args.checkpoint_every,
                activation_cache: args.activation_cache,
                progress: !args.json,
                ..BuildOptions::new(&args.parent, &args.space, args.data.parse()?)
            };
            run_stage(
                &args.out,
                StageWork::Library(options),
                &args.slurm,
                choice,
                device,
                args.json,
            )
        }
        LibraryCommand::Status { library, json } => print(&Library::open(&library)?, json),
        LibraryCommand::Merge { parts, out, json } => {
            let parts: Vec<&std::path::Path> = parts.iter().map(PathBuf::as_path).collect();
            print(&merge_libraries(&parts, &out)?, json)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MetricChoice {
    Kl,
    LmLoss,
    Cosine,
    Accuracy,
}

#[derive(Args)]
pub struct ScoreArgs {
    #[arg(long)]
    library: PathBuf,
    /// Held-out text: `builtin`, `builtin:SEED`, `parent-samples:N`, a text file or token shards
    /// (default: the data the library was built from).
    #[arg(long)]
    data: Option<String>,
    /// Held-out windows scored.
    #[arg(long, default_value_t = ScoreOptions::default().windows)]
    windows: usize,
    /// The parent, when it moved since the library was built.
    #[arg(long)]
    parent: Option<PathBuf>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// `kl`, `lm-loss` and `cosine` come from one forward pass and are all written; `accuracy`
    /// answers tasks with each block in place (slower).
    #[arg(long, value_enum, default_value_t = MetricChoice::Kl)]
    metric: MetricChoice,
    /// For `--metric accuracy`: `builtin` (held-out built-in tasks) or a JSONL task file.
    #[arg(long, default_value = TaskSet::BUILTIN)]
    tasks: String,
    /// How many built-in tasks.
    #[arg(long, default_value_t = ScoreOptions::DEFAULT_ACCURACY_TASKS)]
    count: usize,
    #[arg(long, value_enum, default_value_t = ThinkingChoice::On)]
    thinking: ThinkingChoice,
    /// Score the library's own items (each in the otherwise unchanged parent) with their initial
    /// and their trained weights, instead of every block of the space.
    #[arg(long)]
    compare_items: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    slurm: SlurmArgs,
    #[arg(long)]
    json: bool,
}

pub fn score(args: ScoreArgs, choice: DeviceChoice, device: &Device) -> Result<()> {
    let metric = match args.metric {
        MetricChoice::Accuracy => ScoreMetric::Accuracy {
            tasks: TaskSet::named(&args.tasks, tessera::world::DEFAULT_SEED, Split::HeldOut, args.count),
            thinking: match args.thinking {
                ThinkingChoice::Off => Thinking::Off,
                _ => Thinking::On,
            },
        },
        _ => ScoreMetric::Divergence,
    };
    let options = ScoreOptions {
        parent: args.parent,
        data: args.data.as_deref().map(str::parse).transpose()?,
        tokenizer: args.tokenizer,
        windows: args.windows,
        blocks: (!args.compare_items).then_some(metric),
        compare_items: args.compare_items,
        selection: args.selection.selection(),
        progress: !args.json,
    };
    run_stage(
        &args.library,
        StageWork::Score(options),
        &args.slurm,
        choice,
        device,
        args.json,
    )
}

#[derive(Args)]
pub struct ProfileArgs {
    #[arg(long)]
    library: PathBuf,
    /// `cpu` (measured here) or a GPU of the table (estimated): h100, h200, a100, l40s, rtx4090.
    #[arg(long, default_value = Target::CPU)]
    target: String,
    #[arg(long, default_value_t = Precision::F32, value_parser = named::<Precision>())]
    dtype: Precision,
    /// `prefill:b=8,s=256` or `decode:b=64,c=1024`; repeat for several.
    #[arg(long = "scenario", required = true)]
    scenarios: Vec<String>,
    /// Timed rounds per measurement (cpu).
    #[arg(long, default_value_t = ProfileOptions::default().repeats)]
    repeats: usize,
    /// Models measured end to end to calibrate whole-model predictions (cpu; 0 = none).
    #[arg(long, default_value_t = ProfileOptions::default().calibration_models)]
    calibrate: usize,
    /// Only some candidates (no whole-model calibration then).
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    slurm: SlurmArgs,
    #[arg(long)]
    json: bool,
}

pub fn profile(args: ProfileArgs, choice: DeviceChoice, device: &Device) -> Result<()> {
    let options = ProfileOptions {
        target: args.target.parse()?,
        precision: args.dtype,
        scenarios: args.scenarios.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
        repeats: args.repeats,
        calibration_models: args.calibrate,
        selection: args.selection.selection(),
        progress: !args.json,
    };
    run_stage(
        &args.library,
        StageWork::Profile(options),
        &args.slurm,
        choice,
        device,
        args.json,
    )
}
