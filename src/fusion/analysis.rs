//! `tessera fuse analyze`: the dependency matrix of a model on held-out windows, the figures of
//! every run that may be fused, and the runs the automatic choice takes; written as tables
//! (`dependency.csv`, `runs.csv` / `.parquet`) and `analysis.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dependency::{DependencyMatrix, dependency_matrix};
use super::runs::{RunStats, choose_runs, eligible_runs, run_stats};
use crate::checkpoint::LayerSpan;
use crate::model::{ForwardError, Llama};
use crate::table::{TableError, Values, write_table};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FusionAnalysis {
    pub matrix: DependencyMatrix,
    /// Every sub-run (two layers or more) of the maximal fusable runs.
    pub candidates: Vec<RunStats>,
    pub max_dependency: f64,
    /// The runs the automatic choice fuses.
    pub chosen: Vec<RunStats>,
}

/// Analyses `model` on `windows`; runs with `M_max <= max_dependency` may be chosen.
pub fn analyze(model: &Llama, windows: &[Vec<u32>], max_dependency: f64) -> Result<FusionAnalysis, ForwardError> {
    let matrix = dependency_matrix(model, windows)?;
    let eligible = eligible_runs(model.config());
    let candidates = eligible
        .iter()
        .flat_map(|span| {
            (span.first..span.last)
                .flat_map(move |first| (first + 1..=span.last).map(move |last| LayerSpan { first, last }))
        })
        .map(|span| run_stats(&matrix, span))
        .collect();
    let chosen = choose_runs(&matrix, &eligible, max_dependency);
    Ok(FusionAnalysis {
        matrix,
        candidates,
        max_dependency,
        chosen,
    })
}

/// Writes `dependency.csv` (row `i`, one column per layer `j`), `runs.csv` / `.parquet` and
/// `analysis.json` into `dir`.
pub fn write_analysis(dir: &Path, analysis: &FusionAnalysis) -> Result<(), TableError> {
    let fail = |path: &Path, e: std::io::Error| TableError {
        path: path.to_path_buf(),
        problem: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let layers = analysis.matrix.layers;
    let mut csv = String::from("layer");
    for j in 0..layers {
        csv.push_str(&format!(",{j}"));
    }
    csv.push('\n');
    for (i, row) in analysis.matrix.values.rows().into_iter().enumerate() {
        csv.push_str(&i.to_string());
        for (j, value) in row.iter().enumerate() {
            if j > i {
                csv.push_str(&format!(",{value:.6}"));
            } else {
                csv.push(',');
            }
        }
        csv.push('\n');
    }
    let matrix_path = dir.join("dependency.csv");
    std::fs::write(&matrix_path, csv).map_err(|e| fail(&matrix_path, e))?;
    let runs = &analysis.candidates;
    let chosen: Vec<i64> = runs
        .iter()
        .map(|r| analysis.chosen.iter().any(|c| c.span() == r.span()) as i64)
        .collect();
    write_table(
        &dir.join("runs"),
        vec![
            ("first", Values::Int(runs.iter().map(|r| r.first as i64).collect())),
            ("last", Values::Int(runs.iter().map(|r| r.last as i64).collect())),
            ("m_max", Values::Float(runs.iter().map(|r| r.m_max).collect())),
            ("m_sum", Values::Float(runs.iter().map(|r| r.m_sum).collect())),
            ("chosen", Values::Int(chosen)),
        ],
    )?;
    let json_path = dir.join("analysis.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(analysis).expect("the analysis serialises"),
    )
    .map_err(|e| fail(&json_path, e))
}
