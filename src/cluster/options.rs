//! What tessera asks of Slurm for a stage's tasks (the `--slurm` flags of `library build`,
//! `score` and `profile`, and `[slurm]` of a pipeline file), turned into sbatch arguments and
//! the batch scripts the tasks and the merge job run. Scripts name the tessera binary, the job
//! file and the working directory by absolute path, so a task needs nothing from the shell or
//! directory it was submitted from. Knows sbatch's flags; nothing of the stages.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ClusterError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmOptions {
    /// `--partition`; the cluster's default when unset.
    pub partition: Option<String>,
    /// `--time` of each task (e.g. `4:00:00`); the partition's default when unset.
    pub time: Option<String>,
    /// `--gpus-per-task`.
    pub gpus_per_task: Option<usize>,
    /// `--cpus-per-task`; also the threads a task uses (all the node's when unset).
    pub cpus_per_task: Option<usize>,
    /// Tasks of an array running at once (`--array=…%K`).
    pub max_parallel: Option<usize>,
    /// Work items per task (library items, candidates to score, scenarios to profile).
    pub items_per_task: usize,
    /// Further sbatch arguments, passed as they are (e.g. `--account=proj`).
    pub sbatch_args: Vec<String>,
    /// The tessera binary tasks run (on a disk every node sees); this program when it is
    /// tessera, otherwise `tessera` on PATH.
    pub binary: Option<PathBuf>,
    /// Seconds between two looks at the queue while waiting.
    pub poll_seconds: f64,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        Self {
            partition: None,
            time: None,
            gpus_per_task: None,
            cpus_per_task: None,
            max_parallel: None,
            items_per_task: 1,
            sbatch_args: Vec::new(),
            binary: None,
            poll_seconds: 5.0,
        }
    }
}

/// What a batch script runs: a task of an array, or the merge.
pub enum ScriptKind<'a> {
    /// The groups the array's task indices stand for.
    Tasks {
        groups: &'a [usize],
    },
    Merge,
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl SlurmOptions {
    /// The binary tasks run, as an absolute path.
    pub fn tessera_binary(&self) -> Result<PathBuf, ClusterError> {
        if let Some(path) = &self.binary {
            return std::path::absolute(path).map_err(ClusterError::io(path));
        }
        let this = std::env::current_exe().map_err(ClusterError::io(Path::new("the running program")))?;
        if this.file_stem().is_some_and(|s| s == "tessera") {
            return Ok(this);
        }
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("tessera"))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                ClusterError::Settings(format!(
                    "this program ({}) is not tessera and there is no tessera on PATH: set the Slurm option `binary`",
                    this.display()
                ))
            })
    }

    /// Checks what sbatch would accept but could not work as meant.
    pub fn check(&self) -> Result<(), ClusterError> {
        let zero = [
            ("gpus_per_task", self.gpus_per_task),
            ("cpus_per_task", self.cpus_per_task),
            ("max_parallel", self.max_parallel),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == Some(0)) {
            return Err(ClusterError::Settings(format!("slurm `{name}` must be at least 1")));
        }
        if self.items_per_task == 0 {
            return Err(ClusterError::Settings(
                "slurm `items_per_task` must be at least 1".into(),
            ));
        }
        if !(self.poll_seconds > 0.0 && self.poll_seconds.is_finite()) {
            return Err(ClusterError::Settings(
                "slurm `poll_seconds` must be a positive number".into(),
            ));
        }
        Ok(())
    }

    /// The resources every job of a stage asks for, then the user's own arguments.
    fn resources(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(t) = &self.time {
            args.push(format!("--time={t}"));
        }
        if let Some(g) = self.gpus_per_task {
            args.push(format!("--gpus-per-task={g}"));
        }
        if let Some(c) = self.cpus_per_task {
            args.push(format!("--cpus-per-task={c}"));
        }
        args
    }

    /// sbatch arguments for an array of `tasks` tasks of `stage`, logging into `logs`.
    /// Profiling tasks take whole nodes, so their timings are not disturbed.
    pub fn array_args(&self, stage: &str, tasks: usize, logs: &Path) -> Vec<String> {
        let throttle = self.max_parallel.map_or(String::new(), |k| format!("%{k}"));
        let mut args = vec![
            format!("--job-name=tessera-{stage}"),
            format!("--array=0-{}{throttle}", tasks - 1),
            format!("--output={}", logs.join(format!("{stage}-%A_%a.out")).display()),
        ];
        args.extend(self.resources());
        if stage == "profile" {
            args.push("--exclusive".into());
        }
        args.extend(self.sbatch_args.iter().cloned());
        args
    }

    /// sbatch arguments for the merge job of `stage`, after the arrays `after` succeed.
    pub fn merge_args(&self, stage: &str, after: &[u64], logs: &Path) -> Vec<String> {
        let mut args = vec![
            format!("--job-name=tessera-{stage}-merge"),
            format!("--output={}", logs.join(format!("{stage}-merge-%j.out")).display()),
        ];
        if !after.is_empty() {
            let ids: Vec<String> = after.iter().map(u64::to_string).collect();
            args.push(format!("--dependency=afterok:{}", ids.join(":")));
        }
        args.extend(self.resources());
        args.extend(self.sbatch_args.iter().cloned());
        args
    }

    /// The batch script of a task array or of the merge of the job in `job_file`.
    pub fn script(&self, kind: ScriptKind, binary: &Path, device: &str, job_file: &Path, workdir: &Path) -> String {
        let run = format!("{} --device {device} slurm", quoted(&binary.display().to_string()));
        let job = quoted(&job_file.display().to_string());
        let command = match kind {
            ScriptKind::Tasks { groups } => {
                let list: Vec<String> = groups.iter().map(usize::to_string).collect();
                let workers = self.cpus_per_task.unwrap_or(0);
                format!(
                    "groups=({})\nexec {run} task {job} --group \"${{groups[$SLURM_ARRAY_TASK_ID]}}\" --workers {workers}\n",
                    list.join(" ")
                )
            }
            ScriptKind::Merge => format!("exec {run} merge {job}\n"),
        };
        format!(
            "#!/bin/bash\n# Written by tessera: run through sbatch (see `tessera slurm status`).\nset -euo pipefail\ncd {}\n{command}",
            quoted(&workdir.display().to_string())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_arguments_carry_the_throttle_resources_and_own_arguments() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            max_parallel: Some(2),
            gpus_per_task: Some(1),
            sbatch_args: vec!["--account=proj".into()],
            ..SlurmOptions::default()
        };
        let args = options.array_args("profile", 3, Path::new("/runs/lib/slurm/logs"));
        assert_eq!(
            args,
            [
                "--job-name=tessera-profile",
                "--array=0-2%2",
                "--output=/runs/lib/slurm/logs/profile-%A_%a.out",
                "--partition=gpu",
                "--gpus-per-task=1",
                "--exclusive",
                "--account=proj"
            ]
        );
        let merge = options.merge_args("score", &[4, 9], Path::new("/l"));
        assert!(merge.contains(&"--dependency=afterok:4:9".to_string()), "{merge:?}");
    }

    #[test]
    fn scripts_quote_paths_and_index_their_groups() {
        let script = SlurmOptions::default().script(
            ScriptKind::Tasks { groups: &[3, 7] },
            Path::new("/opt/it's/tessera"),
            "cpu",
            Path::new("/runs/lib/slurm/library.job.json"),
            Path::new("/home/me"),
        );
        assert!(script.contains("cd '/home/me'\n"), "{script}");
        assert!(script.contains("groups=(3 7)\n"), "{script}");
        assert!(
            script.contains(r"exec '/opt/it'\''s/tessera' --device cpu slurm task"),
            "{script}"
        );
        assert!(
            script.contains(r#"--group "${groups[$SLURM_ARRAY_TASK_ID]}""#),
            "{script}"
        );
    }

    #[test]
    fn zero_resources_are_refused() {
        let options = SlurmOptions {
            max_parallel: Some(0),
            ..SlurmOptions::default()
        };
        assert!(options.check().unwrap_err().to_string().contains("max_parallel"));
    }
}
