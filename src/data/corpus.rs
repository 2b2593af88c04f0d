//! Text files to token shards: documents (a whole file, or pieces split on a separator) are
//! encoded with BOS, assigned to train or held-out by content hash, and streamed into
//! `train.tokens` / `heldout.tokens`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DataError, ShardWriter, Split, split_of};
use crate::tokenizer::Tokenizer;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpusReport {
    pub train: PathBuf,
    pub held_out: PathBuf,
    pub train_documents: usize,
    pub held_out_documents: usize,
    pub train_tokens: u64,
    pub held_out_tokens: u64,
}

/// The documents of a text file: pieces between `split_on` (or the whole file), trimmed, empty
/// pieces dropped. A missing file or one without any text is an error.
pub fn read_documents(path: &Path, split_on: Option<&str>) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|cause| DataError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let pieces: Vec<String> = match split_on {
        Some(sep) if !sep.is_empty() => text.split(sep).map(str::to_string).collect(),
        _ => vec![text],
    };
    let documents: Vec<String> = pieces
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if documents.is_empty() {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            problem: "the corpus file is empty (no text to train on)".into(),
        });
    }
    Ok(documents)
}

/// Tokenizes `documents` (each with the path it came from, for errors) into two shards in
/// `out`. `held_out_every = 0` puts everything in train.
pub fn tokenize_corpus<'a>(
    tokenizer: &Tokenizer,
    documents: impl IntoIterator<Item = (&'a Path, &'a str)>,
    held_out_every: u64,
    out: &Path,
) -> Result<CorpusReport, DataError> {
    std::fs::create_dir_all(out).map_err(|cause| DataError::Io {
        path: out.to_path_buf(),
        cause,
    })?;
    let vocab_size = tokenizer.vocab_size();
    let train = out.join("train.tokens");
    let held_out = out.join("heldout.tokens");
    let mut writers = [
        ShardWriter::create(&train, vocab_size)?,
        ShardWriter::create(&held_out, vocab_size)?,
    ];
    let mut counts = [0usize; 2];
    for (path, document) in documents {
        let tokens = tokenizer.encode(document, true).map_err(|cause| DataError::Tokenize {
            path: path.to_path_buf(),
            cause,
        })?;
        let side = usize::from(split_of(document, held_out_every) == Split::HeldOut);
        writers[side].push(&tokens)?;
        counts[side] += 1;
    }
    let [train_writer, held_out_writer] = writers;
    Ok(CorpusReport {
        train_tokens: train_writer.finish()?,
        held_out_tokens: held_out_writer.finish()?,
        train,
        held_out,
        train_documents: counts[0],
        held_out_documents: counts[1],
    })
}

/// One document in this many goes to the held-out shard unless asked otherwise.
pub const DEFAULT_HELD_OUT_EVERY: u64 = 20;

/// `tessera data tokenize`: the documents of every file in `texts` (split on `split_on`),
/// tokenized with the tokenizer at `tokenizer` into shards in `out`.
pub fn tokenize_files(
    tokenizer: &Path,
    texts: &[PathBuf],
    split_on: Option<&str>,
    held_out_every: u64,
    out: &Path,
) -> Result<CorpusReport, DataError> {
    let tokenizer = Tokenizer::read(tokenizer).map_err(|cause| DataError::Tokenize {
        path: tokenizer.to_path_buf(),
        cause,
    })?;
    let mut documents = Vec::new();
    for path in texts {
        documents.extend(read_documents(path, split_on)?.into_iter().map(|d| (path.as_path(), d)));
    }
    tokenize_corpus(
        &tokenizer,
        documents.iter().map(|(p, d)| (*p, d.as_str())),
        held_out_every,
        out,
    )
}

impl std::fmt::Display for CorpusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} documents, {} tokens -> {}\n{} documents, {} tokens -> {}",
            self.train_documents,
            self.train_tokens,
            self.train.display(),
            self.held_out_documents,
            self.held_out_tokens,
            self.held_out.display()
        )
    }
}
