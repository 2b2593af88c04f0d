//! `tessera profile`: the costs of every block of a library's search space for one target,
//! precision and set of scenarios, written into the library's `block_library.json` (`stats.*`)
//! and, with what lies outside the blocks and the whole-model correction, into
//! `costs/<target>_<precision>.json` (the per-block table also as `.csv` and `.parquet`). On
//! `cpu` latencies are measured and the correction is fitted on a few assembled children; on a
//! GPU from the table they are roofline estimates.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::footprint::{ADVICE as PROFILE_ADVICE, profile_estimate};
use super::keys;
use super::memory::block_memory;
use super::precision::Precision;
use super::predict::{CalibrationReport, LatencyModel, measure_and_calibrate, random_children};
use super::roofline::{Hardware, estimate_block, estimate_outside, gpu_table};
use super::scenario::Scenario;
use crate::checkpoint::LayerSpan;
use crate::library::interchange::{block_library_path, read_block_library, set_span_value, write_block_library_map};
use crate::library::{Library, LibraryError, block_name};
use crate::model::{BlockConfig, ForwardError, ModelConfig};
use crate::names::Named;
use crate::selection::Selection;
use crate::table::{Values, write_table};

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("unknown target `{0}`: choose cpu, h100, h200, a100, l40s or rtx4090")]
    UnknownTarget(String),
    #[error("{target} has no {precision} units; choose another precision")]
    NoUnits { target: String, precision: &'static str },
    #[error("the cpu target measures this backend, which computes in f32; for {0} use a GPU target's estimate")]
    CpuPrecision(&'static str),
    #[error("give at least one --scenario")]
    NoScenario,
    #[error(transparent)]
    Library(#[from] LibraryError),
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

/// Where latencies come from.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Measured on the running backend.
    #[default]
    Cpu,
    /// Estimated by the roofline of a GPU from the table.
    Gpu(Hardware),
}

impl std::str::FromStr for Target {
    type Err = CostError;

    fn from_str(name: &str) -> Result<Self, CostError> {
        if name == Target::CPU {
            return Ok(Target::Cpu);
        }
        gpu_table()
            .into_iter()
            .find(|h| h.name == name)
            .map(Target::Gpu)
            .ok_or_else(|| CostError::UnknownTarget(name.to_string()))
    }
}

impl Target {
    /// The name of the CPU target (measured on the running backend).
    pub const CPU: &str = "cpu";

    pub fn name(&self) -> &str {
        match self {
            Target::Cpu => Self::CPU,
            Target::Gpu(h) => &h.name,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileOptions {
    pub target: Target,
    pub precision: Precision,
    pub scenarios: Vec<Scenario>,
    /// Timed rounds per measurement (cpu).
    pub repeats: usize,
    /// Models (the parent and random children) measured end to end for the whole-model
    /// correction (cpu): half (at least two) fit it, the rest check it. Only when every
    /// candidate is profiled.
    pub calibration_models: usize,
    /// Which candidates (by index in the library's candidate order, or by layer).
    pub selection: Selection,
    pub progress: bool,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            target: Target::Cpu,
            precision: Precision::F32,
            scenarios: Vec::new(),
            repeats: 15,
            calibration_models: 8,
            selection: Selection::All,
            progress: false,
        }
    }
}

/// The costs of one block of the space.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileRow {
    pub span: LayerSpan,
    pub block: String,
    pub num_params: usize,
    pub memory_mib: f64,
    pub kv_bytes_per_token: usize,
    /// Milliseconds per scenario, in the order of the options.
    pub runtime_ms: Vec<f64>,
}

/// What `costs/<target>_<precision>.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CostsFile {
    pub target: String,
    pub precision: Precision,
    pub latency: Vec<LatencyModel>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileReport {
    pub library: PathBuf,
    pub target: String,
    pub precision: Precision,
    pub scenarios: Vec<Scenario>,
    pub rows: Vec<ProfileRow>,
    pub latency: Vec<LatencyModel>,
    pub calibration: Vec<CalibrationReport>,
    pub costs_file: PathBuf,
}

/// The distinct blocks of a search space, each layer's list in order (the parent's first).
fn space_choices(library: &Library) -> Vec<Vec<BlockConfig>> {
    let parent = &library.manifest.parent.config;
    library
        .manifest
        .space
        .layers
        .iter()
        .enumerate()
        .map(|(layer, v)| {
            let mut blocks = vec![parent.blocks[layer]];
            for block in v.blocks() {
                if !blocks.contains(&block) {
                    blocks.push(block);
                }
            }
            blocks
        })
        .collect()
}

/// A config that can hold `positions` (rope tables only; weights are random when timing).
fn long_enough(parent: &ModelConfig, positions: usize) -> ModelConfig {
    ModelConfig {
        max_position_embeddings: parent.max_position_embeddings.max(positions),
        ..parent.clone()
    }
}

fn check_options(options: &ProfileOptions) -> Result<(), CostError> {
    if options.scenarios.is_empty() {
        return Err(CostError::NoScenario);
    }
    match &options.target {
        Target::Cpu if options.precision != Precision::F32 => Err(CostError::CpuPrecision(options.precision.name())),
        Target::Gpu(hw) if hw.peak(options.precision).is_none() => Err(CostError::NoUnits {
            target: hw.name.clone(),
            precision: options.precision.name(),
        }),
        _ => Ok(()),
    }
}

/// Profiles the selected blocks of the library in `dir` and records the figures there.
pub fn profile_library(dir: &Path, options: &ProfileOptions, device: &Device) -> Result<ProfileReport, CostError> {
    let measured = measure_costs(dir, options, device)?;
    record_profile(dir, options, measured)
}

/// What profiling measured or estimated, per scenario of the options, before it is recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasuredCosts {
    pub latency: Vec<LatencyModel>,
    pub calibration: Vec<CalibrationReport>,
}

/// The candidates `options` select, in the library's candidate order.
fn selected_candidates(
    library: &Library,
    options: &ProfileOptions,
) -> Result<Vec<(LayerSpan, BlockConfig)>, CostError> {
    let candidates = library.candidates();
    options
        .selection
        .check(candidates.len(), library.manifest.parent.config.num_layers())
        .map_err(|e| LibraryError::Settings(e.to_string()))?;
    Ok(candidates
        .iter()
        .enumerate()
        .filter(|(i, (span, _))| options.selection.selects(*i, span.first))
        .map(|(_, c)| *c)
        .collect())
}

/// The latency of the selected blocks in each scenario of `options` (and, when every candidate
/// is selected, the whole-model correction); records nothing, so a cluster task can measure
/// some scenarios and its merge record them all.
pub fn measure_costs(dir: &Path, options: &ProfileOptions, device: &Device) -> Result<MeasuredCosts, CostError> {
    check_options(options)?;
    let library = Library::open(dir)?;
    let parent = library.manifest.parent.config.clone();
    let selected = selected_candidates(&library, options)?;
    let choices = space_choices(&library);
    let calibrate = options.selection.is_all();
    let mut distinct: Vec<BlockConfig> = Vec::new();
    let space_blocks = choices.iter().flatten().filter(|_| calibrate);
    for block in space_blocks.chain(selected.iter().map(|(_, b)| b)) {
        if !distinct.contains(block) {
            distinct.push(*block);
        }
    }
    if options.target == Target::Cpu {
        let models = if calibrate && options.calibration_models >= 2 {
            options.calibration_models
        } else {
            0
        };
        let estimate = profile_estimate(&parent, &distinct, &options.scenarios, models);
        crate::memory_budget::check("profile", &estimate, PROFILE_ADVICE)?;
    }
    let bar = crate::progress::bar(options.progress, "scenarios profiled", 0, options.scenarios.len());
    let mut latency = Vec::new();
    let mut calibration = Vec::new();
    for scenario in &options.scenarios {
        bar.set_message(scenario.to_string());
        let config = long_enough(&parent, scenario.positions());
        let (model, checked) = match &options.target {
            Target::Cpu => measure_scenario(&config, &choices, &distinct, scenario, options, calibrate, device)?,
            Target::Gpu(hw) => (
                estimate_scenario(&config, &distinct, scenario, options.precision, hw),
                None,
            ),
        };
        latency.push(model);
        calibration.extend(checked);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(MeasuredCosts { latency, calibration })
}

/// Records measured costs (one latency model per scenario of `options`, in order) in the
/// library in `dir`: `stats` of `block_library.json` and `costs/`.
pub fn record_profile(
    dir: &Path,
    options: &ProfileOptions,
    measured: MeasuredCosts,
) -> Result<ProfileReport, CostError> {
    let library = Library::open(dir)?;
    let selected = selected_candidates(&library, options)?;
    let MeasuredCosts { latency, calibration } = measured;
    let rows = record_costs(&library, &selected, &latency, options)?;
    let costs_file = write_costs(&library, &rows, &latency, options)?;
    Ok(ProfileReport {
        library: dir.to_path_buf(),
        target: options.target.name().to_string(),
        precision: options.precision,
        scenarios: options.scenarios.clone(),
        rows,
        latency,
        calibration,
        costs_file,
    })
}

/// Block latencies measured on this backend, and (when `calibrate`) the whole-model correction
/// fitted on the parent and random children of the space.
fn measure_scenario(
    config: &ModelConfig,
    choices: &[Vec<BlockConfig>],
    distinct: &[BlockConfig],
    scenario: &Scenario,
    options: &ProfileOptions,
    calibrate: bool,
    device: &Device,
) -> Result<(LatencyModel, Option<CalibrationReport>), CostError> {
    let mut models = Vec::new();
    if calibrate && options.calibration_models >= 2 {
        models.push(("parent".to_string(), config.clone()));
        models.extend(random_children(config, choices, options.calibration_models - 1, 17));
    }
    let fit = (models.len() / 2).max(2).min(models.len());
    let report = measure_and_calibrate(config, distinct, &models, fit, scenario, options.repeats, device)?;
    let fitted = report.latency.clone();
    Ok((fitted, (!models.is_empty()).then_some(report)))
}

/// Block latencies from the roofline of a GPU of the table.
fn estimate_scenario(
    config: &ModelConfig,
    distinct: &[BlockConfig],
    scenario: &Scenario,
    precision: Precision,
    hw: &Hardware,
) -> LatencyModel {
    LatencyModel {
        scenario: *scenario,
        blocks: distinct
            .iter()
            .map(|b| {
                let estimate = estimate_block(config, b, scenario, precision, hw).expect("units checked");
                (*b, estimate.ms())
            })
            .collect(),
        outside_ms: estimate_outside(config, scenario, precision, hw)
            .expect("units checked")
            .ms(),
        offset_ms: 0.0,
    }
}

/// Writes each selected block's memory, KV bytes and latencies under `stats` in the library's
/// `block_library.json`; returns them as rows.
fn record_costs(
    library: &Library,
    selected: &[(LayerSpan, BlockConfig)],
    latency: &[LatencyModel],
    options: &ProfileOptions,
) -> Result<Vec<ProfileRow>, CostError> {
    let parent = &library.manifest.parent.config;
    let (target, precision) = (options.target.name(), options.precision);
    let path = block_library_path(&library.dir);
    let mut map = read_block_library(&path)?;
    let mut rows = Vec::new();
    for &(span, block) in selected {
        let name = block_name(&block);
        let memory = block_memory(parent, &block, precision);
        let runtime_ms: Vec<f64> = latency
            .iter()
            .map(|l| l.block_ms(&block).expect("every block was profiled"))
            .collect();
        let mib = memory.param_bytes as f64 / (1u64 << 20) as f64;
        let mut put = |key: &str, value: serde_json::Value| set_span_value(&mut map, span, &name, "stats", key, value);
        put(keys::NUM_PARAMS, json!(memory.num_params));
        put(keys::MEMORY_MIB, json!(mib));
        put(&keys::memory_mib(precision), json!(mib));
        put(keys::KV_BYTES_PER_TOKEN, json!(memory.kv_bytes_per_token));
        put(&keys::kv_bytes_per_token(precision), json!(memory.kv_bytes_per_token));
        put(keys::RUNTIME_MS, json!(runtime_ms[0]));
        for (scenario, ms) in options.scenarios.iter().zip(&runtime_ms) {
            put(&keys::runtime_ms(target, precision, scenario), json!(ms));
        }
        rows.push(ProfileRow {
            span,
            block: name,
            num_params: memory.num_params,
            memory_mib: mib,
            kv_bytes_per_token: memory.kv_bytes_per_token,
            runtime_ms,
        });
    }
    write_block_library_map(&path, &map)?;
    Ok(rows)
}

/// Writes `costs/<target>_<precision>.{csv,parquet}` (the rows) and `.json` (the latency models
/// with what lies outside the blocks); returns the JSON's path.
fn write_costs(
    library: &Library,
    rows: &[ProfileRow],
    latency: &[LatencyModel],
    options: &ProfileOptions,
) -> Result<PathBuf, CostError> {
    let (target, precision) = (options.target.name(), options.precision.name());
    let costs_dir = library.dir.join("costs");
    std::fs::create_dir_all(&costs_dir).map_err(|cause| CostError::Io {
        path: costs_dir.clone(),
        cause,
    })?;
    let stem = costs_dir.join(format!("{target}_{precision}"));
    let int = |f: fn(&ProfileRow) -> usize| Values::Int(rows.iter().map(|r| f(r) as i64).collect());
    let mut columns = vec![
        ("layer", int(|r| r.span.first)),
        ("last_layer", int(|r| r.span.last)),
        ("block", Values::Text(rows.iter().map(|r| r.block.clone()).collect())),
        ("num_params", int(|r| r.num_params)),
        ("memory_mib", Values::Float(rows.iter().map(|r| r.memory_mib).collect())),
        ("kv_bytes_per_token", int(|r| r.kv_bytes_per_token)),
    ];
    let names: Vec<String> = options.scenarios.iter().map(|s| format!("runtime_ms_{s}")).collect();
    for (i, name) in names.iter().enumerate() {
        columns.push((
            name.as_str(),
            Values::Float(rows.iter().map(|r| r.runtime_ms[i]).collect()),
        ));
    }
    write_table(&stem, columns).map_err(LibraryError::from)?;
    let costs_file = stem.with_extension("json");
    let costs = CostsFile {
        target: target.to_string(),
        precision: options.precision,
        latency: latency.to_vec(),
    };
    std::fs::write(
        &costs_file,
        serde_json::to_string_pretty(&costs).expect("costs serialise"),
    )
    .map_err(|cause| CostError::Io {
        path: costs_file.clone(),
        cause,
    })?;
    Ok(costs_file)
}

impl std::fmt::Display for ProfileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.scenarios.iter().map(|s| format!("{s} ms")).collect();
        writeln!(
            f,
            "{:<6} {:<24} {:>10} {:>10} {:>9} {}",
            "layer",
            "block",
            "params",
            "MiB",
            "KV B/tok",
            names.iter().map(|n| format!("{n:>22}")).collect::<String>()
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<6} {:<24} {:>10} {:>10.4} {:>9} {}",
                r.span.to_string(),
                r.block,
                r.num_params,
                r.memory_mib,
                r.kv_bytes_per_token,
                r.runtime_ms.iter().map(|ms| format!("{ms:>22.4}")).collect::<String>()
            )?;
        }
        for (latency, name) in self.latency.iter().zip(&names) {
            writeln!(
                f,
                "{name}: outside the blocks {:.4} ms; whole model = blocks + outside + {:.4} ms",
                latency.outside_ms, latency.offset_ms
            )?;
        }
        for calibration in &self.calibration {
            writeln!(f, "calibration, {}:", calibration.latency.scenario)?;
            for m in &calibration.models {
                writeln!(
                    f,
                    "  {:<10} {:<6} predicted {:>9.3} ms  measured {:>9.3} ms  error {:>+6.1}%",
                    m.name,
                    if m.fitted { "fit" } else { "check" },
                    m.predicted_ms,
                    m.measured_ms,
                    m.error_pct
                )?;
            }
            writeln!(
                f,
                "  mean |error| over checked models: {:.1}% (sum of blocks alone: {:.1}%)",
                calibration.mean_abs_error_pct, calibration.raw_mean_abs_error_pct
            )?;
            if calibration.is_noisy() {
                writeln!(
                    f,
                    "  too noisy to trust: rounds spread {:.0}% of their median (more than {:.0}%); \
                     profile again on a quiet machine or with more --repeats",
                    calibration.spread_pct,
                    crate::cost::predict::NOISY_SPREAD_PCT
                )?;
            }
        }
        writeln!(
            f,
            "written to {} and {}",
            self.library.join("block_library.json").display(),
            self.costs_file.display()
        )
    }
}
