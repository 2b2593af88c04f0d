//! The post-training stages on an assembled child (DESIGN §1.10–§1.12): global distillation
//! from the parent, then (later) SFT and RL. Reads checkpoints and token sources, trains on the
//! shared engine; knows nothing of libraries or searches.

pub mod distill;

pub use distill::{DistillError, DistillLoss, DistillOptions, DistillReport, distill, layer_matches};
