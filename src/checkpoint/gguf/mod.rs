//! llama.cpp's GGUF container at the byte level: [`GgufFile`] memory-maps a file (versions 2
//! and 3, little-endian), checks every length and offset against the file, and hands out typed
//! metadata and lazy tensors ([`TensorRef`]: type, shape and the raw bytes, dequantised to f32
//! only when asked); [`GgufWriter`] writes version 3 (F32, F16, BF16, Q8_0 tensors) one tensor
//! at a time, through a temporary file and a rename.
//!
//! This module knows the container only: not which tensor is which weight, not llama.cpp's q/k
//! row permutation, not tokenizers, not [`Checkpoint`](super::Checkpoint).
//!
//! Orders: ggml lists a tensor's dims innermost first (`ne0`, the contiguous one, then `ne1` …);
//! [`TensorRef::dims`] returns them so. [`TensorRef::shape`] and [`TensorSpec::shape`] are the
//! same dims reversed, outermost first, the row-major order of PyTorch, safetensors and gguf-py's
//! reader: a weight that HF stores `[out, in]` has `dims() == [in, out]` and
//! `shape() == [out, in]`, and [`TensorRef::to_f32`] returns its values in memory order, which
//! is row-major in `shape()`.

mod dequant;
mod metadata;
mod quant;
mod reader;
mod types;
mod writer;

use std::path::PathBuf;

pub use dequant::can_dequantize;
pub use metadata::{MetaArray, MetaValue};
pub use quant::can_encode;
pub use reader::{GgufFile, TensorInfo, TensorRef};
pub use types::GgmlType;
pub use writer::{GgufWriter, TensorSpec};

/// The GGUF alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The metadata key that sets the alignment (a `u32`, a power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Every error of reading or writing a GGUF file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: not a GGUF file: it starts with {found}, not \"GGUF\"", path.display())]
    NotGguf { path: PathBuf, found: String },
    #[error("{}: GGUF version {version}: {problem}", path.display())]
    Version {
        path: PathBuf,
        version: u32,
        problem: &'static str,
    },
    /// The file ends before something it declares (a field, a string, a tensor's data).
    #[error("{}: truncated: {what} at byte {offset} needs {needed} bytes, but the file has only {file_len}", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    /// A header field that no valid file holds (an absurd count or length, a bad value type …).
    #[error("{}: byte {offset}: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
    #[error("{}: tensor `{tensor}`: unknown ggml type id {id}{}", path.display(), removed_note(*id))]
    UnknownType { path: PathBuf, tensor: String, id: u32 },
    /// A tensor's shape, type, offset or values disagree with the file or with each other.
    #[error("{}: tensor `{tensor}`: {problem}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
    #[error(
        "{}: tensor `{tensor}`: tessera cannot dequantise type {ty} (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K)",
        path.display()
    )]
    Unsupported {
        path: PathBuf,
        tensor: String,
        ty: GgmlType,
    },
    #[error("{}: no tensor named `{tensor}`", path.display())]
    NoTensor { path: PathBuf, tensor: String },
    #[error("{}: no metadata key `{key}`", path.display())]
    MissingKey { path: PathBuf, key: String },
    /// A metadata key of the wrong type or value, or one that cannot be written.
    #[error("{}: metadata key `{key}`: {problem}", path.display())]
    Key {
        path: PathBuf,
        key: String,
        problem: String,
    },
    /// The writer's source of tensor values failed.
    #[error("{}: tensor `{tensor}`: {cause}", path.display())]
    Source {
        path: PathBuf,
        tensor: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn removed_note(id: u32) -> String {
    match types::removed_type_name(id) {
        Some(name) => format!(" ({name}, which llama.cpp no longer stores in GGUF files)"),
        None => String::new(),
    }
}

/// `n` rounded up to a multiple of `alignment` (a power of two); `None` on overflow.
fn align_up(n: u64, alignment: u64) -> Option<u64> {
    Some(n.checked_add(alignment - 1)? & !(alignment - 1))
}
