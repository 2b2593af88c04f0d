//! RoPE scaling in GGUF, both ways: llama.cpp's `{arch}.rope.scaling.*` keys (linear, YaRN) and
//! the llama3 scaling, which the converter (`LlamaModel.generate_extra_tensors`) stores as a
//! tensor of per-frequency divisors, `rope_freqs.weight`, and no key at all.
//!
//! On import the llama3 parameters are recovered from the divisors, so the model keeps an
//! ordinary `RopeScaling::Llama3` (which transformers configs and DeciLM can carry): the
//! divisors fix `factor` (the largest one), and every divisor strictly between 1 and `factor`
//! lies on the smooth ramp, which fixes the rest. Meta's `low_freq_factor` 1 and
//! `high_freq_factor` 4 are tried first; where no divisor falls on the ramp, any
//! `original_max_position_embeddings` between the last unscaled and the first fully scaled
//! wavelength gives the same divisors, and the largest power of two there is taken. Whatever is
//! recovered must reproduce every stored divisor to 1e-5, or the file is refused.

use std::f64::consts::PI;

use super::{GgufArch, f32_as_decimal};
use crate::checkpoint::gguf::{GgufFile, MetaValue};
use crate::model::config::RopeScaling;

/// Relative agreement required between stored divisors and recomputed ones (the converter
/// computes them in float32).
const TOLERANCE: f64 = 1e-5;

/// The `{arch}.rope.*` keys this module reads (beside `freq_base` and `dimension_count`).
pub(super) const SCALING_KEYS: [&str; 5] = [
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scale_linear",
    "rope.scaling.original_context_length",
    "rope.scaling.attn_factor",
];

/// Keys the converter may write for YaRN that llama.cpp's `llama`/`qwen2`/`qwen3`/`deci` graphs
/// never read (it uses these values whatever the file says), with those values: a file saying
/// otherwise meant something llama.cpp does not compute, and is refused.
pub(super) const YARN_DEFAULTS: [(&str, f64); 3] = [
    ("rope.scaling.yarn_beta_fast", 32.0),
    ("rope.scaling.yarn_beta_slow", 1.0),
    ("rope.scaling.yarn_ext_factor", 1.0),
];

/// The converter's YaRN attention factor key, which llama.cpp reads for none of these
/// architectures (it computes `0.1·ln(factor) + 1` instead).
pub(super) const YARN_ATTN_FACTOR: &str = "rope.scaling.yarn_attn_factor";

/// YaRN's default attention factor, `0.1·ln(factor) + 1` (1 for factors up to 1).
fn yarn_mscale(factor: f64) -> f64 {
    if factor <= 1.0 { 1.0 } else { 0.1 * factor.ln() + 1.0 }
}

/// The llama3 divisors of each frequency, as the converter computes them.
pub(super) fn llama3_divisors(
    theta: f64,
    head_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original: usize,
) -> Vec<f64> {
    let old = original as f64;
    let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
    frequencies(theta, head_dim)
        .map(|freq| {
            let wavelen = 2.0 * PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

fn frequencies(theta: f64, head_dim: usize) -> impl Iterator<Item = f64> {
    (0..head_dim / 2).map(move |i| theta.powf(-2.0 * i as f64 / head_dim as f64))
}

/// The llama3 scaling that `divisors` (a file's `rope_freqs.weight`) encode, `None` when they
/// are all 1, or why they are not llama3's.
pub(super) fn llama3_from_divisors(theta: f64, head_dim: usize, divisors: &[f32]) -> Result<RopeScaling, String> {
    if divisors.len() != head_dim / 2 {
        return Err(format!(
            "has {} values; a head dim of {head_dim} needs {}",
            divisors.len(),
            head_dim / 2
        ));
    }
    if divisors.iter().all(|&d| d == 1.0) {
        return Ok(RopeScaling::None);
    }
    let largest = divisors.iter().copied().fold(f32::NAN, f32::max);
    if !divisors.iter().all(|d| d.is_finite() && (1.0..=largest).contains(d)) {
        return Err("values outside [1, max] (llama3 divides each frequency by 1 to `factor`)".into());
    }
    let factor = f32_as_decimal(largest);
    let freqs: Vec<f64> = frequencies(theta, head_dim).collect();
    // Position on the ramp: 1 where unscaled, 0 where divided by `factor`.
    let ramp: Vec<f64> = divisors
        .iter()
        .map(|&d| (1.0 / d as f64 - 1.0 / factor) / (1.0 - 1.0 / factor))
        .collect();
    let on_ramp: Vec<usize> = (0..ramp.len())
        .filter(|&i| ramp[i] > 1e-6 && ramp[i] < 1.0 - 1e-6)
        .collect();
    let mut candidates = Vec::new();
    // Meta's low/high factors 1 and 4.
    let (low, high) = (1.0, 4.0);
    if let Some(&i) = on_ramp.first() {
        let old = 2.0 * PI * (low + ramp[i] * (high - low)) / freqs[i];
        candidates.push((low, high, old.round()));
    } else {
        // Unscaled wavelengths must stay below old / high, scaled ones above old / low.
        let above = (0..freqs.len())
            .filter(|&i| ramp[i] >= 0.5)
            .map(|i| 2.0 * PI * high / freqs[i])
            .fold(0.0, f64::max);
        let below = (0..freqs.len())
            .filter(|&i| ramp[i] < 0.5)
            .map(|i| 2.0 * PI * low / freqs[i])
            .fold(f64::INFINITY, f64::min);
        let largest_power = (0..63)
            .rev()
            .map(|p| (1u64 << p) as f64)
            .find(|&p| p > above && p < below);
        if let Some(old) = largest_power.or(Some(above.floor() + 1.0).filter(|&o| o < below)) {
            candidates.push((low, high, old));
        }
    }
    // Any other low/high: the ramp is linear in the frequency, `a·f + b`, which two points fix;
    // `original_max_position_embeddings` is then chosen so that low_freq_factor is about 1.
    if let (Some(&i), Some(&j)) = (on_ramp.first(), on_ramp.last())
        && i != j
    {
        let a = (ramp[i] - ramp[j]) / (freqs[i] - freqs[j]);
        let b = ramp[i] - a * freqs[i];
        if a > 0.0 && b < 0.0 {
            let old = (-2.0 * PI * a / b).round().max(1.0);
            let span = old / (2.0 * PI * a);
            let low = f32_as_decimal((-b * span) as f32);
            candidates.push((low, f32_as_decimal((low + span) as f32), old));
        }
    }
    for (low, high, old) in candidates {
        let scaling = RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: old as usize,
        };
        let again = llama3_divisors(theta, head_dim, factor, low, high, old as usize);
        if again
            .iter()
            .zip(divisors)
            .all(|(a, &d)| (a / d as f64 - 1.0).abs() <= TOLERANCE)
        {
            return Ok(scaling);
        }
    }
    Err(format!(
        "these per-frequency divisors ({:?}…) are not a llama3 scaling tessera can recover",
        &divisors[..divisors.len().min(8)]
    ))
}

/// The scaling the `{arch}.rope.scaling.*` keys describe, read as llama.cpp reads them: a
/// missing type means `linear`, a missing or zero factor means none. `Err((key, problem))`.
pub(super) fn scaling_from_keys(
    file: &GgufFile,
    arch: GgufArch,
    context_length: usize,
) -> Result<RopeScaling, (String, String)> {
    let key = |suffix: &str| arch.key(suffix);
    let float = |suffix: &str| -> Result<Option<f64>, (String, String)> {
        match file.get(&key(suffix)) {
            None => Ok(None),
            Some(MetaValue::F32(v)) => Ok(Some(f32_as_decimal(*v))),
            Some(other) => Err((key(suffix), format!("expected f32, found {}", other.type_description()))),
        }
    };
    let kind = match file.get(&key("rope.scaling.type")) {
        None => "linear",
        Some(MetaValue::Str(s)) => s.as_str(),
        Some(other) => {
            return Err((
                key("rope.scaling.type"),
                format!("expected str, found {}", other.type_description()),
            ));
        }
    };
    let factor = float("rope.scaling.factor")?
        .or(float("rope.scale_linear")?)
        .unwrap_or(0.0);
    let attn_factor = float("rope.scaling.attn_factor")?.unwrap_or(1.0);
    // The converter's copy of HF's absolute attention factor: llama.cpp uses its own default.
    let yarn_attn = (YARN_ATTN_FACTOR, yarn_mscale(factor));
    for (suffix, default) in YARN_DEFAULTS.into_iter().chain([yarn_attn]) {
        if let Some(v) = float(suffix)?
            && (v / default - 1.0).abs() > 1e-6
        {
            return Err((
                key(suffix),
                format!(
                    "{v}: llama.cpp's `{}` graph ignores this key and uses {default}",
                    arch.name()
                ),
            ));
        }
    }
    let scaling = match kind {
        "none" => RopeScaling::None,
        "linear" if factor == 0.0 || factor == 1.0 => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor },
        "yarn" if factor > 1.0 => {
            let original = match file.get(&key("rope.scaling.original_context_length")) {
                None => context_length,
                Some(v) => v.integer().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                    (
                        key("rope.scaling.original_context_length"),
                        "expected a positive integer".into(),
                    )
                })?,
            };
            return Ok(RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: original,
                beta_fast: 32.0,
                beta_slow: 1.0,
                attention_factor: attn_factor * yarn_mscale(factor),
                truncate: true,
            });
        }
        "yarn" => {
            return Err((
                key("rope.scaling.factor"),
                format!("{factor}: YaRN needs a factor above 1"),
            ));
        }
        other => {
            return Err((
                key("rope.scaling.type"),
                format!("`{other}` is not a RoPE scaling tessera applies (none, linear, yarn)"),
            ));
        }
    };
    if attn_factor != 1.0 {
        return Err((
            key("rope.scaling.attn_factor"),
            format!("{attn_factor}: scaling cos/sin is supported with YaRN only"),
        ));
    }
    Ok(scaling)
}

/// What a GGUF file carries for a RoPE scaling.
#[derive(Debug, Default)]
pub(super) struct GgufRope {
    /// `rope.scaling.*` entries, keys without the `{arch}.` prefix.
    pub keys: Vec<(&'static str, MetaValue)>,
    /// The values of `rope_freqs.weight`, for llama3 scaling.
    pub freqs: Option<Vec<f32>>,
}

/// What a GGUF file needs to carry `scaling` for `arch`, or why llama.cpp cannot express it.
pub(super) fn scaling_to_gguf(
    arch: GgufArch,
    scaling: &RopeScaling,
    theta: f64,
    head_dim: usize,
) -> Result<GgufRope, String> {
    Ok(match *scaling {
        RopeScaling::None => GgufRope::default(),
        RopeScaling::Linear { factor } => GgufRope {
            keys: vec![
                ("rope.scaling.type", MetaValue::Str("linear".into())),
                ("rope.scaling.factor", MetaValue::F32(factor as f32)),
            ],
            freqs: None,
        },
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            if !arch.reads_rope_freqs() {
                return Err(format!(
                    "llama3 RoPE scaling travels as `rope_freqs.weight`, which llama.cpp's `{}` graph ignores",
                    arch.name()
                ));
            }
            let divisors = llama3_divisors(
                theta,
                head_dim,
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            );
            GgufRope {
                keys: Vec::new(),
                freqs: Some(divisors.into_iter().map(|d| d as f32).collect()),
            }
        }
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            beta_fast,
            beta_slow,
            attention_factor,
            truncate,
        } => {
            if beta_fast != 32.0 || beta_slow != 1.0 || !truncate {
                return Err(format!(
                    "YaRN with beta_fast {beta_fast}, beta_slow {beta_slow}, truncate {truncate}: llama.cpp's `{}` \
                     graph computes beta_fast 32, beta_slow 1, truncated",
                    arch.name()
                ));
            }
            let original = u32::try_from(original_max_position_embeddings).map_err(|_| {
                format!("original_max_position_embeddings {original_max_position_embeddings} does not fit GGUF's u32")
            })?;
            let mut keys = vec![
                ("rope.scaling.type", MetaValue::Str("yarn".into())),
                ("rope.scaling.factor", MetaValue::F32(factor as f32)),
                ("rope.scaling.original_context_length", MetaValue::U32(original)),
            ];
            // llama.cpp multiplies its own `0.1·ln(factor) + 1` by this.
            let relative = attention_factor / yarn_mscale(factor);
            if relative != 1.0 {
                keys.push(("rope.scaling.attn_factor", MetaValue::F32(relative as f32)));
            }
            GgufRope { keys, freqs: None }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovered(theta: f64, head_dim: usize, scaling: RopeScaling) -> RopeScaling {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = scaling
        else {
            unreachable!()
        };
        let divisors: Vec<f32> = llama3_divisors(
            theta,
            head_dim,
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        )
        .into_iter()
        .map(|d| d as f32)
        .collect();
        llama3_from_divisors(theta, head_dim, &divisors).unwrap()
    }

    #[test]
    fn llama3_parameters_are_recovered_from_the_divisors() {
        // Llama 3.1 (several divisors on the ramp) and 3.2 (factor 32).
        for factor in [8.0, 32.0] {
            let llama = RopeScaling::Llama3 {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            };
            assert_eq!(recovered(500000.0, 128, llama), llama);
        }
        // Other low/high factors, fixed by two points on the ramp.
        let other = RopeScaling::Llama3 {
            factor: 16.0,
            low_freq_factor: 2.0,
            high_freq_factor: 16.0,
            original_max_position_embeddings: 4096,
        };
        let RopeScaling::Llama3 { factor, .. } = recovered(10000.0, 128, other) else {
            panic!("not llama3")
        };
        assert_eq!(factor, 16.0);
        // No divisor on the ramp: the largest power of two that separates them (the fixture's case).
        let tiny = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        };
        assert_eq!(recovered(500000.0, 16, tiny), tiny);
        assert_eq!(llama3_from_divisors(1e4, 4, &[1.0, 1.0]), Ok(RopeScaling::None));
        assert!(llama3_from_divisors(1e4, 4, &[1.0, 0.5]).is_err());
        assert!(llama3_from_divisors(1e4, 8, &[1.0, 3.0, 2.0, 8.0]).is_err());
        assert!(llama3_from_divisors(1e4, 8, &[1.0]).is_err());
    }
}
