//! The assemble stage (DESIGN §1.8), the step after the search: the child one solution of a
//! solutions file chose, built from the library's trained blocks and the parent's tensors, and
//! written as a DeciLM checkpoint with the parent's tokenizer. Reads libraries and solutions;
//! knows nothing of fusion or training.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, ModelSummary, StoreDtype, TensorSource};
use crate::library::{AssembledChild, Library, LibraryError, block_name};
use crate::memory_budget::{Estimate, MemoryError};
use crate::model::ModelConfig;
use crate::search::{SearchError, SolutionRef};

#[derive(Clone, Debug)]
pub struct AssembleOptions {
    pub library: PathBuf,
    /// `PATH` (the best solution), `PATH#k` or `PATH#method`.
    pub solution: SolutionRef,
    /// The parent, when it moved since the library was built.
    pub parent: Option<PathBuf>,
    /// How the child's tensors are stored ([`AssembleOptions::DTYPE`] unless asked otherwise).
    pub dtype: StoreDtype,
}

impl AssembleOptions {
    /// f32: the stages after assembly train the child.
    pub const DTYPE: StoreDtype = StoreDtype::F32;
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
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

/// The peak of assembling a child of a parent of `parent` shape, known before either is read:
/// the child is written one tensor at a time (see [`AssembledChild::making_bytes`]).
pub fn assemble_estimate(parent: &ModelConfig, widest_span: usize) -> Estimate {
    Estimate::new().with(
        format!(
            "the larger of one span's parent layers ({widest_span}), its block and the block's file (f32), and the \
             largest tensor (f32, and as written)"
        ),
        AssembledChild::making_bytes(parent, widest_span),
    )
}

/// What to change when assembling does not fit.
pub const ASSEMBLE_ADVICE: &str = "more memory: one span's block and one tensor at a time is the least assembly holds";

/// Assembles the child `options.solution` names into `out`; refused before the parent is read
/// when it will not fit in memory.
pub fn assemble_child(out: &Path, options: &AssembleOptions) -> Result<AssembleReport, AssembleError> {
    let saved = options.solution.read()?;
    let solution = options.solution.to_string();
    let fail = |cause: LibraryError| AssembleError::Library {
        solution: solution.clone(),
        label: saved.label.clone(),
        cause: Box::new(cause),
    };
    let library = Library::open(&options.library).map_err(fail)?;
    let source = options.parent.as_ref().unwrap_or(&library.manifest.parent.source);
    let parent_config = Checkpoint::read_config(source).map_err(|e| fail(e.into()))?;
    let widest_span = saved.solution.choice.iter().map(|(s, _)| s.layers()).max().unwrap_or(1);
    crate::memory_budget::check(
        "assemble",
        &assemble_estimate(&parent_config, widest_span),
        ASSEMBLE_ADVICE,
    )?;
    let parent = library.stored_parent(options.parent.as_deref()).map_err(fail)?;
    let child = library.assemble_stored(&parent, &saved.solution.choice).map_err(fail)?;
    let written = child
        .write_model_dir(out, options.dtype, source)
        .map_err(|e| fail(e.into()))?;
    Ok(AssembleReport {
        solution: format!("{solution} ({})", saved.label),
        blocks: child.config().blocks.iter().map(block_name).collect(),
        child: written,
        parent_params: parent_config.num_params(),
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
