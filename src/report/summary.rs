//! The table a run ends with: the parent against the child as assembled and as finally trained —
//! quality (KL to the parent, task accuracy with thinking on and off), measured request time and
//! memory. Holds figures; measures nothing.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelRow {
    pub model: String,
    pub layers: usize,
    pub params: usize,
    /// KV-cache bytes per token of context, bf16.
    pub kv_bytes_per_token: usize,
    /// Median whole-request time, measured.
    pub request_ms: f64,
    /// Parent's request time over this model's.
    pub speedup: f64,
    /// Mean KL(parent ‖ model) per token on held-out windows, nats.
    pub kl_to_parent: f64,
    pub accuracy_on: f64,
    pub accuracy_off: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub rows: Vec<ModelRow>,
    /// Held-out tasks behind each accuracy.
    pub eval_tasks: usize,
    /// What one timed request is.
    pub request: String,
}

impl Summary {
    pub const HEADERS: [&'static str; 9] = [
        "model",
        "layers",
        "params",
        "KV B/token",
        "request ms",
        "speedup",
        "KL to parent",
        "acc. on",
        "acc. off",
    ];

    /// Each row's cells, formatted as in [`Self::HEADERS`].
    pub fn cells(&self) -> Vec<[String; 9]> {
        self.rows
            .iter()
            .map(|r| {
                [
                    r.model.clone(),
                    r.layers.to_string(),
                    format!("{:.2}M", r.params as f64 / 1e6),
                    r.kv_bytes_per_token.to_string(),
                    format!("{:.1}", r.request_ms),
                    format!("{:.2}x", r.speedup),
                    format!("{:.4}", r.kl_to_parent),
                    format!("{:.1}%", 100.0 * r.accuracy_on),
                    format!("{:.1}%", 100.0 * r.accuracy_off),
                ]
            })
            .collect()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cells = self.cells();
        let widths: Vec<usize> = (0..Self::HEADERS.len())
            .map(|c| {
                cells
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([Self::HEADERS[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |f: &mut std::fmt::Formatter<'_>, row: &[String]| {
            let padded: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, w))| {
                    if c == 0 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            writeln!(f, "  {}", padded.join("  "))
        };
        line(f, &Self::HEADERS.map(String::from))?;
        for row in &cells {
            line(f, row)?;
        }
        write!(
            f,
            "  (accuracy on {} held-out tasks, greedy; request: {})",
            self.eval_tasks, self.request
        )
    }
}
