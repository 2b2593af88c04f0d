//! A stage's work cut into cluster tasks: library building (the trainable items), scoring (the
//! candidates) and profiling (the scenarios) are lists of independent items; a job groups the
//! items still to do into tasks, runs one task (the stage function on that group, through the
//! stage's work selection) and merges the tasks' results into what the stage run locally
//! records. Tasks of the library train into the library directly (items are locked one by
//! one); tasks of score and profile write their part to a file and only the merge records, so
//! no two processes write the same file. Knows the stages' functions, nothing of Slurm.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::cost::{MeasuredCosts, ProfileOptions, ProfileReport, measure_costs, record_profile};
use crate::library::interchange::write_block_library;
use crate::library::{BuildOptions, BuildReport, ItemState, Library, block_name, build_library, lock, plan_build};
use crate::score::{ScoreOptions, ScoreReport, compute_scores, record_score_report};
use crate::selection::Selection;

pub const FORMAT: &str = "tessera-cluster-job/1";
/// The folder of a library directory that holds what its cluster jobs need and leave.
pub const FOLDER: &str = "slurm";

/// A stage and its options, as a task runs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum StageWork {
    Library(BuildOptions),
    Score(ScoreOptions),
    Profile(ProfileOptions),
}

impl StageWork {
    pub fn name(&self) -> &'static str {
        match self {
            StageWork::Library(_) => "library",
            StageWork::Score(_) => "score",
            StageWork::Profile(_) => "profile",
        }
    }

    /// The same work on the items of one group only.
    fn restricted(&self, group: &[usize]) -> StageWork {
        let items = Selection::Items(group.to_vec());
        match self {
            StageWork::Library(options) => StageWork::Library(BuildOptions {
                selection: items,
                progress: false,
                ..options.clone()
            }),
            StageWork::Score(options) => StageWork::Score(ScoreOptions {
                selection: items,
                compare_items: false,
                progress: false,
                ..options.clone()
            }),
            StageWork::Profile(options) => StageWork::Profile(ProfileOptions {
                scenarios: group.iter().map(|&i| options.scenarios[i]).collect(),
                progress: false,
                ..options.clone()
            }),
        }
    }
}

/// What a stage returns, whichever way it ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "stage", content = "report", rename_all = "snake_case")]
pub enum StageReport {
    Library(Box<BuildReport>),
    Score(ScoreReport),
    Profile(ProfileReport),
}

impl std::fmt::Display for StageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageReport::Library(r) => write!(f, "{r}"),
            StageReport::Score(r) => write!(f, "{r}"),
            StageReport::Profile(r) => write!(f, "{r}"),
        }
    }
}

/// One stage's work on one library, cut into groups of items (one group per task). Written
/// once when the stage is submitted; tasks and the merge read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageJob {
    pub format: String,
    /// The library directory (absolute).
    pub dir: PathBuf,
    /// The directory the stage was submitted from, where the options' relative paths resolve.
    pub workdir: PathBuf,
    pub work: StageWork,
    /// Every item of the stage by index: item keys, candidate names or scenarios.
    pub names: Vec<String>,
    /// The items each task does, by index into `names`.
    pub groups: Vec<Vec<usize>>,
    /// Items the work asked for that were done before it was planned (trained library items).
    pub done_before: usize,
    /// When the job was planned (seconds since the Unix epoch).
    pub planned_at: f64,
}

pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ClusterError> {
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    let text = serde_json::to_string_pretty(value).expect("cluster records serialise");
    std::fs::write(&partial, text).map_err(ClusterError::io(&partial))?;
    std::fs::rename(&partial, path).map_err(ClusterError::io(path))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(ClusterError::io(path))?;
    serde_json::from_str(&text).map_err(|e| ClusterError::Format {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

impl StageJob {
    /// Plans `work` on the library in `dir`: the items it asks for that are not done yet, in
    /// groups of `per_task`. For the library this creates (or checks) its manifest.
    pub fn plan(dir: &Path, work: StageWork, per_task: usize) -> Result<StageJob, ClusterError> {
        if per_task == 0 {
            return Err(ClusterError::Settings("items per task must be at least 1".into()));
        }
        let workdir = std::env::current_dir().map_err(ClusterError::io(Path::new(".")))?;
        let dir = std::path::absolute(dir).map_err(ClusterError::io(dir))?;
        let (names, selected, done_before) = match &work {
            StageWork::Library(options) => {
                let plan = plan_build(&dir, options)?;
                let selected = plan.selected(&options.selection)?;
                let names: Vec<String> = plan.trainable.iter().map(|i| i.key()).collect();
                let pending: Vec<usize> = selected
                    .iter()
                    .copied()
                    .filter(|&i| !plan.is_trained(&plan.trainable[i]))
                    .collect();
                let done = selected.len() - pending.len();
                (names, pending, done)
            }
            StageWork::Score(options) => {
                let library = Library::open(&dir)?;
                let candidates = library.candidates();
                options
                    .selection
                    .check(candidates.len(), library.manifest.parent.config.num_layers())
                    .map_err(|e| ClusterError::Settings(e.to_string()))?;
                let selected = (0..candidates.len())
                    .filter(|&i| options.selection.selects(i, candidates[i].0.first))
                    .collect();
                let names = candidates
                    .iter()
                    .map(|(span, block)| format!("layer_{span} {}", block_name(block)))
                    .collect();
                (names, selected, 0)
            }
            StageWork::Profile(options) => {
                Library::open(&dir)?;
                if options.scenarios.is_empty() {
                    return Err(crate::cost::profile::CostError::NoScenario.into());
                }
                let names = options.scenarios.iter().map(|s| s.to_string()).collect();
                (names, (0..options.scenarios.len()).collect(), 0)
            }
        };
        Ok(StageJob {
            format: FORMAT.into(),
            groups: selected.chunks(per_task).map(<[usize]>::to_vec).collect(),
            dir,
            workdir,
            work,
            names,
            done_before,
            planned_at: now_seconds(),
        })
    }

    pub fn stage(&self) -> &'static str {
        self.work.name()
    }

    /// `<library>/slurm`, where the stage's records live.
    pub fn folder(&self) -> PathBuf {
        self.dir.join(FOLDER)
    }

    pub fn path(folder: &Path, stage: &str) -> PathBuf {
        folder.join(format!("{stage}.job.json"))
    }

    pub fn report_path(&self) -> PathBuf {
        self.folder().join(format!("{}.report.json", self.stage()))
    }

    fn part_path(&self, group: usize) -> PathBuf {
        self.folder().join(self.stage()).join(format!("part-{group}.json"))
    }

    pub fn write(&self) -> Result<PathBuf, ClusterError> {
        let folder = self.folder();
        std::fs::create_dir_all(folder.join(self.stage())).map_err(ClusterError::io(&folder))?;
        let path = Self::path(&folder, self.stage());
        write_json(&path, self)?;
        Ok(path)
    }

    pub fn read(path: &Path) -> Result<StageJob, ClusterError> {
        let job: StageJob = read_json(path)?;
        if job.format != FORMAT {
            return Err(ClusterError::Format {
                path: path.to_path_buf(),
                problem: format!("format `{}` is not `{FORMAT}`", job.format),
            });
        }
        Ok(job)
    }

    /// The names of a group's items, for people reading a status.
    pub fn group_names(&self, group: usize) -> Vec<&str> {
        self.groups[group].iter().map(|&i| self.names[i].as_str()).collect()
    }

    /// Whether each group's results are complete on disk (whatever the scheduler says).
    pub fn done_groups(&self) -> Result<Vec<bool>, ClusterError> {
        match &self.work {
            StageWork::Library(_) => {
                let library = Library::open(&self.dir)?;
                let trained = |key: &&str| {
                    library
                        .manifest
                        .items
                        .get(*key)
                        .is_some_and(|r| r.state == ItemState::Trained)
                };
                Ok((0..self.groups.len())
                    .map(|g| self.group_names(g).iter().all(trained))
                    .collect())
            }
            _ => Ok((0..self.groups.len()).map(|g| self.part_path(g).is_file()).collect()),
        }
    }

    /// Runs one task: the stage on one group's items (`workers` threads, 0 = one per core).
    pub fn run_task(&self, group: usize, workers: usize, device: &Device) -> Result<(), ClusterError> {
        let items = self.groups.get(group).ok_or_else(|| {
            ClusterError::Settings(format!(
                "the job has {} task groups; there is no group {group}",
                self.groups.len()
            ))
        })?;
        match self.work.restricted(items) {
            StageWork::Library(options) => {
                build_library(&self.dir, &BuildOptions { workers, ..options }, device)?;
            }
            StageWork::Score(options) => {
                write_json(&self.part_path(group), &compute_scores(&self.dir, &options, device)?)?
            }
            StageWork::Profile(options) => {
                write_json(&self.part_path(group), &measure_costs(&self.dir, &options, device)?)?
            }
        }
        Ok(())
    }

    /// Joins the tasks' results into what the stage records when run locally, records it, and
    /// writes the report where waiting callers read it.
    pub fn merge(&self, device: &Device) -> Result<StageReport, ClusterError> {
        let done = self.done_groups()?;
        let missing: Vec<usize> = (0..self.groups.len()).filter(|&g| !done[g]).collect();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|&g| self.group_names(g).join(", ")).collect();
            return Err(ClusterError::Incomplete {
                stage: self.stage(),
                dir: self.dir.clone(),
                tasks: missing.len(),
                items: names.join("; "),
            });
        }
        let report = match &self.work {
            StageWork::Library(_) => {
                let library = Library::open(&self.dir)?;
                {
                    let _held = lock::manifest(&self.dir)?;
                    write_block_library(&library)?;
                }
                let trained: usize = self.groups.iter().map(Vec::len).sum();
                StageReport::Library(Box::new(BuildReport {
                    dir: self.dir.clone(),
                    trainable: self.done_before + trained,
                    trained_now: trained,
                    already_trained: self.done_before,
                    trained_elsewhere: 0,
                    seconds: now_seconds() - self.planned_at,
                    library,
                }))
            }
            StageWork::Score(options) => StageReport::Score(self.merge_scores(options, device)?),
            StageWork::Profile(options) => {
                let mut measured = MeasuredCosts {
                    latency: Vec::new(),
                    calibration: Vec::new(),
                };
                for group in 0..self.groups.len() {
                    let part: MeasuredCosts = read_json(&self.part_path(group))?;
                    measured.latency.extend(part.latency);
                    measured.calibration.extend(part.calibration);
                }
                StageReport::Profile(record_profile(&self.dir, options, measured)?)
            }
        };
        write_json(&self.report_path(), &report)?;
        Ok(report)
    }

    fn merge_scores(&self, options: &ScoreOptions, device: &Device) -> Result<ScoreReport, ClusterError> {
        let items_only = ScoreOptions {
            blocks: None,
            selection: Selection::All,
            ..options.clone()
        };
        let mut report = if options.compare_items {
            compute_scores(&self.dir, &items_only, device)?
        } else {
            ScoreReport {
                library: self.dir.clone(),
                windows: 0,
                tokens_per_window: 0,
                blocks: Vec::new(),
                accuracy: Vec::new(),
                tasks: 0,
                items: None,
            }
        };
        for group in 0..self.groups.len() {
            let part: ScoreReport = read_json(&self.part_path(group))?;
            report.windows = part.windows;
            report.tokens_per_window = part.tokens_per_window;
            report.tasks = part.tasks;
            report.blocks.extend(part.blocks);
            report.accuracy.extend(part.accuracy);
        }
        record_score_report(&report)?;
        Ok(report)
    }

    /// Removes what an earlier run of this stage left (parts, report), before a new submission.
    pub fn clear_results(&self) -> Result<(), ClusterError> {
        let parts = self.folder().join(self.stage());
        if parts.exists() {
            std::fs::remove_dir_all(&parts).map_err(ClusterError::io(&parts))?;
        }
        std::fs::create_dir_all(&parts).map_err(ClusterError::io(&parts))?;
        match std::fs::remove_file(self.report_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClusterError::io(&self.report_path())(e)),
            _ => Ok(()),
        }
    }
}
