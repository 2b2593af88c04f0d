//! Random libraries in the interchange layout, for tests and the solver benchmark: in every
//! layer the first variant is the parent (score 0, full cost), the last removes the layer (no
//! parameters, almost no time, the most harm) and the others trade cost against score the way
//! real libraries do — cheaper blocks hurt more, with noise so that no variant is simply a
//! scaled copy of another. Variant `v` has the same name in every layer.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// `layers` × `variants` blocks with `stats.runtime_ms`, `stats.memory_mib`, `stats.num_params`
/// and `metrics.kl_div`.
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
