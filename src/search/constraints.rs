//! Constraint files (`constraints/*.toml`, DESIGN §2): the target, the serving scenario, limits
//! in human units and raw limits on library keys, the objective and how many solutions. For each
//! batch size of the scenario they compile into linear limits on the library's `stats.*` keys:
//!
//! - a request of `prompt_tokens` then `generated_tokens` at batch b takes
//!   `T(b) = prefill(b, s = prompt) + generated · decode(b, c = prompt + generated / 2)` (the mean
//!   context over the decode steps; per-block costs are linear in the context), each the sum of
//!   the blocks' `stats.runtime_ms_<target>_<dtype>_<scenario>` plus what lies outside the blocks;
//! - throughput = b · generated / T(b); a throughput speedup is over the parent's best throughput
//!   over the batch sizes at which the parent fits the memory limit;
//! - latency = T(b) (a speedup compares with the parent at the same b); time to first token =
//!   prefill(b, s);
//! - memory per GPU = (parameter bytes + b · (prompt + generated) · KV bytes per token) / TP;
//!   KV-cache capacity K tokens means parameter bytes + K · KV bytes per token fit the memory limit
//!   (or the GPU's memory); latencies are taken as profiled, without tensor parallelism.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SearchError;
use super::limit::{Limit, Objective, Sense, parse_limits};
use super::outside::Outside;
use super::problem::{Choice, Problem};
use crate::cost::{Precision, Scenario, Target, keys};

/// How the limits on a whole request's time are named (`request_ms@b=8`).
const REQUEST_LIMIT: &str = "request_ms@b=";

/// Whether `limit` bounds a whole request's time (what the closed loop corrects).
pub fn is_request_limit(limit: &Limit) -> bool {
    limit.name.starts_with(REQUEST_LIMIT)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintFile {
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
    pub objective: String,
    #[serde(default)]
    pub maximize: bool,
    #[serde(default = "one")]
    pub solutions: usize,
    #[serde(default = "one")]
    pub min_diff: usize,
    pub time_limit_s: Option<f64>,
    pub gap: Option<f64>,
    /// Limits on any library key, as `"KEY<=V"`, `"KEY>=V"` or `"KEY=LOW..HIGH"`.
    #[serde(default)]
    pub raw: Vec<String>,
    pub target: TargetSection,
    pub scenario: ScenarioSection,
    #[serde(default)]
    pub limits: HumanLimits,
}

fn one() -> usize {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// `cpu` (or `measured`) or a GPU of the roofline table.
    pub hardware: String,
    pub dtype: Precision,
    #[serde(default = "one")]
    pub tensor_parallel: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    pub batch_sizes: Vec<usize>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanLimits {
    pub throughput_speedup: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub latency_speedup: Option<f64>,
    pub latency_ms: Option<f64>,
    pub time_to_first_token_ms: Option<f64>,
    pub memory_gib: Option<f64>,
    pub kv_cache_tokens: Option<f64>,
    pub max_params: Option<f64>,
}

impl HumanLimits {
    /// Sets the limit called `name`; false when there is none by that name.
    pub fn set(&mut self, name: &str, value: f64) -> bool {
        let slot = match name {
            "throughput_speedup" => &mut self.throughput_speedup,
            "tokens_per_second" => &mut self.tokens_per_second,
            "latency_speedup" => &mut self.latency_speedup,
            "latency_ms" => &mut self.latency_ms,
            "time_to_first_token_ms" => &mut self.time_to_first_token_ms,
            "memory_gib" => &mut self.memory_gib,
            "kv_cache_tokens" => &mut self.kv_cache_tokens,
            "max_params" => &mut self.max_params,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

impl ConstraintFile {
    pub fn read(path: &Path) -> Result<Self, SearchError> {
        let text = std::fs::read_to_string(path).map_err(|cause| SearchError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks the text of a constraint file; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SearchError> {
        let err = |key: &str, problem: String| SearchError::Constraints {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        let mut file: ConstraintFile = toml::from_str(text)
            .map_err(|e| err(&crate::config_file::toml_location(text, &e), e.message().to_string()))?;
        file.path = path.to_path_buf();
        if file.solutions == 0 {
            return Err(err("solutions", "must be at least 1".into()));
        }
        if file.target.tensor_parallel == 0 {
            return Err(err("target.tensor_parallel", "must be at least 1".into()));
        }
        file.target().map_err(|e| err("target.hardware", e.to_string()))?;
        for (key, value) in [("time_limit_s", file.time_limit_s), ("gap", file.gap)] {
            if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(err(key, "must be a non-negative number".into()));
            }
        }
        let s = &file.scenario;
        if s.batch_sizes.is_empty() {
            return Err(err("scenario.batch_sizes", "the list is empty".into()));
        }
        if s.batch_sizes.contains(&0) {
            return Err(err("scenario.batch_sizes", "a batch size must be at least 1".into()));
        }
        if s.prompt_tokens == 0 || s.generated_tokens == 0 {
            return Err(err(
                "scenario",
                "prompt_tokens and generated_tokens must be at least 1".into(),
            ));
        }
        let l = &file.limits;
        for (key, value) in [
            ("throughput_speedup", l.throughput_speedup),
            ("tokens_per_second", l.tokens_per_second),
            ("latency_speedup", l.latency_speedup),
            ("latency_ms", l.latency_ms),
            ("time_to_first_token_ms", l.time_to_first_token_ms),
            ("memory_gib", l.memory_gib),
            ("kv_cache_tokens", l.kv_cache_tokens),
            ("max_params", l.max_params),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(err(
                    &format!("limits.{key}"),
                    format!("{} is not a positive number", value.unwrap_or_default()),
                ));
            }
        }
        for (i, text) in file.raw.iter().enumerate() {
            parse_limits(text).map_err(|e| err(&format!("raw[{i}]"), e.to_string()))?;
        }
        Ok(file)
    }

    pub fn target(&self) -> Result<Target, crate::cost::profile::CostError> {
        let name = if self.target.hardware == "measured" {
            "cpu"
        } else {
            &self.target.hardware
        };
        name.parse()
    }

    pub fn objective(&self) -> Objective {
        Objective {
            key: self.objective.clone(),
            maximize: self.maximize,
        }
    }

    fn runtime_key(&self, scenario: Scenario) -> String {
        let target = self.target().expect("checked when parsed");
        keys::stat(&keys::runtime_ms(target.name(), self.target.dtype, &scenario))
    }

    fn scenarios(&self, batch: usize) -> (Scenario, Scenario) {
        let s = &self.scenario;
        (
            Scenario::Prefill {
                batch,
                seq: s.prompt_tokens,
            },
            Scenario::Decode {
                batch,
                context: s.prompt_tokens + s.generated_tokens / 2,
            },
        )
    }

    /// `T(b)` as terms and the constant outside the blocks.
    fn request_terms(&self, batch: usize, outside: &Outside) -> (Vec<(String, f64)>, f64) {
        let (prefill, decode) = self.scenarios(batch);
        let g = self.scenario.generated_tokens as f64;
        (
            vec![(self.runtime_key(prefill), 1.0), (self.runtime_key(decode), g)],
            outside.latency_ms(&prefill) + g * outside.latency_ms(&decode),
        )
    }

    fn memory_terms(&self, kv_tokens: f64, outside: &Outside) -> (Vec<(String, f64)>, f64) {
        let dtype = self.target.dtype;
        let tp = self.target.tensor_parallel as f64;
        (
            vec![
                (keys::stat(&keys::memory_mib(dtype)), MIB / GIB / tp),
                (keys::stat(&keys::kv_bytes_per_token(dtype)), kv_tokens / GIB / tp),
            ],
            outside.params * dtype.bytes() as f64 / GIB / tp,
        )
    }

    /// Tokens the KV cache holds for a whole batch of requests.
    fn batch_tokens(&self, batch: usize) -> f64 {
        (batch * (self.scenario.prompt_tokens + self.scenario.generated_tokens)) as f64
    }

    /// Weights plus `kv_tokens` cached tokens within `gib` per GPU.
    fn memory_limit(&self, name: String, kv_tokens: f64, gib: f64, origin: String, outside: &Outside) -> Limit {
        let (terms, constant) = self.memory_terms(kv_tokens, outside);
        Limit {
            name,
            terms,
            constant,
            sense: Sense::AtMost,
            bound: gib,
            origin,
        }
    }

    fn total(problem: &Problem, choice: &Choice, terms: &[(String, f64)], constant: f64) -> Result<f64, SearchError> {
        let limit = Limit {
            name: String::new(),
            terms: terms.to_vec(),
            constant,
            sense: Sense::AtMost,
            bound: 0.0,
            origin: String::new(),
        };
        limit.total(problem, choice)
    }

    /// The parent's best throughput (tokens/s) over the batch sizes at which it fits the memory
    /// limit.
    fn parent_throughput(&self, problem: &Problem, outside: &Outside) -> Result<f64, SearchError> {
        let parent = problem.parent_choice()?;
        let mut best: Option<f64> = None;
        for &b in &self.scenario.batch_sizes {
            if let Some(limit) = self.limits.memory_gib {
                let (terms, constant) = self.memory_terms(self.batch_tokens(b), outside);
                if Self::total(problem, &parent, &terms, constant)? > limit {
                    continue;
                }
            }
            let (terms, constant) = self.request_terms(b, outside);
            let ms = Self::total(problem, &parent, &terms, constant)?;
            let tps = (b * self.scenario.generated_tokens) as f64 * 1e3 / ms;
            best = Some(best.map_or(tps, |x: f64| x.max(tps)));
        }
        best.ok_or_else(|| SearchError::Constraints {
            path: self.path.clone(),
            key: "limits.throughput_speedup".into(),
            problem: "the parent fits memory_gib at none of the batch sizes, so it has no throughput to speed up"
                .into(),
        })
    }

    /// The limits at batch size `batch`.
    pub fn limits_at(&self, batch: usize, problem: &Problem, outside: &Outside) -> Result<Vec<Limit>, SearchError> {
        let mut limits = Vec::new();
        let l = &self.limits;
        let g = self.scenario.generated_tokens as f64;
        let (request, request_constant) = self.request_terms(batch, outside);
        let request_limit = |bound: f64, origin: String| Limit {
            name: format!("{REQUEST_LIMIT}{batch}"),
            terms: request.clone(),
            constant: request_constant,
            sense: Sense::AtMost,
            bound,
            origin,
        };
        let mut tokens_per_second = l.tokens_per_second;
        if let Some(speedup) = l.throughput_speedup {
            let parent = self.parent_throughput(problem, outside)?;
            tokens_per_second = Some(tokens_per_second.map_or(speedup * parent, |t| t.max(speedup * parent)));
        }
        if let Some(tps) = tokens_per_second {
            let origin = match l.throughput_speedup {
                Some(s) => format!("throughput ≥ {tps:.1} tokens/s ({s}× the parent's best)"),
                None => format!("throughput ≥ {tps:.1} tokens/s"),
            };
            limits.push(request_limit(batch as f64 * g * 1e3 / tps, origin));
        }
        if let Some(ms) = l.latency_ms {
            limits.push(request_limit(ms, format!("latency ≤ {ms} ms")));
        }
        if let Some(speedup) = l.latency_speedup {
            let parent = Self::total(problem, &problem.parent_choice()?, &request, request_constant)?;
            limits.push(request_limit(
                parent / speedup,
                format!("latency {speedup}× below the parent's {parent:.3} ms at b={batch}"),
            ));
        }
        if let Some(ms) = l.time_to_first_token_ms {
            let (prefill, _) = self.scenarios(batch);
            limits.push(Limit {
                name: format!("ttft_ms@b={batch}"),
                terms: vec![(self.runtime_key(prefill), 1.0)],
                constant: outside.latency_ms(&prefill),
                sense: Sense::AtMost,
                bound: ms,
                origin: format!("time to first token ≤ {ms} ms"),
            });
        }
        let capacity = l.memory_gib.or_else(|| match self.target() {
            Ok(Target::Gpu(hw)) => Some(hw.memory_bytes / GIB),
            _ => None,
        });
        if let Some(gib) = l.memory_gib {
            limits.push(self.memory_limit(
                format!("memory_gib@b={batch}"),
                self.batch_tokens(batch),
                gib,
                format!("memory ≤ {gib} GiB per GPU with the KV cache of the batch"),
                outside,
            ));
        }
        if let Some(tokens) = l.kv_cache_tokens {
            let gib = capacity.ok_or_else(|| SearchError::Constraints {
                path: self.path.clone(),
                key: "limits.kv_cache_tokens".into(),
                problem: "needs limits.memory_gib or a GPU target whose memory is known".into(),
            })?;
            limits.push(self.memory_limit(
                "memory_gib_with_kv_capacity".into(),
                tokens,
                gib,
                format!("{tokens} cached tokens fit in {gib} GiB"),
                outside,
            ));
        }
        if let Some(params) = l.max_params {
            limits.push(Limit {
                name: "num_params".into(),
                terms: vec![(keys::stat(keys::NUM_PARAMS), 1.0)],
                constant: outside.params,
                sense: Sense::AtMost,
                bound: params,
                origin: format!("parameters ≤ {params}"),
            });
        }
        for text in &self.raw {
            limits.extend(parse_limits(text)?);
        }
        Ok(limits)
    }

    /// The predicted request time `T(b)` of `choice`, in milliseconds.
    pub fn request_ms(
        &self,
        batch: usize,
        problem: &Problem,
        outside: &Outside,
        choice: &Choice,
    ) -> Result<f64, SearchError> {
        let (terms, constant) = self.request_terms(batch, outside);
        Self::total(problem, choice, &terms, constant)
    }

    /// The profiled scenarios the file needs (to name them when a library lacks them).
    pub fn needed_scenarios(&self) -> Vec<Scenario> {
        let mut out = Vec::new();
        for &b in &self.scenario.batch_sizes {
            let (p, d) = self.scenarios(b);
            out.extend([p, d]);
        }
        out
    }
}
