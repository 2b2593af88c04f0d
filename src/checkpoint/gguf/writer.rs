//! Writing a GGUF file (version 3): metadata of every value type, then tensors in F32, F16,
//! BF16 or Q8_0, laid out as llama.cpp lays them out (each tensor padded to the alignment).
//! Shapes and types are declared first, since the header holds every offset; values are then
//! asked for one tensor at a time, so a model never has to be in memory whole. The file is
//! written under a temporary name in the same folder and renamed when complete. Knows nothing
//! of what the tensors or keys mean.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::metadata::{MetaArray, MetaValue};
use super::quant::{self, EncodeError};
use super::types::GgmlType;
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgufError, align_up};

/// llama.cpp refuses tensor names of 64 bytes or more (`GGML_MAX_NAME`).
const MAX_NAME_BYTES: usize = 63;
const MAX_DIMS: usize = 4;
/// Values encoded and written per step.
const STEP_VALUES: usize = 1 << 20;

/// A tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// Outermost first (row-major): `[out, in]` for a weight, as HF stores it. The file stores
    /// it reversed (ggml order).
    pub shape: Vec<usize>,
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    pub fn n_elements(&self) -> usize {
        // `add_tensor` checked the byte size; with a zero dim, the others may multiply past 2^64.
        if self.shape.contains(&0) {
            0
        } else {
            self.shape.iter().product()
        }
    }

    fn dims(&self) -> Vec<u64> {
        self.shape.iter().rev().map(|&d| d as u64).collect()
    }
}

/// A GGUF file being declared: metadata and tensor specs, then [`write`](Self::write).
#[derive(Debug)]
pub struct GgufWriter {
    path: PathBuf,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<(TensorSpec, u64)>,
    alignment: u64,
    /// Bytes of the data section so far, padding included.
    data_bytes: u64,
}

impl GgufWriter {
    /// A writer for `path`; nothing is created until [`write`](Self::write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
            data_bytes: 0,
        }
    }

    fn key_error(&self, key: &str, problem: impl Into<String>) -> GgufError {
        GgufError::Key {
            path: self.path.clone(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    fn tensor_error(&self, tensor: &str, problem: impl Into<String>) -> GgufError {
        GgufError::Tensor {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            problem: problem.into(),
        }
    }

    /// Adds a metadata entry (written in the order added). `general.alignment`, a `u32` power of
    /// two added before any tensor, sets the alignment of the data (default 32).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: MetaValue) -> Result<(), GgufError> {
        let key = key.into();
        if key.is_empty() {
            return Err(self.key_error(&key, "an empty key"));
        }
        if self.metadata.iter().any(|(k, _)| *k == key) {
            return Err(self.key_error(&key, "added twice"));
        }
        if key == ALIGNMENT_KEY {
            if !self.tensors.is_empty() {
                return Err(self.key_error(&key, "must be added before the first tensor"));
            }
            match value {
                MetaValue::U32(a) if a.is_power_of_two() => self.alignment = u64::from(a),
                ref other => return Err(self.key_error(&key, format!("must be a u32 power of two, not {other:?}"))),
            }
        }
        self.metadata.push((key, value));
        Ok(())
    }

    /// Declares the next tensor: its name, its shape (outermost first) and the type to store it
    /// in (F32, F16, BF16 or Q8_0; for Q8_0 the innermost dim must be a multiple of 32).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        ggml_type: GgmlType,
    ) -> Result<(), GgufError> {
        let spec = TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            ggml_type,
        };
        let name = &spec.name;
        if !quant::can_encode(ggml_type) {
            return Err(self.tensor_error(name, format!("tessera writes F32, F16, BF16 or Q8_0, not {ggml_type}")));
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(self.tensor_error(
                name,
                format!(
                    "names must have 1 to {MAX_NAME_BYTES} bytes for llama.cpp, this has {}",
                    name.len()
                ),
            ));
        }
        if shape.len() > MAX_DIMS {
            return Err(self.tensor_error(name, format!("{} dims, more than ggml's {MAX_DIMS}", shape.len())));
        }
        if self.tensors.iter().any(|(t, _)| t.name == *name) {
            return Err(self.tensor_error(name, "added twice"));
        }
        let n_bytes = ggml_type
            .tensor_bytes(&spec.dims())
            .map_err(|p| self.tensor_error(name, p))?;
        self.data_bytes = align_up(n_bytes, self.alignment)
            .and_then(|padded| self.data_bytes.checked_add(padded))
            .ok_or_else(|| self.tensor_error(name, "the tensors add up to more than 2^64 bytes"))?;
        self.tensors.push((spec, n_bytes));
        Ok(())
    }

    /// Writes the file: the header, then each tensor in the order declared, asking `values` for
    /// its f32 values (row-major in its shape) just before writing it. An error leaves no file
    /// at `path` (an older file there stays as it was).
    pub fn write<F, V, E>(self, values: F) -> Result<(), GgufError>
    where
        F: FnMut(&TensorSpec) -> Result<V, E>,
        V: AsRef<[f32]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let partial = partial_path(&self.path).ok_or_else(|| GgufError::Io {
            path: self.path.clone(),
            cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        })?;
        let result = self.write_to(&partial, values);
        match result {
            Ok(()) => std::fs::rename(&partial, &self.path).map_err(|cause| GgufError::Io {
                path: self.path.clone(),
                cause,
            }),
            Err(e) => {
                // The partial file is useless; failing to remove it changes nothing for the caller.
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    fn write_to<F, V, E>(&self, partial: &Path, mut values: F) -> Result<(), GgufError>
    where
        F: FnMut(&TensorSpec) -> Result<V, E>,
        V: AsRef<[f32]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let io = |cause| GgufError::Io {
            path: partial.to_path_buf(),
            cause,
        };
        let file = File::create(partial).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 22, file);
        let header = self.header();
        out.write_all(&header).map_err(io)?;
        let mut buf = Vec::new();
        for (spec, n_bytes) in &self.tensors {
            let v = values(spec).map_err(|cause| GgufError::Source {
                path: self.path.clone(),
                tensor: spec.name.clone(),
                cause: cause.into(),
            })?;
            let v = v.as_ref();
            if v.len() != spec.n_elements() {
                return Err(self.tensor_error(
                    &spec.name,
                    format!(
                        "shape {:?} takes {} values, but {} were given",
                        spec.shape,
                        spec.n_elements(),
                        v.len()
                    ),
                ));
            }
            let step = STEP_VALUES.max(spec.ggml_type.layout().0 as usize);
            for (i, chunk) in v.chunks(step).enumerate() {
                buf.clear();
                quant::encode(spec.ggml_type, chunk, &mut buf).map_err(|e| match e {
                    EncodeError::Value { index, value, problem } => self.tensor_error(
                        &spec.name,
                        format!("value {value} at index {} {problem}", i * step + index),
                    ),
                    EncodeError::Type(t) => self.tensor_error(&spec.name, format!("cannot write type {t}")),
                })?;
                out.write_all(&buf).map_err(io)?;
            }
            out.write_all(&vec![0; padding(*n_bytes, self.alignment)]).map_err(io)?;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }

    /// Magic, version, counts, metadata and tensor infos, padded to the alignment.
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut h, key);
            h.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut h, value);
        }
        let mut offset = 0u64;
        for (spec, n_bytes) in &self.tensors {
            put_str(&mut h, &spec.name);
            let dims = spec.dims();
            h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&spec.ggml_type.id().to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            offset += n_bytes + padding(*n_bytes, self.alignment) as u64;
        }
        h.resize(h.len() + padding(h.len() as u64, self.alignment), 0);
        h
    }
}

/// `<file name>.partial` beside `path`.
fn partial_path(path: &Path) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(".partial");
    Some(path.with_file_name(name))
}

fn padding(n: u64, alignment: u64) -> usize {
    // Sizes here come from a file being written, far below 2^64.
    (align_up(n, alignment).unwrap_or(n) - n) as usize
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => h.push(*v),
        MetaValue::I8(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U16(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => h.push(u8::from(*v)),
        MetaValue::Str(v) => put_str(h, v),
        MetaValue::Array(a) => put_array(h, a),
        MetaValue::U64(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => h.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => h.extend_from_slice(&v.to_le_bytes()),
    }
}

/// Element type, count, elements.
fn put_array(h: &mut Vec<u8>, array: &MetaArray) {
    h.extend_from_slice(&array.elem_type_id().to_le_bytes());
    h.extend_from_slice(&(array.len() as u64).to_le_bytes());
    match array {
        MetaArray::U8(v) => h.extend_from_slice(v),
        MetaArray::I8(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U16(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I16(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U32(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I32(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F32(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::Bool(v) => v.iter().for_each(|&x| h.push(u8::from(x))),
        MetaArray::Str(v) => v.iter().for_each(|s| put_str(h, s)),
        MetaArray::Array(v) => v.iter().for_each(|a| put_array(h, a)),
        MetaArray::U64(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I64(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F64(v) => v.iter().for_each(|x| h.extend_from_slice(&x.to_le_bytes())),
    }
}
