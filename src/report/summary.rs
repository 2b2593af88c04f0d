//! The table a run ends with: the parent against the child as assembled, fused, distilled and
//! finally trained — quality (NLL and KL to the parent on held-out windows, KL on chats, task
//! accuracy with thinking on and off, format compliance), measured request time and memory —
//! and what fusion cost and bought. Holds figures; measures nothing.

use serde::{Deserialize, Serialize};

use crate::eval::ChatKl;

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
    /// Mean next-token NLL on the held-out windows, nats per token.
    pub held_out_nll: f64,
    /// Mean KL(parent ‖ model) per token on the held-out windows, nats.
    pub kl_to_parent: f64,
    /// Mean KL(parent ‖ model) per reply token on the parent's own replies to held-out prompts,
    /// thinking on and off.
    pub kl_chats: ChatKl,
    /// Multi-step tasks, thinking on.
    pub accuracy_on: f64,
    /// Multi-step tasks, thinking off.
    pub accuracy_off: f64,
    /// One-step tasks, thinking off.
    pub accuracy_off_direct: Option<f64>,
    /// Share of all replies whose think tags match the switch.
    pub format_ok: f64,
}

/// What fusing cost and bought: measured on the child before and after fusion, and on the
/// child distilled both ways.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FusionSummary {
    pub layers_before: usize,
    pub layers_after: usize,
    /// Unfused child's request time over the fused child's, measured in the same rounds.
    pub speedup: f64,
    /// KL to the parent on held-out windows, unfused then fused, before distillation.
    pub kl_before_distillation: [f64; 2],
    /// The same after distilling each (same data and steps).
    pub kl_after_distillation: [f64; 2],
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub rows: Vec<ModelRow>,
    /// Held-out tasks behind each accuracy.
    pub eval_tasks: usize,
    /// What one timed request is.
    pub request: String,
    /// The held-out windows behind the NLL and KL columns.
    #[serde(default)]
    pub windows: String,
    /// Present when the child was fused.
    pub fusion: Option<FusionSummary>,
}

impl Summary {
    pub const HEADERS: [&'static str; 14] = [
        "model",
        "layers",
        "params",
        "KV B/token",
        "request ms",
        "speedup",
        "NLL windows",
        "KL windows",
        "KL chat on",
        "KL chat off",
        "acc. on",
        "off multi",
        "off 1-step",
        "format",
    ];

    /// Each row's cells, formatted as in [`Self::HEADERS`].
    pub fn cells(&self) -> Vec<[String; 14]> {
        let percent = |x: f64| format!("{:.1}%", 100.0 * x);
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
                    format!("{:.4}", r.held_out_nll),
                    format!("{:.4}", r.kl_to_parent),
                    format!("{:.4}", r.kl_chats.on),
                    format!("{:.4}", r.kl_chats.off),
                    percent(r.accuracy_on),
                    percent(r.accuracy_off),
                    r.accuracy_off_direct.map_or("-".into(), percent),
                    percent(r.format_ok),
                ]
            })
            .collect()
    }
}

impl std::fmt::Display for FusionSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [before_unfused, before_fused] = self.kl_before_distillation;
        let [after_unfused, after_fused] = self.kl_after_distillation;
        write!(
            f,
            "Fusion: {} -> {} layers, {:.2}x faster by itself (measured); KL to the parent unfused -> fused {:.4} -> {:.4} before distillation, {:.4} -> {:.4} after",
            self.layers_before,
            self.layers_after,
            self.speedup,
            before_unfused,
            before_fused,
            after_unfused,
            after_fused
        )
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
        if let Some(fusion) = &self.fusion {
            writeln!(f, "  {fusion}")?;
        }
        write!(
            f,
            "  (accuracy on {} held-out tasks of each kind, greedy, thinking on and off (multi-step) and off (one-step); NLL and KL per token on {}, KL also on the parent's replies; request: {})",
            self.eval_tasks, self.windows, self.request
        )
    }
}
