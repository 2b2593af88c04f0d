//! What was submitted for a stage (`<library>/slurm/<stage>.submission.json`: the arrays with
//! the task groups each stands for, and the merge job) and the three things done with it:
//! submit, resume (resubmit only the tasks that failed or vanished, and a merge job that
//! waits on them) and cancel. The record is rewritten after every sbatch that succeeds, under
//! a lock, so that a failure or a second caller never submits anything twice. Knows the job,
//! the status and Slurm's commands.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::job::{FOLDER, StageJob, StageWork, read_json, write_json};
use super::options::{ScriptKind, SlurmOptions};
use super::status::{MergePhase, StageStatus, TaskPhase};
use super::{ClusterError, slurm};
use crate::library::lock;

pub const FORMAT: &str = "tessera-slurm-submission/1";

/// One array job: its task `i` does group `groups[i]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArrayJob {
    pub id: u64,
    pub script: PathBuf,
    pub groups: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergeJob {
    pub id: u64,
    pub script: PathBuf,
    /// The arrays it waits for.
    pub after: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submission {
    pub format: String,
    pub stage: String,
    /// The job file the tasks read.
    pub job: PathBuf,
    pub options: SlurmOptions,
    pub binary: PathBuf,
    /// The compute device tasks use (`--device`).
    pub device: String,
    /// Every array submitted, oldest first; a resubmitted group's latest array counts.
    pub arrays: Vec<ArrayJob>,
    pub merge: Option<MergeJob>,
}

impl Submission {
    fn folder(&self) -> PathBuf {
        self.job.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    pub fn path(folder: &Path, stage: &str) -> PathBuf {
        folder.join(format!("{stage}.submission.json"))
    }

    fn logs(&self) -> PathBuf {
        self.folder().join("logs")
    }

    pub fn task_log(&self, array: u64, index: usize) -> PathBuf {
        self.logs().join(format!("{}-{array}_{index}.out", self.stage))
    }

    pub fn merge_log(&self, job: u64) -> PathBuf {
        self.logs().join(format!("{}-merge-{job}.out", self.stage))
    }

    pub fn read(path: &Path) -> Result<Submission, ClusterError> {
        let submission: Submission = read_json(path)?;
        if submission.format != FORMAT {
            return Err(ClusterError::Format {
                path: path.to_path_buf(),
                problem: format!("format `{}` is not `{FORMAT}`", submission.format),
            });
        }
        Ok(submission)
    }

    fn save(&self) -> Result<(), ClusterError> {
        write_json(&Self::path(&self.folder(), &self.stage), self)
    }

    /// Writes a script and submits it with `args`, recording nothing.
    fn sbatch(&self, name: &str, script: String, args: &[String]) -> Result<(u64, PathBuf), ClusterError> {
        let scripts = self.folder().join("scripts");
        std::fs::create_dir_all(&scripts).map_err(ClusterError::io(&scripts))?;
        std::fs::create_dir_all(self.logs()).map_err(ClusterError::io(&self.logs()))?;
        let path = scripts.join(format!("{}-{name}.sh", self.stage));
        std::fs::write(&path, script).map_err(ClusterError::io(&path))?;
        Ok((slurm::sbatch(args, &path)?, path))
    }

    /// Submits `groups` of `job` as arrays no longer than the cluster allows; records each.
    fn submit_groups(&mut self, job: &StageJob, groups: &[usize]) -> Result<Vec<u64>, ClusterError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        // MaxArraySize bounds the task index, so each array counts from 0.
        let longest = slurm::max_array_size()?.max(1);
        let mut ids = Vec::new();
        for chunk in groups.chunks(longest) {
            let script = self.options.script(
                ScriptKind::Tasks { groups: chunk },
                &self.binary,
                &self.device,
                &self.job,
                &job.workdir,
            );
            let args = self.options.array_args(&self.stage, chunk.len(), &self.logs());
            let (id, script) = self.sbatch(&format!("array-{}", self.arrays.len()), script, &args)?;
            self.arrays.push(ArrayJob {
                id,
                script,
                groups: chunk.to_vec(),
            });
            self.save()?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Submits a merge job waiting for the arrays `after`; records it.
    fn submit_merge(&mut self, job: &StageJob, after: Vec<u64>) -> Result<u64, ClusterError> {
        let script = self
            .options
            .script(ScriptKind::Merge, &self.binary, &self.device, &self.job, &job.workdir);
        let args = self.options.merge_args(&self.stage, &after, &self.logs());
        let (id, script) = self.sbatch("merge", script, &args)?;
        self.merge = Some(MergeJob { id, script, after });
        self.save()?;
        Ok(id)
    }
}

/// What a resume (or a submission) sent to Slurm.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Resubmission {
    pub stage: String,
    /// The task groups submitted.
    pub groups: Vec<usize>,
    pub arrays: Vec<u64>,
    pub merge: Option<u64>,
    /// The merge job cancelled because it waited on failed tasks.
    pub cancelled_merge: Option<u64>,
    /// Whether the stage had already finished (nothing to do).
    pub finished: bool,
}

impl std::fmt::Display for Resubmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.finished {
            return writeln!(f, "{}: already finished; nothing submitted", self.stage);
        }
        if self.groups.is_empty() && self.merge.is_none() {
            return writeln!(
                f,
                "{}: every task is queued, running or done; nothing submitted",
                self.stage
            );
        }
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        writeln!(
            f,
            "{}: submitted {} task(s) as array job(s) {}, merge job {}{}",
            self.stage,
            self.groups.len(),
            if self.arrays.is_empty() {
                "-".into()
            } else {
                list(&self.arrays)
            },
            self.merge.map_or("-".into(), |m| m.to_string()),
            self.cancelled_merge
                .map_or(String::new(), |m| format!(" (replacing merge job {m})"))
        )
    }
}

/// The lock of a stage's submissions to Slurm in the library `dir`.
fn stage_lock(dir: &Path, stage: &str) -> Result<lock::Held, ClusterError> {
    Ok(lock::named(dir, &format!("slurm-{stage}.lock"))?)
}

/// The work with what does not change its results left out (progress bars, threads).
fn comparable(work: &StageWork) -> serde_json::Value {
    let mut value = serde_json::to_value(work).expect("stage options serialise");
    if let Some(object) = value.as_object_mut() {
        object.remove("progress");
        object.remove("workers");
    }
    value
}

/// Submits `work` on the library in `dir` to Slurm: its pending items as array tasks and a
/// merge job after them. When this stage was submitted before with the same work, continues
/// that submission instead (resubmitting what failed; nothing when all is queued or done).
pub fn submit(
    dir: &Path,
    work: StageWork,
    options: &SlurmOptions,
    device: &str,
) -> Result<(Submission, Resubmission), ClusterError> {
    options.check()?;
    let stage = work.name();
    let dir = std::path::absolute(dir).map_err(ClusterError::io(dir))?;
    let folder = dir.join(FOLDER);
    let _held = stage_lock(&dir, stage)?;
    let record = Submission::path(&folder, stage);
    if record.is_file() {
        let mut submission = Submission::read(&record)?;
        let job = StageJob::read(&submission.job)?;
        let status = StageStatus::read(&submission, &job)?;
        if comparable(&job.work) == comparable(&work) {
            submission.options = options.clone();
            let resubmitted = resume_locked(&mut submission, &job, &status)?;
            return Ok((submission, resubmitted));
        }
        if status.live() > 0 || matches!(status.merge.phase, MergePhase::Waiting | MergePhase::Running) {
            return Err(ClusterError::Settings(format!(
                "{}: another {stage} job with other settings is still queued: `tessera slurm cancel {}` first",
                record.display(),
                dir.display()
            )));
        }
    }
    let job = StageJob::plan(&dir, work, options.items_per_task)?;
    job.clear_results()?;
    let job_file = job.write()?;
    let mut submission = Submission {
        format: FORMAT.into(),
        stage: stage.into(),
        job: job_file,
        options: options.clone(),
        binary: options.tessera_binary()?,
        device: device.into(),
        arrays: Vec::new(),
        merge: None,
    };
    submission.save()?;
    let groups: Vec<usize> = (0..job.groups.len()).collect();
    let arrays = submission.submit_groups(&job, &groups)?;
    let merge = submission.submit_merge(&job, arrays.clone())?;
    Ok((
        submission,
        Resubmission {
            stage: stage.into(),
            groups,
            arrays,
            merge: Some(merge),
            cancelled_merge: None,
            finished: false,
        },
    ))
}

/// Resubmits the tasks that failed or are missing, and a merge job that waits for them;
/// submits nothing when every task is queued, running or done and the merge job can still run.
fn resume_locked(
    submission: &mut Submission,
    job: &StageJob,
    status: &StageStatus,
) -> Result<Resubmission, ClusterError> {
    let mut done = Resubmission {
        stage: submission.stage.clone(),
        ..Resubmission::default()
    };
    match status.merge.phase {
        MergePhase::Done => {
            done.finished = true;
            return Ok(done);
        }
        // Its tasks are done; nothing can be wrong before it ends.
        MergePhase::Running => return Ok(done),
        _ => {}
    }
    let redo: Vec<usize> = status
        .tasks
        .iter()
        .filter(|t| matches!(t.phase, TaskPhase::Failed | TaskPhase::Missing))
        .map(|t| t.group)
        .collect();
    if redo.is_empty() && status.merge.phase == MergePhase::Waiting {
        return Ok(done);
    }
    let mut live_arrays: Vec<u64> = status
        .tasks
        .iter()
        .filter(|t| matches!(t.phase, TaskPhase::Pending | TaskPhase::Running))
        .filter_map(|t| t.array)
        .collect();
    live_arrays.sort_unstable();
    live_arrays.dedup();
    done.arrays = submission.submit_groups(job, &redo)?;
    done.groups = redo;
    if let Some(old) = &submission.merge {
        slurm::cancel(&[old.id])?;
        done.cancelled_merge = Some(old.id);
    }
    let mut after = live_arrays;
    after.extend(&done.arrays);
    done.merge = Some(submission.submit_merge(job, after)?);
    Ok(done)
}

/// The submissions under `dir`: its own `slurm/` folder, or those of the folders in it (a
/// pipeline run directory holds the library's).
pub fn find_submissions(dir: &Path) -> Result<Vec<PathBuf>, ClusterError> {
    let mut folders = vec![dir.join(FOLDER)];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut inner: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path().join(FOLDER)).collect();
        inner.sort();
        folders.extend(inner);
    }
    let mut found = Vec::new();
    for folder in folders.iter().filter(|f| f.is_dir()) {
        for stage in ["library", "score", "profile"] {
            let path = Submission::path(folder, stage);
            if path.is_file() {
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        return Err(ClusterError::NoSubmission {
            path: dir.to_path_buf(),
        });
    }
    Ok(found)
}

/// Where every stage submitted under `dir` stands.
pub fn stage_status(dir: &Path) -> Result<Vec<StageStatus>, ClusterError> {
    find_submissions(dir)?
        .iter()
        .map(|path| {
            let submission = Submission::read(path)?;
            StageStatus::read(&submission, &StageJob::read(&submission.job)?)
        })
        .collect()
}

/// Resumes every stage submitted under `dir` (see `resume_locked`).
pub fn resume(dir: &Path) -> Result<Vec<Resubmission>, ClusterError> {
    find_submissions(dir)?
        .iter()
        .map(|path| {
            let first = Submission::read(path)?;
            let _held = stage_lock(&StageJob::read(&first.job)?.dir, &first.stage)?;
            let mut submission = Submission::read(path)?;
            let job = StageJob::read(&submission.job)?;
            let status = StageStatus::read(&submission, &job)?;
            resume_locked(&mut submission, &job, &status)
        })
        .collect()
}

/// Cancels every job of every stage submitted under `dir`; returns the job ids.
pub fn cancel(dir: &Path) -> Result<Vec<u64>, ClusterError> {
    let mut ids = Vec::new();
    for path in find_submissions(dir)? {
        let submission = Submission::read(&path)?;
        ids.extend(submission.arrays.iter().map(|a| a.id));
        ids.extend(submission.merge.as_ref().map(|m| m.id));
    }
    slurm::cancel(&ids)?;
    Ok(ids)
}
