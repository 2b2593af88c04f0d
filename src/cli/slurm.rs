//! `--slurm` on `library build`, `score` and `profile`, and `tessera slurm status|resume|cancel|
//! wait` (plus the hidden `task` and `merge` that the batch scripts run).

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::prelude::Device;
use clap::{Args, Subcommand};

use super::print;
use tessera::cluster::executor::wait_all;
use tessera::cluster::{Executor, Outcome, SlurmOptions, StageJob, StageReport, StageWork};
use tessera::device::DeviceChoice;

/// Run the stage through Slurm instead of here.
#[derive(Args)]
pub struct SlurmArgs {
    /// Submit the pending items as a Slurm array job and a merge job after it, then return
    /// (watch with `tessera slurm status`); with --wait, wait for them and print the report.
    #[arg(long)]
    slurm: bool,
    /// With --slurm: wait until the merge job has run.
    #[arg(long, requires = "slurm")]
    wait: bool,
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// Time limit per task, e.g. `4:00:00`.
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    #[arg(long, requires = "slurm")]
    gpus_per_task: Option<usize>,
    /// Also the threads each task uses.
    #[arg(long, requires = "slurm")]
    cpus_per_task: Option<usize>,
    /// Tasks running at once.
    #[arg(long, requires = "slurm")]
    max_parallel: Option<usize>,
    /// Work items per task.
    #[arg(long, requires = "slurm", default_value_t = SlurmOptions::default().items_per_task)]
    items_per_task: usize,
    /// A further sbatch argument (repeat for several), e.g. `--sbatch-arg=--account=proj`.
    #[arg(long = "sbatch-arg", requires = "slurm", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// With --wait: seconds between two looks at the queue.
    #[arg(long, requires = "slurm", default_value_t = SlurmOptions::default().poll_seconds)]
    poll_seconds: f64,
}

impl SlurmArgs {
    /// Here, or through Slurm with tasks on `device`.
    fn executor(&self, device: DeviceChoice) -> Executor {
        if !self.slurm {
            return Executor::Local;
        }
        let options = SlurmOptions {
            partition: self.partition.clone(),
            time: self.time.clone(),
            gpus_per_task: self.gpus_per_task,
            cpus_per_task: self.cpus_per_task,
            max_parallel: self.max_parallel,
            items_per_task: self.items_per_task,
            sbatch_args: self.sbatch_args.clone(),
            poll_seconds: self.poll_seconds,
            ..SlurmOptions::default()
        };
        Executor::Slurm { options, device }
    }
}

/// Prints a stage's report as the stage itself prints it.
fn print_report(report: &StageReport, json: bool) -> Result<()> {
    match report {
        StageReport::Library(r) => print(r, json),
        StageReport::Score(r) => print(r, json),
        StageReport::Profile(r) => print(r, json),
    }
}

/// Runs `work` on the library in `dir` here, or submits it to Slurm as `slurm` says.
pub fn run_stage(
    dir: &Path,
    work: StageWork,
    slurm: &SlurmArgs,
    choice: DeviceChoice,
    device: &Device,
    json: bool,
) -> Result<()> {
    match slurm
        .executor(choice)
        .run_or_submit(dir, work, slurm.wait, device, !json)?
    {
        Outcome::Ran(report) => print_report(&report, json),
        Outcome::Submitted(submitted) => {
            if !json {
                println!("watch it with `tessera slurm status {}`", dir.display());
            }
            print(&submitted, json)
        }
    }
}

/// Prints one report per stage: a JSON list, or each table.
fn print_each<R: serde::Serialize + std::fmt::Display>(reports: &[R], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(reports)?);
    } else {
        reports.iter().for_each(|r| print!("{r}"));
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum SlurmCommand {
    /// Where each stage submitted under DIR (a library, or a pipeline run) stands: every task
    /// pending, running, done, failed or missing, with its log, and the merge job.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Resubmit only the tasks that failed or are missing, and a merge job after them.
    Resume {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Cancel every job submitted under DIR.
    Cancel { dir: PathBuf },
    /// Wait until every stage submitted under DIR has merged; print their reports.
    Wait {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One array task (what the batch scripts run).
    #[command(hide = true)]
    Task {
        job: PathBuf,
        #[arg(long)]
        group: usize,
        #[arg(long, default_value_t = 0)]
        workers: usize,
    },
    /// The merge job (what the batch scripts run).
    #[command(hide = true)]
    Merge { job: PathBuf },
}

pub fn run(command: SlurmCommand, device: &Device) -> Result<()> {
    match command {
        SlurmCommand::Status { dir, json } => print_each(&tessera::cluster::stage_status(&dir)?, json),
        SlurmCommand::Resume { dir, json } => print_each(&tessera::cluster::resume(&dir)?, json),
        SlurmCommand::Cancel { dir } => {
            let ids = tessera::cluster::cancel(&dir)?;
            println!("cancelled jobs {ids:?}");
            Ok(())
        }
        SlurmCommand::Wait { dir, json } => {
            for report in wait_all(&dir, !json)? {
                print_report(&report, json)?;
            }
            Ok(())
        }
        SlurmCommand::Task { job, group, workers } => {
            let job = StageJob::read(&job)?;
            if group < job.groups.len() {
                eprintln!(
                    "tessera {} task, group {group}: {}",
                    job.stage(),
                    job.group_names(group).join(", ")
                );
            }
            Ok(job.run_task(group, workers, device)?)
        }
        SlurmCommand::Merge { job } => {
            let report = StageJob::read(&job)?.merge(device)?;
            print_report(&report, false)
        }
    }
}
