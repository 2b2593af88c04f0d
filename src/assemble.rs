//! The assemble stage (DESIGN §1.8), the step after the search: the child one solution of a
//! solutions file chose, built from the library's trained blocks and the parent's tensors, and
//! written as a DeciLM checkpoint with the parent's tokenizer. Reads libraries and solutions;
//! knows nothing of fusion or training.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{ModelSummary, StoreDtype};
use crate::library::{Library, LibraryError, block_name};
use crate::search::{SearchError, SolutionRef};

#[derive(Clone, Debug)]
pub struct AssembleOptions {
    pub library: PathBuf,
    /// `PATH` (the best solution), `PATH#k` or `PATH#method`.
    pub solution: SolutionRef,
    /// The parent, when it moved since the library was built.
    pub parent: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("{solution} ({label}): {cause}")]
    Library {
        solution: String,
        label: String,
        cause: Box<LibraryError>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssembleReport {
    /// Which solution was assembled, e.g. `runs/solutions.json (solutions[0])`.
    pub solution: String,
    pub child: ModelSummary,
    /// The child's block per layer.
    pub blocks: Vec<String>,
    pub parent_params: usize,
}

/// Assembles the child `options.solution` names into `out`.
pub fn assemble_child(out: &Path, options: &AssembleOptions) -> Result<AssembleReport, AssembleError> {
    let saved = options.solution.read()?;
    let solution = options.solution.to_string();
    let fail = |cause: LibraryError| AssembleError::Library {
        solution: solution.clone(),
        label: saved.label.clone(),
        cause: Box::new(cause),
    };
    let library = Library::open(&options.library).map_err(fail)?;
    let parent = library.parent(options.parent.as_deref()).map_err(fail)?;
    let child = library.assemble_spans(&parent, &saved.solution.choice).map_err(fail)?;
    let source = options.parent.as_ref().unwrap_or(&library.manifest.parent.source);
    let written = child
        .write_model_dir(out, StoreDtype::F32, source)
        .map_err(|e| fail(e.into()))?;
    Ok(AssembleReport {
        solution: format!("{solution} ({})", saved.label),
        blocks: child.config.blocks.iter().map(block_name).collect(),
        child: written,
        parent_params: parent.config.num_params(),
    })
}

impl std::fmt::Display for AssembleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} layers, {} parameters (parent {}), written to {}",
            self.solution,
            self.child.layers,
            self.child.params,
            self.parent_params,
            self.child.model.display()
        )
    }
}
