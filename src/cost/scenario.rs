//! Serving scenarios a block is timed or estimated under: a prefill of `b` prompts of `s`
//! tokens, or one decode step of `b` sequences with `c` tokens already cached. Written
//! `prefill:b=8,s=256` and `decode:b=64,c=1024` on the command line.

use serde::{Deserialize, Serialize};

use super::measure::DECODE_STEPS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Scenario {
    Prefill { batch: usize, seq: usize },
    Decode { batch: usize, context: usize },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("scenario `{text}`: {problem} (write prefill:b=8,s=256 or decode:b=64,c=1024)")]
pub struct ScenarioError {
    pub text: String,
    pub problem: String,
}

impl std::str::FromStr for Scenario {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Self, ScenarioError> {
        let bad = |problem: String| ScenarioError {
            text: text.to_string(),
            problem,
        };
        let (phase, args) = text
            .split_once(':')
            .ok_or_else(|| bad("no `:` after the phase".into()))?;
        let mut values = std::collections::BTreeMap::new();
        for part in args.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not key=value")))?;
            let value: usize = value
                .trim()
                .parse()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| bad(format!("`{value}` is not a positive whole number")))?;
            if values.insert(key.trim().to_string(), value).is_some() {
                return Err(bad(format!("`{key}` is given twice")));
            }
        }
        let (second, make): (&str, fn(usize, usize) -> Scenario) = match phase.trim() {
            "prefill" => ("s", |batch, seq| Scenario::Prefill { batch, seq }),
            "decode" => ("c", |batch, context| Scenario::Decode { batch, context }),
            other => return Err(bad(format!("unknown phase `{other}`"))),
        };
        if let Some(key) = values.keys().find(|k| *k != "b" && *k != second) {
            return Err(bad(format!("unknown key `{key}`")));
        }
        let batch = *values.get("b").ok_or_else(|| bad("`b` is missing".into()))?;
        let other = *values
            .get(second)
            .ok_or_else(|| bad(format!("`{second}` is missing")))?;
        Ok(make(batch, other))
    }
}

impl std::fmt::Display for Scenario {
    /// The form used in `block_library.json` keys: `prefill_b8_s256`, `decode_b64_c1024`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scenario::Prefill { batch, seq } => write!(f, "prefill_b{batch}_s{seq}"),
            Scenario::Decode { batch, context } => write!(f, "decode_b{batch}_c{context}"),
        }
    }
}

/// The cached positions before the first of the measured decode steps around `context` (at
/// least one: a decode step needs a cache).
pub fn decode_start(context: usize) -> usize {
    context.max(DECODE_STEPS / 2 + 1) - DECODE_STEPS / 2
}

impl Scenario {
    /// As written on the command line (`prefill:b=8,s=256`).
    pub fn command_line(&self) -> String {
        match self {
            Scenario::Prefill { batch, seq } => format!("prefill:b={batch},s={seq}"),
            Scenario::Decode { batch, context } => format!("decode:b={batch},c={context}"),
        }
    }

    pub fn batch(&self) -> usize {
        match *self {
            Scenario::Prefill { batch, .. } | Scenario::Decode { batch, .. } => batch,
        }
    }

    /// Tokens processed in one pass: every prompt token, or one per sequence.
    pub fn tokens(&self) -> usize {
        match *self {
            Scenario::Prefill { batch, seq } => batch * seq,
            Scenario::Decode { batch, .. } => batch,
        }
    }

    /// Positions the model must hold when measured: the prompt, or the consecutive decode
    /// steps measured around the context (see `measure::DECODE_STEPS`).
    pub fn positions(&self) -> usize {
        match *self {
            Scenario::Prefill { seq, .. } => seq,
            Scenario::Decode { context, .. } => decode_start(context) + DECODE_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_phases_and_names_what_is_wrong() {
        assert_eq!(
            "prefill:b=8,s=256".parse(),
            Ok(Scenario::Prefill { batch: 8, seq: 256 })
        );
        assert_eq!(
            "decode: b=64, c=1024".parse(),
            Ok(Scenario::Decode {
                batch: 64,
                context: 1024
            })
        );
        assert_eq!(
            Scenario::Decode {
                batch: 64,
                context: 1024
            }
            .to_string(),
            "decode_b64_c1024"
        );
        for (text, problem) in [
            ("prefill", "no `:`"),
            ("train:b=1,s=2", "unknown phase `train`"),
            ("prefill:b=8", "`s` is missing"),
            ("decode:b=0,c=5", "positive"),
            ("decode:b=1,c=5,s=3", "unknown key `s`"),
            ("decode:b=1;c=5", "`1;c=5` is not a positive whole number"),
            ("decode:b=1,c", "`c` is not key=value"),
            ("prefill:b=1,b=2,s=3", "twice"),
        ] {
            let error = text.parse::<Scenario>().unwrap_err().to_string();
            assert!(error.contains(text) && error.contains(problem), "{text}: {error}");
        }
    }
}
