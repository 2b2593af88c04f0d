//! Stage bookkeeping for `tessera run`. A finished stage leaves a stamp
//! (`<run>/stages/<stage>.json`: the inputs it ran with, a run id, its time and its result); it
//! is up to date, and is not run again, while its stamp records the inputs it would run with now.
//! A stage's inputs name the run ids of the stages it reads, so a stage that ran again makes the
//! ones after it run again. A stage that starts notes its inputs (`<stage>.started.json`): killed
//! midway, it runs again with the same inputs and its own resume state (training checkpoints)
//! lets it continue where it stopped; with other inputs, that state is stale and its work
//! folders are cleared first. Each stage's peak resident memory is measured, printed and
//! stamped. Knows nothing of what the stages do.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::peak_memory::{self, Bytes};

#[derive(Serialize, Deserialize)]
struct Stamp {
    stage: String,
    inputs: Value,
    id: String,
    seconds: f64,
    /// The process's peak resident memory while the stage ran (absent in older stamps).
    #[serde(default)]
    peak_bytes: Option<u64>,
    result: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ran,
    UpToDate,
}

/// What happened to one stage in this invocation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageLog {
    pub stage: String,
    pub outcome: Outcome,
    /// This invocation's time on it (reading the stamp, when up to date).
    pub seconds: f64,
    /// The time the stage's work took when it ran.
    pub work_seconds: f64,
    /// The process's peak resident memory while the stage's work ran (None where the system
    /// does not say).
    pub peak_bytes: Option<u64>,
    pub id: String,
}

pub struct Stages {
    dir: PathBuf,
    total: usize,
    announce: bool,
    pub log: Vec<StageLog>,
}

impl Stages {
    /// Stamps live in `run_dir/stages/`; `total` stages are expected (for the `[k/total]` lines,
    /// printed to stderr when `announce`).
    pub fn open(run_dir: &Path, total: usize, announce: bool) -> Result<Self> {
        let dir = run_dir.join("stages");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir,
            total,
            announce,
            log: Vec::new(),
        })
    }

    /// The run id of `stage`, finished (run or up to date) earlier in this invocation.
    pub fn id(&self, stage: &str) -> &str {
        self.log
            .iter()
            .find(|l| l.stage == stage)
            .map(|l| l.id.as_str())
            .unwrap_or_else(|| panic!("stage `{stage}` is read before it ran"))
    }

    /// Returns the recorded result of `stage` when its stamp has these `inputs`; otherwise runs
    /// `work` and stamps its result. `work_dirs` hold the stage's resume state: kept when the
    /// stage was last started with these same inputs, cleared otherwise.
    pub fn run<T: Serialize + DeserializeOwned>(
        &mut self,
        stage: &str,
        inputs: Value,
        work_dirs: &[&Path],
        work: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let path = self.dir.join(format!("{stage}.json"));
        let position = self.log.len() + 1;
        if let Some(stamp) = read_stamp(&path)
            && stamp.inputs == inputs
            && let Ok(result) = serde_json::from_value::<T>(stamp.result)
        {
            if self.announce {
                eprintln!(
                    "[{position}/{}] {stage}: up to date (its {:.0} s of work are not redone)",
                    self.total, stamp.seconds
                );
            }
            self.log.push(StageLog {
                stage: stage.into(),
                outcome: Outcome::UpToDate,
                seconds: started.elapsed().as_secs_f64(),
                work_seconds: stamp.seconds,
                peak_bytes: stamp.peak_bytes,
                id: stamp.id,
            });
            return Ok(result);
        }
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing the stale stamp {}", path.display()))?;
        }
        let started_path = self.dir.join(format!("{stage}.started.json"));
        let resumable = std::fs::read_to_string(&started_path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|started| started == inputs);
        if !resumable {
            for dir in work_dirs.iter().filter(|d| d.exists()) {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("clearing {}, which holds the state of other settings", dir.display()))?;
            }
            std::fs::write(&started_path, serde_json::to_string_pretty(&inputs)?)
                .with_context(|| format!("writing {}", started_path.display()))?;
        }
        if self.announce {
            let how = if resumable { "resuming" } else { "running" };
            eprintln!("[{position}/{}] {stage}: {how}", self.total);
        }
        peak_memory::reset_peak();
        let result = work().with_context(|| format!("stage `{stage}`"))?;
        let seconds = started.elapsed().as_secs_f64();
        let peak_bytes = peak_memory::peak_resident_bytes();
        let id = format!(
            "{}",
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        );
        let stamp = Stamp {
            stage: stage.into(),
            inputs,
            id: id.clone(),
            seconds,
            peak_bytes,
            result: serde_json::to_value(&result)?,
        };
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_string_pretty(&stamp)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
        std::fs::remove_file(&started_path).with_context(|| format!("removing {}", started_path.display()))?;
        if self.announce {
            let peak = peak_bytes
                .map(|b| format!(", peak memory {}", Bytes(b)))
                .unwrap_or_default();
            eprintln!("[{position}/{}] {stage}: done in {seconds:.1} s{peak}", self.total);
        }
        self.log.push(StageLog {
            stage: stage.into(),
            outcome: Outcome::Ran,
            seconds,
            work_seconds: seconds,
            peak_bytes,
            id,
        });
        Ok(result)
    }
}

/// A stamp that cannot be read (cut short, or from an older tessera) counts as absent.
fn read_stamp(path: &Path) -> Option<Stamp> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}
