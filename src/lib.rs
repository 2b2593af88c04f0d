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
//! Or stage by stage, as the notebooks do: every stage is one function that writes its own
//! folder and returns a report (`Display` prints its table). A pipeline file's settings give
//! each stage's options (`Pipeline::*_options`), so a notebook can run the same stages itself:
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
//! let space = Path::new("search_spaces/small.toml");
//! let build = BuildOptions::new(&parent.model_dir, space, TokenSource::Builtin { seed: options.seed });
//! let library = Path::new("work/library");
//! println!("{}", build_library(library, &build, &device)?);
//! println!("{}", score_library(library, &ScoreOptions::default(), &device)?);
//! let scenarios = vec!["prefill:b=1,s=128".parse()?, "decode:b=1,c=192".parse()?];
//! let costs = ProfileOptions { scenarios, repeats: 5, calibration_models: 6, ..ProfileOptions::default() };
//! profile_library(library, &costs, &device)?;
//!
//! let spec = SearchSpec::from_file(ConstraintFile::read(Path::new("constraints/cpu-2x.toml"))?, SolverKind::Cbc);
//! let found = search_library(library, &spec, Some(Path::new("work/solutions.json")), &device)?;
//! println!("{found}");
//! let solution: SolutionRef = "work/solutions.json".parse()?;
//! let child = assemble_child(Path::new("work/child"), &AssembleOptions { library: library.into(), solution, parent: None, dtype: StoreDtype::F32 })?;
//! println!("{child}");
//! # Ok(())
//! # }
//! ```

// CBC is compiled from source and linked statically by this crate; good_lp only calls it.
extern crate cbc_src;

pub mod assemble;
pub mod bench;
pub mod checkpoint;
pub mod cluster;
pub mod config_file;
pub mod cost;
pub mod data;
pub mod device;
pub mod eval;
pub mod fault;
pub mod fusion;
pub mod inspect;
pub mod library;
pub mod memory_budget;
pub mod model;
pub mod names;
pub mod parallel;
pub mod parent;
pub mod peak_memory;
pub mod pipeline;
pub mod plot;
pub mod posttrain;
pub mod prelude;
pub mod progress;
pub mod report;
pub mod score;
pub mod search;
pub mod selection;
pub mod source;
pub mod stats;
pub mod table;
pub mod tokenizer;
pub mod train;
pub mod world;
