//! `generate`, `export`, `info`, `model random`, `parent train` and `data tokenize`: one model,
//! or its data.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Subcommand};

use super::args::named;
use super::print;
use tessera::checkpoint::random_parent::DEFAULT_SHARD_BYTES;
use tessera::checkpoint::{
    ExportDtype, ExportFormat, ExportRequest, RandomParentOptions, StoreDtype, export_model, write_random_parent,
};
use tessera::data::{DEFAULT_HELD_OUT_EVERY, tokenize_files};
use tessera::inspect::{GenerateOptions, ModelSource, generate_text, model_info};
use tessera::model::Sampling;
use tessera::parent::{ParentOptions, train_parent};

#[derive(Args)]
pub struct ModelArgs {
    /// A checkpoint directory (HF or DeciLM), a GGUF file or a llama2.c `.bin` file.
    #[arg(long)]
    model: PathBuf,
    /// `tokenizer.json`, a GGUF file or llama2.c `tokenizer.bin`; defaults to the model
    /// directory's tokenizer.json, or the GGUF model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        ModelSource {
            model: self.model.clone(),
            tokenizer: self.tokenizer.clone(),
        }
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = GenerateOptions::default().max_tokens)]
    max_tokens: usize,
    #[arg(long, conflicts_with_all = ["temperature", "top_p"])]
    greedy: bool,
    #[arg(long, default_value_t = Sampling::DEFAULT_TEMPERATURE)]
    temperature: f32,
    #[arg(long, default_value_t = Sampling::DEFAULT_TOP_P)]
    top_p: f32,
    #[arg(long, default_value_t)]
    seed: u64,
    /// Print the token ids (BOS first), whitespace-separated.
    #[arg(long)]
    print_ids: bool,
}

pub fn generate(args: GenerateArgs, device: &Device) -> Result<()> {
    let sampling = match args.greedy {
        true => Sampling::Greedy,
        false => Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        },
    };
    let options = GenerateOptions {
        prompt: args.prompt,
        max_tokens: args.max_tokens,
        sampling,
    };
    let generated = generate_text(&args.model.source(), &options, device)?;
    match (args.print_ids, generated.text) {
        (false, Some(text)) => println!("{text}"),
        (true, _) => println!(
            "{}",
            generated.ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
        ),
        (false, None) => anyhow::bail!("printing text needs a tokenizer: pass --tokenizer, or use --print-ids"),
    }
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_parser = named::<ExportFormat>())]
    format: ExportFormat,
    /// Output directory (HF / DeciLM), `.bin` file (llama2.c) or `.gguf` file.
    #[arg(long)]
    out: PathBuf,
    /// f32, f16 or bf16; q8_0 for GGUF only.
    #[arg(long, default_value_t = ExportDtype::default(), value_parser = named::<ExportDtype>())]
    dtype: ExportDtype,
    /// Split safetensors into shards of at most this many bytes.
    #[arg(long)]
    shard_bytes: Option<usize>,
    /// Give the LM head its own copy of tied embeddings.
    #[arg(long)]
    untie: bool,
    #[arg(long)]
    json: bool,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let request = ExportRequest {
        format: args.format,
        dtype: args.dtype,
        max_shard_bytes: args.shard_bytes,
        untie: args.untie,
    };
    print(&export_model(&args.model, &request, &args.out)?, args.json)
}

#[derive(Args)]
pub struct InfoArgs {
    #[arg(long)]
    model: PathBuf,
}

pub fn info(args: InfoArgs) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&model_info(&args.model)?)?);
    Ok(())
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write a checkpoint directory with seeded random weights for a config.json (a parent of
    /// any shape for memory and speed benchmarks; tensors are made one at a time as they are written).
    Random(RandomArgs),
}

#[derive(Args)]
pub struct RandomArgs {
    /// A transformers `config.json` of an HF Llama-family or DeciLM model, e.g. configs/llama-3.1-8b.json.
    #[arg(long)]
    config: PathBuf,
    /// The checkpoint directory to write (must be empty or absent).
    #[arg(long)]
    out: PathBuf,
    /// f32, f16 or bf16.
    #[arg(long, default_value_t = RandomParentOptions::default().dtype, value_parser = named::<StoreDtype>())]
    dtype: StoreDtype,
    #[arg(long, default_value_t = RandomParentOptions::default().seed)]
    seed: u64,
    /// Split the safetensors into shards of at most this many bytes.
    #[arg(long, default_value_t = DEFAULT_SHARD_BYTES)]
    shard_bytes: usize,
    #[arg(long)]
    json: bool,
}

pub fn model(command: ModelCommand) -> Result<()> {
    let ModelCommand::Random(args) = command;
    let options = RandomParentOptions {
        dtype: args.dtype,
        seed: args.seed,
        max_shard_bytes: args.shard_bytes,
        progress: !args.json,
    };
    print(&write_random_parent(&args.config, &args.out, &options)?, args.json)
}

#[derive(Subcommand)]
pub enum ParentCommand {
    /// Train (or resume) the default parent and report held-out NLL and task accuracy.
    Train(ParentTrainArgs),
}

#[derive(Args)]
pub struct ParentTrainArgs {
    /// Output directory; a run interrupted there resumes from its last checkpoint.
    #[arg(long, default_value = "runs/parent")]
    out: PathBuf,
    #[arg(long, default_value_t = ParentOptions::default().layers)]
    layers: usize,
    #[arg(long, default_value_t = ParentOptions::default().steps)]
    steps: usize,
    /// Sequences per optimizer step.
    #[arg(long, default_value_t = ParentOptions::default().batch_size)]
    batch_size: usize,
    /// Micro-batches per step (run on parallel threads; gradients accumulated).
    #[arg(long, default_value_t = ParentOptions::default().micro_batches)]
    micro_batches: usize,
    #[arg(long, default_value_t = ParentOptions::default().seq_len)]
    seq_len: usize,
    #[arg(long, default_value_t = ParentOptions::default().peak_lr)]
    lr: f64,
    #[arg(long, default_value_t = ParentOptions::default().seed)]
    seed: u64,
    /// Held-out tasks scored per thinking mode.
    #[arg(long, default_value_t = ParentOptions::default().eval_tasks)]
    eval_tasks: usize,
    /// Stop after this many steps (with a checkpoint), as if interrupted.
    #[arg(long)]
    stop_after: Option<usize>,
    #[arg(long)]
    json: bool,
}

pub fn parent(command: ParentCommand, device: &Device) -> Result<()> {
    let ParentCommand::Train(args) = command;
    let defaults = ParentOptions::default();
    let options = ParentOptions {
        layers: args.layers,
        steps: args.steps,
        batch_size: args.batch_size,
        micro_batches: args.micro_batches,
        seq_len: args.seq_len,
        peak_lr: args.lr,
        seed: args.seed,
        eval_tasks: args.eval_tasks,
        control: defaults
            .control
            .stopping_after(args.stop_after)
            .with_progress(!args.json),
        ..defaults
    };
    print(&train_parent(&args.out, &options, device)?, args.json)
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Text files to `train.tokens` / `heldout.tokens` shards (documents split by content hash).
    Tokenize(TokenizeArgs),
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long = "text", required = true)]
    texts: Vec<PathBuf>,
    /// Separator that splits each file into documents.
    #[arg(long)]
    split_on: Option<String>,
    /// One document in this many goes to the held-out shard (0 = none).
    #[arg(long, default_value_t = DEFAULT_HELD_OUT_EVERY)]
    held_out_every: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn data(command: DataCommand) -> Result<()> {
    let DataCommand::Tokenize(args) = command;
    let report = tokenize_files(
        &args.tokenizer,
        &args.texts,
        args.split_on.as_deref(),
        args.held_out_every,
        &args.out,
    )?;
    print(&report, args.json)
}
