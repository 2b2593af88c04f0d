//! Token sources for the stages that read text after the parent exists (block library,
//! scoring, later distillation): a text file, token shards, the built-in world, or text sampled
//! from the parent itself (for parents whose training data is closed). Every source yields
//! fixed-length training windows and disjoint held-out windows. Knows the model only to sample
//! from it; nothing of the stages that consume the windows.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use burn::prelude::Device;

use crate::checkpoint::{StoredCheckpoint, TensorSource};
use crate::data::{DataError, Split, TokenWindows, read_documents, split_of};
use crate::model::{ForwardError, Llama, Sampling, generate_batch};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::world::tokenizer::{BOS, EOS, VOCAB_SIZE};
use crate::world::{Thinking, World};

/// Where training text comes from, as written on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenSource {
    /// The built-in world of this seed (only for models on its vocabulary).
    Builtin { seed: u64 },
    /// `count` sequences sampled from the model at temperature 1.
    ParentSamples { count: usize },
    /// A `.tokens` shard or a directory of them (`heldout.tokens` is the held-out part).
    Shards { path: PathBuf },
    /// A text file; documents are separated by `<|endoftext|>` when it has any.
    Text { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--data `{spec}`: {problem}")]
    Spec { spec: String, problem: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Weights(#[from] crate::model::WeightError),
    #[error("{}: {problem}", path.display())]
    Unusable { path: PathBuf, problem: String },
    #[error("the built-in world's data needs a model on its {VOCAB_SIZE}-token vocabulary; this one has {0}")]
    BuiltinVocabulary(usize),
    #[error("{source_name} needs a tokenizer: pass one with the model (tokenizer.json) or --tokenizer")]
    NoTokenizer { source_name: String },
}

/// Training and held-out windows, each `seq_len` tokens long.
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    pub train: Vec<Vec<u32>>,
    pub held_out: Vec<Vec<u32>>,
}

const TEXT_SEPARATOR: &str = "<|endoftext|>";

/// Windows a stage asks for, as a user names them: where from, how many of how many tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub data: TokenSource,
    /// For text data: the tokenizer (default: the model directory's `tokenizer.json`).
    pub tokenizer: Option<PathBuf>,
    /// Tokens per window the model reads (each window holds one more: the last target).
    pub seq_len: usize,
    pub held_out: usize,
    pub train: usize,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self {
            data: TokenSource::Builtin { seed: 1 },
            tokenizer: None,
            seq_len: 64,
            held_out: 32,
            train: 0,
        }
    }
}

impl WindowSpec {
    /// The windows for `model`, read from `model_dir` (for its tokenizer), each `seq_len + 1`
    /// tokens long; at least one held-out window.
    pub fn windows(&self, model: &Llama, model_dir: &Path) -> Result<Windows, SourceError> {
        let tokenizer = self
            .tokenizer
            .clone()
            .or_else(|| Tokenizer::beside_model(model_dir))
            .map(|p| Tokenizer::read(&p))
            .transpose()?;
        let windows = self
            .data
            .windows(model, tokenizer.as_ref(), self.seq_len + 1, self.train, self.held_out)?;
        if windows.held_out.is_empty() {
            return Err(SourceError::Spec {
                spec: self.data.to_string(),
                problem: format!("gave no held-out window of {} tokens", self.seq_len + 1),
            });
        }
        Ok(windows)
    }
}

impl Windows {
    /// The held-out windows without their last token: what a model reads.
    pub fn held_out_inputs(&self) -> Vec<Vec<u32>> {
        self.held_out.iter().map(|w| w[..w.len() - 1].to_vec()).collect()
    }
}

impl TokenSource {
    /// The spec of the built-in world's text (seed 1); `builtin:SEED` names another seed.
    pub const BUILTIN: &str = "builtin";
}

impl std::str::FromStr for TokenSource {
    type Err = SourceError;

    /// `builtin`, `builtin:SEED`, `parent-samples:N`, or a path (a `.tokens` file or a directory
    /// of them, else a text file).
    fn from_str(spec: &str) -> Result<Self, SourceError> {
        let bad = |problem: &str| SourceError::Spec {
            spec: spec.to_string(),
            problem: problem.to_string(),
        };
        if spec == Self::BUILTIN {
            return Ok(TokenSource::Builtin { seed: 1 });
        }
        if let Some(seed) = spec.strip_prefix("builtin:") {
            let seed = seed
                .parse()
                .map_err(|_| bad("the seed after `builtin:` must be a whole number"))?;
            return Ok(TokenSource::Builtin { seed });
        }
        if let Some(count) = spec.strip_prefix("parent-samples:") {
            let count = count
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("the count after `parent-samples:` must be a positive whole number"))?;
            return Ok(TokenSource::ParentSamples { count });
        }
        let path = PathBuf::from(spec);
        if !path.exists() {
            return Err(bad(
                "no such file or directory (expected builtin, builtin:SEED, parent-samples:N, a text file or token shards)",
            ));
        }
        if path.is_dir() || path.extension().is_some_and(|e| e == "tokens") {
            Ok(TokenSource::Shards { path })
        } else {
            Ok(TokenSource::Text { path })
        }
    }
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Builtin { seed } => write!(f, "builtin:{seed}"),
            TokenSource::ParentSamples { count } => write!(f, "parent-samples:{count}"),
            TokenSource::Shards { path } | TokenSource::Text { path } => write!(f, "{}", path.display()),
        }
    }
}

/// Cuts a token stream into consecutive windows of `len`, at most `max` of them.
fn cut(stream: &[u32], len: usize, max: usize) -> Vec<Vec<u32>> {
    stream.chunks_exact(len).take(max).map(<[u32]>::to_vec).collect()
}

impl TokenSource {
    /// Up to `train` training windows and `held_out` held-out windows of `seq_len` tokens for
    /// `model`. Fewer come back only when the source is too small; none at all is an error.
    pub fn windows(
        &self,
        model: &Llama,
        tokenizer: Option<&Tokenizer>,
        seq_len: usize,
        train: usize,
        held_out: usize,
    ) -> Result<Windows, SourceError> {
        let sample = |count| sampled_windows(model, count, seq_len, train, held_out);
        self.windows_with(model.config().vocab_size, sample, tokenizer, seq_len, train, held_out)
    }

    /// The same windows for a stored parent, which is built (one layer at a time) only to sample
    /// from it.
    pub fn stored_windows(
        &self,
        parent: &StoredCheckpoint,
        device: &Device,
        tokenizer: Option<&Tokenizer>,
        seq_len: usize,
        train: usize,
        held_out: usize,
    ) -> Result<Windows, SourceError> {
        let sample = |count| {
            let model = parent.build_model(device)?;
            sampled_windows(&model, count, seq_len, train, held_out)
        };
        self.windows_with(parent.config().vocab_size, sample, tokenizer, seq_len, train, held_out)
    }

    /// The windows for a parent of `vocab` tokens; `sample(count)` samples them from the parent.
    fn windows_with(
        &self,
        vocab: usize,
        sample: impl FnOnce(usize) -> Result<Windows, SourceError>,
        tokenizer: Option<&Tokenizer>,
        seq_len: usize,
        train: usize,
        held_out: usize,
    ) -> Result<Windows, SourceError> {
        let windows = match self {
            TokenSource::Builtin { seed } => builtin_windows(*seed, vocab, seq_len, train, held_out)?,
            TokenSource::ParentSamples { count } => sample(*count)?,
            TokenSource::Shards { path } => shard_windows(path, vocab, seq_len, train, held_out)?,
            TokenSource::Text { path } => {
                let tokenizer = tokenizer.ok_or_else(|| SourceError::NoTokenizer {
                    source_name: path.display().to_string(),
                })?;
                text_windows(path, tokenizer, vocab, seq_len, train, held_out)?
            }
        };
        let path = match self {
            TokenSource::Shards { path } | TokenSource::Text { path } => path.clone(),
            other => PathBuf::from(other.to_string()),
        };
        if (train > 0 && windows.train.is_empty()) || (held_out > 0 && windows.held_out.is_empty()) {
            return Err(SourceError::Unusable {
                path,
                problem: format!(
                    "too little text: {} training and {} held-out windows of {seq_len} tokens",
                    windows.train.len(),
                    windows.held_out.len()
                ),
            });
        }
        Ok(windows)
    }
}

/// The built-in world of `seed`: its chats (half with thinking on) and stories, shuffled and
/// encoded with its own tokenizer, the held-out split for held-out windows.
fn builtin_windows(
    seed: u64,
    vocab: usize,
    seq_len: usize,
    train: usize,
    held_out: usize,
) -> Result<Windows, SourceError> {
    if vocab != VOCAB_SIZE {
        return Err(SourceError::BuiltinVocabulary(vocab));
    }
    let tokenizer = Tokenizer::from_json(&crate::world::tokenizer::tokenizer_json().to_string())?;
    let world = World::new(seed);
    let stream = |split: Split, tokens: usize| -> Result<Vec<u32>, SourceError> {
        // About 40 tokens per chat and 300 per story: draw a little more than needed.
        let chats = tokens / 60 + 8;
        let mut docs: Vec<String> = world
            .task_mix(split, chats)
            .iter()
            .enumerate()
            .map(|(i, t)| t.render(if i % 2 == 0 { Thinking::On } else { Thinking::Off }))
            .collect();
        docs.extend(
            world
                .stories(split, tokens / 600 + 2)
                .into_iter()
                .map(|s| format!("{BOS}{s}{EOS}")),
        );
        docs.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut out = Vec::new();
        for doc in docs {
            out.extend(tokenizer.encode(&doc, false)?);
        }
        Ok(out)
    };
    Ok(Windows {
        train: cut(&stream(Split::Train, train * seq_len)?, seq_len, train),
        held_out: cut(&stream(Split::HeldOut, held_out * seq_len)?, seq_len, held_out),
    })
}

/// Sequences sampled from `model` from BOS at temperature 1: up to `count` training windows
/// and an eighth of that held out.
fn sampled_windows(
    model: &Llama,
    count: usize,
    seq_len: usize,
    train: usize,
    held_out: usize,
) -> Result<Windows, SourceError> {
    let bos = model.config().bos_token_id;
    let sample = |n: usize, seed: u64| -> Result<Vec<Vec<u32>>, SourceError> {
        let sampling = Sampling::TopP {
            temperature: 1.0,
            top_p: 1.0,
            seed,
        };
        let mut rows = generate_batch(model, &vec![vec![bos]; n], seq_len - 1, sampling, &[])?;
        // A row that stopped early is padded by sampling on from BOS: every window is full.
        for row in &mut rows {
            row.truncate(seq_len);
            while row.len() < seq_len {
                row.push(bos);
            }
        }
        Ok(rows)
    };
    Ok(Windows {
        train: sample(count.min(train), 0x5eed)?,
        held_out: sample((count / 8).clamp(1, held_out.max(1)), 0xe7a1)?,
    })
}

/// Consecutive windows of a shard (or of `train.tokens` in a directory); held out from
/// `heldout.tokens` beside it, or else the last windows.
fn shard_windows(
    path: &Path,
    vocab: usize,
    seq_len: usize,
    train: usize,
    held_out: usize,
) -> Result<Windows, SourceError> {
    let (train_path, held_out_path) = if path.is_dir() {
        (path.join("train.tokens"), path.join("heldout.tokens"))
    } else {
        (path.to_path_buf(), PathBuf::new())
    };
    let train_path = if train_path.is_file() {
        train_path
    } else {
        path.to_path_buf()
    };
    let mut all = TokenWindows::open(&train_path)?;
    all.check(seq_len, vocab)?;
    let mut train_windows = all.consecutive(seq_len, train + held_out)?;
    let held_out_windows = if held_out_path.is_file() {
        let mut h = TokenWindows::open(&held_out_path)?;
        h.check(seq_len, vocab)?;
        h.consecutive(seq_len, held_out)?
    } else {
        // No held-out shard: the last windows are held out.
        let keep = train_windows
            .len()
            .saturating_sub(held_out)
            .max(train_windows.len() / 2);
        train_windows.split_off(keep)
    };
    train_windows.truncate(train);
    Ok(Windows {
        train: train_windows,
        held_out: held_out_windows,
    })
}

/// Documents encoded with BOS; one in ten (by content hash) is held out. A file that is one
/// document gives its last tenth of tokens to the held-out side.
fn text_windows(
    path: &Path,
    tokenizer: &Tokenizer,
    vocab: usize,
    seq_len: usize,
    train: usize,
    held_out: usize,
) -> Result<Windows, SourceError> {
    let separator = std::fs::read_to_string(path)
        .map_err(|cause| DataError::Io {
            path: path.to_path_buf(),
            cause,
        })?
        .contains(TEXT_SEPARATOR)
        .then_some(TEXT_SEPARATOR);
    let documents = read_documents(path, separator)?;
    let (mut train_stream, mut held_out_stream) = (Vec::new(), Vec::new());
    for doc in &documents {
        let ids = tokenizer.encode(doc, true)?;
        if let Some(&token) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(SourceError::Unusable {
                path: path.to_path_buf(),
                problem: format!("the tokenizer gives id {token}, outside the model's vocabulary of {vocab}"),
            });
        }
        match split_of(doc, 10) {
            Split::HeldOut if documents.len() > 1 => held_out_stream.extend(ids),
            _ => train_stream.extend(ids),
        }
    }
    if held_out_stream.len() < seq_len {
        let cut_at = train_stream.len() - train_stream.len() / 10;
        held_out_stream.extend(train_stream.split_off(cut_at));
    }
    Ok(Windows {
        train: cut(&train_stream, seq_len, train),
        held_out: cut(&held_out_stream, seq_len, held_out),
    })
}
