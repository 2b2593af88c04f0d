//! Helpers shared by the integration tests: where the real data lives, tiny fixtures, what two
//! libraries must share to be equal, and a real Slurm (`slurm`).
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod slurm;

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use tessera::checkpoint::{Checkpoint, ExportOptions};
use tessera::library::{BuildOptions, build_library};
use tessera::model::{ModelConfig, random_weights};
use tessera::source::TokenSource;
use tessera::world::tokenizer::{VOCAB_SIZE, write_tokenizer};

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

/// A random 2-layer parent (hidden 32) on the built-in world's vocabulary, saved with its
/// tokenizer.
pub fn tiny_parent(dir: &Path) -> PathBuf {
    let config = ModelConfig::uniform(VOCAB_SIZE, 32, 2, 4, 2, 64, 64);
    let parent = dir.join("parent");
    Checkpoint {
        weights: random_weights(&config, 3),
        config,
        parent_layers: None,
    }
    .write_hf(&parent, ExportOptions::default())
    .unwrap();
    write_tokenizer(&parent).unwrap();
    parent
}

/// [`tiny_parent`] and its `small` library, BLD on `tokens` tokens per item.
pub fn tiny_library(dir: &Path, tokens: usize) -> PathBuf {
    tiny_library_in(dir, tokens, "small.toml")
}

/// [`tiny_parent`] and its library of the search space `space` (a file in `search_spaces/`).
pub fn tiny_library_in(dir: &Path, tokens: usize, space: &str) -> PathBuf {
    let parent = tiny_parent(dir);
    let space = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("search_spaces")
        .join(space);
    let mut options = BuildOptions::new(&parent, &space, TokenSource::Builtin { seed: 2 });
    options.seq_len = 32;
    options.held_out_windows = 4;
    options.calibration_tokens = 256;
    options.bld.tokens = tokens;
    let out = dir.join("lib");
    build_library(&out, &options, &Device::flex()).unwrap();
    out
}

/// Every trained item's file of a library, by name, and the manifest's item records without
/// what two equal builds do not share (wall time, where training was resumed after a kill).
pub fn library_contents(dir: &Path) -> (Vec<(String, Vec<u8>)>, serde_json::Value) {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    let mut items = serde_json::to_value(&tessera::library::Library::open(dir).unwrap().manifest.items).unwrap();
    for record in items.as_object_mut().unwrap().values_mut() {
        let record = record.as_object_mut().unwrap();
        record.insert("seconds".into(), serde_json::json!(0));
        record.remove("resumed_from");
    }
    (files, items)
}
