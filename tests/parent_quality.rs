//! The default parent against the same recipe at half depth (about 7 minutes on two cores, so
//! it is ignored by default; run with `cargo test --release --test parent_quality -- --ignored`).
//! The parent must answer held-out tasks (thinking on) better than the half-depth model, and its
//! held-out NLL must be well below the corpus's unigram entropy.

use burn::prelude::Device;
use tessera::parent::{ParentOptions, train_parent};
use tessera::train::RunControl;

#[test]
#[ignore = "trains two models for about 7 minutes"]
fn default_parent_beats_half_depth_and_the_unigram_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let options = ParentOptions {
        control: RunControl::default(),
        ..ParentOptions::default()
    };
    let full = train_parent(&dir.path().join("full"), &options, &device).unwrap();
    let half_options = ParentOptions {
        layers: options.layers / 2,
        ..options.clone()
    };
    let half = train_parent(&dir.path().join("half"), &half_options, &device).unwrap();
    println!("{full}\n{half}");
    assert!(
        full.accuracy.on.accuracy > half.accuracy.on.accuracy + 0.10,
        "parent {:.3} vs half depth {:.3}",
        full.accuracy.on.accuracy,
        half.accuracy.on.accuracy
    );
    assert!(
        full.held_out_nll < 0.5 * full.unigram_entropy,
        "{} vs {}",
        full.held_out_nll,
        full.unigram_entropy
    );
}
