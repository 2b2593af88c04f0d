//! Whole requests (a prefill, then one token at a time through the cache) of several models,
//! interleaved round by round so that a drifting machine shifts them alike: the median per
//! request and each model's speedup over the first.

use std::path::PathBuf;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, load_model};
use crate::cost::measure::{Runner, Timing, request_runner, time_interleaved};
use crate::model::ForwardError;

/// One request's shape and how many rounds to time.
#[derive(Clone, Copy, Debug)]
pub struct RequestShape {
    pub batch: usize,
    pub prompt: usize,
    pub generated: usize,
    pub rounds: usize,
}

impl Default for RequestShape {
    fn default() -> Self {
        Self {
            batch: 1,
            prompt: 128,
            generated: 128,
            rounds: 15,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRow {
    pub model: PathBuf,
    pub timing: Timing,
    /// The first model's median over this one's.
    pub speedup: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestBench {
    pub batch: usize,
    pub prompt: usize,
    pub generated: usize,
    pub rounds: usize,
    pub rows: Vec<RequestRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestBenchError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// Times whole requests of `models` interleaved.
pub fn bench_requests(
    models: &[PathBuf],
    shape: &RequestShape,
    device: &Device,
) -> Result<RequestBench, RequestBenchError> {
    let built = models
        .iter()
        .map(|m| load_model(m, device))
        .collect::<Result<Vec<_>, _>>()?;
    let runners = built
        .iter()
        .map(|m| request_runner(m, shape.batch, shape.prompt, shape.generated))
        .collect::<Result<Vec<Runner>, _>>()?;
    let timings = time_interleaved(&runners, shape.rounds);
    let rows = models
        .iter()
        .zip(&timings)
        .map(|(model, timing)| RequestRow {
            model: model.clone(),
            timing: *timing,
            speedup: timings[0].median_ms / timing.median_ms,
        })
        .collect();
    Ok(RequestBench {
        batch: shape.batch,
        prompt: shape.prompt,
        generated: shape.generated,
        rounds: shape.rounds,
        rows,
    })
}

impl std::fmt::Display for RequestBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "batch {}, prompt {}, {} generated tokens, {} rounds interleaved:",
            self.batch, self.prompt, self.generated, self.rounds
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<40} median {:>8.2} ms (min {:.2}, max {:.2})  {:.2}x",
                r.model.display(),
                r.timing.median_ms,
                r.timing.min_ms,
                r.timing.max_ms,
                r.speedup
            )?;
        }
        Ok(())
    }
}
