//! Argument groups and parsers several commands share: names of library enums, the thinking
//! switch, held-out windows.

use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use tessera::names::Named;
use tessera::source::WindowSpec;
use tessera::world::Thinking;

/// A parser that offers exactly the names of `T` (and lists them in `--help`).
pub fn named<T: Named + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::NAMES.iter().map(|(name, _)| *name))
        .map(|name| tessera::names::parse::<T>(&name).expect("clap offered only these names"))
}

/// Which switch settings to use.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThinkingChoice {
    On,
    Off,
    Both,
}

impl ThinkingChoice {
    pub fn modes(self) -> Vec<Thinking> {
        match self {
            ThinkingChoice::On => vec![Thinking::On],
            ThinkingChoice::Off => vec![Thinking::Off],
            ThinkingChoice::Both => vec![Thinking::On, Thinking::Off],
        }
    }
}

/// Held-out windows to measure on.
#[derive(Args)]
pub struct WindowArgs {
    /// `builtin`, `builtin:SEED`, `parent-samples:N`, a text file or token shards.
    #[arg(long, default_value_t = WindowSpec::default().data.to_string())]
    data: String,
    /// Tokenizer for text data (default: the model's tokenizer.json).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = WindowSpec::default().held_out)]
    windows: usize,
    #[arg(long, default_value_t = WindowSpec::default().seq_len)]
    seq_len: usize,
}

impl WindowArgs {
    /// The spec, with `train` training windows as well.
    pub fn spec(&self, train: usize) -> anyhow::Result<WindowSpec> {
        Ok(WindowSpec {
            data: self.data.parse()?,
            tokenizer: self.tokenizer.clone(),
            seq_len: self.seq_len,
            held_out: self.windows,
            train,
        })
    }
}
