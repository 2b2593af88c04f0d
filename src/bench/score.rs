//! Replace-1-block scoring with prefix reuse against full recomputation of every replaced
//! model: the time of each and how far their scores differ (they must agree).

use std::path::Path;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::library::{Library, LibraryError};
use crate::score::{ReuseCheck, Scoring};
use crate::source::TokenSource;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreBench {
    pub windows: usize,
    pub tokens_per_window: usize,
    #[serde(flatten)]
    pub check: ReuseCheck,
}

/// Scores every candidate of the library at `dir` both ways on `windows` held-out windows of
/// `data` (default: the library's own data).
pub fn bench_score(
    dir: &Path,
    data: Option<&TokenSource>,
    windows: usize,
    device: &Device,
) -> Result<ScoreBench, LibraryError> {
    let library = Library::open(dir)?;
    let source = match data {
        Some(source) => source.clone(),
        None => library.manifest.settings.data.parse()?,
    };
    let scoring = Scoring::new(&library, None, &source, None, windows, None, device)?;
    let check = scoring.check_prefix_reuse(&library, &library.candidates())?;
    Ok(ScoreBench {
        windows: scoring.windows,
        tokens_per_window: scoring.tokens_per_window,
        check,
    })
}

impl std::fmt::Display for ScoreBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.check;
        write!(
            f,
            "{} blocks on {} windows of {} tokens: prefix reuse {:.2} s, full recomputation {:.2} s ({:.2}x); max |Δ| KL {:.1e}, LM loss {:.1e}, cosine {:.1e}",
            c.blocks,
            self.windows,
            self.tokens_per_window,
            c.reuse_seconds,
            c.full_seconds,
            c.speedup,
            c.max_abs_diff_kl,
            c.max_abs_diff_lm_loss,
            c.max_abs_diff_cosine
        )
    }
}
