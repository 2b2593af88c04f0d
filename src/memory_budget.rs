//! Whether a stage will fit in memory, asked before it loads anything: the stage's estimate of
//! its peak (a breakdown in bytes) against what this process may use — the smallest of
//! `TESSERA_MEMORY_LIMIT`, the cgroup's `memory.max` and the kernel's `MemAvailable` — and, when
//! it will not fit, an error with the GiB it needs, what they are made of and what to change.
//! Knows nothing of the stages' internals.

use std::fmt;

/// The environment variable that caps the memory a stage may plan for, e.g. `6GiB`, `512MiB`
/// or `6` (GiB).
pub const LIMIT_ENV: &str = "TESSERA_MEMORY_LIMIT";

const GIB: f64 = (1u64 << 30) as f64;

/// What a process holds beyond what a stage counts: the binary, the allocator's arenas, thread
/// stacks. Measured: a `tessera` command that loads nothing peaks at 69–76 MiB, and scoring the
/// default parent's library (35 MiB of tensors) peaked at 121, 121 and 150 MiB in three runs of
/// the same command (glibc's per-thread arenas).
pub const RUNTIME_BYTES: u64 = 128 << 20;

/// What each further thread that allocates side by side may keep: glibc gives it its own arena,
/// whose heaps are 64 MiB, and memory freed there stays resident. Measured: distilling the
/// default child with one micro-batch peaks at 168 MiB, with the same step split over two
/// threads at 210–214 MiB.
pub const THREAD_ARENA_BYTES: u64 = 64 << 20;

/// A stage's peak memory, part by part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    pub parts: Vec<(String, u64)>,
}

impl Estimate {
    /// Starts with the process's own share ([`RUNTIME_BYTES`]).
    pub fn new() -> Self {
        Estimate::default().with("runtime", RUNTIME_BYTES)
    }

    pub fn with(mut self, what: impl Into<String>, bytes: u64) -> Self {
        self.parts.push((what.into(), bytes));
        self
    }

    pub fn total(&self) -> u64 {
        self.parts.iter().map(|(_, b)| b).sum()
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(what, bytes)| format!("{what} {:.2}", *bytes as f64 / GIB))
            .collect();
        write!(f, "{:.2} GiB ({})", self.total() as f64 / GIB, parts.join(" + "))
    }
}

/// What this process may use, and which limit says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Available {
    pub bytes: u64,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "{stage} would need about {needed} but only {:.2} GiB are available ({}); to fit: {advice}",
        available.bytes as f64 / GIB,
        available.source
    )]
    WontFit {
        stage: String,
        needed: Estimate,
        available: Available,
        advice: String,
    },
    #[error("{LIMIT_ENV}=`{value}`: {problem}")]
    BadLimit { value: String, problem: String },
}

/// Parses `6GiB`, `512MiB`, `6G`, `512M` or a bare number of GiB.
fn parse_limit(value: &str) -> Result<u64, MemoryError> {
    let bad = |problem: &str| MemoryError::BadLimit {
        value: value.to_string(),
        problem: problem.to_string(),
    };
    let text = value.trim();
    let (number, scale) = [("GiB", GIB), ("G", GIB), ("MiB", GIB / 1024.0), ("M", GIB / 1024.0)]
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, GIB));
    let amount: f64 = number
        .trim()
        .parse()
        .map_err(|_| bad("expected a size such as `6GiB`, `512MiB` or `6` (GiB)"))?;
    if !(amount.is_finite() && amount > 0.0) {
        return Err(bad("the size must be positive"));
    }
    Ok((amount * scale) as u64)
}

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cgroup_limit() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The smallest of the limits that apply (none found: no figure, nothing is refused).
pub fn available() -> Result<Option<Available>, MemoryError> {
    let mut limits = Vec::new();
    if let Ok(value) = std::env::var(LIMIT_ENV) {
        limits.push(Available {
            bytes: parse_limit(&value)?,
            source: format!("{LIMIT_ENV}={value}"),
        });
    }
    if let Some(bytes) = cgroup_limit() {
        limits.push(Available {
            bytes,
            source: "the cgroup's memory.max".into(),
        });
    }
    if let Some(bytes) = meminfo_available() {
        limits.push(Available {
            bytes,
            source: "MemAvailable".into(),
        });
    }
    Ok(limits.into_iter().min_by_key(|a| a.bytes))
}

/// Refuses `stage` when `estimate` exceeds what is available, saying what to change (`advice`).
pub fn check(stage: &str, estimate: &Estimate, advice: &str) -> Result<(), MemoryError> {
    match available()? {
        Some(available) if estimate.total() > available.bytes => Err(MemoryError::WontFit {
            stage: stage.to_string(),
            needed: estimate.clone(),
            available,
            advice: advice.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_in_gib_and_mib_and_bad_ones_are_named() {
        assert_eq!(parse_limit("6GiB").unwrap(), 6 << 30);
        assert_eq!(parse_limit(" 512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_limit("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_limit("2").unwrap(), 2 << 30);
        for bad in ["", "six", "-1GiB", "0"] {
            let error = parse_limit(bad).unwrap_err().to_string();
            assert!(
                error.contains(LIMIT_ENV) && error.contains(&format!("`{bad}`")),
                "{error}"
            );
        }
    }

    #[test]
    fn an_estimate_adds_its_parts_and_names_them() {
        let estimate = Estimate::new().with("parent weights", 3 << 30);
        assert_eq!(estimate.total(), RUNTIME_BYTES + (3 << 30));
        let text = estimate.to_string();
        assert_eq!(text, "3.12 GiB (runtime 0.12 + parent weights 3.00)");
    }
}
