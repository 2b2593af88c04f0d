//! The names of the cost figures a profile writes under `stats` in `block_library.json` and
//! that constraint files, the search and its baselines read back: the one owner of every key
//! (`stats.runtime_ms_<target>_<dtype>_<scenario>` and its kin). Knows no figures.

use super::precision::Precision;
use super::scenario::Scenario;

/// Parameters of the block.
pub const NUM_PARAMS: &str = "num_params";
/// Parameter bytes in MiB at the profile's precision (also under `memory_mib_<dtype>`).
pub const MEMORY_MIB: &str = "memory_mib";
/// KV-cache bytes per cached token (also under `kv_bytes_per_token_<dtype>`).
pub const KV_BYTES_PER_TOKEN: &str = "kv_bytes_per_token";
/// Milliseconds in the profile's first scenario (every scenario has its own key too).
pub const RUNTIME_MS: &str = "runtime_ms";

pub fn memory_mib(precision: Precision) -> String {
    format!("{MEMORY_MIB}_{precision}")
}

pub fn kv_bytes_per_token(precision: Precision) -> String {
    format!("{KV_BYTES_PER_TOKEN}_{precision}")
}

/// Milliseconds of one block in `scenario` on `target` at `precision`.
pub fn runtime_ms(target: &str, precision: Precision, scenario: &Scenario) -> String {
    format!("{RUNTIME_MS}_{target}_{precision}_{scenario}")
}

/// The dotted path of a `stats` key, as limits and objectives name it.
pub fn stat(key: &str) -> String {
    format!("stats.{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_as_the_interchange_layout_expects() {
        let scenario: Scenario = "decode:b=1,c=192".parse().unwrap();
        assert_eq!(
            stat(&runtime_ms("cpu", Precision::F32, &scenario)),
            format!("stats.runtime_ms_cpu_f32_{scenario}")
        );
        assert_eq!(memory_mib(Precision::Bf16), "memory_mib_bf16");
        assert_eq!(stat(NUM_PARAMS), "stats.num_params");
    }
}
