//! Helpers shared by the integration tests: where the real data lives, tiny fixtures, what two
//! libraries must share to be equal, a real Slurm (`slurm`), and the recorded figures of a
//! library, its scores and an assembled child (`figures`).
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod figures;
pub mod slurm;

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use tessera::checkpoint::TensorSource;
use tessera::checkpoint::{Checkpoint, ExportOptions};
use tessera::library::{BuildOptions, build_library};
use tessera::model::{ModelConfig, random_weights};
use tessera::source::TokenSource;
use tessera::world::tokenizer::{VOCAB_SIZE, write_tokenizer};

/// Asserts that `text` mentions each of `parts`.
pub fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected `{part}` in:\n{text}");
    }
}

/// Asserts that `output` failed and that its stderr mentions each of `parts`; returns the stderr.
pub fn assert_fails_with(output: &std::process::Output, parts: &[&str]) -> String {
    assert!(
        !output.status.success(),
        "expected a failure; stdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let error = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_mentions(&error, parts);
    error
}

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

/// `library`'s parent walked on `windows` held-out windows of the built-in world (seed 3),
/// keeping its stream before every layer.
pub fn builtin_scoring(library: &tessera::library::Library, windows: usize) -> tessera::score::Scoring {
    let source = tessera::source::TokenSource::Builtin { seed: 3 };
    tessera::score::Scoring::new(
        library,
        None,
        &source,
        None,
        windows,
        None,
        &burn::prelude::Device::flex(),
    )
    .unwrap()
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

/// SHA-256 (FIPS 180-4), for comparing tensors with the hashes reference scripts stored (the
/// standard vectors are checked in `gguf_container`).
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut tail = data[data.len() / 64 * 64..].to_vec();
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in data.chunks_exact(64).chain(tail.chunks_exact(64)) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}
