//! `run PIPELINE.toml`: the whole pipeline as one resumable job.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::Args;

use super::print;
use tessera::cluster::Executor;
use tessera::device::DeviceChoice;
use tessera::pipeline::{Pipeline, RunOptions, run_pipeline};

/// Where library building, scoring and profiling run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorChoice {
    Local,
    /// As Slurm array jobs (settings from `[slurm]` of the pipeline file); the run waits for
    /// them, then goes on here.
    Slurm,
}

#[derive(Args)]
pub struct RunArgs {
    pipeline: PathBuf,
    /// Stage outputs go to RUNS/<name>/.
    #[arg(long, default_value_os_t = RunOptions::default().runs_dir)]
    runs: PathBuf,
    /// The report goes to REPORTS/<name>/index.html.
    #[arg(long, default_value_os_t = RunOptions::default().reports_dir)]
    reports: PathBuf,
    #[arg(long, value_enum, default_value_t = ExecutorChoice::Local)]
    executor: ExecutorChoice,
    #[arg(long)]
    json: bool,
}

pub fn run(args: RunArgs, choice: DeviceChoice, device: &Device) -> Result<()> {
    let pipeline = Pipeline::read(&args.pipeline)?;
    let executor = match args.executor {
        ExecutorChoice::Local => Executor::Local,
        ExecutorChoice::Slurm => Executor::Slurm {
            options: pipeline.slurm.clone(),
            device: choice,
        },
    };
    let options = RunOptions {
        runs_dir: args.runs,
        reports_dir: args.reports,
        executor,
        progress: !args.json,
    };
    print(&run_pipeline(&pipeline, &options, device)?, args.json)
}
