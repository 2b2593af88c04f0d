//! A real one-node Slurm for the tests: `scripts/slurm/up.sh` (Debian's slurmctld, slurmd and
//! munge, `MaxArraySize=4` so that arrays split), started once per test binary. Tests never
//! install packages (`.ci/run` does, through the same script); without Slurm they skip with the
//! reason, except under `TESSERA_REQUIRE_SLURM=1`, where a skip is a failure.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The largest array the tests' cluster accepts, low so that arrays split.
pub const MAX_ARRAY_SIZE: &str = "4";

fn start() -> Result<Vec<(String, String)>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm/up.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("TESSERA_SLURM_MAX_ARRAY_SIZE", MAX_ARRAY_SIZE)
        .env("TESSERA_SLURM_NO_INSTALL", "1")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(format!(
            "{} could not start Slurm: {}",
            script.display(),
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
        .collect())
}

/// The variables Slurm's commands need (`SLURM_CONF`, …), or `None` after printing why `test`
/// is skipped.
pub fn cluster(test: &str) -> Option<Vec<(String, String)>> {
    static UP: OnceLock<Result<Vec<(String, String)>, String>> = OnceLock::new();
    match UP.get_or_init(start) {
        Ok(env) => Some(env.clone()),
        Err(reason) => {
            assert!(
                std::env::var("TESSERA_REQUIRE_SLURM").as_deref() != Ok("1"),
                "TESSERA_REQUIRE_SLURM=1 but {reason}"
            );
            let line = format!("SKIPPED {test}: {reason}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            None
        }
    }
}
