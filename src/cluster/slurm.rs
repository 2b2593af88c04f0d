//! Slurm through its commands (`sbatch`, `squeue`, `scontrol`, `scancel`), as cluster tools
//! commonly talk to it: no FFI, no `sacct` (it needs slurmdbd, which many clusters lack). Every
//! failure names the command line and what it printed. Knows Slurm's text formats, nothing of
//! what the jobs do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::ClusterError;

/// The state of one job or array task, as `squeue` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …
    pub state: String,
    /// Why it waits or ended (`Dependency`, `DependencyNeverSatisfied`, `NonZeroExitCode`, …).
    pub reason: String,
}

/// What a state means for whoever waits on the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Running,
    Completed,
    Failed,
}

impl JobState {
    pub fn phase(&self) -> Phase {
        match self.state.as_str() {
            "COMPLETED" => Phase::Completed,
            "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY" | "BOOT_FAIL" | "DEADLINE"
            | "PREEMPTED" | "REVOKED" => Phase::Failed,
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED" | "STOPPED" | "RESIZING" | "SIGNALING"
            | "STAGE_OUT" => Phase::Running,
            _ => Phase::Waiting,
        }
    }

    /// A job held back by a dependency that can no longer be met (a task it waits on failed).
    pub fn never_runs(&self) -> bool {
        self.reason == "DependencyNeverSatisfied"
    }
}

/// A job or array task: `(job id, Some(task index))` for a task, `(job id, None)` for a job.
pub type JobKey = (u64, Option<usize>);

fn render(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(
            args.iter()
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a Slurm command and returns its standard output.
fn run(program: &str, args: &[String]) -> Result<String, ClusterError> {
    let output = Command::new(program).args(args).output().map_err(|cause| {
        if cause.kind() == std::io::ErrorKind::NotFound {
            ClusterError::MissingCommand {
                command: program.to_string(),
            }
        } else {
            ClusterError::Command {
                command: render(program, args),
                message: cause.to_string(),
            }
        }
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let message = if stderr.is_empty() { stdout } else { stderr };
        return Err(ClusterError::Command {
            command: render(program, args),
            message: format!("{} ({})", message, output.status),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Submits `script` with `args` before it; returns the job id `sbatch --parsable` prints.
pub fn sbatch(args: &[String], script: &Path) -> Result<u64, ClusterError> {
    let mut all = vec!["--parsable".to_string()];
    all.extend(args.iter().cloned());
    all.push(script.display().to_string());
    let out = run("sbatch", &all)?;
    // `ID` or, on a federation, `ID;cluster`.
    let id = out.trim().split(';').next().unwrap_or_default();
    id.parse().map_err(|_| ClusterError::Command {
        command: render("sbatch", &all),
        message: format!("printed `{}`, not a job id", out.trim()),
    })
}

/// The largest array index the cluster accepts plus one (`MaxArraySize`).
pub fn max_array_size() -> Result<usize, ClusterError> {
    let args = vec!["show".to_string(), "config".to_string()];
    let out = run("scontrol", &args)?;
    out.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "MaxArraySize")
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| ClusterError::Command {
            command: render("scontrol", &args),
            message: "no MaxArraySize in the configuration it printed".into(),
        })
}

/// The states of the given jobs (every task of an array separately). A job Slurm no longer
/// knows (purged after `MinJobAge`, or a task cancelled while pending) is absent.
pub fn states(job_ids: &[u64]) -> Result<BTreeMap<JobKey, JobState>, ClusterError> {
    if job_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<String> = job_ids.iter().map(u64::to_string).collect();
    let args: Vec<String> = ["-h", "-r", "-t", "all", "-j", &ids.join(","), "-o", "%i|%T|%r"]
        .map(String::from)
        .to_vec();
    let out = match run("squeue", &args) {
        Err(ClusterError::Command { message, .. }) if message.contains("Invalid job id") => return Ok(BTreeMap::new()),
        other => other?,
    };
    let mut found = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.trim().split('|').collect();
        let parsed = match fields.as_slice() {
            [id, state, reason] => parse_id(id).map(|key| {
                (
                    key,
                    JobState {
                        state: state.to_string(),
                        reason: reason.to_string(),
                    },
                )
            }),
            _ => None,
        };
        let (key, state) = parsed.ok_or_else(|| ClusterError::Command {
            command: render("squeue", &args),
            message: format!("cannot read the line `{line}`"),
        })?;
        found.insert(key, state);
    }
    Ok(found)
}

/// `12` or `12_3`.
fn parse_id(text: &str) -> Option<JobKey> {
    match text.split_once('_') {
        Some((job, task)) => Some((job.parse().ok()?, Some(task.parse().ok()?))),
        None => Some((text.parse().ok()?, None)),
    }
}

/// Cancels jobs (finished or unknown ones are no error for Slurm).
pub fn cancel(job_ids: &[u64]) -> Result<(), ClusterError> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let args: Vec<String> = job_ids.iter().map(u64::to_string).collect();
    run("scancel", &args).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_of_jobs_and_array_tasks_read() {
        assert_eq!(parse_id("12"), Some((12, None)));
        assert_eq!(parse_id("12_3"), Some((12, Some(3))));
        assert_eq!(parse_id("12_[2-5%2]"), None);
    }

    #[test]
    fn states_map_to_phases() {
        let state = |s: &str, r: &str| JobState {
            state: s.into(),
            reason: r.into(),
        };
        assert_eq!(state("PENDING", "Dependency").phase(), Phase::Waiting);
        assert_eq!(state("COMPLETING", "None").phase(), Phase::Running);
        assert_eq!(state("TIMEOUT", "TimeLimit").phase(), Phase::Failed);
        assert_eq!(state("COMPLETED", "None").phase(), Phase::Completed);
        assert!(state("PENDING", "DependencyNeverSatisfied").never_runs());
    }

    #[test]
    fn a_missing_command_is_named() {
        let error = run("tessera-no-such-slurm-command", &[]).unwrap_err();
        assert!(error.to_string().contains("tessera-no-such-slurm-command"), "{error}");
    }
}
