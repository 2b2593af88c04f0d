//! The README's main job on the built-in default (no download, no `../shared`): train the
//! default parent on the built-in world and evaluate it. Later pipeline stages extend this job.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::prelude::Device;
use serde::Serialize;

use crate::parent::{ParentOptions, ParentReport, train_parent};

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub out: PathBuf,
    pub parent: ParentReport,
}

pub fn run_demo(out: &Path, progress: bool, device: &Device) -> Result<DemoReport> {
    let options = ParentOptions {
        progress,
        ..ParentOptions::default()
    };
    let parent = train_parent(&out.join("parent-run"), &options, device)?;
    Ok(DemoReport {
        out: out.to_path_buf(),
        parent,
    })
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.parent)?;
        writeln!(f, "outputs in {}:", self.out.display())?;
        writeln!(
            f,
            "  parent-run/parent/             the trained parent (HF Llama checkpoint + tokenizer.json)"
        )?;
        writeln!(f, "  parent-run/parent_report.json  the figures above")?;
        writeln!(f, "  parent-run/data/               the built-in world as token shards")?;
        write!(
            f,
            "  parent-run/train/checkpoint/   the training state (rerunning resumes from it)"
        )
    }
}
