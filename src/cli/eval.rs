//! `eval nll`, `eval accuracy`, `eval kl`: one model measured.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Subcommand};

use super::args::{ThinkingChoice, WindowArgs};
use super::model::ModelArgs;
use super::print;
use tessera::eval::TaskSet;
use tessera::inspect::{AccuracyOptions, NllInput, compare_to_parent, model_accuracy, text_nll};
use tessera::world::{self, Split};

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Mean negative log-likelihood in nats per predicted token.
    Nll(NllArgs),
    /// Exact-match accuracy of greedy answers to tasks, with thinking on and/or off.
    Accuracy(AccuracyArgs),
    /// A model against its parent on held-out windows: KL of next-token distributions, LM loss,
    /// cosine distance of the last hidden state.
    Kl(KlArgs),
}

#[derive(Args)]
pub struct NllArgs {
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

#[derive(Args)]
pub struct AccuracyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// `builtin` (held-out multi-step tasks of the built-in world), `builtin-one-step` (its
    /// one-step sums) or a JSONL file of {"question", "answer"}.
    #[arg(long, default_value = TaskSet::BUILTIN)]
    tasks: String,
    /// How many built-in tasks.
    #[arg(long, default_value_t = AccuracyOptions::DEFAULT_TASK_COUNT)]
    count: usize,
    /// Seed of the built-in world.
    #[arg(long, default_value_t = world::DEFAULT_SEED)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = ThinkingChoice::Both)]
    thinking: ThinkingChoice,
    #[arg(long, default_value_t = AccuracyOptions::DEFAULT_MAX_TOKENS)]
    max_tokens: usize,
    #[arg(long, default_value_t = AccuracyOptions::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct KlArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    parent: PathBuf,
    #[command(flatten)]
    windows: WindowArgs,
    #[arg(long)]
    json: bool,
}

pub fn run(command: EvalCommand, device: &Device) -> Result<()> {
    match command {
        EvalCommand::Nll(args) => {
            let input = match (args.text, args.ids) {
                (Some(path), _) => NllInput::Text {
                    path,
                    split_on: args.split_on,
                },
                (None, Some(path)) => NllInput::Ids { path },
                (None, None) => unreachable!("clap requires --text or --ids"),
            };
            let report = text_nll(&args.model.source(), &input, device)?;
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
        EvalCommand::Accuracy(args) => {
            let options = AccuracyOptions {
                tasks: TaskSet::named(&args.tasks, args.seed, Split::HeldOut, args.count),
                modes: args.thinking.modes(),
                max_tokens: args.max_tokens,
                batch_size: args.batch_size,
            };
            print(&model_accuracy(&args.model.source(), &options, device)?, args.json)
        }
        EvalCommand::Kl(args) => {
            let comparison = compare_to_parent(&args.model, &args.parent, &args.windows.spec(0)?, device)?;
            print(&comparison, args.json)
        }
    }
}
