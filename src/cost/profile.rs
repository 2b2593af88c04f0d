//! `tessera profile`: the costs of every block of a library's search space for one target,
//! precision and set of scenarios, written into the library's `block_library.json` (`stats.*`)
//! and, with what lies outside the blocks and the whole-model correction, into
//! `costs/<target>_<precision>.json` (the per-block table also as `.csv` and `.parquet`). On
//! `cpu` latencies are measured and the correction is fitted on a few assembled children; on a
//! GPU from the table they are roofline estimates.

use std::path::PathBuf;

use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::memory::block_memory;
use super::precision::Precision;
use super::predict::{CalibrationReport, LatencyModel, measure_and_calibrate, random_children};
use super::roofline::{Hardware, estimate_block, estimate_outside, gpu_table};
use super::scenario::Scenario;
use crate::checkpoint::LayerSpan;
use crate::library::interchange::{block_library_path, read_block_library, set_span_value, write_block_library_map};
use crate::library::{Library, LibraryError, block_name};
use crate::model::{BlockConfig, ForwardError, ModelConfig};
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
    Forward(#[from] ForwardError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

/// Where latencies come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Measured on the running backend.
    Cpu,
    /// Estimated by the roofline of a GPU from the table.
    Gpu(Hardware),
}

impl std::str::FromStr for Target {
    type Err = CostError;

    fn from_str(name: &str) -> Result<Self, CostError> {
        if name == "cpu" {
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
    pub fn name(&self) -> &str {
        match self {
            Target::Cpu => "cpu",
            Target::Gpu(h) => &h.name,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProfileOptions {
    pub target: Target,
    pub precision: Precision,
    pub scenarios: Vec<Scenario>,
    /// Timed rounds per measurement (cpu).
    pub repeats: usize,
    /// Models (the parent and random children) measured end to end for the whole-model
    /// correction (cpu): a third (at least two) fit it, the rest check it.
    pub calibration_models: usize,
    pub progress: bool,
}

/// The costs of one block of the space.
#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    pub target: String,
    pub precision: Precision,
    pub scenarios: Vec<Scenario>,
    pub rows: Vec<ProfileRow>,
    pub latency: Vec<LatencyModel>,
    pub calibration: Vec<CalibrationReport>,
    pub costs_file: PathBuf,
}

fn progress_bar(show: bool, total: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} profiling [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// The distinct blocks of a search space, each layer's list in order.
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
            for &attention in &v.attention {
                for &ffn in &v.ffn {
                    let block = BlockConfig { attention, ffn };
                    if !blocks.contains(&block) {
                        blocks.push(block);
                    }
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

/// Profiles every block of `library`'s space and records the figures in the library.
pub fn profile_library(
    library: &Library,
    options: &ProfileOptions,
    device: &Device,
) -> Result<ProfileReport, CostError> {
    if options.scenarios.is_empty() {
        return Err(CostError::NoScenario);
    }
    match &options.target {
        Target::Cpu if options.precision != Precision::F32 => {
            return Err(CostError::CpuPrecision(options.precision.name()));
        }
        Target::Gpu(hw) if hw.peak(options.precision).is_none() => {
            return Err(CostError::NoUnits {
                target: hw.name.clone(),
                precision: options.precision.name(),
            });
        }
        _ => {}
    }
    let parent = library.manifest.parent.config.clone();
    let choices = space_choices(library);
    let candidates = library.candidates();
    let mut distinct: Vec<BlockConfig> = Vec::new();
    for block in choices.iter().flatten().chain(candidates.iter().map(|(_, b)| b)) {
        if !distinct.contains(block) {
            distinct.push(*block);
        }
    }
    let bar = progress_bar(options.progress, options.scenarios.len());
    let mut latency = Vec::new();
    let mut calibration = Vec::new();
    for scenario in &options.scenarios {
        bar.set_message(scenario.to_string());
        let config = long_enough(&parent, scenario.positions());
        let model = match &options.target {
            Target::Cpu => {
                let mut models = Vec::new();
                if options.calibration_models >= 2 {
                    models.push(("parent".to_string(), config.clone()));
                    models.extend(random_children(&config, &choices, options.calibration_models - 1, 17));
                }
                let fit = (models.len() / 3).max(2).min(models.len());
                let report =
                    measure_and_calibrate(&config, &distinct, &models, fit, scenario, options.repeats, device)?;
                let fitted = report.latency.clone();
                if !models.is_empty() {
                    calibration.push(report);
                }
                fitted
            }
            Target::Gpu(hw) => LatencyModel {
                scenario: *scenario,
                blocks: distinct
                    .iter()
                    .map(|b| {
                        let estimate =
                            estimate_block(&config, b, scenario, options.precision, hw).expect("checked above");
                        (*b, estimate.ms())
                    })
                    .collect(),
                outside_ms: estimate_outside(&config, scenario, options.precision, hw)
                    .expect("checked above")
                    .ms(),
                offset_ms: 0.0,
            },
        };
        latency.push(model);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let target = options.target.name().to_string();
    let precision = options.precision.name();
    let path = block_library_path(&library.dir);
    let mut map = read_block_library(&path)?;
    let mut rows = Vec::new();
    for &(span, block) in &candidates {
        let name = block_name(&block);
        let memory = block_memory(&parent, &block, options.precision);
        let runtime_ms: Vec<f64> = latency
            .iter()
            .map(|l| l.block_ms(&block).expect("every block was profiled"))
            .collect();
        let mib = memory.param_bytes as f64 / (1u64 << 20) as f64;
        let mut put =
            |key: String, value: serde_json::Value| set_span_value(&mut map, span, &name, "stats", &key, value);
        put("num_params".into(), json!(memory.num_params));
        put("memory_mib".into(), json!(mib));
        put(format!("memory_mib_{precision}"), json!(mib));
        put("kv_bytes_per_token".into(), json!(memory.kv_bytes_per_token));
        put(
            format!("kv_bytes_per_token_{precision}"),
            json!(memory.kv_bytes_per_token),
        );
        put("runtime_ms".into(), json!(runtime_ms[0]));
        for (scenario, ms) in options.scenarios.iter().zip(&runtime_ms) {
            put(format!("runtime_ms_{target}_{precision}_{scenario}"), json!(ms));
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
    let costs_dir = library.dir.join("costs");
    std::fs::create_dir_all(&costs_dir).map_err(|cause| CostError::Io {
        path: costs_dir.clone(),
        cause,
    })?;
    let stem = costs_dir.join(format!("{target}_{precision}"));
    let mut columns = vec![
        ("layer", Values::Int(rows.iter().map(|r| r.span.first as i64).collect())),
        (
            "last_layer",
            Values::Int(rows.iter().map(|r| r.span.last as i64).collect()),
        ),
        ("block", Values::Text(rows.iter().map(|r| r.block.clone()).collect())),
        (
            "num_params",
            Values::Int(rows.iter().map(|r| r.num_params as i64).collect()),
        ),
        ("memory_mib", Values::Float(rows.iter().map(|r| r.memory_mib).collect())),
        (
            "kv_bytes_per_token",
            Values::Int(rows.iter().map(|r| r.kv_bytes_per_token as i64).collect()),
        ),
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
        target: target.clone(),
        precision: options.precision,
        latency: latency.clone(),
    };
    std::fs::write(
        &costs_file,
        serde_json::to_string_pretty(&costs).expect("costs serialise"),
    )
    .map_err(|cause| CostError::Io {
        path: costs_file.clone(),
        cause,
    })?;
    Ok(ProfileReport {
        target,
        precision: options.precision,
        scenarios: options.scenarios.clone(),
        rows,
        latency,
        calibration,
        costs_file,
    })
}
