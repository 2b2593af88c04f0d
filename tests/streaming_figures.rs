//! Streaming changes no number (issue 22). Before the stages hold the parent memory-mapped,
//! cache each layer's activations on disk and score one layer at a time, the figures of
//! today's in-memory stages were recorded as fixtures (`tests/fixtures/streaming/`); this test
//! recomputes them and requires every one to equal its recorded value to 1e-5 relative (1e-7
//! absolute near 0), printing the largest relative difference per kind. Per parent:
//! - a block library built by BLD: per trainable item, held-out nMSE before and after BLD and
//!   the final training loss (the manifest's figures);
//! - replace-1-block scores of every block on the chosen layers: KL to the parent, LM loss,
//!   cosine distance of the last hidden states;
//! - one fixed child that changes two or three layers (fewer KV heads, a narrower FFN, linear
//!   attention, a removed or linear FFN), assembled through a solutions file, written and read
//!   back: mean NLL on fixed token ids and the top-5 logits at three positions.
//!
//! Cases: `tiny` (the random 2-layer parent of `common::tiny_parent`, `small.toml`; always
//! runs), `smollm2` (SmolLM2-135M-Instruct's Q4_1 GGUF, layers 28-29 on WikiText-2; skipped
//! without `../shared/data`) and `default` (the default 8-layer parent of `tessera run
//! pipelines/default.toml` / `tessera parent train`, named by `TESSERA_DEFAULT_PARENT`; ignored
//! because that parent is not in the repository; BLD of its 40 items takes seconds). Each
//! fixture holds the SHA-256 of its parent's files: another parent cannot be checked against it.
//! The builds use an f32 activation cache (the in-memory code held f32 activations); the
//! default bf16 cache moves the figures slightly (docs/measurements.md, "Memory follows the
//! work").
//!
//! The fixtures are rewritten, only by code whose figures are the reference, with
//! `TESSERA_WRITE_FIXTURES=1 cargo test --release --test streaming_figures -- --include-ignored`;
//! `TESSERA_FIGURES_DIR=DIR` reads and writes `DIR` instead (to compare two runs). See
//! `tests/fixtures/README.md`.

mod common;

use std::path::PathBuf;

use common::figures::{Case, uncaptured};
use tessera::selection::Selection;
use tessera::source::TokenSource;

fn repository(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A chat and a story opening in the built-in world's byte-level vocabulary.
const BUILTIN_PROBE: &str = "<|system|>detailed thinking off<|user|>What is 17+25?<|assistant|>42</s>Once upon a time";

#[test]
fn tiny_parent_figures_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    Case {
        name: "tiny",
        parent: common::tiny_parent(dir.path()),
        space: repository("search_spaces/small.toml"),
        data: TokenSource::Builtin { seed: 2 },
        tokenizer: None,
        layers: Selection::All,
        seq_len: 32,
        held_out_windows: 4,
        calibration_tokens: 256,
        bld_tokens: 1024,
        score_windows: 4,
        child: vec![(0, "kv1 + ffn32"), (1, "attn_linear + ffn_noop")],
        probe_text: BUILTIN_PROBE,
        probe_tokens: 32,
    }
    .check_or_write();
}

#[test]
fn smollm2_figures_are_unchanged() {
    let Some(data) = common::shared_data("smollm2_figures_are_unchanged") else {
        return;
    };
    let gguf = data.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    Case {
        name: "smollm2",
        parent: gguf.clone(),
        space: repository("tests/fixtures/streaming/smollm2_space.toml"),
        data: TokenSource::Text {
            path: data.join("text/wikitext-2/test.txt"),
        },
        tokenizer: Some(gguf),
        layers: Selection::Layers { first: 28, last: 29 },
        seq_len: 64,
        held_out_windows: 4,
        calibration_tokens: 256,
        bld_tokens: 1024,
        score_windows: 4,
        child: vec![(28, "kv1 + ffn768"), (29, "attn_linear + ffn_noop")],
        probe_text: "The tower is 324 metres tall, about the same height as an 81-storey building, and the \
                     tallest structure in Paris.",
        probe_tokens: 24,
    }
    .check_or_write();
}

#[test]
#[ignore = "needs a trained default parent: set TESSERA_DEFAULT_PARENT (BLD of all 40 items, a few seconds)"]
fn default_parent_figures_are_unchanged() {
    let Some(parent) = std::env::var_os("TESSERA_DEFAULT_PARENT") else {
        uncaptured(
            "SKIPPED default_parent_figures_are_unchanged: TESSERA_DEFAULT_PARENT (a parent of \
             `tessera parent train`) is not set\n",
        );
        return;
    };
    Case {
        name: "default",
        parent: PathBuf::from(parent),
        space: repository("search_spaces/small.toml"),
        data: TokenSource::Builtin { seed: 1 },
        tokenizer: None,
        layers: Selection::All,
        seq_len: 64,
        held_out_windows: 8,
        calibration_tokens: 1024,
        bld_tokens: 8192,
        score_windows: 8,
        child: vec![
            (2, "kv1 + ffn192"),
            (5, "attn_linear + ffn_noop"),
            (7, "kv2 + ffn_linear"),
        ],
        probe_text: BUILTIN_PROBE,
        probe_tokens: 32,
    }
    .check_or_write();
}
