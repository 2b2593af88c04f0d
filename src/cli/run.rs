//! `run PIPELINE.toml`: the whole pipeline as one resumable job.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::Args;

use super::print;
use tessera::pipeline::{Pipeline, RunOptions, run_pipeline};

#[derive(Args)]
pub struct RunArgs {
    pipeline: PathBuf,
    /// Stage outputs go to RUNS/<name>/.
    #[arg(long, default_value_os_t = RunOptions::default().runs_dir)]
    runs: PathBuf,
    /// The report goes to REPORTS/<name>/index.html.
    #[arg(long, default_value_os_t = RunOptions::default().reports_dir)]
    reports: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(args: RunArgs, device: &Device) -> Result<()> {
    let options = RunOptions {
        runs_dir: args.runs,
        reports_dir: args.reports,
        progress: !args.json,
    };
    print(
        &run_pipeline(&Pipeline::read(&args.pipeline)?, &options, device)?,
        args.json,
    )
}
