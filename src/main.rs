//! The `tessera` command: parses arguments and calls library functions (see `cli`), nothing more.

// burn-flex allocates and frees large tensor buffers at every op; glibc returns them to the
// system each time, and re-faulting the pages cost about a quarter of a training step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use clap::Parser;

fn main() {
    if let Err(error) = cli::run(cli::Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
