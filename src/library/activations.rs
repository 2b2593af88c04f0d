//! The parent's activations at one layer, computed once and shared by every variant of that
//! layer: the block input `x`, the residual stream after the attention half `h`, and the block
//! output `y`, for a fixed set of token windows. They live on disk, not in memory: the walk
//! loads one parent layer at a time, runs the stream through it a chunk of windows at a time,
//! and writes the three activations in the cache dtype (bf16 by default) beside the stream
//! itself, kept in f32 so that rounding the cache never compounds from layer to layer. Training
//! and evaluation read the windows they need back, so memory does not grow with the token
//! budget. Also the calibration statistics initialisation reads. Knows the parent's blocks,
//! nothing of variants or training.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::silu;

use super::LibraryError;
use super::init::Calibration;
use crate::checkpoint::{StoreDtype, StreamedParent};
use crate::model::ffn::Ffn;
use crate::model::weights::to_host_vec;
use crate::model::{Block, HostTensor, from_burn};

/// Windows run through the parent at once (bounds the attention scores' memory).
pub(crate) const CHUNK: usize = 32;

/// `[windows, seq, hidden]` values in a file, appended a chunk of windows at a time and read
/// back by window.
pub struct CachedActivations {
    path: PathBuf,
    file: File,
    dtype: StoreDtype,
    windows: usize,
    seq: usize,
    hidden: usize,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LibraryError + '_ {
    move |cause| LibraryError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

impl CachedActivations {
    fn create(path: PathBuf, dtype: StoreDtype, seq: usize, hidden: usize) -> Result<Self, LibraryError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(Self {
            path,
            file,
            dtype,
            windows: 0,
            seq,
            hidden,
        })
    }

    fn window_bytes(&self) -> usize {
        self.seq * self.hidden * self.dtype.bytes()
    }

    fn append(&mut self, t: &Tensor<3>) -> Result<(), LibraryError> {
        let values = to_host_vec(t.clone());
        let mut bytes = vec![0u8; values.len() * self.dtype.bytes()];
        self.dtype.encode_into(&values, &mut bytes);
        let offset = (self.windows * self.window_bytes()) as u64;
        self.file.write_all_at(&bytes, offset).map_err(io_error(&self.path))?;
        self.windows += t.dims()[0];
        Ok(())
    }

    pub fn windows(&self) -> usize {
        self.windows
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The windows `picks` (in that order): `[picks.len(), seq, hidden]`.
    pub fn select(&self, picks: &[usize], device: &Device) -> Result<Tensor<3>, std::io::Error> {
        let size = self.window_bytes();
        let mut bytes = vec![0u8; picks.len() * size];
        for (&w, out) in picks.iter().zip(bytes.chunks_exact_mut(size)) {
            self.file.read_exact_at(out, (w * size) as u64)?;
        }
        let values = self.dtype.decode(&bytes);
        Ok(Tensor::from_data(
            TensorData::new(values, [picks.len(), self.seq, self.hidden]),
            device,
        ))
    }

    /// Windows `start..start + len`.
    pub fn range(&self, start: usize, len: usize, device: &Device) -> Result<Tensor<3>, LibraryError> {
        let picks: Vec<usize> = (start..start + len).collect();
        self.select(&picks, device).map_err(io_error(&self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The parent's activations at one layer, on disk.
pub struct LayerActivations {
    pub x: CachedActivations,
    pub h: CachedActivations,
    pub y: CachedActivations,
}

impl LayerActivations {
    pub fn windows(&self) -> usize {
        self.x.windows()
    }
}

/// Walks the parent's layers over fixed windows, holding the current layer's input on disk.
pub struct ActivationWalk<'a> {
    parent: &'a StreamedParent<'a>,
    dir: PathBuf,
    dtype: StoreDtype,
    layer: usize,
    /// The residual stream entering `layer`, f32.
    stream: CachedActivations,
    /// The stream entering the next layer, once the current layer has been computed.
    next: Option<CachedActivations>,
}

impl<'a> ActivationWalk<'a> {
    /// Starts at layer 0 with the embeddings of `windows` (equal lengths); its files go into
    /// `dir` (which must exist), the layer's activations in `dtype`.
    pub fn new(
        parent: &'a StreamedParent<'a>,
        windows: &[Vec<u32>],
        dir: &Path,
        dtype: StoreDtype,
    ) -> Result<Self, LibraryError> {
        let seq = windows.first().map_or(0, Vec::len);
        let hidden = parent.stored.config().hidden_size;
        let mut stream = CachedActivations::create(dir.join("stream-0.f32"), StoreDtype::F32, seq, hidden)?;
        for chunk in windows.chunks(CHUNK) {
            stream.append(&parent.embed(chunk)?)?;
        }
        Ok(Self {
            parent,
            dir: dir.to_path_buf(),
            dtype,
            layer: 0,
            stream,
            next: None,
        })
    }

    pub fn layer(&self) -> usize {
        self.layer
    }

    /// The activations of the current layer, whose parent block is `block`.
    pub fn current(&mut self, block: &Block) -> Result<LayerActivations, LibraryError> {
        let (seq, hidden, layer) = (self.stream.seq, self.stream.hidden, self.layer);
        let file = |name: &str, dtype: StoreDtype| {
            let path = self.dir.join(format!("layer-{layer}-{name}.{dtype}"));
            if path.exists() {
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
            CachedActivations::create(path, dtype, seq, hidden)
        };
        let mut acts = LayerActivations {
            x: file("x", self.dtype)?,
            h: file("h", self.dtype)?,
            y: file("y", self.dtype)?,
        };
        let mut next = file("stream", StoreDtype::F32)?;
        let device = self.parent.device();
        let rope = self.parent.rope_tables(seq);
        let n = self.stream.windows();
        for start in (0..n).step_by(CHUNK) {
            let x = self.stream.range(start, CHUNK.min(n - start), device)?;
            let h = block.forward_attention(x.clone(), layer, 0, &rope, None);
            let y = block.forward_ffn(h.clone());
            acts.x.append(&x)?;
            acts.h.append(&h)?;
            acts.y.append(&y)?;
            next.append(&y)?;
        }
        self.next = Some(next);
        Ok(acts)
    }

    /// Moves to the next layer, whose input is the current layer's output, and deletes the
    /// current layer's files.
    pub fn advance(&mut self, current: LayerActivations) -> Result<(), LibraryError> {
        let next = self.next.take().expect("advance follows current");
        let old = std::mem::replace(&mut self.stream, next);
        for path in [old.path(), current.x.path(), current.h.path(), current.y.path()] {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        self.layer += 1;
        Ok(())
    }
}

fn token_rows(t: Tensor<3>, count: usize) -> HostTensor {
    let [b, s, h] = t.dims();
    let rows = (b * s).min(count);
    from_burn(t.reshape([b * s, h]).narrow(0, 0, rows))
}

/// Calibration statistics of `block` (the parent's, at its layer) over the first `tokens`
/// tokens of `acts`: what channel pruning and least-squares fits need.
pub fn calibration(
    block: &Block,
    acts: &LayerActivations,
    tokens: usize,
    device: &Device,
) -> Result<Calibration, LibraryError> {
    let windows = tokens.div_ceil(acts.x.seq()).clamp(1, acts.windows());
    let x = acts.x.range(0, windows, device)?;
    let h = acts.h.range(0, windows, device)?;
    let y = acts.y.range(0, windows, device)?;
    let attention_io = block.attention.as_ref().map(|(norm, _)| {
        (
            token_rows(norm.forward(x.clone()), tokens),
            token_rows(h.clone() - x, tokens),
        )
    });
    let (ffn_activation, ffn_io) = match &block.ffn {
        Some((norm, ffn)) => {
            let normed = norm.forward(h.clone());
            let activation = match ffn {
                Ffn::SwiGlu(f) => {
                    let hidden = silu(f.gate_proj.forward(normed.clone())) * f.up_proj.forward(normed.clone());
                    let [b, s, n] = hidden.dims();
                    let mean = hidden.abs().reshape([b * s, n]).mean_dim(0).reshape([n]);
                    Some(from_burn(mean).into_raw_vec_and_offset().0)
                }
                Ffn::Linear(_) => None,
            };
            (
                activation,
                Some((token_rows(normed, tokens), token_rows(y - h, tokens))),
            )
        }
        None => (None, None),
    };
    Ok(Calibration {
        ffn_activation,
        attention_io,
        ffn_io,
    })
}
