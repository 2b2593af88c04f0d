//! Solver speed on random libraries (the MIP of the search stage): time per solve to proven
//! optimality on `layers` × `variants` libraries with two resource limits, and the time of a
//! Pareto sweep of one of them, for CBC and optionally microlp.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::search::synthetic::random_library;
use crate::search::{
    Limit, Objective, Problem, SearchError, SearchInput, SearchSpec, Sense, SolveOptions, SolverKind, Status, Sweep,
    solve,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchBench {
    pub solver: SolverKind,
    pub layers: usize,
    pub variants: usize,
    pub libraries: usize,
    pub median_solve_ms: f64,
    pub max_solve_ms: f64,
    /// Variables left after dropping dominated candidates (median).
    pub median_variables: usize,
    pub sweep_points: usize,
    pub sweep_s: f64,
}

/// The limits the benchmark uses: runtime at `runtime_share` and memory at 60% of the parent's.
pub fn bench_limits(problem: &Problem, runtime_share: f64) -> Result<Vec<Limit>, SearchError> {
    let parent = problem.parent_choice()?;
    let runtime = Limit::raw("stats.runtime_ms", Sense::AtMost, 0.0);
    let memory = Limit::raw("stats.memory_mib", Sense::AtMost, 0.0);
    Ok(vec![
        Limit {
            bound: runtime_share * runtime.total(problem, &parent)?,
            ..runtime
        },
        Limit {
            bound: 0.6 * memory.total(problem, &parent)?,
            ..memory
        },
    ])
}

/// Runs the benchmark; with `dump`, also writes each library and its limits there
/// (`library_<seed>.json`, `limits_<seed>.json`, the sweep's as seed `sweep`) so that
/// `scripts/search_reference.py` solves the very same problems.
pub fn bench_search(
    solver: SolverKind,
    layers: usize,
    variants: usize,
    libraries: usize,
    sweep_points: usize,
    dump: Option<&Path>,
) -> Result<SearchBench, SearchError> {
    let write = |name: String, value: serde_json::Value| -> Result<(), SearchError> {
        let Some(dir) = dump else { return Ok(()) };
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&path, value.to_string()))
            .map_err(|cause| SearchError::Io { path, cause })
    };
    let limits_json =
        |limits: &[Limit]| serde_json::json!(limits.iter().map(|l| (l.name.clone(), l.bound)).collect::<Vec<_>>());
    let objective = Objective {
        key: "metrics.kl_div".into(),
        maximize: false,
    };
    let options = SolveOptions {
        solver,
        ..SolveOptions::default()
    };
    let mut times = Vec::new();
    let mut variables = Vec::new();
    for seed in 0..libraries as u64 {
        let map = random_library(layers, variants, seed);
        let problem = Problem::from_map(Path::new("(random)"), &map)?;
        let limits = bench_limits(&problem, 0.5)?;
        write(format!("library_{seed}.json"), serde_json::Value::Object(map))?;
        write(format!("limits_{seed}.json"), limits_json(&limits))?;
        let solved = solve(&problem, &objective, &limits, &options, None)?;
        let first = &solved[0];
        if first.status != Status::Optimal {
            return Err(SearchError::Solver(format!("library {seed}: not solved to optimality")));
        }
        times.push(first.solve_ms);
        variables.push(first.variables as f64);
    }
    let map = random_library(layers, variants, 1000);
    let problem = Problem::from_map(Path::new("(random)"), &map)?;
    let limits = bench_limits(&problem, 0.5)?;
    write("library_sweep.json".into(), serde_json::Value::Object(map))?;
    write("limits_sweep.json".into(), limits_json(&limits))?;
    let input = SearchInput { problem, library: None };
    let spec = SearchSpec {
        options,
        baselines: false,
        ..SearchSpec::raw(objective, limits.clone())
    };
    let range = Sweep {
        key: "stats.runtime_ms".into(),
        from: limits[0].bound * 0.6,
        to: limits[0].bound * 1.6,
        steps: sweep_points,
    };
    let began = Instant::now();
    let points = crate::search::sweep(&input, &spec, &range, false)?;
    let sweep_s = began.elapsed().as_secs_f64();
    debug_assert_eq!(points.len(), sweep_points);
    Ok(SearchBench {
        solver,
        layers,
        variants,
        libraries,
        median_solve_ms: crate::stats::median(&times),
        max_solve_ms: times.iter().copied().fold(0.0, f64::max),
        median_variables: crate::stats::median(&variables) as usize,
        sweep_points,
        sweep_s,
    })
}

impl std::fmt::Display for SearchBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} layers x {} variants, {} libraries: median {:.1} ms per solve to optimality (max {:.1}, {} variables after dominance); {}-point sweep {:.2} s",
            self.solver,
            self.layers,
            self.variants,
            self.libraries,
            self.median_solve_ms,
            self.max_solve_ms,
            self.median_variables,
            self.sweep_points,
            self.sweep_s
        )
    }
}
