//! Reading a GGUF file: memory-map it, parse and check the header (magic, version, counts,
//! metadata, tensor infos, alignment) against the file's length, and lend tensors out lazily.
//! Nothing past the header is read until a tensor is asked for, so a 100 GB file opens in the
//! time its header takes. Knows nothing of what the tensors or keys mean.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::metadata::{MetaArray, MetaValue, type_id};
use super::types::GgmlType;
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GgufError, align_up, dequant};

/// llama.cpp's limits (`GGUF_MAX_STRING_LENGTH`, `GGUF_MAX_ARRAY_ELEMENTS`, `GGML_MAX_DIMS`);
/// a field beyond them is corrupt, whatever the file's size.
const MAX_STRING_BYTES: u64 = 1 << 30;
/// The most array elements, metadata entries or tensors a file may declare.
const MAX_COUNT: u64 = 1 << 30;
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (llama.cpp refuses any nesting; a bound keeps
/// a crafted file from exhausting the stack).
const MAX_NESTING: usize = 8;
/// The fewest bytes one metadata entry and one tensor info can take (used to bound counts).
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// A tensor as the file's header describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// ggml order: `ne0` (innermost, contiguous) first.
    pub dims: Vec<u64>,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data, from the type and dims.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The dims outermost first (row-major order; `dims` reversed).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn n_elements(&self) -> usize {
        // `parse` checked the byte size; with a zero dim, the others may multiply past 2^64.
        if self.dims.contains(&0) {
            0
        } else {
            self.dims.iter().product::<u64>() as usize
        }
    }
}

/// An open GGUF file: its header parsed and checked, its data memory-mapped.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    keys: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    names: HashMap<String, usize>,
}

/// One tensor of an open file: its description and its bytes, borrowed from the map.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    path: &'a Path,
    info: &'a TensorInfo,
    data: &'a [u8],
}

impl<'a> TensorRef<'a> {
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.info.ggml_type
    }

    /// ggml order: `ne0` (innermost, contiguous) first.
    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }

    /// Outermost first: `dims` reversed, the order of the values [`to_f32`](Self::to_f32)
    /// returns (row-major).
    pub fn shape(&self) -> Vec<usize> {
        self.info.shape()
    }

    pub fn n_elements(&self) -> usize {
        self.info.n_elements()
    }

    /// The stored bytes, in the tensor's own type.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The values as f32, in memory order (row-major in [`shape`](Self::shape)), bit for bit
    /// what gguf-py's `gguf.quants.dequantize` returns.
    pub fn to_f32(&self) -> Result<Vec<f32>, GgufError> {
        if !dequant::can_dequantize(self.info.ggml_type) {
            return Err(GgufError::Unsupported {
                path: self.path.to_path_buf(),
                tensor: self.info.name.clone(),
                ty: self.info.ggml_type,
            });
        }
        let mut out = vec![0.0; self.n_elements()];
        dequant::dequantize(self.info.ggml_type, self.data, &mut out);
        Ok(out)
    }
}

impl GgufFile {
    /// Opens and checks a GGUF file; tensor data stays on disk until asked for.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(io(path))?;
        // SAFETY: the map is read-only and private to this value. Like every reader of a mapped
        // file, it assumes no other process truncates or rewrites the file while it is open
        // (a truncation would fault on access, a rewrite would change the values read).
        let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
        let header = parse(path, &map)?;
        let keys = header
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let names = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            map,
            version: header.version,
            alignment: header.alignment,
            data_offset: header.data_offset,
            metadata: header.metadata,
            keys,
            tensors: header.tensors,
            names,
        })
    }

    /// Hands the mapped pages of `data` (a tensor's bytes, already decoded) back to the kernel,
    /// so that they leave this process's resident set; the file stays in the page cache.
    pub fn release(&self, data: &[u8]) {
        let offset = data.as_ptr() as usize - self.map.as_ptr() as usize;
        crate::checkpoint::stored::release(&self.map, offset, data.len());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &MetaValue) -> GgufError {
        GgufError::Key {
            path: self.path.clone(),
            key: key.to_string(),
            problem: format!("expected {expected}, found {}", found.type_description()),
        }
    }

    /// An integer key of any width and sign whose value fits `T`.
    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<T, GgufError> {
        let value = self.require(key)?;
        let n = value.integer().ok_or_else(|| self.wrong_type(key, expected, value))?;
        T::try_from(n).map_err(|_| GgufError::Key {
            path: self.path.clone(),
            key: key.to_string(),
            problem: format!("{n} does not fit in {expected}"),
        })
    }

    /// A `u32` key; any integer type holding a value that fits is accepted.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "u32")
    }

    /// An `i32` key; any integer type holding a value that fits is accepted.
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.integer(key, "i32")
    }

    /// A `u64` key; any integer type holding a value that fits is accepted.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "u64")
    }

    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            MetaValue::F32(v) => Ok(*v),
            other => Err(self.wrong_type(key, "f32", other)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            MetaValue::Bool(v) => Ok(*v),
            other => Err(self.wrong_type(key, "bool", other)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            MetaValue::Str(v) => Ok(v),
            other => Err(self.wrong_type(key, "str", other)),
        }
    }

    /// An array key of any element type.
    pub fn get_array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            other => Err(self.wrong_type(key, "an array", other)),
        }
    }

    /// An array of integers of any width and sign, each fitting `T`.
    fn integers<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<Vec<T>, GgufError> {
        let value = self.require(key)?;
        let values = match value {
            MetaValue::Array(a) => a.integers(),
            _ => None,
        }
        .ok_or_else(|| self.wrong_type(key, &format!("arr[{expected}]"), value))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                T::try_from(n).map_err(|_| GgufError::Key {
                    path: self.path.clone(),
                    key: key.to_string(),
                    problem: format!("element {i}, {n}, does not fit in {expected}"),
                })
            })
            .collect()
    }

    /// An array of `u32` (integers of any type whose values fit are accepted).
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.integers(key, "u32")
    }

    /// An array of `i32` (integers of any type whose values fit are accepted).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.integers(key, "i32")
    }

    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::F32(v)) => Ok(v),
            other => Err(self.wrong_type(key, "arr[f32]", other)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::Str(v)) => Ok(v),
            other => Err(self.wrong_type(key, "arr[str]", other)),
        }
    }

    /// Every tensor's description, in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.tensors.iter().map(|info| self.lend(info))
    }

    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>, GgufError> {
        let &i = self.names.get(name).ok_or_else(|| GgufError::NoTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })?;
        Ok(self.lend(&self.tensors[i]))
    }

    fn lend<'a>(&'a self, info: &'a TensorInfo) -> TensorRef<'a> {
        // `parse` checked that every tensor lies inside the file.
        let start = (self.data_offset + info.offset) as usize;
        TensorRef {
            path: &self.path,
            info,
            data: &self.map[start..start + info.n_bytes as usize],
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GgufError {
    let path = path.to_path_buf();
    move |cause| GgufError::Io { path, cause }
}

struct Header {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
}

/// Reads little-endian fields in order, each checked against the bytes left. `context` names
/// the entry being read for errors (`metadata key `x``, `tensor info `y``).
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    context: String,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn truncated(&self, field: &str, needed: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what: format!("{}{field}", self.context),
            offset: self.pos as u64,
            needed,
            file_len: self.bytes.len() as u64,
        }
    }

    fn malformed(&self, offset: usize, problem: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            problem: format!("{}{problem}", self.context),
        }
    }

    fn take(&mut self, n: u64, field: &str) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(self.truncated(field, n));
        }
        let slice = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, field)?);
        Ok(out)
    }

    fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self, field: &str) -> Result<String, GgufError> {
        let start = self.pos;
        let len = self.u64(field)?;
        if len > MAX_STRING_BYTES {
            return Err(self.malformed(
                start,
                format!("{field} is {len} bytes long, more than llama.cpp's limit of 1 GiB"),
            ));
        }
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| self.malformed(start, format!("{field} is not UTF-8 ({e})")))
    }

    /// An element count, checked against the limit (beyond it the field is corrupt) and against
    /// the bytes left, given the fewest bytes one element takes (beyond them the file is
    /// truncated), so that no allocation outgrows the file.
    fn count(&mut self, field: &str, min_bytes: u64) -> Result<usize, GgufError> {
        let start = self.pos;
        let n = self.u64(field)?;
        if n > MAX_COUNT {
            return Err(self.malformed(
                start,
                format!("{field} is {n}, more than 2^30 (llama.cpp's limit for arrays)"),
            ));
        }
        let needed = n * min_bytes;
        if needed > self.left() {
            self.pos = start;
            return Err(self.truncated(&format!("{field} of {n} ({min_bytes}+ bytes each)"), needed + 8));
        }
        Ok(n as usize)
    }

    fn value(&mut self, ty: u32) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            type_id::U8 => MetaValue::U8(self.array::<1>("a u8 value")?[0]),
            type_id::I8 => MetaValue::I8(self.array::<1>("an i8 value")?[0] as i8),
            type_id::U16 => MetaValue::U16(u16::from_le_bytes(self.array("a u16 value")?)),
            type_id::I16 => MetaValue::I16(i16::from_le_bytes(self.array("an i16 value")?)),
            type_id::U32 => MetaValue::U32(u32::from_le_bytes(self.array("a u32 value")?)),
            type_id::I32 => MetaValue::I32(i32::from_le_bytes(self.array("an i32 value")?)),
            type_id::F32 => MetaValue::F32(f32::from_le_bytes(self.array("an f32 value")?)),
            type_id::BOOL => MetaValue::Bool(self.array::<1>("a bool value")?[0] != 0),
            type_id::STR => MetaValue::Str(self.string("a string value")?),
            type_id::ARRAY => MetaValue::Array(self.meta_array(0)?),
            type_id::U64 => MetaValue::U64(u64::from_le_bytes(self.array("a u64 value")?)),
            type_id::I64 => MetaValue::I64(i64::from_le_bytes(self.array("an i64 value")?)),
            type_id::F64 => MetaValue::F64(f64::from_le_bytes(self.array("an f64 value")?)),
            other => return Err(self.malformed(self.pos - 4, format!("unknown value type {other}"))),
        })
    }

    /// `n` fixed-size elements decoded by `decode`.
    fn fixed<T, const N: usize>(
        &mut self,
        n: usize,
        field: &str,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let bytes = self.take((n * N) as u64, field)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0; N];
                a.copy_from_slice(c);
                decode(a)
            })
            .collect())
    }

    /// An array's element type, count and elements.
    fn meta_array(&mut self, depth: usize) -> Result<MetaArray, GgufError> {
        let start = self.pos;
        if depth >= MAX_NESTING {
            return Err(self.malformed(start, format!("arrays nested more than {MAX_NESTING} deep")));
        }
        let ty = self.u32("an array's element type")?;
        let min_bytes = match ty {
            type_id::U8 | type_id::I8 | type_id::BOOL => 1,
            type_id::U16 | type_id::I16 => 2,
            type_id::U32 | type_id::I32 | type_id::F32 => 4,
            type_id::U64 | type_id::I64 | type_id::F64 | type_id::STR => 8,
            type_id::ARRAY => 12,
            other => return Err(self.malformed(start, format!("unknown array element type {other}"))),
        };
        let n = self.count("an array's length", min_bytes)?;
        let field = "array elements";
        Ok(match ty {
            type_id::U8 => MetaArray::U8(self.fixed(n, field, |[b]: [u8; 1]| b)?),
            type_id::I8 => MetaArray::I8(self.fixed(n, field, |[b]: [u8; 1]| b as i8)?),
            type_id::BOOL => MetaArray::Bool(self.fixed(n, field, |[b]: [u8; 1]| b != 0)?),
            type_id::U16 => MetaArray::U16(self.fixed(n, field, u16::from_le_bytes)?),
            type_id::I16 => MetaArray::I16(self.fixed(n, field, i16::from_le_bytes)?),
            type_id::U32 => MetaArray::U32(self.fixed(n, field, u32::from_le_bytes)?),
            type_id::I32 => MetaArray::I32(self.fixed(n, field, i32::from_le_bytes)?),
            type_id::F32 => MetaArray::F32(self.fixed(n, field, f32::from_le_bytes)?),
            type_id::U64 => MetaArray::U64(self.fixed(n, field, u64::from_le_bytes)?),
            type_id::I64 => MetaArray::I64(self.fixed(n, field, i64::from_le_bytes)?),
            type_id::F64 => MetaArray::F64(self.fixed(n, field, f64::from_le_bytes)?),
            type_id::STR => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string("a string in an array")?);
                }
                MetaArray::Str(v)
            }
            _ => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.meta_array(depth + 1)?);
                }
                MetaArray::Array(v)
            }
        })
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor {
        path,
        bytes,
        pos: 0,
        context: String::new(),
    };
    let magic = c.array::<4>("the magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::NotGguf {
            path: path.to_path_buf(),
            found: format!("\"{}\"", magic.escape_ascii()),
        });
    }
    let version = c.u32("the version")?;
    check_version(path, version)?;
    let n_tensors = c.count("the tensor count", MIN_TENSOR_INFO_BYTES)?;
    let n_kv = c.count("the metadata count", MIN_KV_BYTES)?;
    let metadata = read_metadata(&mut c, n_kv)?;
    let alignment = match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY).map(|(_, v)| v) {
        None => DEFAULT_ALIGNMENT,
        Some(MetaValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => {
            return Err(GgufError::Key {
                path: path.to_path_buf(),
                key: ALIGNMENT_KEY.to_string(),
                problem: format!("must be a u32 power of two, found {other:?}"),
            });
        }
    };
    let tensors = read_tensor_infos(&mut c, n_tensors, alignment)?;
    let data_offset = align_up(c.pos as u64, alignment).unwrap_or(u64::MAX);
    check_layout(path, bytes.len() as u64, data_offset, alignment, &tensors)?;
    Ok(Header {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}

fn check_version(path: &Path, version: u32) -> Result<(), GgufError> {
    let problem = match version {
        2 | 3 => return Ok(()),
        0 => "no such version",
        1 => "version 1 is no longer supported (nor by llama.cpp); convert the model again",
        v if v & 0xFFFF == 0 => {
            "this looks like a big-endian file (its version read backwards); tessera reads little-endian GGUF only"
        }
        _ => "newer than version 3, the latest tessera reads",
    };
    Err(GgufError::Version {
        path: path.to_path_buf(),
        version,
        problem,
    })
}

/// The `n_kv` metadata entries, keys unique and non-empty.
fn read_metadata(c: &mut Cursor, n_kv: usize) -> Result<Vec<(String, MetaValue)>, GgufError> {
    let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(n_kv);
    let mut keys = HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        c.context = format!("metadata entry {i}: ");
        let start = c.pos;
        let key = c.string("the key")?;
        if key.is_empty() {
            return Err(c.malformed(start, "the key is empty".to_string()));
        }
        if !keys.insert(key.clone()) {
            return Err(c.malformed(start, format!("key `{key}` appears twice")));
        }
        c.context = format!("metadata key `{key}`: ");
        let ty = c.u32("the value type")?;
        let value = c.value(ty)?;
        metadata.push((key, value));
    }
    c.context.clear();
    Ok(metadata)
}

/// The `n_tensors` tensor infos: names unique, known types, offsets aligned, sizes from type
/// and dims.
fn read_tensor_infos(c: &mut Cursor, n_tensors: usize, alignment: u64) -> Result<Vec<TensorInfo>, GgufError> {
    let path = c.path;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut names = HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        c.context = format!("tensor info {i}: ");
        let name = c.string("the name")?;
        let tensor_error = |problem: String| GgufError::Tensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
            problem,
        };
        if !names.insert(name.clone()) {
            return Err(tensor_error("the name appears twice".to_string()));
        }
        c.context = format!("tensor info `{name}`: ");
        let n_dims = c.u32("the number of dims")?;
        if n_dims > MAX_DIMS {
            return Err(tensor_error(format!("{n_dims} dims, more than ggml's {MAX_DIMS}")));
        }
        let dims = (0..n_dims).map(|_| c.u64("a dim")).collect::<Result<Vec<_>, _>>()?;
        let id = c.u32("the type")?;
        let ggml_type = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownType {
            path: path.to_path_buf(),
            tensor: name.clone(),
            id,
        })?;
        let offset = c.u64("the offset")?;
        if offset % alignment != 0 {
            return Err(tensor_error(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        let n_bytes = ggml_type.tensor_bytes(&dims).map_err(tensor_error)?;
        tensors.push(TensorInfo {
            name,
            ggml_type,
            dims,
            offset,
            n_bytes,
        });
    }
    c.context.clear();
    Ok(tensors)
}

/// Checks that the tensors tile the data section as llama.cpp lays it out: in offset order, each
/// starts where the one before ends, padded to the alignment, and all lie inside the file. So a
/// tensor whose type and dims claim more or fewer bytes than it has is caught.
fn check_layout(
    path: &Path,
    file_len: u64,
    data_offset: u64,
    alignment: u64,
    tensors: &[TensorInfo],
) -> Result<(), GgufError> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| (t.offset, t.n_bytes));
    let mut expected = 0u64;
    let mut previous: Option<&TensorInfo> = None;
    for t in order {
        if t.offset != expected {
            let (tensor, problem) = match previous {
                None => (
                    t,
                    format!(
                        "the first tensor's data starts at byte {} of the data section, not 0",
                        t.offset
                    ),
                ),
                Some(p) => (
                    p,
                    format!(
                        "its type and dims ({} {:?}) make {} bytes, ending at data byte {}, but the next tensor `{}` starts at data byte {} (expected {expected}, after padding to {alignment})",
                        p.ggml_type,
                        p.dims,
                        p.n_bytes,
                        p.offset + p.n_bytes,
                        t.name,
                        t.offset
                    ),
                ),
            };
            return Err(GgufError::Tensor {
                path: path.to_path_buf(),
                tensor: tensor.name.clone(),
                problem,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        if end.is_none_or(|end| end > file_len) {
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                what: format!("the data of tensor `{}` ({} {:?})", t.name, t.ggml_type, t.dims),
                offset: start.unwrap_or(u64::MAX),
                needed: t.n_bytes,
                file_len,
            });
        }
        expected = align_up(t.offset + t.n_bytes, alignment).unwrap_or(u64::MAX);
        previous = Some(t);
    }
    Ok(())
}
