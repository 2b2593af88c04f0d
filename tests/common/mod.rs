//! Helpers shared by the integration tests: where the real data lives, and tiny fixtures.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/data` beside the repository, or `None` after printing why the test is skipped.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("models/stories260K/stories260K.bin").is_file() {
        Some(dir)
    } else {
        // Written to the stream itself: libtest captures `println!`, so the reason would vanish.
        let reason = format!(
            "SKIPPED {test}: {} is absent (it holds the real checkpoints and text)\n",
            dir.display()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), reason.as_bytes());
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
