//! The `tessera` command line: the clap types, one file per command group. Every command parses
//! its arguments into library options, calls one library function and prints its report (the
//! report's `Display`, or JSON with `--json`). Defaults come from the library options' `Default`.

mod args;
mod bench;
mod eval;
mod library;
mod model;
mod posttrain;
mod run;
mod search;
mod slurm;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

use tessera::device::DeviceChoice;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Build faster child models from a Llama-style parent"
)]
pub struct Cli {
    /// Compute device (wgpu / cuda need the cargo feature of that name).
    #[arg(long, default_value_t = DeviceChoice::Cpu, value_parser = args::named::<DeviceChoice>(), global = true)]
    device: DeviceChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a model.
    Generate(model::GenerateArgs),
    /// Evaluate a model.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Write a model in another checkpoint format.
    Export(model::ExportArgs),
    /// Print a model's configuration and parameter count.
    Info(model::InfoArgs),
    /// Make a model: `model random` writes a parent of any shape with random weights.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The hardware table the roofline uses, with this machine's CPU measured.
    Hardware(bench::HardwareArgs),
    /// Train the default parent on the built-in world.
    #[command(subcommand)]
    Parent(model::ParentCommand),
    /// Turn text into token shards for training.
    #[command(subcommand)]
    Data(model::DataCommand),
    /// Build, inspect and merge block libraries (search space, initialisation, BLD).
    #[command(subcommand)]
    Library(library::LibraryCommand),
    /// Replace-1-block scores of a library's blocks (KL to the parent, LM loss, cosine distance).
    Score(library::ScoreArgs),
    /// Costs of a library's blocks on a target: parameters, memory, KV cache, latency.
    Profile(library::ProfileArgs),
    /// Pick one block per layer that loses the least quality within limits (a MIP solved by CBC),
    /// next to the baselines.
    Search(search::SearchArgs),
    /// Sweep one limit and write the Pareto report (table, plots, page) into --out.
    Pareto(search::ParetoArgs),
    /// Build the child a search chose: a checkpoint directory from the library's trained blocks.
    Assemble(search::AssembleArgs),
    /// FFN fusion: the layer dependency matrix, and fusing runs of FFNs into one wide layer.
    #[command(subcommand)]
    Fuse(posttrain::FuseCommand),
    /// Global distillation of a child (student) from its parent (teacher).
    Distill(posttrain::DistillArgs),
    /// Supervised fine-tuning on chats with the `detailed thinking on/off` switch, in stages.
    Sft(posttrain::SftArgs),
    /// Reinforcement learning with GRPO on verifiable tasks (accuracy + format rewards).
    Rl(posttrain::RlArgs),
    /// Stages submitted to Slurm (`--slurm`, `run --executor slurm`): status, resume, cancel, wait.
    #[command(subcommand)]
    Slurm(slurm::SlurmCommand),
    /// The whole pipeline from a pipeline file (`pipelines/default.toml`: the built-in default,
    /// no download): parent → library → score → profile → search → assemble → fuse → distill →
    /// sft → rl → export → report. Stages that are up to date are skipped; a killed run resumes.
    Run(run::RunArgs),
}

/// Prints `report` as pretty JSON or as its human table.
fn print<R: Serialize + std::fmt::Display>(report: &R, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

pub fn run(cli: Cli) -> Result<()> {
    let device = cli.device.device()?;
    match cli.command {
        Command::Generate(args) => model::generate(args, &device),
        Command::Eval(command) => eval::run(command, &device),
        Command::Export(args) => model::export(args),
        Command::Info(args) => model::info(args),
        Command::Model(command) => model::model(command),
        Command::Bench(command) => bench::run(command, &device),
        Command::Hardware(args) => bench::hardware(args, &device),
        Command::Parent(command) => model::parent(command, &device),
        Command::Data(command) => model::data(command),
        Command::Library(command) => library::run(command, cli.device, &device),
        Command::Score(args) => library::score(args, cli.device, &device),
        Command::Profile(args) => library::profile(args, cli.device, &device),
        Command::Slurm(command) => slurm::run(command, &device),
        Command::Search(args) => search::search(args, &device),
        Command::Pareto(args) => search::pareto(args),
        Command::Assemble(args) => search::assemble(args),
        Command::Fuse(command) => posttrain::fuse(command, &device),
        Command::Distill(args) => posttrain::distill(args, &device),
        Command::Sft(args) => posttrain::sft(args, &device),
        Command::Rl(args) => posttrain::rl(args, &device),
        Command::Run(args) => run::run(args, cli.device, &device),
    }
}
