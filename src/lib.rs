//! tessera: build a faster child model from a Llama-style parent, following NVIDIA's Puzzle
//! and FFN-Fusion methods. Modules follow the pipeline (see DESIGN.md §1):
//! model → checkpoint/tokenizer → data → world → train → eval → parent → library → score/cost →
//! search → fusion → posttrain → report, with `pipeline` above them all; a stage never reaches
//! into a later one.
//!
//! The whole pipeline from a pipeline file (what `tessera run pipelines/default.toml` does):
//!
//! ```no_run
//! use std::path::Path;
//! use tessera::prelude::*;
//!
//! # fn main() -> anyhow::Result<()> {
//! let device = DeviceChoice::Cpu.device()?;
//! let pipeline = Pipeline::read(Path::new("pipelines/default.toml"))?;
//! let report = run_pipeline(&pipeline, &RunOptions::default(), &device)?;
//! println!("{}", report.summary);
//! println!("report: {}", report.report.display());
//! # Ok(())
//! # }
//! ```
//!
//! Or stage by stage, as the notebooks do: a parent, its block library, scores, costs, and the
//! child a constraint file asks for.
//!
//! ```no_run
//! use std::path::Path;
//! use tessera::prelude::*;
//!
//! # fn main() -> anyhow::Result<()> {
//! let device = DeviceChoice::Cpu.device()?;
//! let options = ParentOptions { layers: 4, steps: 150, ..ParentOptions::default() };
//! let parent = train_parent(Path::new("work/parent"), &options, &device)?;
//!
//! let data = TokenSource::Builtin { seed: options.seed };
//! let space = Path::new("search_spaces/small.toml");
//! build_library(Path::new("work/library"), &BuildOptions::new(&parent.model_dir, space, data.clone()), &device)?;
//! let library = Library::open(Path::new("work/library"))?;
//!
//! let scoring = Scoring::new(&library, None, &data, None, 16, &device)?;
//! let rows = scoring.score(&library, &library.candidates(), Stage::Trained, false)?;
//! record_scores(Path::new("work/library"), &rows)?;
//! let scenarios = vec!["prefill:b=1,s=128".parse()?, "decode:b=1,c=192".parse()?];
//! let costs = ProfileOptions { target: Target::Cpu, precision: Precision::F32, scenarios, repeats: 5, calibration_models: 6, progress: false };
//! profile_library(&library, &costs, &device)?;
//!
//! let input = SearchInput::open(Path::new("work/library"))?;
//! let spec = SearchSpec::from_file(ConstraintFile::read(Path::new("constraints/cpu-2x.toml"))?, SolverKind::Cbc);
//! let best = &search(&input, &spec)?.solutions[0];
//! let child = library.assemble_spans(&library.parent(None)?, &choice_from_json(&best.choice).map_err(anyhow::Error::msg)?)?;
//! println!("{}", architecture_svg(&library.parent(None)?.config, &child.config, &child.layer_spans()));
//! # Ok(())
//! # }
//! ```

// CBC is compiled from source and linked statically by this crate; good_lp only calls it.
extern crate cbc_src;

pub mod bench;
pub mod checkpoint;
pub mod config_file;
pub mod cost;
pub mod data;
pub mod device;
pub mod eval;
pub mod fusion;
pub mod library;
pub mod model;
pub mod parent;
pub mod pipeline;
pub mod posttrain;
pub mod prelude;
pub mod report;
pub mod score;
pub mod search;
pub mod source;
pub mod table;
pub mod tokenizer;
pub mod train;
pub mod world;
