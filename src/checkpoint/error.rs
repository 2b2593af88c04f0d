//! The one error type of checkpoint reading and writing: every variant names the file.

use std::path::PathBuf;

use crate::model::config::ConfigError;
use crate::model::weights::WeightError;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Boxed: a refusal's breakdown would make every checkpoint result large.
    #[error(transparent)]
    Memory(Box<crate::memory_budget::MemoryError>),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    /// The bytes are not a valid file of the expected kind (truncated, bad header, dtype …).
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    /// A configuration field is missing, malformed or inconsistent.
    #[error("{}: field `{field}`: {problem}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("{}: {cause}", path.display())]
    Config { path: PathBuf, cause: ConfigError },
    #[error("{}: {cause}", path.display())]
    Weights { path: PathBuf, cause: WeightError },
    /// A GGUF file's container (its error names the file).
    #[error(transparent)]
    Gguf(#[from] super::gguf::GgufError),
    /// The model cannot be written in the requested format.
    #[error("{}: cannot export: {problem}", path.display())]
    Unsupported { path: PathBuf, problem: String },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| Self::Io { path, cause }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn field(path: impl Into<PathBuf>, field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Field {
            path: path.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<crate::memory_budget::MemoryError> for CheckpointError {
    fn from(error: crate::memory_budget::MemoryError) -> Self {
        CheckpointError::Memory(Box::new(error))
    }
}
