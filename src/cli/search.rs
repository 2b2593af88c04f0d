//! `search`, `pareto` and `assemble`: what to choose under which limits, and the child chosen.

use std::path::PathBuf;

use anyhow::Result;
use burn::prelude::Device;
use clap::Args;

use super::args::named;
use super::print;
use tessera::assemble::{AssembleOptions, assemble_child};
use tessera::checkpoint::StoreDtype;
use tessera::report::pareto_front;
use tessera::search::{
    ConstraintFile, Measure, Objective, SearchSpec, SolutionRef, SolverKind, Sweep, parse_limits, search_library,
};

/// What to optimise and under which limits: a constraint file, or an objective and raw limits.
#[derive(Args)]
pub struct SpecArgs {
    /// A library directory or any `block_library.json` in the interchange layout.
    #[arg(long)]
    library: PathBuf,
    /// A constraint file (constraints/*.toml).
    #[arg(long, conflicts_with_all = ["objective", "maximize", "limits"])]
    constraints: Option<PathBuf>,
    /// The library key to minimise (e.g. metrics.kl_div) when there is no constraint file.
    #[arg(long, required_unless_present = "constraints")]
    objective: Option<String>,
    #[arg(long)]
    maximize: bool,
    /// `KEY<=V`, `KEY>=V` or `KEY=LOW..HIGH` on any library key; repeatable.
    #[arg(long = "limit")]
    limits: Vec<String>,
    /// Diverse solutions to return (overrides the constraint file).
    #[arg(long)]
    solutions: Option<usize>,
    /// Layers in which each solution differs from every earlier one (overrides the file).
    #[arg(long)]
    min_diff: Option<usize>,
    #[arg(long, default_value_t = SolverKind::default(), value_parser = named::<SolverKind>())]
    solver: SolverKind,
    /// Seconds before the solver returns its best so far (overrides the file).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Relative optimality gap at which to stop (overrides the file).
    #[arg(long)]
    gap: Option<f64>,
    /// Skip the baselines.
    #[arg(long)]
    no_baselines: bool,
}

impl SpecArgs {
    fn spec(&self) -> Result<SearchSpec> {
        let mut spec = match &self.constraints {
            Some(path) => SearchSpec::from_file(ConstraintFile::read(path)?, self.solver),
            None => {
                let mut limits = Vec::new();
                for text in &self.limits {
                    limits.extend(parse_limits(text)?);
                }
                let objective = Objective {
                    key: self.objective.clone().expect("clap requires it without --constraints"),
                    maximize: self.maximize,
                };
                let mut spec = SearchSpec::raw(objective, limits);
                spec.options.solver = self.solver;
                spec
            }
        };
        let options = &mut spec.options;
        options.solutions = self.solutions.unwrap_or(options.solutions);
        options.min_diff = self.min_diff.unwrap_or(options.min_diff);
        options.time_limit_s = self.time_limit.or(options.time_limit_s);
        options.gap = self.gap.or(options.gap);
        options.check()?;
        spec.baselines = !self.no_baselines;
        Ok(spec)
    }
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Also write the solutions (the `--json` document) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Assemble the best child and time it against the parent on this CPU over this many
    /// interleaved rounds of whole requests (a tessera library and a cpu constraint file); when
    /// it misses the ask, correct the prediction by the measurement and search again.
    #[arg(long, requires = "constraints")]
    measure: Option<usize>,
    /// With --measure: searches after the first at most (0: only time the child).
    #[arg(long, requires = "measure", default_value_t = Measure::DEFAULT_RE_SOLVES)]
    re_solves: usize,
    #[arg(long)]
    json: bool,
}

pub fn search(args: SearchArgs, device: &Device) -> Result<()> {
    let spec = SearchSpec {
        measure: args.measure.map(|rounds| Measure {
            rounds,
            re_solves: args.re_solves,
        }),
        ..args.spec.spec()?
    };
    let report = search_library(&args.spec.library, &spec, args.out.as_deref(), device)?;
    print(&report, args.json)?;
    if let (Some(out), false) = (&args.out, args.json) {
        println!("solutions written to {}", out.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct ParetoArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// `KEY=FROM..TO:STEPS`: a limit of the constraint file or a library key (then `KEY<=value`).
    #[arg(long)]
    sweep: Sweep,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn pareto(args: ParetoArgs) -> Result<()> {
    let front = pareto_front(
        &args.spec.library,
        &args.spec.spec()?,
        &args.sweep,
        &args.out,
        !args.json,
    )?;
    print(&front, args.json)
}

#[derive(Args)]
pub struct AssembleArgs {
    #[arg(long)]
    library: PathBuf,
    /// `solutions.json` of a search: `PATH` (the best), `PATH#k` (the k-th) or `PATH#greedy` (a baseline).
    #[arg(long)]
    solution: SolutionRef,
    /// The parent, when it moved since the library was built.
    #[arg(long)]
    parent: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// How the child's tensors are stored: f32, f16 or bf16.
    #[arg(long, default_value_t = AssembleOptions::DTYPE, value_parser = named::<StoreDtype>())]
    dtype: StoreDtype,
    #[arg(long)]
    json: bool,
}

pub fn assemble(args: AssembleArgs) -> Result<()> {
    let options = AssembleOptions {
        library: args.library,
        solution: args.solution,
        parent: args.parent,
        dtype: args.dtype,
    };
    print(&assemble_child(&args.out, &options)?, args.json)
}
