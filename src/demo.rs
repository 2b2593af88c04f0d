//! The README's main job on the built-in default (no download, no `../shared`): train the
//! default parent on the built-in world and evaluate it, build its `small` block library by
//! BLD, score every block of it, and profile every block on this CPU. Later pipeline stages
//! extend this job.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;
use serde::Serialize;

use crate::cost::{Precision, ProfileOptions, ProfileReport, Scenario, Target, profile_library};
use crate::library::{BuildOptions, BuildReport, Library, build_library};
use crate::parent::{ParentOptions, ParentReport, train_parent};
use crate::score::{ComparisonSummary, Scoring, compare_items, record_scores, space_blocks};
use crate::source::TokenSource;

/// The `small` search space, carried in the binary so the demo runs from anywhere.
const SMALL_SPACE: &str = include_str!("../search_spaces/small.toml");

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub out: PathBuf,
    pub parent: ParentReport,
    pub library: BuildReport,
    pub bld: ComparisonSummary,
    /// The block of each layer that moves the parent least, other than the parent's own, with
    /// its replace-1-block KL.
    pub gentlest_blocks: Vec<(usize, String, f64)>,
    pub profile: ProfileReport,
}

pub fn run_demo(out: &Path, progress: bool, device: &Device) -> Result<DemoReport> {
    let options = ParentOptions {
        progress,
        ..ParentOptions::default()
    };
    let parent = train_parent(&out.join("parent-run"), &options, device)?;

    let space = out.join("small.toml");
    std::fs::write(&space, SMALL_SPACE).with_context(|| format!("writing {}", space.display()))?;
    let data = TokenSource::Builtin { seed: options.seed };
    let build = BuildOptions {
        progress,
        ..BuildOptions::new(&parent.model_dir, &space, data.clone())
    };
    let library_dir = out.join("library");
    let library_report = build_library(&library_dir, &build, device)?;
    let library = Library::open(&library_dir)?;
    let scoring = Scoring::new(&library, None, &data, None, 32, device)?;
    let (bld, _) = compare_items(&library, &scoring, progress)?;
    let rows = scoring.score(
        &library,
        &space_blocks(&library),
        crate::library::Stage::Trained,
        progress,
    )?;
    record_scores(&library_dir, &rows)?;
    let parent_blocks: Vec<String> = parent_block_names(&library);
    let mut gentlest: Vec<(usize, String, f64)> = Vec::new();
    for row in rows.iter().filter(|r| r.variant != parent_blocks[r.layer]) {
        match gentlest.iter_mut().find(|g| g.0 == row.layer) {
            Some(best) if best.2 <= row.scores.kl_div => {}
            Some(best) => *best = (row.layer, row.variant.clone(), row.scores.kl_div),
            None => gentlest.push((row.layer, row.variant.clone(), row.scores.kl_div)),
        }
    }
    let profile = profile_library(
        &library,
        &ProfileOptions {
            target: Target::Cpu,
            precision: Precision::F32,
            scenarios: vec![
                Scenario::Prefill { batch: 1, seq: 128 },
                Scenario::Decode { batch: 1, context: 128 },
            ],
            repeats: 15,
            calibration_models: 16,
            progress,
        },
        device,
    )?;
    Ok(DemoReport {
        out: out.to_path_buf(),
        parent,
        library: library_report,
        bld,
        gentlest_blocks: gentlest,
        profile,
    })
}

fn parent_block_names(library: &Library) -> Vec<String> {
    library
        .manifest
        .parent
        .config
        .blocks
        .iter()
        .map(crate::library::block_name)
        .collect()
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.parent)?;
        writeln!(
            f,
            "block library: {} items trained by BLD ({} resumed) in {:.0} s; BLD lowered held-out nMSE for {}/{} and replace-1-block KL for {}/{}",
            self.library.trained_now,
            self.library.already_trained,
            self.library.seconds,
            self.bld.nmse_lower_after_bld,
            self.bld.trainable,
            self.bld.kl_lower_after_bld,
            self.bld.trainable
        )?;
        for (layer, name, kl) in &self.gentlest_blocks {
            writeln!(
                f,
                "  layer {layer}: least harmful block other than the parent's is {name} (KL {kl:.5})"
            )?;
        }
        for calibration in &self.profile.calibration {
            writeln!(
                f,
                "CPU latency, {}: whole models predicted from their blocks within {:.1}% on average ({} children checked)",
                calibration.latency.scenario,
                calibration.mean_abs_error_pct,
                calibration.models.iter().filter(|m| !m.fitted).count()
            )?;
        }
        writeln!(f, "outputs in {}:", self.out.display())?;
        writeln!(
            f,
            "  parent-run/parent/             the trained parent (HF Llama checkpoint + tokenizer.json)"
        )?;
        writeln!(f, "  parent-run/parent_report.json  the parent's figures above")?;
        writeln!(f, "  parent-run/data/               the built-in world as token shards")?;
        writeln!(
            f,
            "  parent-run/train/checkpoint/   the training state (rerunning resumes from it)"
        )?;
        writeln!(
            f,
            "  library/                       the small block library (manifest, init/, blocks/)"
        )?;
        writeln!(
            f,
            "  library/block_library.json     every block: parameters, memory, KV bytes, CPU latency, KL / LM loss / cosine"
        )?;
        write!(
            f,
            "  library/scores.csv, costs/     the same as tables (CSV and Parquet)"
        )
    }
}
