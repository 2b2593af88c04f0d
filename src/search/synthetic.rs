//! Generated libraries in the interchange layout, for tests and the solver benchmark. Two kinds:
//!
//! - random: in every layer the first variant is the parent (score 0, full cost), the last
//!   removes the layer (no parameters, almost no time, the most harm) and the others trade cost
//!   against score with noise, so that no variant is simply a scaled copy of another;
//! - real-shaped, like the block libraries of large parents: every block is an attention option
//!   × an FFN option, its `stats.*` the sum of the two sub-blocks' costs (the same in every
//!   layer, as measured per block type), its `metrics.kl_div` from the two sub-blocks' harm with
//!   a layer's importance, noise that makes scores non-monotone in width, and a few layers whose
//!   no-op sub-blocks are catastrophic (KL in the hundreds); `metrics.lm_loss` is nearly flat.
//!
//! Knows nothing of solvers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// `layers` × `variants` blocks with `stats.runtime_ms`, `stats.memory_mib`, `stats.num_params`
/// and `metrics.kl_div`. Variant `v` has the same name in every layer.
pub fn random_library(layers: usize, variants: usize, seed: u64) -> Map<String, Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut map = Map::new();
    for layer in 0..layers {
        let mut blocks = Map::new();
        let importance: f64 = rng.random_range(0.2..2.0);
        for v in 0..variants {
            let (runtime, memory, kl) = if v == 0 {
                (1.0, 1.0, 0.0)
            } else if v + 1 == variants {
                (0.02, 0.0, importance * rng.random_range(0.8..1.2))
            } else {
                let speed: f64 = rng.random_range(0.05..1.0);
                let size: f64 = (speed * rng.random_range(0.5..1.5)).min(1.0);
                let harm = importance * (1.0 - speed).powi(2) * rng.random_range(0.3..1.7) + 1e-4;
                (speed, size, harm)
            };
            blocks.insert(
                format!("variant {v}"),
                json!({
                    "stats": {
                        "runtime_ms": runtime,
                        "memory_mib": memory * 10.0,
                        "num_params": (memory * 1e6).round(),
                    },
                    "metrics": { "kl_div": kl },
                }),
            );
        }
        map.insert(format!("layer_{layer}"), Value::Object(blocks));
    }
    map
}

/// An attention option of a real-shaped library.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttentionOption {
    /// Grouped-query attention with `1/divisor` of the parent's 8 KV heads (1: the parent's).
    Kv {
        divisor: usize,
    },
    Linear,
    NoOp,
}

/// An FFN option of a real-shaped library.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum FfnOption {
    /// SwiGLU at this fraction of the parent's width (1.0: the parent's).
    Width(f64),
    Linear,
    NoOp,
}

/// Which sub-blocks a real-shaped library offers in every layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealShape {
    pub attention: Vec<AttentionOption>,
    pub ffn: Vec<FfnOption>,
}

impl RealShape {
    /// NVIDIA's public Puzzle example for a 70B parent: the parent's attention or none ×
    /// SwiGLU at 100, 75, 62, 50, 25, 20, 10 % or none (16 blocks).
    pub fn puzzle_70b() -> Self {
        RealShape {
            attention: vec![AttentionOption::Kv { divisor: 1 }, AttentionOption::NoOp],
            ffn: [1.0, 0.75, 0.62, 0.5, 0.25, 0.2, 0.1]
                .into_iter()
                .map(FfnOption::Width)
                .chain([FfnOption::NoOp])
                .collect(),
        }
    }

    /// `search_spaces/paper.toml`: GQA at 1/1, 1/2, 1/4, 1/8 of the KV heads, linear, no-op ×
    /// SwiGLU at 100, 87, 75, 50, 25, 20, 10 %, linear, no-op (54 blocks).
    pub fn paper() -> Self {
        RealShape {
            attention: [1, 2, 4, 8]
                .into_iter()
                .map(|divisor| AttentionOption::Kv { divisor })
                .chain([AttentionOption::Linear, AttentionOption::NoOp])
                .collect(),
            ffn: [1.0, 0.87, 0.75, 0.5, 0.25, 0.2, 0.1]
                .into_iter()
                .map(FfnOption::Width)
                .chain([FfnOption::Linear, FfnOption::NoOp])
                .collect(),
        }
    }

    pub fn blocks_per_layer(&self) -> usize {
        self.attention.len() * self.ffn.len()
    }
}

/// A sub-block's costs, the same in every layer: a Llama-70B-like layer (hidden 8192, 64 query
/// heads of 128, 8 KV heads, FFN 28672) in bf16, and a decode step's milliseconds on one GPU
/// (weights read once, plus the KV cache of a long context for attention).
#[derive(Clone, Copy)]
struct Cost {
    params: f64,
    runtime_ms: f64,
}

const HIDDEN: f64 = 8192.0;
const KV_WIDTH: f64 = 1024.0;
const FFN_WIDTH: f64 = 28672.0;

fn attention_cost(option: AttentionOption) -> Cost {
    match option {
        AttentionOption::Kv { divisor } => {
            let kv = KV_WIDTH / divisor as f64;
            let params = 2.0 * HIDDEN * HIDDEN + 2.0 * HIDDEN * kv;
            Cost {
                params,
                runtime_ms: 0.02 + 0.18 * params / 1.51e8 + 0.30 / divisor as f64,
            }
        }
        AttentionOption::Linear => Cost {
            params: HIDDEN * HIDDEN,
            runtime_ms: 0.01 + 0.18 * HIDDEN * HIDDEN / 1.51e8,
        },
        AttentionOption::NoOp => Cost {
            params: 0.0,
            runtime_ms: 0.0,
        },
    }
}

fn ffn_cost(option: FfnOption) -> Cost {
    match option {
        FfnOption::Width(w) => Cost {
            params: (3.0 * HIDDEN * FFN_WIDTH * w).round(),
            runtime_ms: 0.015 + 0.85 * w,
        },
        FfnOption::Linear => Cost {
            params: HIDDEN * HIDDEN,
            runtime_ms: 0.01 + 0.85 * HIDDEN * HIDDEN / (3.0 * HIDDEN * FFN_WIDTH),
        },
        FfnOption::NoOp => Cost {
            params: 0.0,
            runtime_ms: 0.0,
        },
    }
}

/// How much replacing the parent's sub-block by `option` harms a layer of importance 1, before
/// noise.
fn attention_harm(option: AttentionOption) -> f64 {
    match option {
        AttentionOption::Kv { divisor } => 0.004 * (divisor as f64).log2(),
        AttentionOption::Linear => 0.08,
        AttentionOption::NoOp => 0.05,
    }
}

fn ffn_harm(option: FfnOption) -> f64 {
    match option {
        FfnOption::Width(w) => 0.25 * (1.0 - w).powf(1.5),
        FfnOption::Linear => 0.2,
        FfnOption::NoOp => 0.3,
    }
}

fn attention_name(option: AttentionOption) -> String {
    match option {
        AttentionOption::Kv { divisor } => format!("attention kv_heads_{}", 8 / divisor.max(1)),
        AttentionOption::Linear => "attention linear".into(),
        AttentionOption::NoOp => "attention no_op".into(),
    }
}

fn ffn_name(option: FfnOption) -> String {
    match option {
        FfnOption::Width(w) => format!("ffn intermediate_{}", (FFN_WIDTH * w).round()),
        FfnOption::Linear => "ffn linear".into(),
        FfnOption::NoOp => "ffn no_op".into(),
    }
}

/// The parent's loss, and how little the loss moves with KL: `lm_loss` is nearly flat.
const PARENT_LOSS: f64 = 1.62;

/// A real-shaped library of `layers` layers: every block of `shape` in every layer, with
/// `stats.runtime_ms`, `stats.memory_mib`, `stats.num_params`, `metrics.kl_div` (0 for the
/// parent's block, up to a few hundred) and `metrics.lm_loss`.
pub fn real_library(layers: usize, shape: &RealShape, seed: u64) -> Map<String, Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    // A few layers where removing a sub-block is catastrophic: the first, and two others.
    let catastrophic: Vec<usize> = std::iter::once(0)
        .chain((0..2).map(|_| rng.random_range(0..layers.max(1))))
        .collect();
    let mut map = Map::new();
    for layer in 0..layers {
        // The first and last layers matter most, as in real parents; the rest vary by 10×.
        let position = layer as f64 / layers.max(2).saturating_sub(1) as f64;
        let edge = 1.0 + 3.0 * (-8.0 * position).exp() + 1.5 * (-8.0 * (1.0 - position)).exp();
        let importance = edge * rng.random_range(0.15..1.5f64);
        let disaster = catastrophic.contains(&layer);
        // Noise per sub-block option, drawn once per layer: scores are not monotone in width.
        let mut scores = |harms: Vec<(f64, bool)>, catastrophe: std::ops::Range<f64>| -> Vec<f64> {
            harms
                .into_iter()
                .map(|(harm, removes)| {
                    let harm = harm * importance * rng.random_range(0.3..2.0);
                    if removes && disaster {
                        rng.random_range(catastrophe.clone())
                    } else {
                        harm
                    }
                })
                .collect()
        };
        let attention_harms = shape
            .attention
            .iter()
            .map(|&a| (attention_harm(a), a == AttentionOption::NoOp));
        let attention = scores(attention_harms.collect(), 20.0..120.0);
        let ffn_harms = shape.ffn.iter().map(|&f| (ffn_harm(f), f == FfnOption::NoOp));
        let ffn = scores(ffn_harms.collect(), 150.0..337.0);
        let mut blocks = Map::new();
        for (a, &attention_option) in shape.attention.iter().enumerate() {
            for (f, &ffn_option) in shape.ffn.iter().enumerate() {
                let (ac, fc) = (attention_cost(attention_option), ffn_cost(ffn_option));
                let parent_block = a == 0 && f == 0;
                // Two sub-blocks hurt more together than apart, by a varying amount.
                let kl = if parent_block {
                    0.0
                } else {
                    (attention[a] + ffn[f]) * rng.random_range(1.0..1.3) + 1e-5
                };
                let loss_noise: f64 = if parent_block {
                    0.0
                } else {
                    rng.random_range(-0.002..0.002)
                };
                let params = ac.params + fc.params;
                blocks.insert(
                    format!("{} {}", attention_name(attention_option), ffn_name(ffn_option)),
                    json!({
                        "stats": {
                            "runtime_ms": ac.runtime_ms + fc.runtime_ms,
                            "memory_mib": params * 2.0 / (1u64 << 20) as f64,
                            "num_params": params,
                        },
                        "metrics": {
                            "kl_div": kl,
                            "lm_loss": PARENT_LOSS + 0.02 * kl.ln_1p() + loss_noise,
                        },
                    }),
                );
            }
        }
        map.insert(format!("layer_{layer}"), Value::Object(blocks));
    }
    map
}
