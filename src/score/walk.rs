//! Replace-1-block scoring that holds one parent layer at a time. The parent is walked once
//! over the held-out windows, keeping the residual stream entering each layer where a scored
//! block starts, its last hidden state and its log-probabilities ([`Reference`]). The blocks are
//! then run in groups, in lockstep through the parent's remaining layers: each parent layer is
//! loaded once per group and every block of the group that has reached it passes through it;
//! then the LM head is loaded and the group's blocks compared. Memory holds one parent layer and
//! the group's streams, or the head and one comparison, whatever the parent's depth. Each block
//! computes exactly what the whole replaced model would. Knows the stored parent and the
//! reference; nothing of libraries.

use std::collections::{BTreeMap, BTreeSet};

use burn::prelude::*;

use super::replace::{Reference, Scores};
use crate::checkpoint::{LayerSpan, StreamError, StreamedParent};
use crate::model::Block;

/// The streams of one group of blocks held at once at most. 64 MiB groups cut small parents'
/// peaks (SmolLM2 1.05 -> 0.76 GiB) but raised the 8B parent's from 4.62 to 5.72 GiB, above
/// its estimate (not understood yet: docs/measurements.md).
pub const GROUP_BYTES: u64 = 512 << 20;

/// What scoring keeps of the parent's walk besides its [`Reference`]: the residual stream
/// entering each layer a scored block may start at.
pub struct ParentStreams {
    hidden: BTreeMap<usize, Tensor<3>>,
}

impl ParentStreams {
    /// Walks the parent over `windows` of `seq + 1` tokens (input, then targets shifted by
    /// one), keeping the stream before each layer of `starts` (every layer when `None`).
    pub fn walk(
        parent: &StreamedParent,
        windows: &[Vec<u32>],
        starts: Option<&BTreeSet<usize>>,
    ) -> Result<(Reference, Self), StreamError> {
        let inputs: Vec<Vec<u32>> = windows.iter().map(|w| w[..w.len() - 1].to_vec()).collect();
        let targets: Vec<Vec<u32>> = windows.iter().map(|w| w[1..].to_vec()).collect();
        let mut x = parent.embed(&inputs)?;
        let rope = parent.rope_tables(x.dims()[1]);
        let mut hidden = BTreeMap::new();
        for layer in 0..parent.num_layers() {
            if starts.is_none_or(|s| s.contains(&layer)) {
                hidden.insert(layer, x.clone());
            }
            x = parent.block(layer)?.forward(x, layer, 0, &rope, None);
        }
        let logits = parent.head()?.forward(x.clone());
        let device = parent.device();
        let ids = |rows: &[Vec<u32>]| {
            let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
            Tensor::<2, Int>::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), device)
        };
        let reference = Reference::from_parts(x, logits, ids(&targets), ids(&inputs));
        Ok((reference, Self { hidden }))
    }

    /// Scores each block of `spans` put in place of its span: `build(i)` makes block `i` when
    /// it is needed, `progress` is told as each block finishes.
    pub fn score<E: From<StreamError>>(
        &self,
        reference: &Reference,
        parent: &StreamedParent,
        spans: &[LayerSpan],
        mut build: impl FnMut(usize) -> Result<Block, E>,
        progress: impl Fn(),
    ) -> Result<Vec<Scores>, E> {
        let Some(stream) = self.hidden.values().next() else {
            return Ok(vec![]);
        };
        let stream_bytes = (stream.dims().iter().product::<usize>() * std::mem::size_of::<f32>()) as u64;
        let per_group = ((GROUP_BYTES / stream_bytes.max(1)) as usize).max(1);
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| spans[i].first);
        let rope = parent.rope_tables(stream.dims()[1]);
        let mut scores = vec![None; spans.len()];
        for group in order.chunks(per_group) {
            // Per block of the group: its stream, and the parent layer it enters next.
            let mut running: Vec<(usize, Tensor<3>, usize)> = Vec::new();
            let first = spans[group[0]].first;
            for layer in first..parent.num_layers() {
                if running.iter().any(|(_, _, next)| *next <= layer) {
                    let block = parent.block(layer).map_err(StreamError::from)?;
                    for (_, x, next) in running.iter_mut().filter(|(_, _, next)| *next <= layer) {
                        *x = block.forward(x.clone(), layer, 0, &rope, None);
                        *next = layer + 1;
                    }
                }
                for &i in group.iter().filter(|&&i| spans[i].first == layer) {
                    let x = self
                        .hidden
                        .get(&layer)
                        .cloned()
                        .ok_or_else(|| StreamError::NotKept { layer })?;
                    let x = build(i)?.forward(x, layer, 0, &rope, None);
                    running.push((i, x, spans[i].last + 1));
                }
            }
            let head = parent.head().map_err(StreamError::from)?;
            for (i, last, _) in running {
                scores[i] = Some(reference.compare_logits(head.forward(last.clone()), last));
                progress();
            }
        }
        Ok(scores.into_iter().map(|s| s.expect("every block is scored")).collect())
    }
}
