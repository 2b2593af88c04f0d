//! The README's main job on the built-in default (no download, no `../shared`): train the
//! default parent on the built-in world and evaluate it, build its `small` block library by
//! BLD, score every block of it, profile every block on this CPU, search for the child that
//! `constraints/cpu-2x.toml` asks for, time that child against the parent, write the Pareto
//! report of the throughput target, and assemble that child and distil it from the parent.
//! Later pipeline stages extend this job.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;
use serde::Serialize;

use crate::checkpoint::{Checkpoint, ExportOptions};
use crate::cost::{Precision, ProfileOptions, ProfileReport, Scenario, Target, profile_library};
use crate::library::{BuildOptions, BuildReport, Library, build_library, choice_from_json};
use crate::parent::{ParentOptions, ParentReport, train_parent};
use crate::posttrain::{DistillOptions, DistillReport, distill};
use crate::report::{ParetoReport, write_pareto};
use crate::score::{ComparisonSummary, Scoring, compare_items, record_scores};
use crate::search::{
    ChildChecks, ConstraintFile, SearchInput, SearchReport, SearchSpec, SolutionReport, SolverKind, Sweep,
    check_on_cpu, search,
};
use crate::source::TokenSource;
use crate::train::RunControl;

/// The `small` search space and the CPU target, carried in the binary so the demo runs from
/// anywhere.
const SMALL_SPACE: &str = include_str!("../search_spaces/small.toml");
const CPU_2X: &str = include_str!("../constraints/cpu-2x.toml");

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
    pub search: SearchReport,
    /// The best child and every distinct child of the sweep, timed against the parent.
    pub children: ChildChecks,
    pub pareto: ParetoReport,
    /// The best child, assembled and distilled from the parent.
    pub distill: DistillReport,
}

/// Writes `checkpoint` as a DeciLM directory with the built-in tokenizer, replacing `dir`.
fn write_model(checkpoint: &Checkpoint, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    checkpoint.write_decilm(dir, ExportOptions::default())?;
    crate::world::tokenizer::write_tokenizer(dir)
        .with_context(|| format!("writing the tokenizer into {}", dir.display()))?;
    Ok(())
}

pub fn run_demo(out: &Path, progress: bool, device: &Device) -> Result<DemoReport> {
    let defaults = ParentOptions::default();
    let options = ParentOptions {
        control: RunControl {
            progress,
            ..defaults.control
        },
        ..defaults
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
        &library.candidates(),
        crate::library::Stage::Trained,
        progress,
    )?;
    record_scores(&library_dir, &rows)?;
    let parent_blocks: Vec<String> = parent_block_names(&library);
    let mut gentlest: Vec<(usize, String, f64)> = Vec::new();
    let single = rows.iter().filter(|r| r.span.layers() == 1);
    for row in single.filter(|r| r.variant != parent_blocks[r.span.first]) {
        let layer = row.span.first;
        match gentlest.iter_mut().find(|g| g.0 == layer) {
            Some(best) if best.2 <= row.scores.kl_div => {}
            Some(best) => *best = (layer, row.variant.clone(), row.scores.kl_div),
            None => gentlest.push((layer, row.variant.clone(), row.scores.kl_div)),
        }
    }
    let profile = profile_library(
        &library,
        &ProfileOptions {
            target: Target::Cpu,
            precision: Precision::F32,
            scenarios: vec![
                Scenario::Prefill { batch: 1, seq: 128 },
                Scenario::Decode { batch: 1, context: 192 },
            ],
            repeats: 15,
            calibration_models: 16,
            progress,
        },
        device,
    )?;
    let constraints_path = out.join("cpu-2x.toml");
    std::fs::write(&constraints_path, CPU_2X).with_context(|| format!("writing {}", constraints_path.display()))?;
    let file = ConstraintFile::read(&constraints_path)?;
    let input = SearchInput::open(&library_dir)?;
    let spec = SearchSpec::from_file(file.clone(), SolverKind::Cbc);
    let search_report = search(&input, &spec)?;
    let solutions = out.join("solutions.json");
    std::fs::write(&solutions, serde_json::to_string_pretty(&search_report)?)
        .with_context(|| format!("writing {}", solutions.display()))?;
    let sweep: Sweep = "throughput_speedup=1..3:9".parse()?;
    let points = crate::search::sweep(&input, &spec, &sweep, progress)?;
    let pareto = write_pareto(&out.join("pareto"), &sweep, &points)?;
    let mut timed: Vec<&SolutionReport> = vec![&search_report.solutions[0]];
    for solution in points.iter().filter_map(|p| p.report.as_ref()).map(|r| &r.solutions[0]) {
        if timed.iter().all(|t| t.choice != solution.choice) {
            timed.push(solution);
        }
    }
    let children = check_on_cpu(&library_dir, &file, &timed, 15, device)?;

    let teacher = library.parent(None)?;
    let spans = choice_from_json(&search_report.solutions[0].choice).map_err(anyhow::Error::msg)?;
    let child = library.assemble_spans(&teacher, &spans)?;
    let child_dir = out.join("child");
    let distill_state = out.join("distill").join("train");
    // Profiling is measured again on every run, so the search may choose another child; the
    // distillation state of an earlier child cannot be resumed for it.
    let same_child = Checkpoint::read(&child_dir).is_ok_and(|(earlier, _)| earlier.config == child.config);
    if !same_child && distill_state.exists() {
        std::fs::remove_dir_all(&distill_state).with_context(|| format!("clearing {}", distill_state.display()))?;
    }
    write_model(&child, &child_dir)?;
    let defaults = DistillOptions::default();
    let distill_options = DistillOptions {
        control: RunControl {
            progress,
            ..defaults.control
        },
        ..defaults
    };
    let teacher_model = teacher.build(device)?;
    let windows = data.windows(&teacher_model, None, distill_options.seq_len + 1, 2048, 32)?;
    let (distilled, distill_report) = distill(&child, &teacher_model, &windows, &distill_options, &distill_state)?;
    write_model(&distilled, &out.join("distill").join("model"))?;
    Ok(DemoReport {
        out: out.to_path_buf(),
        parent,
        library: library_report,
        bld,
        gentlest_blocks: gentlest,
        profile,
        search: search_report,
        children,
        pareto,
        distill: distill_report,
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
        let best = &self.search.solutions[0];
        writeln!(
            f,
            "search (constraints/cpu-2x.toml, CBC, {:?} in {:.1} ms): KL sum {:.5}; blocks {}",
            best.status,
            best.solve_ms,
            best.objective,
            self.children.children[0].blocks.join(", ")
        )?;
        for baseline in &self.search.baselines {
            writeln!(f, "  baseline {:<12} KL sum {:.5}", baseline.method, baseline.objective)?;
        }
        let child = &self.children.children[0];
        writeln!(
            f,
            "child timed against the parent on this CPU (prefill 128 + 128 generated tokens): {:.1} ms vs {:.1} ms, measured speedup {:.2}x (predicted {:.2}x, 2x asked)",
            child.measured.median_ms,
            self.children.parents[0].measured.median_ms,
            child.measured_speedup,
            child.predicted_speedup
        )?;
        writeln!(
            f,
            "{} search-chosen children (the best and the sweep's): request time predicted within {:.1}% on average",
            self.children.children.len(),
            self.children.mean_abs_error_pct
        )?;
        let d = &self.distill;
        writeln!(
            f,
            "child distilled from the parent ({} tokens, cosine+KL, {:.0} s): held-out KL to the parent {:.4} -> {:.4}, LM loss {:.4} -> {:.4}",
            d.tokens_seen, d.seconds, d.before.kl_div, d.after.kl_div, d.before.lm_loss, d.after.lm_loss
        )?;
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
        writeln!(
            f,
            "  library/scores.csv, costs/     the same as tables (CSV and Parquet)"
        )?;
        writeln!(
            f,
            "  solutions.json                 the search's solutions and baselines with every constrained total"
        )?;
        writeln!(
            f,
            "  pareto/index.html              the Pareto report of the throughput target (table, plots)"
        )?;
        writeln!(
            f,
            "  child/                         the best child, assembled (DeciLM checkpoint + tokenizer.json)"
        )?;
        write!(
            f,
            "  distill/model/                 that child after global distillation (distill/train/: its resumable state)"
        )
    }
}
