//! The score stage as one call (`tessera score`, `tessera run`, notebooks): opens a library,
//! runs its parent once on held-out windows, scores the selected blocks of the space (KL, LM
//! loss and cosine distance from one pass, or task accuracy), optionally compares every item
//! before and after BLD, and records it all in the library.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::footprint::{ADVICE as SCORE_ADVICE, score_estimate};
use super::{ComparisonSummary, ItemComparison, ScoreError, ScoreRow, Scoring, compare_items, record_metrics};
use super::{item_blocks, record_scores, window_len, write_item_table};
use crate::checkpoint::LayerSpan;
use crate::eval::TaskSet;
use crate::library::{Library, LibraryError, Stage};
use crate::selection::Selection;
use crate::source::TokenSource;
use crate::world::Thinking;
use std::collections::BTreeSet;

/// What a block is scored by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScoreMetric {
    /// KL to the parent's next-token distributions, LM loss and last-hidden cosine distance,
    /// all from one forward pass.
    Divergence,
    /// Greedy task accuracy with the block in place.
    Accuracy { tasks: TaskSet, thinking: Thinking },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreOptions {
    /// The parent, when it moved since the library was built.
    pub parent: Option<PathBuf>,
    /// Held-out text (default: the data the library was built from).
    pub data: Option<TokenSource>,
    pub tokenizer: Option<PathBuf>,
    /// Held-out windows scored.
    pub windows: usize,
    /// Score the blocks of the space by this (`None`: do not).
    pub blocks: Option<ScoreMetric>,
    /// Also score the library's own items with their initial and trained weights.
    pub compare_items: bool,
    /// Which candidates (by index in the library's candidate order, or by layer).
    pub selection: Selection,
    pub progress: bool,
}

impl ScoreOptions {
    /// Built-in held-out tasks per block for the accuracy metric unless asked otherwise.
    pub const DEFAULT_ACCURACY_TASKS: usize = 50;
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            parent: None,
            data: None,
            tokenizer: None,
            windows: 32,
            blocks: Some(ScoreMetric::Divergence),
            compare_items: false,
            selection: Selection::All,
            progress: false,
        }
    }
}

/// One block's task accuracy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccuracyRow {
    pub span: LayerSpan,
    pub block: String,
    pub accuracy: f64,
}

/// The items before and after BLD.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemScores {
    pub summary: ComparisonSummary,
    pub items: Vec<ItemComparison>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreReport {
    pub library: PathBuf,
    pub windows: usize,
    pub tokens_per_window: usize,
    /// Divergence scores of the blocks, when asked.
    pub blocks: Vec<ScoreRow>,
    /// Task accuracy of the blocks, when asked (with the number of tasks).
    pub accuracy: Vec<AccuracyRow>,
    pub tasks: usize,
    pub items: Option<ItemScores>,
}

/// Scores the library in `dir` and records the figures there (`block_library.json` metrics,
/// `scores.*`, `item_scores.*`).
pub fn score_library(dir: &Path, options: &ScoreOptions, device: &Device) -> Result<ScoreReport, ScoreError> {
    let report = compute_scores(dir, options, device)?;
    record_score_report(&report)?;
    Ok(report)
}

/// The scores `options` ask for, recorded nowhere (a cluster task computes a part of them; its
/// merge records them all).
pub fn compute_scores(dir: &Path, options: &ScoreOptions, device: &Device) -> Result<ScoreReport, ScoreError> {
    let library = Library::open(dir)?;
    let source = match &options.data {
        Some(source) => source.clone(),
        None => library
            .manifest
            .settings
            .data
            .parse()
            .map_err(|e: crate::source::SourceError| LibraryError::from(e))?,
    };
    let candidates = library.candidates();
    options
        .selection
        .check(candidates.len(), library.manifest.parent.config.num_layers())
        .map_err(|e| LibraryError::Settings(e.to_string()))?;
    let chosen: Vec<_> = candidates
        .iter()
        .enumerate()
        .filter(|(i, (span, _))| options.selection.selects(*i, span.first))
        .map(|(_, c)| *c)
        .collect();
    let items = if options.compare_items {
        item_blocks(&library)
    } else {
        Vec::new()
    };
    let starts: BTreeSet<usize> = chosen.iter().chain(&items).map(|(span, _)| span.first).collect();
    let estimate = score_estimate(
        &library.manifest.parent.config,
        window_len(&library),
        starts.len(),
        options,
    );
    crate::memory_budget::check("score", &estimate, SCORE_ADVICE).map_err(LibraryError::from)?;
    let scoring = Scoring::new(
        &library,
        options.parent.as_deref(),
        &source,
        options.tokenizer.as_deref(),
        options.windows,
        Some(&starts),
        device,
    )?;
    let mut report = ScoreReport {
        library: dir.to_path_buf(),
        windows: scoring.windows,
        tokens_per_window: scoring.tokens_per_window,
        blocks: Vec::new(),
        accuracy: Vec::new(),
        tasks: 0,
        items: None,
    };
    if options.compare_items {
        let (summary, items) = compare_items(&library, &scoring, options.progress)?;
        report.items = Some(ItemScores { summary, items });
    }
    match &options.blocks {
        None => {}
        Some(ScoreMetric::Divergence) => {
            report.blocks = scoring.score(&library, &chosen, Stage::Trained, options.progress)?;
        }
        Some(ScoreMetric::Accuracy { tasks, thinking }) => {
            let tasks = tasks.tasks()?;
            report.tasks = tasks.len();
            report.accuracy = scoring.accuracy(&library, &chosen, &tasks, *thinking, options.progress)?;
        }
    }
    Ok(report)
}

/// Records a report's figures in its library: item comparisons in `item_scores.*`, divergence
/// scores in `scores.*`, and every block figure under `metrics` in `block_library.json`.
pub fn record_score_report(report: &ScoreReport) -> Result<(), ScoreError> {
    let dir = &report.library;
    if let Some(items) = &report.items {
        let path = dir.join("item_scores.json");
        std::fs::write(&path, serde_json::to_string_pretty(items).expect("scores serialise"))
            .map_err(LibraryError::io(&path))?;
        write_item_table(dir, &items.items)?;
    }
    if !report.blocks.is_empty() {
        record_scores(dir, &report.blocks)?;
    }
    if !report.accuracy.is_empty() {
        record_metrics(
            dir,
            report
                .accuracy
                .iter()
                .map(|r| (r.span, r.block.as_str(), "accuracy", r.accuracy)),
        )?;
    }
    Ok(())
}

impl std::fmt::Display for ScoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(items) = &self.items {
            write_items(f, items)?;
        }
        if !self.blocks.is_empty() {
            writeln!(
                f,
                "{:<8} {:<24} {:>10} {:>10} {:>10}",
                "layer", "block", "KL", "LM loss", "cos dist"
            )?;
            for r in &self.blocks {
                writeln!(
                    f,
                    "{:<8} {:<24} {:>10.5} {:>10.4} {:>10.6}",
                    r.span.to_string(),
                    r.variant,
                    r.scores.kl_div,
                    r.scores.lm_loss,
                    r.scores.cosine_distance
                )?;
            }
            writeln!(
                f,
                "metrics written to {}; table in {}.csv / .parquet",
                self.library.join("block_library.json").display(),
                self.library.join("scores").display()
            )?;
        }
        if !self.accuracy.is_empty() {
            for r in &self.accuracy {
                writeln!(
                    f,
                    "{:<6} {:<24} {:>6.1}%",
                    r.span.to_string(),
                    r.block,
                    100.0 * r.accuracy
                )?;
            }
            writeln!(
                f,
                "metrics.accuracy ({} tasks) written to {}",
                self.tasks,
                self.library.join("block_library.json").display()
            )?;
        }
        Ok(())
    }
}

fn write_items(f: &mut std::fmt::Formatter<'_>, items: &ItemScores) -> std::fmt::Result {
    writeln!(
        f,
        "{:<24} {:<8} {:>11} {:>11} {:>11} {:>11}",
        "item", "origin", "nMSE init", "nMSE BLD", "KL init", "KL BLD"
    )?;
    let figure = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.5}"));
    for r in &items.items {
        writeln!(
            f,
            "{:<24} {:<8} {:>11} {:>11} {:>11.5} {:>11.5}",
            r.item,
            format!("{:?}", r.origin).to_lowercase(),
            figure(r.nmse_init),
            figure(r.nmse_trained),
            r.init.kl_div,
            r.trained.kl_div
        )?;
    }
    let s = &items.summary;
    writeln!(
        f,
        "BLD lowered held-out nMSE for {}/{n} trainable items and replace-1-block KL for {}/{n} ({} windows of {} tokens)",
        s.nmse_lower_after_bld,
        s.kl_lower_after_bld,
        s.windows,
        s.tokens_per_window,
        n = s.trainable
    )
}
