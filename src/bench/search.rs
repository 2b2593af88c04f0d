//! Search speed on generated libraries: every instance (a library, an objective, limits) searched
//! as `tessera search` does (the MIP and, unless told otherwise, the baselines, each answer
//! re-checked), the median time over repeats, and a Pareto sweep as `tessera pareto` runs it.
//! Libraries are random (`random`, the older benchmark: one instance each, KL with runtime at
//! half and memory at 60% of the parent's) or real-shaped (`puzzle-70b`, 16 blocks per layer;
//! `paper`, 54: ten instances each, KL or LM loss with runtime at 0.9, 0.7, 0.5, 0.4 and 0.3 of
//! the parent's and memory at 0.9). With `dump`, every library and instance is written out so
//! that `scripts/search_reference.py` solves the very same problems with python-mip. Knows the
//! search only through its public functions.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::search::synthetic::{RealShape, random_library, real_library};
use crate::search::{
    Limit, Objective, Problem, SearchError, SearchInput, SearchReport, SearchSpec, Sense, SolveOptions, SolverKind,
    Status, Sweep, search,
};

/// The kind of generated library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchShape {
    Random,
    Puzzle70b,
    Paper,
}

crate::named!(BenchShape {
    "random" => BenchShape::Random,
    "puzzle-70b" => BenchShape::Puzzle70b,
    "paper" => BenchShape::Paper,
});

#[derive(Clone, Debug)]
pub struct SearchBenchOptions {
    pub solver: SolverKind,
    pub shape: BenchShape,
    pub layers: usize,
    /// Blocks per layer of random libraries (real shapes fix their own).
    pub variants: usize,
    pub libraries: usize,
    /// Times each instance is searched; the median is reported.
    pub repeats: usize,
    pub sweep_points: usize,
    pub baselines: bool,
}

impl Default for SearchBenchOptions {
    fn default() -> Self {
        Self {
            solver: SolverKind::Cbc,
            shape: BenchShape::Random,
            layers: 80,
            variants: 16,
            libraries: 21,
            repeats: 3,
            sweep_points: 50,
            baselines: true,
        }
    }
}

/// One library searched under one objective and set of limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceResult {
    pub library: u64,
    pub objective: String,
    /// Each limit as (library key, bound).
    pub limits: Vec<(String, f64)>,
    /// The whole search (MIP, baselines, checks), median over the repeats.
    pub search_ms: f64,
    /// The MIP alone, within the same searches.
    pub mip_ms: f64,
    /// Each baseline, within the same searches (absent: it found nothing feasible).
    pub baselines_ms: BTreeMap<String, f64>,
    pub optimum: f64,
    pub status: Status,
    pub undominated: usize,
    /// Candidates the MIP solver saw after the bound ruled the rest out (0: none needed).
    pub variables: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchBench {
    pub solver: SolverKind,
    pub shape: BenchShape,
    pub layers: usize,
    pub blocks_per_layer: usize,
    pub repeats: usize,
    pub baselines: bool,
    pub instances: Vec<InstanceResult>,
    pub total_search_ms: f64,
    pub median_search_ms: f64,
    pub max_search_ms: f64,
    pub median_mip_ms: f64,
    pub sweep_points: usize,
    /// The sweep's runtime limit as a share of the parent's, from and to.
    pub sweep_shares: (f64, f64),
    pub sweep_s: f64,
    /// The sweep's optimum at each point (none where infeasible).
    pub sweep_optima: Vec<Option<f64>>,
}

/// An instance before it is searched: objective key, runtime share, memory share.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub objective: &'static str,
    pub runtime: f64,
    pub memory: f64,
}

impl Setting {
    /// The limits of this setting on `problem` (see [`bench_limits`]).
    pub fn limits(&self, problem: &Problem) -> Result<Vec<Limit>, SearchError> {
        bench_limits(problem, self.runtime, self.memory)
    }
}

impl BenchShape {
    fn real(self) -> Option<RealShape> {
        match self {
            BenchShape::Random => None,
            BenchShape::Puzzle70b => Some(RealShape::puzzle_70b()),
            BenchShape::Paper => Some(RealShape::paper()),
        }
    }

    fn library(self, layers: usize, variants: usize, seed: u64) -> Map<String, Value> {
        match self.real() {
            None => random_library(layers, variants, seed),
            Some(shape) => real_library(layers, &shape, seed),
        }
    }

    /// The instances searched on each library of this shape.
    pub fn settings(self) -> Vec<Setting> {
        match self {
            BenchShape::Random => vec![Setting {
                objective: "metrics.kl_div",
                runtime: 0.5,
                memory: 0.6,
            }],
            _ => ["metrics.kl_div", "metrics.lm_loss"]
                .into_iter()
                .flat_map(|objective| {
                    [0.9, 0.7, 0.5, 0.4, 0.3].map(|runtime| Setting {
                        objective,
                        runtime,
                        memory: 0.9,
                    })
                })
                .collect(),
        }
    }

    /// The sweep: KL with runtime from and to these shares of the parent's, and memory's share.
    fn sweep(self) -> (f64, f64, f64) {
        match self {
            BenchShape::Random => (0.3, 0.8, 0.6),
            _ => (0.3, 0.9, 0.9),
        }
    }
}

/// Runtime and memory limits at these shares of the parent's totals.
pub fn bench_limits(problem: &Problem, runtime_share: f64, memory_share: f64) -> Result<Vec<Limit>, SearchError> {
    let parent = problem.parent_choice()?;
    let runtime = Limit::raw("stats.runtime_ms", Sense::AtMost, 0.0);
    let memory = Limit::raw("stats.memory_mib", Sense::AtMost, 0.0);
    Ok(vec![
        Limit {
            bound: runtime_share * runtime.total(problem, &parent)?,
            ..runtime
        },
        Limit {
            bound: memory_share * memory.total(problem, &parent)?,
            ..memory
        },
    ])
}

fn spec(options: &SearchBenchOptions, objective: &str, limits: Vec<Limit>) -> SearchSpec {
    let objective = Objective {
        key: objective.into(),
        maximize: false,
    };
    SearchSpec {
        options: SolveOptions {
            solver: options.solver,
            ..SolveOptions::default()
        },
        baselines: options.baselines,
        ..SearchSpec::raw(objective, limits)
    }
}

fn pairs(limits: &[Limit]) -> Vec<(String, f64)> {
    limits.iter().map(|l| (l.name.clone(), l.bound)).collect()
}

/// One instance searched `repeats` times: medians of the whole search and of its parts.
fn time_instance(input: &SearchInput, spec: &SearchSpec, repeats: usize) -> Result<(f64, SearchReport), SearchError> {
    let mut times = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..repeats.max(1) {
        let began = Instant::now();
        let report = search(input, spec)?;
        times.push(began.elapsed().as_secs_f64() * 1e3);
        reports.push(report);
    }
    let median = crate::stats::median(&times);
    let at = times.iter().position(|&t| t == median).unwrap_or(0);
    Ok((median, reports.swap_remove(at)))
}

/// Runs the benchmark; with `dump`, also writes each library (`library_<seed>.json`) and the
/// instances and sweep (`instances.json`) there.
pub fn bench_search(options: &SearchBenchOptions, dump: Option<&Path>) -> Result<SearchBench, SearchError> {
    let write = |name: &str, value: &Value| -> Result<(), SearchError> {
        let Some(dir) = dump else { return Ok(()) };
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&path, value.to_string()))
            .map_err(|cause| SearchError::Io { path, cause })
    };
    let mut instances = Vec::new();
    let mut blocks_per_layer = 0;
    for seed in 0..options.libraries as u64 {
        let map = options.shape.library(options.layers, options.variants, seed);
        let problem = Problem::from_map(Path::new("(generated)"), &map)?;
        blocks_per_layer = problem.candidates.len() / problem.layers;
        write(&format!("library_{seed}.json"), &Value::Object(map))?;
        let input = SearchInput { problem, library: None };
        for setting in options.shape.settings() {
            let limits = bench_limits(&input.problem, setting.runtime, setting.memory)?;
            let spec = spec(options, setting.objective, limits.clone());
            let (search_ms, report) = time_instance(&input, &spec, options.repeats)?;
            let best = &report.solutions[0];
            // Once more, untimed, for the candidate counts a search report does not carry.
            let solved = crate::search::solve(&input.problem, &spec.objective, &limits, &spec.options, None)?;
            instances.push(InstanceResult {
                library: seed,
                objective: setting.objective.into(),
                limits: pairs(&limits),
                search_ms,
                mip_ms: best.solve_ms,
                baselines_ms: report
                    .baselines
                    .iter()
                    .map(|b| (b.method.clone(), b.solve_ms))
                    .collect(),
                optimum: best.objective,
                status: best.status,
                undominated: solved[0].undominated,
                variables: solved[0].variables,
            });
        }
    }
    let (from, to, memory) = options.shape.sweep();
    let map = options.shape.library(options.layers, options.variants, 1000);
    let problem = Problem::from_map(Path::new("(generated)"), &map)?;
    write("library_sweep.json", &Value::Object(map))?;
    let limits = bench_limits(&problem, 1.0, memory)?;
    let input = SearchInput { problem, library: None };
    let spec = spec(options, "metrics.kl_div", limits.clone());
    let range = Sweep {
        key: "stats.runtime_ms".into(),
        from: limits[0].bound * from,
        to: limits[0].bound * to,
        steps: options.sweep_points,
    };
    let began = Instant::now();
    let points = crate::search::sweep(&input, &spec, &range, false)?;
    let sweep_s = began.elapsed().as_secs_f64();
    write(
        "instances.json",
        &json!({
            "instances": instances.iter().map(|i| json!({
                "library": i.library, "objective": i.objective, "limits": i.limits,
            })).collect::<Vec<_>>(),
            "sweep": { "objective": "metrics.kl_div", "limits": pairs(&limits), "key": range.key, "values": range.values() },
        }),
    )?;
    let search: Vec<f64> = instances.iter().map(|i| i.search_ms).collect();
    let mip: Vec<f64> = instances.iter().map(|i| i.mip_ms).collect();
    Ok(SearchBench {
        solver: options.solver,
        shape: options.shape,
        layers: options.layers,
        blocks_per_layer,
        repeats: options.repeats,
        baselines: options.baselines,
        total_search_ms: search.iter().sum(),
        median_search_ms: crate::stats::median(&search),
        max_search_ms: search.iter().copied().fold(0.0, f64::max),
        median_mip_ms: crate::stats::median(&mip),
        instances,
        sweep_points: options.sweep_points,
        sweep_shares: (from, to),
        sweep_s,
        sweep_optima: points
            .iter()
            .map(|p| p.report.as_ref().map(|r| r.solutions[0].objective))
            .collect(),
    })
}

impl std::fmt::Display for SearchBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} on {} libraries, {} layers x {} blocks, median of {} runs per instance{}:",
            self.solver,
            self.shape,
            self.layers,
            self.blocks_per_layer,
            self.repeats,
            if self.baselines { ", baselines on" } else { "" }
        )?;
        writeln!(
            f,
            "  {:>3} {:<16} {:>8} {:>8}  {:>10} {:>9} {:>8} {:>7}  {:>16}  baselines ms",
            "lib", "objective", "runtime", "memory", "search ms", "MIP ms", "vars", "in MIP", "optimum"
        )?;
        for i in &self.instances {
            let baselines: Vec<String> = i.baselines_ms.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            writeln!(
                f,
                "  {:>3} {:<16} {:>8.2} {:>8.0}  {:>10.2} {:>9.2} {:>8} {:>7}  {:>16.9}  {}",
                i.library,
                i.objective,
                i.limits[0].1,
                i.limits[1].1,
                i.search_ms,
                i.mip_ms,
                i.undominated,
                i.variables,
                i.optimum,
                baselines.join(", ")
            )?;
        }
        write!(
            f,
            "  total {:.1} ms over {} searches (median {:.2}, max {:.2}; MIP median {:.2}); {}-point sweep ({}-{} x the parent's runtime) {:.3} s",
            self.total_search_ms,
            self.instances.len(),
            self.median_search_ms,
            self.max_search_ms,
            self.median_mip_ms,
            self.sweep_points,
            self.sweep_shares.0,
            self.sweep_shares.1,
            self.sweep_s
        )
    }
}
