//! `bench forward|bld|request|score|search|train` and `hardware`: measurements, each one call.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Subcommand};

use super::args::named;
use super::print;
use tessera::bench::{
    BenchShape, ForwardBenchOptions, RANDOM_25M, RequestShape, SearchBenchOptions, TrainShape, TrainSizes, bench_bld,
    bench_models, bench_requests, bench_score, bench_search, bench_train_shapes, hardware as measure_hardware,
};
use tessera::library::{BldSettings, BuildOptions};
use tessera::score::ScoreOptions;
use tessera::search::SolverKind;
use tessera::source::TokenSource;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode tokens/s with achieved GFLOP/s, next to the measured GEMM peak.
    Forward(ForwardArgs),
    /// Builds a block library into a scratch directory: wall time and BLD tokens/s per sub-block kind.
    Bld(BldArgs),
    /// Whole requests (prefill, then one token at a time), the models interleaved round by round:
    /// median milliseconds per request and each model's speedup over the first.
    Request(RequestArgs),
    /// Replace-1-block scoring with prefix reuse against full recomputation: time and agreement.
    Score(ScoreBenchArgs),
    /// Search speed on generated libraries (random or shaped like real ones): each instance
    /// searched as `tessera search` does, baselines included, and a Pareto sweep.
    Search(SearchBenchArgs),
    /// Training tokens/s (forward, backward, clip, AdamW) of the default parent and an 8M shape.
    Train(TrainArgs),
}

#[derive(Args)]
pub struct ForwardArgs {
    /// Checkpoints to measure; `random-25m` is a random 25M-parameter Llama.
    #[arg(long = "model", default_values = [RANDOM_25M])]
    models: Vec<String>,
    #[arg(long, default_value_t = ForwardBenchOptions::default().prompt_len)]
    prompt_len: usize,
    #[arg(long, default_value_t = ForwardBenchOptions::default().decode_tokens)]
    decode_tokens: usize,
    #[arg(long, default_value_t = ForwardBenchOptions::default().repeats)]
    repeats: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct BldArgs {
    /// The parent (for the default run: runs/default/parent-run/parent after `tessera run pipelines/default.toml`).
    #[arg(long)]
    parent: PathBuf,
    #[arg(long, default_value = "search_spaces/small.toml")]
    space: PathBuf,
    #[arg(long, default_value = TokenSource::BUILTIN)]
    data: String,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Training tokens per item.
    #[arg(long, default_value_t = BldSettings::default().tokens)]
    tokens: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RequestArgs {
    #[arg(long = "model", required = true)]
    models: Vec<PathBuf>,
    #[arg(long, default_value_t = RequestShape::default().batch)]
    batch: usize,
    #[arg(long, default_value_t = RequestShape::default().prompt)]
    prompt: usize,
    #[arg(long, default_value_t = RequestShape::default().generated)]
    generated: usize,
    #[arg(long, default_value_t = RequestShape::default().rounds)]
    rounds: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ScoreBenchArgs {
    #[arg(long)]
    library: PathBuf,
    #[arg(long)]
    data: Option<String>,
    #[arg(long, default_value_t = ScoreOptions::default().windows)]
    windows: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SearchBenchArgs {
    /// `random`, or shaped like real libraries: `puzzle-70b` (16 blocks per layer), `paper` (54).
    #[arg(long, default_value_t = SearchBenchOptions::default().shape, value_parser = named::<BenchShape>())]
    shape: BenchShape,
    #[arg(long, default_value_t = SearchBenchOptions::default().layers)]
    layers: usize,
    /// Blocks per layer of random libraries.
    #[arg(long, default_value_t = SearchBenchOptions::default().variants)]
    variants: usize,
    /// Libraries generated (random: one instance each; real shapes: ten).
    #[arg(long, default_value_t = SearchBenchOptions::default().libraries)]
    libraries: usize,
    /// Searches per instance; the median is reported.
    #[arg(long, default_value_t = SearchBenchOptions::default().repeats)]
    repeats: usize,
    #[arg(long, default_value_t = SearchBenchOptions::default().sweep_points)]
    sweep_points: usize,
    /// Time the MIP alone, without the baselines.
    #[arg(long)]
    no_baselines: bool,
    /// Solvers to compare.
    #[arg(long = "solver", default_values_t = [SolverKind::Cbc], value_parser = named::<SolverKind>())]
    solvers: Vec<SolverKind>,
    /// Also write the libraries and instances here, for scripts/search_reference.py.
    #[arg(long)]
    dump: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    #[arg(long = "shape", default_values_t = [TrainShape::Parent, TrainShape::EightM], value_parser = named::<TrainShape>())]
    shapes: Vec<TrainShape>,
    /// Sequences per step.
    #[arg(long, default_value_t = TrainSizes::default().batch_size)]
    batch_size: usize,
    /// The step's sequences are split into this many micro-batches, run on parallel threads.
    #[arg(long, default_value_t = TrainSizes::default().micro_batches)]
    micro_batches: usize,
    #[arg(long, default_value_t = TrainSizes::default().seq_len)]
    seq_len: usize,
    #[arg(long, default_value_t = TrainSizes::default().warmup)]
    warmup: usize,
    #[arg(long, default_value_t = TrainSizes::default().steps)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct HardwareArgs {
    #[arg(long)]
    json: bool,
}

pub fn run(command: BenchCommand, device: &Device) -> Result<()> {
    match command {
        BenchCommand::Forward(a) => print(
            &bench_models(
                &a.models,
                &ForwardBenchOptions {
                    prompt_len: a.prompt_len,
                    decode_tokens: a.decode_tokens,
                    repeats: a.repeats,
                },
                device,
            )?,
            a.json,
        ),
        BenchCommand::Bld(a) => {
            let mut options = BuildOptions::new(&a.parent, &a.space, a.data.parse()?);
            options.tokenizer = a.tokenizer;
            options.bld.tokens = a.tokens;
            options.progress = !a.json;
            print(&bench_bld(&options, device)?, a.json)
        }
        BenchCommand::Request(a) => {
            let shape = RequestShape {
                batch: a.batch,
                prompt: a.prompt,
                generated: a.generated,
                rounds: a.rounds,
            };
            print(&bench_requests(&a.models, &shape, device)?, a.json)
        }
        BenchCommand::Score(a) => {
            let data = a.data.as_deref().map(str::parse).transpose()?;
            print(&bench_score(&a.library, data.as_ref(), a.windows, device)?, a.json)
        }
        BenchCommand::Search(a) => {
            let results = a
                .solvers
                .iter()
                .map(|&solver| {
                    let options = SearchBenchOptions {
                        solver,
                        shape: a.shape,
                        layers: a.layers,
                        variants: a.variants,
                        libraries: a.libraries,
                        repeats: a.repeats,
                        sweep_points: a.sweep_points,
                        baselines: !a.no_baselines,
                    };
                    bench_search(&options, a.dump.as_deref())
                })
                .collect::<Result<Vec<_>, _>>()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                results.iter().for_each(|r| println!("{r}"));
            }
            Ok(())
        }
        BenchCommand::Train(a) => {
            let sizes = TrainSizes {
                batch_size: a.batch_size,
                micro_batches: a.micro_batches,
                seq_len: a.seq_len,
                warmup: a.warmup,
                steps: a.steps,
            };
            print(&bench_train_shapes(&a.shapes, &sizes, device)?, a.json)
        }
    }
}

pub fn hardware(args: HardwareArgs, device: &Device) -> Result<()> {
    print(&measure_hardware(device), args.json)
}
