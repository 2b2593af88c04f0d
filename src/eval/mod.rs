//! Evaluation of a model on token data. Knows the model, not how checkpoints or text are read.

pub mod consistency;
pub mod nll;

pub use consistency::{max_abs_diff, prefill_decode_max_diff};
pub use nll::{NllReport, mean_nll};
