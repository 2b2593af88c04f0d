//! Which runs of layers may be fused and which are worth it. A run `first..=last` may be fused
//! when every member after the first has no attention and every member's FFN is SwiGLU or
//! removed; its dependency figures are `M_max` and `M_sum` over the run's sub-matrix. The
//! automatic choice takes, inside each maximal fusable run, the longest sub-run whose `M_max`
//! stays under a threshold (the smaller `M_sum` on ties) and repeats on what is left.

use serde::{Deserialize, Serialize};

use super::FusionError;
use super::dependency::DependencyMatrix;
use crate::checkpoint::LayerSpan;
use crate::model::{AttentionConfig, FfnConfig, ModelConfig};

/// A candidate run with its dependency figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub first: usize,
    pub last: usize,
    /// Largest dependency of a member on an earlier member.
    pub m_max: f64,
    /// Sum of the dependencies between members.
    pub m_sum: f64,
}

impl RunStats {
    pub fn span(&self) -> LayerSpan {
        LayerSpan {
            first: self.first,
            last: self.last,
        }
    }
}

/// Parses `"a-b,c-d"` (inclusive layer numbers) into spans, in order.
pub fn parse_runs(spec: &str) -> Result<Vec<LayerSpan>, FusionError> {
    let bad = |problem: String| FusionError::Spec {
        spec: spec.to_string(),
        problem,
    };
    let mut runs = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| bad(format!("`{part}` is not `first-last`")))?;
        let number = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("`{t}` in `{part}` is not a layer number")))
        };
        runs.push(LayerSpan {
            first: number(a)?,
            last: number(b)?,
        });
    }
    Ok(runs)
}

/// Why `span` of a model with `config` cannot be fused, if it cannot.
pub fn check_run(config: &ModelConfig, span: LayerSpan) -> Result<(), FusionError> {
    let fail = |problem: String| Err(FusionError::Run { span, problem });
    let layers = config.num_layers();
    if span.last < span.first {
        return fail("runs backwards".into());
    }
    if span.first == span.last {
        return fail("a run needs at least two layers".into());
    }
    if span.last >= layers {
        return fail(format!("the model has {layers} layers (0 to {})", layers - 1));
    }
    for layer in span.first..=span.last {
        let block = config.blocks[layer];
        if layer > span.first && block.attention != AttentionConfig::NoOp {
            return fail(format!(
                "layer {layer} still has attention ({:?}); only layers without attention join the FFN run before them",
                block.attention
            ));
        }
        if block.ffn == FfnConfig::Linear {
            return fail(format!("layer {layer}'s FFN is a linear map; only SwiGLU FFNs fuse"));
        }
    }
    if (span.first..=span.last).all(|l| config.blocks[l].ffn == FfnConfig::NoOp) {
        return fail("no member has an FFN".into());
    }
    Ok(())
}

/// The maximal runs of `config` that may be fused (two layers or more each).
pub fn eligible_runs(config: &ModelConfig) -> Vec<LayerSpan> {
    let mut runs = Vec::new();
    let mut first = 0;
    while first < config.num_layers() {
        let mut last = first;
        while last + 1 < config.num_layers() && check_run(config, LayerSpan { first, last: last + 1 }).is_ok() {
            last += 1;
        }
        if last > first {
            runs.push(LayerSpan { first, last });
        }
        first = last + 1;
    }
    runs
}

/// `M_max` and `M_sum` of `span` (the dependencies `M[i][j]`, `first <= i < j <= last`).
pub fn run_stats(matrix: &DependencyMatrix, span: LayerSpan) -> RunStats {
    let pairs: Vec<f64> = (span.first..=span.last)
        .flat_map(|i| (i + 1..=span.last).map(move |j| (i, j)))
        .map(|(i, j)| matrix.get(i, j))
        .collect();
    RunStats {
        first: span.first,
        last: span.last,
        m_max: pairs.iter().copied().fold(0.0, f64::max),
        m_sum: pairs.iter().sum(),
    }
}

/// The runs to fuse inside the maximal runs `eligible`: the longest sub-runs with
/// `M_max <= max_dependency`.
pub fn choose_runs(matrix: &DependencyMatrix, eligible: &[LayerSpan], max_dependency: f64) -> Vec<RunStats> {
    fn inside(matrix: &DependencyMatrix, span: LayerSpan, limit: f64, out: &mut Vec<RunStats>) {
        let best = (span.first..span.last)
            .flat_map(|first| (first + 1..=span.last).map(move |last| LayerSpan { first, last }))
            .map(|s| run_stats(matrix, s))
            .filter(|s| s.m_max <= limit)
            .max_by(|a, b| {
                (a.last - a.first)
                    .cmp(&(b.last - b.first))
                    .then(b.m_sum.total_cmp(&a.m_sum))
                    .then(b.first.cmp(&a.first))
            });
        let Some(best) = best else { return };
        if best.first > span.first + 1 {
            inside(
                matrix,
                LayerSpan {
                    first: span.first,
                    last: best.first - 1,
                },
                limit,
                out,
            );
        }
        let after = best.last + 1;
        out.push(best);
        if after < span.last {
            inside(
                matrix,
                LayerSpan {
                    first: after,
                    last: span.last,
                },
                limit,
                out,
            );
        }
    }
    let mut out = Vec::new();
    for &span in eligible {
        inside(matrix, span, max_dependency, &mut out);
    }
    out.sort_by_key(|r| r.first);
    out
}
