//! Where a submitted stage stands, per task and for its merge job: the results on disk decide
//! what is done (a finished job's record may be purged from Slurm after `MinJobAge`); the
//! queue decides what is pending, running or failed, and a task the queue no longer knows that
//! left no results is missing. Knows the submission record and the job; reads the queue
//! through `slurm`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ClusterError;
use super::job::StageJob;
use super::slurm::{self, JobKey, JobState, Phase};
use super::submission::Submission;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    Pending,
    Running,
    Done,
    Failed,
    /// Never submitted, or gone from the queue without its results.
    Missing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskStatus {
    pub group: usize,
    pub items: Vec<String>,
    /// The array job that last ran (or runs) the group, and the task's index in it.
    pub array: Option<u64>,
    pub index: Option<usize>,
    pub phase: TaskPhase,
    /// Slurm's state and reason, when it still knows the task.
    pub slurm: Option<String>,
    pub log: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergePhase {
    /// Queued behind its tasks.
    Waiting,
    Running,
    Done,
    /// It can never start: a task it depends on failed.
    Blocked,
    Failed,
    Missing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergeStatus {
    pub job: Option<u64>,
    pub phase: MergePhase,
    pub slurm: Option<String>,
    pub log: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageStatus {
    pub stage: String,
    pub dir: PathBuf,
    pub tasks: Vec<TaskStatus>,
    pub merge: MergeStatus,
}

impl StageStatus {
    pub fn count(&self, phase: TaskPhase) -> usize {
        self.tasks.iter().filter(|t| t.phase == phase).count()
    }

    /// Tasks still queued or running.
    pub fn live(&self) -> usize {
        self.count(TaskPhase::Pending) + self.count(TaskPhase::Running)
    }

    /// Whether the stage is over without its merge having run or being able to: no task is
    /// left to run (Slurm may declare the merge blocked while other arrays still run).
    pub fn stuck(&self) -> bool {
        self.live() == 0
            && matches!(
                self.merge.phase,
                MergePhase::Blocked | MergePhase::Failed | MergePhase::Missing
            )
    }

    /// Reads the queue and the disk for `submission` of `job`.
    pub fn read(submission: &Submission, job: &StageJob) -> Result<StageStatus, ClusterError> {
        let mut ids: Vec<u64> = submission.arrays.iter().map(|a| a.id).collect();
        ids.extend(submission.merge.as_ref().map(|m| m.id));
        let states = slurm::states(&ids)?;
        let done = job.done_groups()?;
        let describe = |s: &JobState| format!("{} ({})", s.state, s.reason);
        // The latest array holding a group is the one that counts for it.
        let mut placed: BTreeMap<usize, JobKey> = BTreeMap::new();
        for array in &submission.arrays {
            for (index, &group) in array.groups.iter().enumerate() {
                placed.insert(group, (array.id, Some(index)));
            }
        }
        let tasks = (0..job.groups.len())
            .map(|group| {
                let key = placed.get(&group);
                let state = key.and_then(|k| states.get(k));
                let phase = match (done[group], state.map(JobState::phase)) {
                    (true, _) => TaskPhase::Done,
                    (false, Some(Phase::Waiting)) => TaskPhase::Pending,
                    (false, Some(Phase::Running)) => TaskPhase::Running,
                    (false, Some(Phase::Completed | Phase::Failed)) => TaskPhase::Failed,
                    (false, None) => TaskPhase::Missing,
                };
                TaskStatus {
                    group,
                    items: job.group_names(group).iter().map(|s| s.to_string()).collect(),
                    array: key.map(|(id, _)| *id),
                    index: key.and_then(|(_, index)| *index),
                    phase,
                    slurm: state.map(describe),
                    log: key.map(|(id, index)| submission.task_log(*id, index.unwrap_or(0))),
                }
            })
            .collect();
        let merge = match &submission.merge {
            None => MergeStatus {
                job: None,
                phase: MergePhase::Missing,
                slurm: None,
                log: None,
            },
            Some(merge) => {
                let state = states.get(&(merge.id, None));
                let report = job.report_path().is_file();
                let phase = match state {
                    Some(s) if s.never_runs() => MergePhase::Blocked,
                    Some(s) => match s.phase() {
                        Phase::Waiting => MergePhase::Waiting,
                        Phase::Running => MergePhase::Running,
                        Phase::Completed if report => MergePhase::Done,
                        Phase::Completed | Phase::Failed => MergePhase::Failed,
                    },
                    None if report => MergePhase::Done,
                    None => MergePhase::Missing,
                };
                MergeStatus {
                    job: Some(merge.id),
                    phase,
                    slurm: state.map(describe),
                    log: Some(submission.merge_log(merge.id)),
                }
            }
        };
        Ok(StageStatus {
            stage: job.stage().to_string(),
            dir: job.dir.clone(),
            tasks,
            merge,
        })
    }
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} of {}: {} tasks: {} done, {} running, {} pending, {} failed, {} missing",
            self.stage,
            self.dir.display(),
            self.tasks.len(),
            self.count(TaskPhase::Done),
            self.count(TaskPhase::Running),
            self.count(TaskPhase::Pending),
            self.count(TaskPhase::Failed),
            self.count(TaskPhase::Missing),
        )?;
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let path = |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
        for t in &self.tasks {
            let job = t.array.map(|a| format!("{a}_{}", t.index.unwrap_or(0)));
            writeln!(
                f,
                "  task {:<4} {:<10} {:<9} {:<34} {}  [{}]",
                t.group,
                text(&job),
                format!("{:?}", t.phase).to_lowercase(),
                text(&t.slurm),
                path(&t.log),
                t.items.join(", ")
            )?;
        }
        writeln!(
            f,
            "  merge      {:<10} {:<9} {:<34} {}",
            self.merge.job.map_or("-".into(), |j| j.to_string()),
            format!("{:?}", self.merge.phase).to_lowercase(),
            text(&self.merge.slurm),
            path(&self.merge.log)
        )
    }
}
