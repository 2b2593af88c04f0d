//! `solutions.json`, what a search found (DESIGN §2 "Solutions"): written by
//! [`SearchReport::write`] and read back by [`SearchReport::read`], the file's only writer and
//! reader. A solution is named on the command line as `PATH` (the best), `PATH#k` (the k-th,
//! from 0) or `PATH#method` (a baseline, e.g. `#greedy`).

use std::path::{Path, PathBuf};

use super::SearchError;
use super::run::{SearchReport, SolutionReport};

impl SearchReport {
    /// Writes the report through a temporary file and a rename.
    pub fn write(&self, path: &Path) -> Result<(), SearchError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| SearchError::Io { path, cause }
        };
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_string_pretty(self).expect("a search report serialises");
        std::fs::write(&partial, text).map_err(io(&partial))?;
        std::fs::rename(&partial, path).map_err(io(path))
    }

    pub fn read(path: &Path) -> Result<Self, SearchError> {
        let text = std::fs::read_to_string(path).map_err(|cause| SearchError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        serde_json::from_str(&text).map_err(|e| SearchError::Library {
            path: path.to_path_buf(),
            problem: format!("not a solutions file: {e}"),
        })
    }

    /// The solution `pick` names: `""` the best, `k` the k-th, or a baseline's method.
    pub fn pick(&self, pick: &str) -> Option<&SolutionReport> {
        match (pick, pick.parse::<usize>()) {
            ("", _) => self.solutions.first(),
            (_, Ok(k)) => self.solutions.get(k),
            (_, Err(_)) => self.baselines.iter().find(|b| b.method == pick),
        }
    }
}

/// One solution of a solutions file, as `PATH[#k|#method]` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SolutionRef {
    pub path: PathBuf,
    /// After `#`: empty for the best solution.
    pub pick: String,
}

impl std::str::FromStr for SolutionRef {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (path, pick) = text.rsplit_once('#').unwrap_or((text, ""));
        Ok(Self {
            path: PathBuf::from(path),
            pick: pick.to_string(),
        })
    }
}

impl std::fmt::Display for SolutionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pick.as_str() {
            "" => write!(f, "{}", self.path.display()),
            pick => write!(f, "{}#{pick}", self.path.display()),
        }
    }
}

/// A solution read from its file, with a label for messages (`solutions[0]`, `baseline greedy`).
#[derive(Clone, Debug)]
pub struct SavedSolution {
    pub label: String,
    pub solution: SolutionReport,
}

impl SolutionRef {
    /// What the pick names: `solutions[k]` or `baseline NAME`.
    pub fn label(&self) -> String {
        match self.pick.parse::<usize>() {
            _ if self.pick.is_empty() => "solutions[0]".into(),
            Ok(k) => format!("solutions[{k}]"),
            Err(_) => format!("baseline {}", self.pick),
        }
    }

    pub fn read(&self) -> Result<SavedSolution, SearchError> {
        let report = SearchReport::read(&self.path)?;
        let solution = report.pick(&self.pick).ok_or_else(|| {
            let methods: Vec<&str> = report.baselines.iter().map(|b| b.method.as_str()).collect();
            SearchError::Library {
                path: self.path.clone(),
                problem: format!(
                    "has no {}: it holds {} solutions (#0 to #{}) and the baselines {methods:?}",
                    self.label(),
                    report.solutions.len(),
                    report.solutions.len().saturating_sub(1)
                ),
            }
        })?;
        Ok(SavedSolution {
            label: self.label(),
            solution: solution.clone(),
        })
    }
}
