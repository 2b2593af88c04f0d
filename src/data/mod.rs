//! Token data for training: text files to token streams with a held-out split, the binary
//! shard format, and fixed-length windows drawn from shards on disk. Knows tokenizers, not
//! models or training.

pub mod corpus;
pub mod shard;
pub mod windows;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use corpus::{CorpusReport, DEFAULT_HELD_OUT_EVERY, read_documents, tokenize_corpus, tokenize_files};
pub use shard::{ShardWriter, TokenShard};
pub use windows::TokenWindows;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{}: cannot tokenize: {cause}", path.display())]
    Tokenize {
        path: PathBuf,
        cause: crate::tokenizer::TokenizerError,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    Train,
    HeldOut,
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The split a document belongs to: one in `held_out_every` by content hash, so the same text
/// always lands on the same side and the two sides never share a document.
pub fn split_of(text: &str, held_out_every: u64) -> Split {
    if held_out_every > 0 && fnv1a(text).is_multiple_of(held_out_every) {
        Split::HeldOut
    } else {
        Split::Train
    }
}
