//! Search answers checked on this machine: each chosen child is assembled from the library's
//! trained blocks and timed end to end against the parent on whole requests of the constraint
//! file's scenario (prefill, then every generated token through the cache), all interleaved in
//! the same rounds, so measured speedups and latencies stand next to the predicted ones. A
//! speedup is the median over rounds of the parent's time over the child's in the same round,
//! with the interval where that median would likely fall in another set of rounds. The models
//! are built one layer at a time from the stored parent and the library, after an estimate of
//! what they will hold says they fit.

use std::path::Path;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::SearchError;
use super::constraints::ConstraintFile;
use super::outside::SearchInput;
use super::run::SolutionReport;
use crate::checkpoint::TensorSource;
use crate::cost::measure::{Runner, Timing, request_runner, summarise, time_rounds};
use crate::cost::{Precision, model_kv_bytes_per_token};
use crate::library::{AssembledChild, LibraryError};
use crate::memory_budget::Estimate;
use crate::model::{Llama, ModelConfig};
use crate::stats::{median, median_interval};

const F32: usize = 4;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildCheck {
    pub blocks: Vec<String>,
    pub batch_size: usize,
    pub predicted_ms: f64,
    pub measured: Timing,
    /// (predicted − measured) / measured, in percent.
    pub error_pct: f64,
    pub predicted_speedup: f64,
    /// The median over rounds of the parent's request time at this batch size over the child's.
    pub measured_speedup: f64,
    /// ~95% interval of `measured_speedup` (see `stats::median_interval`).
    #[serde(default)]
    pub speedup_interval: (f64, f64),
    /// ~95% interval of the child's median request time.
    #[serde(default)]
    pub ms_interval: (f64, f64),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParentTiming {
    pub batch_size: usize,
    pub predicted_ms: f64,
    pub measured: Timing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildChecks {
    pub parents: Vec<ParentTiming>,
    pub children: Vec<ChildCheck>,
    /// Mean |error| of the children's predicted request times.
    pub mean_abs_error_pct: f64,
}

/// What timing `children` (each with its batch size) against `parent` at `parent_batches` holds
/// at its peak, from their configs alone: every model at once (f32, built one layer at a time
/// from the stored parent and the library: see [`AssembledChild::making_bytes`]), and one
/// request at a time: the largest KV cache at `prompt + generated` positions and the prefill's
/// logits.
pub fn check_estimate(
    parent: &ModelConfig,
    parent_batches: &[usize],
    children: &[(ModelConfig, usize)],
    widest_span: usize,
    prompt: usize,
    generated: usize,
) -> Estimate {
    let params: usize = parent.num_params() + children.iter().map(|(c, _)| c.num_params()).sum::<usize>();
    let requests = parent_batches
        .iter()
        .map(|&b| (parent, b))
        .chain(children.iter().map(|(c, b)| (c, *b)));
    let (cache, logits) = requests
        .map(|(config, batch)| {
            let cache = model_kv_bytes_per_token(config, Precision::F32) * batch * (prompt + generated);
            (cache as u64, (batch * prompt * config.vocab_size * F32) as u64)
        })
        .fold((0, 0), |(c, l), (c2, l2)| (c.max(c2), l.max(l2)));
    Estimate::new()
        .with(
            format!("the parent and {} children (f32)", children.len()),
            (params * F32) as u64,
        )
        .with(
            "one tensor being made",
            AssembledChild::making_bytes(parent, widest_span),
        )
        .with("one request's KV cache", cache)
        .with("its prefill's logits", logits)
}

/// What to change when timing children does not fit.
pub const CHECK_ADVICE: &str = "smaller batches in the constraint file's scenario, a search without --measure (then \
`tessera assemble` and `tessera bench request` the child), or more memory: the parent and the child are whole models while timed";

/// Assembles each solution's child from the library at `dir` and times them all against the
/// parent over `rounds` interleaved rounds; refused before the parent is read when the models
/// will not fit in memory.
pub fn check_on_cpu(
    dir: &Path,
    file: &ConstraintFile,
    solutions: &[&SolutionReport],
    rounds: usize,
    device: &Device,
) -> Result<ChildChecks, SearchError> {
    let fail = |problem: String| SearchError::Library {
        path: dir.to_path_buf(),
        problem,
    };
    let input = SearchInput::open(dir)?;
    let problem = &input.problem;
    let library = input
        .library
        .as_ref()
        .ok_or_else(|| fail("not a tessera library directory (no manifest.json)".into()))?;
    let target = file.target().map_err(|e| SearchError::Options(e.to_string()))?;
    let outside = input.outside(target.name(), file.target.dtype)?;
    let (prompt, generated) = (file.scenario.prompt_tokens, file.scenario.generated_tokens);

    let mut batches: Vec<usize> = solutions.iter().map(|s| s.batch_size.unwrap_or(1)).collect();
    batches.sort_unstable();
    batches.dedup();
    let child_configs = solutions
        .iter()
        .map(|s| Ok((library.child_config(&s.choice)?, s.batch_size.unwrap_or(1))))
        .collect::<Result<Vec<_>, LibraryError>>()
        .map_err(|e| fail(e.to_string()))?;
    let widest_span = solutions
        .iter()
        .flat_map(|s| s.choice.iter().map(|(span, _)| span.layers()))
        .max()
        .unwrap_or(1);
    let parent_config = &library.manifest.parent.config;
    let estimate = check_estimate(parent_config, &batches, &child_configs, widest_span, prompt, generated);
    crate::memory_budget::check("timing the chosen children", &estimate, CHECK_ADVICE)?;

    let parent = library.stored_parent(None).map_err(|e| fail(e.to_string()))?;
    let mut children = Vec::new();
    for solution in solutions {
        let choice = problem.choice_of(&solution.choice)?;
        let names = solution
            .choice
            .iter()
            .map(|(span, name)| format!("layer_{span}: {name}"))
            .collect::<Vec<_>>();
        let model = library
            .assemble_stored(&parent, &solution.choice)
            .map_err(|e| fail(e.to_string()))?
            .build_model(device)
            .map_err(|e| fail(e.to_string()))?;
        let batch = solution.batch_size.unwrap_or(1);
        let predicted = file.request_ms(batch, problem, &outside, &choice)?;
        children.push((names, batch, predicted, model));
    }
    let parent_model = parent.build_model(device).map_err(|e| fail(e.to_string()))?;
    let models: Vec<(&Llama, usize)> = batches
        .iter()
        .map(|&b| (&parent_model, b))
        .chain(children.iter().map(|(_, b, _, model)| (model, *b)))
        .collect();
    let runners = models
        .iter()
        .map(|&(model, batch)| request_runner(model, batch, prompt, generated))
        .collect::<Result<Vec<Runner>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let rounds_ms = time_rounds(&runners, rounds);
    drop(runners);
    let timings: Vec<Timing> = rounds_ms.iter().cloned().map(summarise).collect();
    let parent_choice = problem.parent_choice()?;
    let parents = batches
        .iter()
        .zip(&timings)
        .map(|(&batch, &measured)| {
            Ok(ParentTiming {
                batch_size: batch,
                predicted_ms: file.request_ms(batch, problem, &outside, &parent_choice)?,
                measured,
            })
        })
        .collect::<Result<Vec<_>, SearchError>>()?;
    let children: Vec<ChildCheck> = children
        .into_iter()
        .zip(&timings[batches.len()..])
        .zip(&rounds_ms[batches.len()..])
        .map(|(((blocks, batch, predicted_ms, _), &measured), child_ms)| {
            let at = batches.iter().position(|&b| b == batch).expect("every batch was timed");
            let ratios: Vec<f64> = rounds_ms[at].iter().zip(child_ms).map(|(p, c)| p / c).collect();
            ChildCheck {
                blocks,
                batch_size: batch,
                predicted_ms,
                error_pct: 100.0 * (predicted_ms - measured.median_ms) / measured.median_ms,
                predicted_speedup: parents[at].predicted_ms / predicted_ms,
                measured_speedup: median(&ratios),
                speedup_interval: median_interval(&ratios),
                ms_interval: median_interval(child_ms),
                measured,
            }
        })
        .collect();
    let mean_abs_error_pct = children.iter().map(|c| c.error_pct.abs()).sum::<f64>() / children.len().max(1) as f64;
    Ok(ChildChecks {
        parents,
        children,
        mean_abs_error_pct,
    })
}
