//! Helpers shared by the integration tests: where the real data lives, and tiny fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` beside the repository, or `None` after printing why the test is skipped.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("models/stories260K/stories260K.bin").is_file() {
        Some(dir)
    } else {
        println!(
            "SKIPPED {test}: {} is absent (it holds the real checkpoints and text)",
            dir.display()
        );
        None
    }
}

pub fn stories_bin(data: &std::path::Path) -> PathBuf {
    data.join("models/stories260K/stories260K.bin")
}

pub fn stories_tokenizer(data: &std::path::Path) -> PathBuf {
    data.join("models/stories260K/tok512.bin")
}

pub fn tessera() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
}
