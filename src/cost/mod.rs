//! The cost stage (DESIGN §1.6): what each block variant costs on the target hardware —
//! parameters, parameter and KV-cache bytes at a precision, and latency under serving
//! scenarios, measured on the running backend or estimated by a roofline for GPUs that are not
//! at hand — and whole-model predictions calibrated against end-to-end measurements. Reads
//! libraries and model configs; knows nothing of scores, search or later stages.

pub mod footprint;
pub mod keys;
pub mod measure;
pub mod memory;
pub mod precision;
pub mod predict;
pub mod profile;
pub mod roofline;
pub mod scenario;

pub use memory::{BlockMemory, block_memory, kv_bytes_per_token, model_kv_bytes_per_token};
pub use precision::Precision;
pub use predict::{CalibrationReport, LatencyModel, measure_and_calibrate, random_children};
pub use profile::{
    MeasuredCosts, ProfileOptions, ProfileReport, Target, measure_costs, profile_library, record_profile,
};
pub use roofline::{Bound, Estimate, Hardware, estimate_block, gpu_table};
pub use scenario::{Scenario, ScenarioError};
