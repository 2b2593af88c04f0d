//! Rotary position embeddings in the rotate-half layout (HF's), the one layout used inside
//! tessera; interleaved checkpoints are permuted on import (`checkpoint::llama2c`, GGUF). The
//! frequencies follow transformers' `modeling_rope_utils` for each scaling (`default`, `linear`,
//! `llama3`, `yarn`); the cos/sin tables are made for the positions a forward pass runs, never
//! for the declared maximum (configs declare up to millions of positions).

use burn::prelude::*;

use super::config::{ModelConfig, RopeScaling};
use super::fused::rope;

/// The rotary frequencies of one model: position `p` turns pair `i` by `p / divisors[i]`, and
/// cos/sin are multiplied by `scale` (YaRN's attention factor, 1 otherwise).
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    divisors: Vec<f64>,
    scale: f64,
}

/// cos and sin rows `[seq, head_dim]` (each half repeated) for positions `offset..offset + seq`.
#[derive(Clone, Debug)]
pub struct RopeTables {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    pub fn for_config(config: &ModelConfig) -> Self {
        Self::new(config.head_dim, config.rope_theta, &config.rope_scaling)
    }

    pub fn new(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Self {
        let half = head_dim / 2;
        // `θ^(2i/d)` exactly as before scalings existed, so unscaled models compute what they did.
        let base: Vec<f64> = (0..half)
            .map(|i| theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        let (divisors, scale) = match *scaling {
            RopeScaling::None => (base, 1.0),
            RopeScaling::Linear { factor } => (base.iter().map(|d| d * factor).collect(), 1.0),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                let scaled = base
                    .iter()
                    .map(|&d| {
                        let (freq, wavelen) = (1.0 / d, 2.0 * std::f64::consts::PI * d);
                        let freq = if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        };
                        1.0 / freq
                    })
                    .collect();
                (scaled, 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate,
            } => {
                let dim = head_dim as f64;
                let correction = |rotations: f64| {
                    dim * (original_max_position_embeddings as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
                if low == high {
                    high += 0.001;
                }
                let blended = base
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        let (interpolated, extrapolated) = (1.0 / (factor * d), 1.0 / d);
                        1.0 / (interpolated * (1.0 - extrapolation) + extrapolated * extrapolation)
                    })
                    .collect();
                (blended, attention_factor)
            }
        };
        Self { divisors, scale }
    }

    /// The tables for positions `offset..offset + seq`, on `device`.
    pub fn tables(&self, offset: usize, seq: usize, device: &Device) -> RopeTables {
        let head_dim = 2 * self.divisors.len();
        let mut cos = Vec::with_capacity(seq * head_dim);
        let mut sin = Vec::with_capacity(seq * head_dim);
        for pos in offset..offset + seq {
            let angles: Vec<f64> = self.divisors.iter().map(|d| pos as f64 / d).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| (a.cos() * self.scale) as f32));
                sin.extend(angles.iter().map(|a| (a.sin() * self.scale) as f32));
            }
        }
        let shape = [seq, head_dim];
        RopeTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }
}

impl RopeTables {
    /// Rotates `x: [batch, heads, seq, head_dim]`, whose positions are the tables'.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        rope(x, self.cos.clone(), self.sin.clone())
    }

    /// The raw tables, `[seq, head_dim]` each.
    pub fn cos_sin(&self) -> (Tensor<2>, Tensor<2>) {
        (self.cos.clone(), self.sin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(rope: &Rope) -> Vec<f64> {
        rope.divisors.iter().map(|d| 1.0 / d).collect()
    }

    /// transformers' own figures (research notes §2.3/§2.4: numpy ports of `_compute_llama3_parameters`
    /// and `_compute_yarn_parameters`, float32).
    #[test]
    fn scaled_frequencies_match_transformers() {
        let llama3 = Rope::new(
            64,
            5e5,
            &RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
        );
        let f = frequencies(&llama3);
        for (i, expected) in [
            (15, 1.3718937e-03),
            (16, 5.2484602e-04),
            (17, 1.7850779e-04),
            (18, 7.7846555e-05),
        ] {
            assert!((f[i] / expected - 1.0).abs() < 1e-6, "llama3 inv_freq[{i}] = {}", f[i]);
        }
        let plain = frequencies(&Rope::new(64, 5e5, &RopeScaling::None));
        assert_eq!(plain[..15], f[..15]);
        assert!((plain[20] / f[20] - 8.0).abs() < 1e-9);

        let yarn = Rope::new(
            64,
            1e6,
            &RopeScaling::Yarn {
                factor: 4.0,
                original_max_position_embeddings: 32768,
                beta_fast: 32.0,
                beta_slow: 1.0,
                attention_factor: 0.1 * 4f64.ln() + 1.0,
                truncate: true,
            },
        );
        let f = frequencies(&yarn);
        for (i, expected) in [(12, 5.1547955e-03), (16, 5.8333337e-04), (20, 4.4456985e-05)] {
            assert!((f[i] / expected - 1.0).abs() < 1e-6, "yarn inv_freq[{i}] = {}", f[i]);
        }
        assert!((yarn.scale - 1.1386294).abs() < 1e-6);
    }

    #[test]
    fn tables_cover_only_the_positions_asked_for() {
        let rope = Rope::new(8, 1e4, &RopeScaling::Linear { factor: 2.0 });
        let tables = rope.tables(1_000_000_000, 3, &Device::flex());
        let (cos, _) = tables.cos_sin();
        assert_eq!(cos.dims(), [3, 8]);
        let near = Rope::new(8, 1e4, &RopeScaling::None).tables(2_000_000_000, 1, &Device::flex());
        let far = rope.tables(4_000_000_000, 1, &Device::flex());
        let (a, b) = (near.cos_sin().0.into_data(), far.cos_sin().0.into_data());
        assert_eq!(a, b, "linear scaling is position / factor");
    }
}
