//! tessera: build a faster child model from a Llama-style parent, following NVIDIA's Puzzle
//! and FFN-Fusion methods. Modules follow the pipeline (see DESIGN.md §1):
//! model → checkpoint/tokenizer → data → world → train → eval → parent → … ; a stage never
//! reaches into a later one.

// CBC is compiled from source and linked statically by this crate; good_lp only calls it.
extern crate cbc_src;

pub mod bench;
pub mod checkpoint;
pub mod config_file;
pub mod cost;
pub mod data;
pub mod demo;
pub mod device;
pub mod eval;
pub mod fusion;
pub mod library;
pub mod model;
pub mod parent;
pub mod posttrain;
pub mod report;
pub mod score;
pub mod search;
pub mod source;
pub mod table;
pub mod tokenizer;
pub mod train;
pub mod world;
