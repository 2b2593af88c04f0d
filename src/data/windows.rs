//! Fixed-length training windows read from token shards on disk: random windows for training
//! (a pure function of the caller's generator, so a resumed run draws the same windows) and
//! consecutive windows for held-out evaluation.

use std::path::Path;

use rand::Rng;

use super::{DataError, TokenShard};

pub struct TokenWindows {
    shards: Vec<TokenShard>,
}

impl TokenWindows {
    /// A shard file, or a directory whose `*.tokens` files are all used (in name order).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let io = |cause| DataError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let files = if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "tokens"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                problem: "no *.tokens shards in this directory".into(),
            });
        }
        let shards = files
            .iter()
            .map(|f| TokenShard::open(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { shards })
    }

    pub fn total_tokens(&self) -> u64 {
        self.shards.iter().map(TokenShard::len).sum()
    }

    /// Errors unless some shard holds at least one window of `window` tokens and every shard's
    /// vocabulary fits the model's.
    pub fn check(&self, window: usize, model_vocab: usize) -> Result<(), DataError> {
        if let Some(shard) = self.shards.iter().find(|s| s.vocab_size() > model_vocab) {
            return Err(DataError::Format {
                path: shard.path().to_path_buf(),
                problem: format!(
                    "tokens come from a vocabulary of {} but the model has {model_vocab}",
                    shard.vocab_size()
                ),
            });
        }
        if self.shards.iter().all(|s| s.len() < window as u64) {
            let shard = &self.shards[0];
            return Err(DataError::Format {
                path: shard.path().to_path_buf(),
                problem: format!(
                    "{} tokens in all, fewer than one training window of {window}",
                    self.total_tokens()
                ),
            });
        }
        Ok(())
    }

    /// One window of `window` tokens at a random place, each start equally likely.
    pub fn sample(&mut self, rng: &mut impl Rng, window: usize) -> Result<Vec<u32>, DataError> {
        let starts: Vec<u64> = self
            .shards
            .iter()
            .map(|s| (s.len() + 1).saturating_sub(window as u64))
            .collect();
        let total: u64 = starts.iter().sum();
        if total == 0 {
            self.check(window, usize::MAX)?;
        }
        let mut pick = rng.random_range(0..total);
        for (shard, &n) in self.shards.iter_mut().zip(&starts) {
            if pick < n {
                return shard.read(pick, window);
            }
            pick -= n;
        }
        unreachable!("pick < total")
    }

    /// Consecutive non-overlapping windows of `window` tokens, at most `max_windows`.
    pub fn consecutive(&mut self, window: usize, max_windows: usize) -> Result<Vec<Vec<u32>>, DataError> {
        let mut out = Vec::new();
        for shard in &mut self.shards {
            let mut start = 0;
            while start + window as u64 <= shard.len() && out.len() < max_windows {
                out.push(shard.read(start, window)?);
                start += window as u64;
            }
        }
        Ok(out)
    }
}
