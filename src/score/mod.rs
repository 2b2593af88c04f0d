//! The scoring stage (DESIGN §1.5): how much each block variant of a library hurts the parent
//! when it replaces the parent's block at its layer. Reads libraries and the parent; writes its
//! figures into the library's `block_library.json` (under `metrics`) and its own tables. Knows
//! nothing of costs, search or later stages.

pub mod footprint;
pub mod replace;
pub mod stage;
pub mod walk;

use std::path::Path;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use replace::{Reference, Scores};
pub use stage::{
    AccuracyRow, ItemScores, ScoreMetric, ScoreOptions, ScoreReport, compute_scores, record_score_report, score_library,
};

use std::collections::BTreeSet;

use crate::checkpoint::{Checkpoint, LayerSpan, Replacement, StoredCheckpoint, StreamedParent};
use crate::eval::task_accuracy;
use crate::library::interchange::{block_library_path, read_block_library, set_span_value, write_block_library_map};
use crate::library::{Library, LibraryError, Origin, Stage, block_name};
use crate::model::{BlockConfig, Llama, TensorMap, build_block, build_model};
use crate::source::{SourceError, TokenSource};
use crate::table::{Values, write_table};
use crate::tokenizer::Tokenizer;
use crate::world::{Task, Thinking};
use walk::ParentStreams;

/// One scored block: which layers it stands for, which variant, from which weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreRow {
    pub span: LayerSpan,
    pub variant: String,
    pub stage: Stage,
    #[serde(flatten)]
    pub scores: Scores,
}

/// The tokens of a held-out window: the library's training windows, within the parent's context
/// (one position is the next-token target).
pub fn window_len(library: &Library) -> usize {
    let settings = &library.manifest.settings;
    settings
        .seq_len
        .min(library.manifest.parent.config.max_position_embeddings - 1)
}

/// The parent and its reference on held-out windows: everything a library's blocks are
/// scored against. The parent stays stored; scoring loads it one layer at a time.
pub struct Scoring {
    pub parent: StoredCheckpoint,
    pub tokenizer: Option<Tokenizer>,
    pub reference: Reference,
    streams: ParentStreams,
    device: Device,
    pub windows: usize,
    pub tokens_per_window: usize,
}

impl Scoring {
    /// Opens the library's parent (from `parent` when it moved; checked by fingerprint) and
    /// walks it once on `windows` held-out windows of `source`, each as long as the library's
    /// training windows, keeping its stream before the layers `starts` (every layer when
    /// `None`): the only layers blocks can then be scored at.
    pub fn new(
        library: &Library,
        parent: Option<&Path>,
        source: &TokenSource,
        tokenizer: Option<&Path>,
        windows: usize,
        starts: Option<&BTreeSet<usize>>,
        device: &Device,
    ) -> Result<Self, LibraryError> {
        let stored = library.stored_parent(parent)?;
        let parent_path = parent.unwrap_or(&library.manifest.parent.source);
        let tokenizer = tokenizer
            .map(Path::to_path_buf)
            .or_else(|| Tokenizer::beside_model(parent_path))
            .map(|p| Tokenizer::read(&p))
            .transpose()
            .map_err(SourceError::from)?;
        let seq_len = window_len(library);
        let held_out = source
            .stored_windows(&stored, device, tokenizer.as_ref(), seq_len + 1, 0, windows)?
            .held_out;
        let (reference, streams) = ParentStreams::walk(&StreamedParent::new(&stored, device), &held_out, starts)?;
        Ok(Self {
            parent: stored,
            tokenizer,
            reference,
            streams,
            device: device.clone(),
            windows: held_out.len(),
            tokens_per_window: seq_len,
        })
    }

    /// Scores each `(span, block)` of `library` at `stage` by replacing the span with the block.
    pub fn score(
        &self,
        library: &Library,
        blocks: &[(LayerSpan, BlockConfig)],
        stage: Stage,
        progress: bool,
    ) -> Result<Vec<ScoreRow>, LibraryError> {
        let config = self.parent.config();
        let bar = crate::progress::bar(progress, "scored blocks", 0, blocks.len());
        let spans: Vec<LayerSpan> = blocks.iter().map(|(span, _)| *span).collect();
        // The parent's tensors of the span last built: a span's variants come one after another.
        let mut loaded: Option<(LayerSpan, TensorMap)> = None;
        let build = |i: usize| {
            let (span, block) = blocks[i];
            if loaded.as_ref().is_none_or(|(s, _)| *s != span) {
                loaded = None;
                loaded = Some((span, self.parent.layers(span.first, span.last)?));
            }
            let parent = &loaded.as_ref().expect("loaded above").1;
            let weights = library.span_weights(span, &block, parent, stage)?;
            Ok::<_, LibraryError>(build_block(config, span.first, &block, &weights, &self.device)?)
        };
        let parent = StreamedParent::new(&self.parent, &self.device);
        let scores = self
            .streams
            .score(&self.reference, &parent, &spans, build, || bar.inc(1))?;
        bar.finish_and_clear();
        Ok(blocks
            .iter()
            .zip(scores)
            .map(|(&(span, block), scores)| ScoreRow {
                span,
                variant: block_name(&block),
                stage,
                scores,
            })
            .collect())
    }

    /// Task accuracy of the parent with each block in place (greedy answers, exact match),
    /// in the order of `blocks`. Builds each replaced model whole.
    pub fn accuracy(
        &self,
        library: &Library,
        blocks: &[(LayerSpan, BlockConfig)],
        tasks: &[Task],
        thinking: Thinking,
        progress: bool,
    ) -> Result<Vec<AccuracyRow>, ScoreError> {
        let tokenizer = self.tokenizer.as_ref().ok_or(ScoreError::NoTokenizer)?;
        let parent = self.parent.load().map_err(LibraryError::from)?;
        let bar = crate::progress::bar(progress, "blocks answering tasks", 0, blocks.len());
        let mut out = Vec::with_capacity(blocks.len());
        for &(span, block) in blocks {
            let weights = library.span_weights(span, &block, &parent.weights, Stage::Trained)?;
            let child = replaced_model(&parent, span, &block, weights, &self.device)?;
            let report = task_accuracy(&child, tokenizer, tasks, thinking, 96, 64)?;
            out.push(AccuracyRow {
                span,
                block: block_name(&block),
                accuracy: report.accuracy,
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// Scores `blocks` from the parent's kept streams and again by running each replaced model
    /// whole, and times both: the reuse must change nothing but the time.
    pub fn check_prefix_reuse(
        &self,
        library: &Library,
        blocks: &[(LayerSpan, BlockConfig)],
    ) -> Result<ReuseCheck, LibraryError> {
        let started = std::time::Instant::now();
        let reused = self.score(library, blocks, Stage::Trained, false)?;
        let reuse_seconds = started.elapsed().as_secs_f64();
        let parent = self.parent.load()?;
        let mut full = Vec::with_capacity(blocks.len());
        let mut full_seconds = 0.0;
        for &(span, block) in blocks {
            let weights = library.span_weights(span, &block, &parent.weights, Stage::Trained)?;
            let child = replaced_model(&parent, span, &block, weights, &self.device)?;
            let started = std::time::Instant::now();
            full.push(self.reference.score_model(&child)?);
            full_seconds += started.elapsed().as_secs_f64();
        }
        let max_diff = |f: fn(&Scores) -> f64| {
            reused
                .iter()
                .zip(&full)
                .map(|(r, s)| (f(&r.scores) - f(s)).abs())
                .fold(0.0, f64::max)
        };
        Ok(ReuseCheck {
            blocks: blocks.len(),
            reuse_seconds,
            full_seconds,
            speedup: full_seconds / reuse_seconds,
            max_abs_diff_kl: max_diff(|s| s.kl_div),
            max_abs_diff_lm_loss: max_diff(|s| s.lm_loss),
            max_abs_diff_cosine: max_diff(|s| s.cosine_distance),
        })
    }
}

/// Prefix reuse against full recomputation (`Scoring::check_prefix_reuse`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReuseCheck {
    pub blocks: usize,
    pub reuse_seconds: f64,
    /// Forward passes only (building the replaced models is not counted).
    pub full_seconds: f64,
    pub speedup: f64,
    pub max_abs_diff_kl: f64,
    pub max_abs_diff_lm_loss: f64,
    pub max_abs_diff_cosine: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error(transparent)]
    Accuracy(#[from] crate::eval::AccuracyError),
    #[error("task accuracy needs the parent's tokenizer: pass --tokenizer")]
    NoTokenizer,
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
}

/// The parent with layers `span` replaced by `block` (whose tensors are `weights`, named at
/// `span.first`).
pub fn replaced_model(
    parent: &Checkpoint,
    span: LayerSpan,
    block: &BlockConfig,
    weights: TensorMap,
    device: &Device,
) -> Result<Llama, LibraryError> {
    let child = parent.splice(&[Replacement {
        span,
        block: *block,
        weights,
    }])?;
    Ok(build_model(&child.config, &child.weights, device)?)
}

/// The blocks the library's own items form at their layers (the parent filling the other half
/// of a sub-block item).
pub fn item_blocks(library: &Library) -> Vec<(LayerSpan, BlockConfig)> {
    let config = &library.manifest.parent.config;
    library
        .manifest
        .items
        .values()
        .map(|r| {
            (
                LayerSpan::single(r.item.layer),
                r.item.block(&config.blocks[r.item.layer]),
            )
        })
        .collect()
}

/// Writes `metrics.{kl_div, lm_loss, cosine_distance}` of each row into the library's
/// `block_library.json`, and the rows as `scores.csv` / `scores.parquet` beside it.
pub fn record_scores(dir: &Path, rows: &[ScoreRow]) -> Result<(), LibraryError> {
    write_table(
        &dir.join("scores"),
        vec![
            ("layer", Values::Int(rows.iter().map(|r| r.span.first as i64).collect())),
            (
                "last_layer",
                Values::Int(rows.iter().map(|r| r.span.last as i64).collect()),
            ),
            ("block", Values::Text(rows.iter().map(|r| r.variant.clone()).collect())),
            ("kl_div", Values::Float(rows.iter().map(|r| r.scores.kl_div).collect())),
            (
                "lm_loss",
                Values::Float(rows.iter().map(|r| r.scores.lm_loss).collect()),
            ),
            (
                "cosine_distance",
                Values::Float(rows.iter().map(|r| r.scores.cosine_distance).collect()),
            ),
        ],
    )?;
    let values = rows.iter().flat_map(|row| {
        [
            ("kl_div", row.scores.kl_div),
            ("lm_loss", row.scores.lm_loss),
            ("cosine_distance", row.scores.cosine_distance),
        ]
        .map(|(key, value)| (row.span, row.variant.as_str(), key, value))
    });
    record_metrics(dir, values)
}

/// The items' comparison as `item_scores.csv` / `item_scores.parquet` in `dir`.
pub fn write_item_table(dir: &Path, rows: &[ItemComparison]) -> Result<(), LibraryError> {
    let optional =
        |f: fn(&ItemComparison) -> Option<f64>| Values::Float(rows.iter().map(|r| f(r).unwrap_or(f64::NAN)).collect());
    let float = |f: fn(&ItemComparison) -> f64| Values::Float(rows.iter().map(f).collect());
    write_table(
        &dir.join("item_scores"),
        vec![
            ("item", Values::Text(rows.iter().map(|r| r.item.clone()).collect())),
            (
                "origin",
                Values::Text(rows.iter().map(|r| format!("{:?}", r.origin).to_lowercase()).collect()),
            ),
            ("nmse_init", optional(|r| r.nmse_init)),
            ("nmse_trained", optional(|r| r.nmse_trained)),
            ("kl_init", float(|r| r.init.kl_div)),
            ("kl_trained", float(|r| r.trained.kl_div)),
            ("lm_loss_init", float(|r| r.init.lm_loss)),
            ("lm_loss_trained", float(|r| r.trained.lm_loss)),
        ],
    )?;
    Ok(())
}

/// Writes `metrics.<key>` values of blocks into the library's `block_library.json`.
pub fn record_metrics<'a>(
    dir: &Path,
    values: impl IntoIterator<Item = (LayerSpan, &'a str, &'a str, f64)>,
) -> Result<(), LibraryError> {
    let path = block_library_path(dir);
    let mut map = read_block_library(&path)?;
    for (span, block, key, value) in values {
        set_span_value(&mut map, span, block, "metrics", key, json!(value));
    }
    write_block_library_map(&path, &map)
}

/// One library item in the otherwise unchanged parent, before and after BLD.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemComparison {
    pub item: String,
    pub origin: Origin,
    pub nmse_init: Option<f64>,
    pub nmse_trained: Option<f64>,
    pub init: Scores,
    pub trained: Scores,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComparisonSummary {
    /// Items with their own training.
    pub trainable: usize,
    pub nmse_lower_after_bld: usize,
    pub kl_lower_after_bld: usize,
    pub windows: usize,
    pub tokens_per_window: usize,
}

/// Scores every item of `library` with its initial and its trained weights; what BLD bought.
pub fn compare_items(
    library: &Library,
    scoring: &Scoring,
    progress: bool,
) -> Result<(ComparisonSummary, Vec<ItemComparison>), LibraryError> {
    let blocks = item_blocks(library);
    let init = scoring.score(library, &blocks, Stage::Init, progress)?;
    let trained = scoring.score(library, &blocks, Stage::Trained, progress)?;
    let rows: Vec<ItemComparison> = library
        .manifest
        .items
        .iter()
        .zip(init.into_iter().zip(trained))
        .map(|((key, record), (i, t))| ItemComparison {
            item: key.clone(),
            origin: record.origin,
            nmse_init: record.nmse_init,
            nmse_trained: record.nmse_trained,
            init: i.scores,
            trained: t.scores,
        })
        .collect();
    let trainable: Vec<&ItemComparison> = rows.iter().filter(|r| r.origin == Origin::Trained).collect();
    let summary = ComparisonSummary {
        trainable: trainable.len(),
        nmse_lower_after_bld: trainable.iter().filter(|r| r.nmse_trained < r.nmse_init).count(),
        kl_lower_after_bld: trainable.iter().filter(|r| r.trained.kl_div < r.init.kl_div).count(),
        windows: scoring.windows,
        tokens_per_window: scoring.tokens_per_window,
    };
    Ok((summary, rows))
}
