//! Which tasks to measure on, as a user names them: the built-in world's (held-out or training
//! split, of a seed, so many) or a JSONL task file. Knows the world and the task-file format.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::accuracy::{AccuracyError, read_task_file};
use crate::world::{Split, Task, TaskKind, World};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskSet {
    /// The first `count` tasks of `task_kind` of the built-in world of `seed`, from `split`.
    Builtin {
        seed: u64,
        split: Split,
        count: usize,
        #[serde(default)]
        task_kind: TaskKind,
    },
    /// One `{"question", "answer"}` object per line.
    File { path: PathBuf },
}

impl TaskSet {
    /// The spec of the built-in world's multi-step tasks.
    pub const BUILTIN: &str = "builtin";
    /// The spec of the built-in world's one-step tasks.
    pub const BUILTIN_ONE_STEP: &str = "builtin-one-step";
    /// The spec of no tasks, where a set is optional.
    pub const NONE: &str = "none";

    /// `builtin` or `builtin-one-step` (the world of `seed`, `count` tasks of `split`) or a task
    /// file's path.
    pub fn named(spec: &str, seed: u64, split: Split, count: usize) -> Self {
        let builtin = |kind| TaskSet::Builtin {
            seed,
            split,
            count,
            task_kind: kind,
        };
        match spec {
            Self::BUILTIN => builtin(TaskKind::Chains),
            Self::BUILTIN_ONE_STEP => builtin(TaskKind::OneStep),
            _ => TaskSet::File { path: spec.into() },
        }
    }

    /// [`TaskSet::named`], or no set for [`TaskSet::NONE`].
    pub fn named_if_any(spec: &str, seed: u64, split: Split, count: usize) -> Option<Self> {
        (spec != Self::NONE).then(|| Self::named(spec, seed, split, count))
    }

    /// The tasks of `set`; none without a set.
    pub fn tasks_if_any(set: Option<&TaskSet>) -> Result<Vec<Task>, AccuracyError> {
        set.map_or(Ok(Vec::new()), TaskSet::tasks)
    }

    pub fn tasks(&self) -> Result<Vec<Task>, AccuracyError> {
        match self {
            TaskSet::Builtin {
                seed,
                split,
                count,
                task_kind,
            } => Ok(World::new(*seed).tasks_of(*task_kind, *split, *count)),
            TaskSet::File { path } => read_task_file(path),
        }
    }
}

impl std::fmt::Display for TaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskSet::Builtin {
                seed,
                split,
                count,
                task_kind,
            } => write!(f, "builtin:{seed} ({count} {split:?} {task_kind:?} tasks)"),
            TaskSet::File { path } => write!(f, "{}", path.display()),
        }
    }
}
