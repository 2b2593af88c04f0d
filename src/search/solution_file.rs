//! One solution read back from the `solutions.json` a search wrote, named on the command line
//! as `PATH` (the best solution), `PATH#k` (the k-th solution, from 0) or `PATH#method` (a
//! baseline, e.g. `#greedy`). Returns the solution's choice object, untouched.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::SearchError;

/// A chosen solution: where it came from and its `choice` (`{"layer_0": "kv2 + ffn384", …}`).
#[derive(Clone, Debug)]
pub struct SavedSolution {
    pub path: PathBuf,
    pub label: String,
    pub choice: Map<String, Value>,
}

/// Reads `PATH[#k|#method]`.
pub fn read_solution(spec: &str) -> Result<SavedSolution, SearchError> {
    let (path, pick) = match spec.rsplit_once('#') {
        Some((path, pick)) => (Path::new(path), Some(pick)),
        None => (Path::new(spec), None),
    };
    let fail = |problem: String| SearchError::Library {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|cause| SearchError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let report: Value = serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let list = |key: &str| -> Vec<Value> { report.get(key).and_then(Value::as_array).cloned().unwrap_or_default() };
    let (solutions, baselines) = (list("solutions"), list("baselines"));
    let (label, solution) = match pick {
        None | Some("") => ("solutions[0]".to_string(), solutions.first()),
        Some(k) => match k.parse::<usize>() {
            Ok(k) => (format!("solutions[{k}]"), solutions.get(k)),
            Err(_) => (
                format!("baseline {k}"),
                baselines
                    .iter()
                    .find(|b| b.get("method").and_then(Value::as_str) == Some(k)),
            ),
        },
    };
    let solution = solution.ok_or_else(|| {
        let methods: Vec<&str> = baselines
            .iter()
            .filter_map(|b| b.get("method").and_then(Value::as_str))
            .collect();
        fail(format!(
            "has no {label}: it holds {} solutions (#0 to #{}) and the baselines {methods:?}",
            solutions.len(),
            solutions.len().saturating_sub(1)
        ))
    })?;
    let choice = solution
        .get("choice")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| fail(format!("{label} has no `choice` object")))?;
    Ok(SavedSolution {
        path: path.to_path_buf(),
        label,
        choice,
    })
}
