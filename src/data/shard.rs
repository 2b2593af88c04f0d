//! The binary token-shard format, so large corpora stream from disk instead of sitting in
//! memory. Layout (little-endian): magic `TESSTOK1`, u32 bytes per token (2 or 4), u32 vocabulary
//! size, u64 token count, then the tokens. Writers stream tokens in and publish the file with an
//! atomic rename, so a killed writer never leaves a half-written shard under the final name.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::DataError;

const MAGIC: &[u8; 8] = b"TESSTOK1";
const HEADER_BYTES: u64 = 24;

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |cause| DataError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

pub struct ShardWriter {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    width: u32,
    vocab_size: u32,
    count: u64,
}

impl ShardWriter {
    pub fn create(path: &Path, vocab_size: usize) -> Result<Self, DataError> {
        let vocab_size = u32::try_from(vocab_size).map_err(|_| DataError::Format {
            path: path.to_path_buf(),
            problem: format!("vocabulary size {vocab_size} does not fit a u32"),
        })?;
        let width = if vocab_size <= 1 << 16 { 2 } else { 4 };
        let partial = path.with_extension("tokens.partial");
        let mut out = BufWriter::new(File::create(&partial).map_err(io_error(&partial))?);
        out.write_all(&[0u8; HEADER_BYTES as usize])
            .map_err(io_error(&partial))?;
        Ok(Self {
            path: path.to_path_buf(),
            partial,
            out,
            width,
            vocab_size,
            count: 0,
        })
    }

    pub fn push(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        for &t in tokens {
            if t >= self.vocab_size {
                return Err(DataError::Format {
                    path: self.path.clone(),
                    problem: format!("token {t} is outside the vocabulary of {}", self.vocab_size),
                });
            }
            let written = if self.width == 2 {
                self.out.write_all(&(t as u16).to_le_bytes())
            } else {
                self.out.write_all(&t.to_le_bytes())
            };
            written.map_err(io_error(&self.partial))?;
        }
        self.count += tokens.len() as u64;
        Ok(())
    }

    /// Writes the header and moves the shard to its final name; returns the token count.
    pub fn finish(self) -> Result<u64, DataError> {
        let partial = self.partial.clone();
        let mut file = self.out.into_inner().map_err(|e| io_error(&partial)(e.into_error()))?;
        let mut header = Vec::with_capacity(HEADER_BYTES as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&self.width.to_le_bytes());
        header.extend_from_slice(&self.vocab_size.to_le_bytes());
        header.extend_from_slice(&self.count.to_le_bytes());
        file.seek(SeekFrom::Start(0)).map_err(io_error(&partial))?;
        file.write_all(&header).map_err(io_error(&partial))?;
        file.sync_all().map_err(io_error(&partial))?;
        std::fs::rename(&partial, &self.path).map_err(io_error(&self.path))?;
        Ok(self.count)
    }
}

/// An open shard; windows are read on demand.
pub struct TokenShard {
    path: PathBuf,
    file: File,
    width: u32,
    vocab_size: usize,
    len: u64,
}

impl TokenShard {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let format = |problem: String| DataError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let mut file = File::open(path).map_err(io_error(path))?;
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact(&mut header)
            .map_err(|_| format(format!("shorter than the {HEADER_BYTES}-byte shard header")))?;
        if &header[..8] != MAGIC {
            return Err(format("not a tessera token shard (bad magic)".into()));
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let width = word(8);
        if width != 2 && width != 4 {
            return Err(format(format!("bytes per token is {width}; expected 2 or 4")));
        }
        let vocab_size = word(12) as usize;
        let len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let actual = file.metadata().map_err(io_error(path))?.len();
        let expected = HEADER_BYTES + len * width as u64;
        if actual != expected {
            return Err(format(format!(
                "header says {len} tokens ({expected} bytes) but the file has {actual} bytes"
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            width,
            vocab_size,
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// `count` tokens starting at `start`.
    pub fn read(&mut self, start: u64, count: usize) -> Result<Vec<u32>, DataError> {
        if start + count as u64 > self.len {
            return Err(DataError::Format {
                path: self.path.clone(),
                problem: format!(
                    "tokens {start}..{} requested from a shard of {}",
                    start + count as u64,
                    self.len
                ),
            });
        }
        let width = self.width as usize;
        let mut bytes = vec![0u8; count * width];
        self.file
            .seek(SeekFrom::Start(HEADER_BYTES + start * width as u64))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(io_error(&self.path))?;
        Ok(if width == 2 {
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                .collect()
        } else {
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tokens");
        let mut writer = ShardWriter::create(&path, 300).unwrap();
        writer.push(&[1, 2, 299]).unwrap();
        writer.push(&[7]).unwrap();
        assert!(!path.exists(), "published before finish");
        assert_eq!(writer.finish().unwrap(), 4);
        let mut shard = TokenShard::open(&path).unwrap();
        assert_eq!((shard.len(), shard.vocab_size()), (4, 300));
        assert_eq!(shard.read(1, 3).unwrap(), vec![2, 299, 7]);
        assert!(shard.read(2, 3).is_err());

        let mut writer = ShardWriter::create(&dir.path().join("b.tokens"), 300).unwrap();
        let err = writer.push(&[300]).unwrap_err().to_string();
        assert!(err.contains("token 300 is outside the vocabulary of 300"), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = TokenShard::open(&path).err().unwrap().to_string();
        assert!(err.contains("header says 4 tokens"), "{err}");
        std::fs::write(&path, b"hello").unwrap();
        let err = TokenShard::open(&path).err().unwrap().to_string();
        assert!(err.contains("a.tokens") && err.contains("header"), "{err}");
    }
}
