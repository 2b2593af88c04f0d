//! The block library: initialisation from the parent (exact where it should be, channel
//! contribution better than the first channels on the real stories260K), a killed build that
//! resumes to the same library as an uninterrupted one (also when killed inside an item, from
//! its checkpoint), two builds into one directory that share the items, shards merged into the
//! same library, and clear errors for bad input.

mod common;

use common::library_contents as contents;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burn::prelude::*;
use tessera::checkpoint::{Checkpoint, StoreDtype, StoredCheckpoint, StreamedParent, read_tensor_file};
use tessera::library::activations::{ActivationWalk, calibration};
use tessera::library::bld::ItemNet;
use tessera::library::init::{channel_contributions, initial_weights, prune_ffn};
use tessera::library::{
    BuildOptions, ChildChoice, ItemState, Library, LibraryError, LinearInit, Stage, WorkItem, build_library,
    layer_tensors, merge_libraries,
};
use tessera::model::{AttentionConfig, ModelConfig};
use tessera::selection::Selection;
use tessera::source::TokenSource;

const SPACE: &str = "search_spaces/small.toml";

fn space() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(SPACE)
}

fn options(parent: &Path, tokens: usize) -> BuildOptions {
    let mut options = BuildOptions::new(parent, &space(), TokenSource::Builtin { seed: 2 });
    options.seq_len = 32;
    options.held_out_windows = 8;
    options.calibration_tokens = 512;
    options.bld.tokens = tokens;
    options
}

#[test]
fn kv_heads_pooled_in_groups_of_one_reproduce_the_parent_block() {
    let dir = tempfile::tempdir().unwrap();
    let parent_dir = common::tiny_parent(dir.path());
    let (checkpoint, _) = Checkpoint::read(&parent_dir).unwrap();
    let config = &checkpoint.config;
    let device = Device::flex();
    let model = checkpoint.build(&device).unwrap();
    let stored = StoredCheckpoint::open(&parent_dir).unwrap();
    let streamed = StreamedParent::new(&stored, &device);
    let windows: Vec<Vec<u32>> = (0..4)
        .map(|w| (0..32).map(|t| (w * 31 + t * 7) % 260).collect())
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let acts = ActivationWalk::new(&streamed, &windows, cache.path(), StoreDtype::F32)
        .unwrap()
        .current(&model.layers[0])
        .unwrap();
    let parent = layer_tensors(&checkpoint.weights, 0);
    // The parent's own KV heads (groups of one parent head) and one KV head per query head
    // (each parent head repeated): both are the parent's attention exactly.
    for kv_heads in [2, 4] {
        let item = WorkItem::attention(0, AttentionConfig::Gqa { kv_heads });
        let init = initial_weights(
            config,
            &config.blocks[0],
            &item,
            &parent,
            &calibration(&model.layers[0], &acts, 256, &device).unwrap(),
            LinearInit::Product,
        )
        .unwrap();
        let net = ItemNet::new(config, &config.blocks[0], item, &parent, &device).unwrap();
        let out = net.forward(
            &net.own_block(config, &init).unwrap(),
            acts.x.range(0, 4, &device).unwrap(),
        );
        let diff = (out - acts.y.range(0, 4, &device).unwrap())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff <= 1e-5, "kv_heads {kv_heads}: max |Δ| = {diff}");
    }
}

#[test]
fn channel_contribution_pruning_beats_the_first_channels_on_stories260k() {
    let Some(data) = common::shared_data("channel_contribution_pruning_beats_the_first_channels_on_stories260k") else {
        return;
    };
    let (checkpoint, _) = Checkpoint::read(&common::stories_bin(&data)).unwrap();
    let config = &checkpoint.config;
    let device = Device::flex();
    let model = checkpoint.build(&device).unwrap();
    // Text in the parent's own distribution: the five-story sample is too short to calibrate on.
    let source = TokenSource::ParentSamples { count: 256 };
    let windows = source.windows(&model, None, 128, 64, 32).unwrap();
    let stored = StoredCheckpoint::open(&common::stories_bin(&data)).unwrap();
    let streamed = StreamedParent::new(&stored, &device);
    // Calibrate on the training windows, compare on the held-out ones.
    let cache = tempfile::tempdir().unwrap();
    let walk = |name: &str, split: &[Vec<u32>]| {
        let dir = cache.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        ActivationWalk::new(&streamed, split, &dir, StoreDtype::F32).unwrap()
    };
    let (mut train, mut held_out) = (walk("train", &windows.train), walk("held-out", &windows.held_out));
    let width = 172;
    let mut report = Vec::new();
    for layer in 0..config.num_layers() {
        let block = &model.layers[layer];
        let (t, h) = (train.current(block).unwrap(), held_out.current(block).unwrap());
        let parent = layer_tensors(&checkpoint.weights, layer);
        let prefix = format!("model.layers.{layer}");
        let stats = calibration(block, &t, 2048, &device).unwrap();
        let scores = channel_contributions(
            stats.ffn_activation.as_ref().unwrap(),
            &parent[&format!("{prefix}.mlp.down_proj.weight")],
        );
        for keep in [width / 2, width / 4] {
            let item = WorkItem::ffn(layer, tessera::model::FfnConfig::SwiGlu { intermediate: keep });
            let net = ItemNet::new(config, &config.blocks[layer], item, &parent, &device).unwrap();
            let nmse = |channels: &[usize]| {
                let mut weights = prune_ffn(&parent, &prefix, channels);
                let norm = format!("{prefix}.post_attention_layernorm.weight");
                weights.insert(norm.clone(), parent[&norm].clone());
                net.evaluate(&net.own_block(config, &weights).unwrap(), &h).unwrap()
            };
            let mut by_contribution: Vec<usize> = (0..width).collect();
            by_contribution.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            let mut top = by_contribution[..keep].to_vec();
            top.sort_unstable();
            let first: Vec<usize> = (0..keep).collect();
            let (contribution, naive) = (nmse(&top), nmse(&first));
            report.push(format!(
                "layer {layer} keep {keep}: contribution {contribution:.4} vs first {naive:.4}"
            ));
            assert!(contribution < naive, "{}", report.join("\n"));
        }
        train.advance(t).unwrap();
        held_out.advance(h).unwrap();
    }
    eprintln!("{}", report.join("\n"));
}

fn build_command(parent: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = common::tessera();
    command.args(["library", "build", "--parent"]).arg(parent);
    command.args(["--space"]).arg(space());
    command.args([
        "--data",
        "builtin:2",
        "--seq-len",
        "32",
        "--held-out-windows",
        "8",
        "--json",
    ]);
    command.arg("--out").arg(out).args(extra);
    command
}

fn trained_items(dir: &Path) -> usize {
    Library::open(dir).map_or(0, |l| {
        l.manifest
            .items
            .values()
            .filter(|r| r.origin == tessera::library::Origin::Trained && r.state == ItemState::Trained)
            .count()
    })
}

#[test]
fn a_killed_build_resumes_to_the_library_an_uninterrupted_build_makes() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let (killed, straight) = (dir.path().join("killed"), dir.path().join("straight"));
    let tokens = ["--tokens", "49152", "--workers", "1"];
    let mut child = build_command(&parent, &killed, &tokens).spawn().unwrap();
    let started = Instant::now();
    while trained_items(&killed) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no item finished in 5 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = trained_items(&killed);
    let total = Library::open(&killed)
        .unwrap()
        .manifest
        .items
        .values()
        .filter(|r| r.origin == tessera::library::Origin::Trained)
        .count();
    assert!(done_before < total, "killed after {done_before} of {total} items");

    let resumed = build_command(&parent, &killed, &tokens).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["already_trained"], done_before, "{report}");
    assert_eq!(report["trained_now"], total - done_before, "{report}");

    let uninterrupted = build_command(&parent, &straight, &tokens).output().unwrap();
    assert!(
        uninterrupted.status.success(),
        "{}",
        String::from_utf8_lossy(&uninterrupted.stderr)
    );
    assert_eq!(contents(&killed), contents(&straight));
}

#[test]
fn two_shards_merged_equal_a_single_build() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let device = Device::flex();
    let single = dir.path().join("single");
    build_library(&single, &options(&parent, 2048), &device).unwrap();
    let mut parts = Vec::new();
    for index in 0..2 {
        let part = dir.path().join(format!("part{index}"));
        let mut sharded = options(&parent, 2048);
        sharded.selection = Selection::Shard { index, count: 2 };
        build_library(&part, &sharded, &device).unwrap();
        parts.push(part);
    }
    let (a, b) = (contents(&parts[0]).0, contents(&parts[1]).0);
    assert!(!a.is_empty() && !b.is_empty());
    assert!(
        a.iter().all(|(name, _)| b.iter().all(|(other, _)| other != name)),
        "shards overlap"
    );
    let merged = dir.path().join("merged");
    let part_paths: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
    merge_libraries(&part_paths, &merged).unwrap();
    assert_eq!(contents(&merged), contents(&single));
    assert_eq!(
        std::fs::read_to_string(merged.join("block_library.json")).unwrap(),
        std::fs::read_to_string(single.join("block_library.json")).unwrap()
    );
    // A block composed from the merged library is the one the single build composes.
    let library = Library::open(&merged).unwrap();
    let (checkpoint, _) = Checkpoint::read(&parent).unwrap();
    let block = tessera::model::BlockConfig {
        attention: AttentionConfig::Gqa { kv_heads: 1 },
        ffn: tessera::model::FfnConfig::Linear,
    };
    let from_merged = library
        .block_weights(1, &block, &layer_tensors(&checkpoint.weights, 1), Stage::Trained)
        .unwrap();
    let from_single = Library::open(&single)
        .unwrap()
        .block_weights(1, &block, &layer_tensors(&checkpoint.weights, 1), Stage::Trained)
        .unwrap();
    assert_eq!(from_merged, from_single);
    assert!(from_merged.contains_key("model.layers.1.mlp.linear_mlp.weight"));
    // Merged parts keep their init files too.
    let item = WorkItem::attention(1, AttentionConfig::Gqa { kv_heads: 1 });
    assert!(
        !read_tensor_file(&library.item_path(&item, Stage::Init))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn two_builds_into_one_directory_train_every_item_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let (shared, straight) = (dir.path().join("shared"), dir.path().join("straight"));
    let tokens = ["--tokens", "16384", "--workers", "1"];
    let both: Vec<_> = (0..2)
        .map(|_| {
            build_command(&parent, &shared, &tokens)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut trained = Vec::new();
    for child in both {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        trained.push((
            report["trained_now"].as_u64().unwrap(),
            report["trained_elsewhere"].as_u64().unwrap(),
            report["trainable"].as_u64().unwrap(),
        ));
    }
    let total = trained[0].2;
    eprintln!("(trained now, trained elsewhere, trainable) per process: {trained:?}");
    // Each item was trained by one process only: the two counts add up to the items, and
    // each process saw the other's items as trained elsewhere.
    assert_eq!(trained[0].0 + trained[1].0, total, "{trained:?}");
    for (now, elsewhere, _) in &trained {
        assert_eq!(now + elsewhere, total, "{trained:?}");
    }
    let single = build_command(&parent, &straight, &tokens).output().unwrap();
    assert!(single.status.success(), "{}", String::from_utf8_lossy(&single.stderr));
    assert_eq!(contents(&shared), contents(&straight));
}

#[test]
fn a_build_killed_in_the_middle_of_an_item_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let (killed, straight) = (dir.path().join("killed"), dir.path().join("straight"));
    // 8192 tokens of 8 windows of 32: 32 steps per item; checkpoints every 5.
    let tokens = ["--tokens", "8192", "--workers", "1", "--checkpoint-every", "5"];
    let item = "layer_1/kv1";
    let mut child = build_command(&parent, &killed, &tokens)
        .env(tessera::fault::VARIABLE, format!("stall:{item}:12"))
        .spawn()
        .unwrap();
    let checkpoint = killed.join("checkpoints/layer_1.kv1/checkpoint/train_state.json");
    let started = Instant::now();
    while !checkpoint.is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint in 5 minutes"
        );
        assert!(child.try_wait().unwrap().is_none(), "the build ended before it stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The process now holds the item's lock and waits: SIGKILL it there.
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(state["step"], 12);

    let resumed = build_command(&parent, &killed, &tokens).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let library = Library::open(&killed).unwrap();
    let record = &library.manifest.items[item];
    assert_eq!(record.resumed_from, Some(12), "{record:?}");
    assert_eq!(record.steps, 32, "{record:?}");
    assert!(
        !killed.join("checkpoints/layer_1.kv1").exists(),
        "the item's checkpoint is left behind"
    );

    let uninterrupted = build_command(&parent, &straight, &tokens).output().unwrap();
    assert!(uninterrupted.status.success());
    assert_eq!(contents(&killed), contents(&straight));
}

#[test]
fn bld_lowers_the_held_out_error_of_every_item_not_started_at_its_optimum() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let out = dir.path().join("lib");
    let report = build_library(&out, &options(&parent, 8192), &Device::flex()).unwrap();
    assert_eq!(report.trainable, 10, "{report:?}");
    for (key, record) in Library::open(&out).unwrap().manifest.items {
        if record.origin == tessera::library::Origin::Trained {
            let (init, trained) = (record.nmse_init.unwrap(), record.nmse_trained.unwrap());
            eprintln!("{key}: {init} -> {trained}");
            // A linear block starts from the least-squares fit, the optimum of its kind on the
            // calibration tokens; on this near-linear random parent that start (held-out nMSE
            // ~1e-4) lies below BLD's noise floor, and BLD may end above it (ffn_linear 1.1e-4 ->
            // 3.9e-4 on the built-in data with one-step tasks). Every other item must improve.
            if !key.contains("linear") {
                assert!(trained < init, "{key}: {init} -> {trained}");
            }
        }
    }
}

#[test]
fn the_activation_cache_is_bf16_by_default_removed_after_the_build_and_part_of_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let out = dir.path().join("lib");
    let mut settings = options(&parent, 256);
    settings.selection = Selection::Layers { first: 0, last: 0 };
    build_library(&out, &settings, &Device::flex()).unwrap();
    let manifest = Library::open(&out).unwrap().manifest;
    assert_eq!(manifest.settings.activation_cache, StoreDtype::Bf16);
    assert!(
        !out.join(tessera::library::build::ACTIVATIONS).exists(),
        "the walk's files are removed after the build"
    );
    // The cache's dtype changes what items train on: continuing with another is refused.
    settings.activation_cache = StoreDtype::F32;
    let error = build_error(&settings, &out);
    assert!(error.contains("activation_cache") && error.contains("bf16"), "{error}");
}

fn build_error(options: &BuildOptions, out: &Path) -> String {
    match build_library(out, options, &Device::flex()) {
        Ok(_) => panic!("the build should have failed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_library_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let out = dir.path().join("lib");
    build_library(&out, &options(&parent, 512), &Device::flex()).unwrap();

    let mut other = options(&parent, 512);
    other.bld.peak_lr = 5e-3;
    let error = build_error(&other, &out);
    assert!(
        error.contains("settings.bld.peak_lr") && error.contains("manifest.json"),
        "{error}"
    );

    let bad_space = dir.path().join("bad.toml");
    std::fs::write(&bad_space, "[all]\nattention = [\"kv/4\"]\nffn = [1.0]\n").unwrap();
    let mut with_bad_space = options(&parent, 512);
    with_bad_space.space = bad_space;
    let error = build_error(&with_bad_space, &dir.path().join("other"));
    assert!(
        error.contains("bad.toml") && error.contains("all.attention[0]") && error.contains("2 KV heads"),
        "{error}"
    );

    let mut hybrid = options(&parent, 512);
    hybrid.mode = tessera::library::BldMode::Hybrid;
    let error = build_error(&hybrid, &dir.path().join("hybrid"));
    assert!(error.contains("--pairs"), "{error}");

    let not_a_library = dir.path().join("occupied");
    std::fs::create_dir_all(&not_a_library).unwrap();
    std::fs::write(not_a_library.join("notes.txt"), "mine").unwrap();
    let error = build_error(&options(&parent, 512), &not_a_library);
    assert!(error.contains("not empty"), "{error}");
    assert_eq!(
        std::fs::read_to_string(not_a_library.join("notes.txt")).unwrap(),
        "mine"
    );

    let missing = "no/such/file.txt".parse::<TokenSource>().unwrap_err().to_string();
    assert!(missing.contains("no/such/file.txt"), "{missing}");
    assert!("parent-samples:0".parse::<TokenSource>().is_err());
    assert!(Selection::shard("1/1").is_err() && Selection::shard("a/2").is_err());

    let library = Library::open(&out).unwrap();
    let missing_item = WorkItem::attention(0, AttentionConfig::Gqa { kv_heads: 4 });
    assert!(matches!(
        library.item_weights(&missing_item, Stage::Trained),
        Err(LibraryError::NotTrained { .. })
    ));
}

#[test]
fn coupled_and_hybrid_builds_train_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let parent = common::tiny_parent(dir.path());
    let device = Device::flex();
    let mut coupled = options(&parent, 1024);
    coupled.mode = tessera::library::BldMode::Coupled;
    let report = build_library(&dir.path().join("coupled"), &coupled, &device).unwrap();
    // 4 × 5 pairs per layer, less the parent's own block and the block with nothing left.
    assert_eq!(report.trainable, 2 * (4 * 5 - 2), "{report:?}");

    let lib = dir.path().join("hybrid");
    build_library(&lib, &options(&parent, 1024), &device).unwrap();
    let child = |names: [&str; 2]| ChildChoice::per_layer(&names.map(String::from));
    let mut hybrid = options(&parent, 1024);
    hybrid.mode = tessera::library::BldMode::Hybrid;
    hybrid.pairs = vec![
        child(["kv1 + ffn32", "kv2 + ffn64"]),
        child(["attn_linear + ffn_linear", "kv2 + ffn_noop"]),
    ];
    let report = build_library(&lib, &hybrid, &device).unwrap();
    // The parent's own block (layer 1, first solution) has nothing to train.
    assert_eq!(report.trained_now, 3, "{report:?}");
    let library = Library::open(&lib).unwrap();
    let pair = &library.manifest.items["layer_0/kv1 + ffn32"];
    assert_eq!(pair.state, ItemState::Trained);
    // It starts from its decoupled halves: its initial weights are theirs.
    let (checkpoint, _) = Checkpoint::read(&parent).unwrap();
    let block = pair.item.own_block();
    let halves = {
        let decoupled = Library {
            manifest: {
                let mut m = library.manifest.clone();
                m.items.retain(|k, _| !k.contains(" + "));
                m
            },
            ..library.clone()
        };
        decoupled
            .block_weights(0, &block, &layer_tensors(&checkpoint.weights, 0), Stage::Trained)
            .unwrap()
    };
    assert_eq!(library.item_weights(&pair.item, Stage::Init).unwrap(), halves);
    assert!(pair.nmse_trained.unwrap() < pair.nmse_init.unwrap());
    // The pair now serves that block.
    assert_eq!(
        library
            .block_weights(0, &block, &layer_tensors(&checkpoint.weights, 0), Stage::Trained)
            .unwrap(),
        library.item_weights(&pair.item, Stage::Trained).unwrap()
    );
    let mut unknown = hybrid.clone();
    unknown.pairs = vec![ChildChoice(vec![(
        tessera::checkpoint::LayerSpan::single(0),
        "kv3 + ffn32".into(),
    )])];
    let error = build_error(&unknown, &dir.path().join("unknown"));
    assert!(
        error.contains("layer_0") && error.contains("kv3 + ffn32") && error.contains("not a block"),
        "{error}"
    );
}

#[test]
fn the_shipped_search_spaces_resolve() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("search_spaces");
    let default_parent = tessera::parent::default_parent_config(8);
    let eight_kv = ModelConfig::uniform(1000, 256, 8, 32, 8, 512, 64);
    for name in ["small", "paper", "keep_ends"] {
        let space = tessera::library::SearchSpace::read(&root.join(format!("{name}.toml"))).unwrap();
        let layers = space.resolve(&eight_kv).unwrap();
        assert_eq!(layers.len(), 8);
        match name {
            "paper" => {
                assert_eq!((layers[3].attention.len(), layers[3].ffn.len()), (6, 9));
                let error = space.resolve(&default_parent).unwrap_err().to_string();
                assert!(error.contains("paper.toml") && error.contains("kv/4"), "{error}");
            }
            "keep_ends" => {
                let layers = space.resolve(&default_parent).unwrap();
                assert_eq!((layers[0].attention.len(), layers[0].ffn.len()), (2, 3));
                assert_eq!((layers[3].attention.len(), layers[3].ffn.len()), (4, 5));
            }
            _ => assert_eq!(space.resolve(&default_parent).unwrap()[0].ffn.len(), 5),
        }
    }
}

#[test]
fn a_build_that_will_not_fit_is_refused_before_the_parent_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let run = |parent: &Path, space: &Path, limit: &str, out: &Path, extra: &[&str]| {
        let output = common::tessera()
            .env("TESSERA_MEMORY_LIMIT", limit)
            .args(["library", "build", "--parent"])
            .arg(parent)
            .arg("--space")
            .arg(space)
            .args(["--data", "builtin:2", "--layers", "30-31", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let refused = |parent: &Path, space: &Path, limit: &str, out: &Path, extra: &[&str]| {
        let error = run(parent, space, limit, out, extra);
        assert!(!out.exists(), "a refused build writes nothing");
        error
    };
    // Llama-3.1-8B's published configuration without its 16 GB of weights: the estimate comes
    // from the configuration alone, so the refusal comes before any weight would be read.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let big = dir.path().join("llama-3.1-8b");
    std::fs::create_dir(&big).unwrap();
    std::fs::copy(repo.join("configs/llama-3.1-8b.json"), big.join("config.json")).unwrap();
    let paper = repo.join("search_spaces/paper.toml");
    let error = refused(&big, &paper, "6GiB", &dir.path().join("big-lib"), &[]);
    common::assert_mentions(
        &error,
        &[
            "library build would need about",
            "one parent layer's tensors (f32) 0.8",
            "training (2 items at once, 4096 calibration tokens)",
            "only 6.00 GiB are available (TESSERA_MEMORY_LIMIT=6GiB)",
            "--workers",
            "--batch-windows",
        ],
    );
    // Following the advice, it fits in 6 GiB: the layer-streamed build reads one layer at a
    // time (here it then stops at the missing weights, after the estimate).
    let small = [
        "--workers",
        "1",
        "--batch-windows",
        "2",
        "--seq-len",
        "64",
        "--calibration-tokens",
        "256",
    ];
    let error = run(&big, &paper, "6GiB", &dir.path().join("big-lib"), &small);
    assert!(!error.contains("would need about"), "{error}");
    assert!(error.contains("model.safetensors"), "{error}");
    // A parent that is read and would run: refused under a limit below its estimate, named.
    let parent = common::tiny_parent(dir.path());
    let error = refused(&parent, &space(), "64MiB", &dir.path().join("small-lib"), &[]);
    assert!(
        error.contains("only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)"),
        "{error}"
    );
    let error = refused(&parent, &space(), "lots", &dir.path().join("bad-limit"), &[]);
    assert!(error.contains("TESSERA_MEMORY_LIMIT=`lots`"), "{error}");
}
