//! `library build`: resolves the search space against the parent, lists the work items of the
//! chosen BLD mode, and trains the part of them a work selection picks: for each layer in
//! turn it computes the parent's activations once, then initialises, evaluates and trains that
//! layer's items on parallel threads, saving each finished item at once. Several processes may
//! build into one directory (a cluster's tasks, a build started twice): each item is trained
//! under its own lock by exactly one of them, and a process that finds an item locked trains
//! the others first, then waits for it. A killed build resumes from the manifest and from each
//! item's last training checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::activations::{ActivationWalk, LayerActivations, calibration};
use super::bld::{BldSettings, ItemNet};
use super::footprint::{ADVICE, build_estimate};
use super::init::{Calibration, LinearInit, initial_weights};
use super::interchange::{ChildChoice, write_block_library};
use super::manifest::{BuildSettings, ItemRecord, ItemState, Manifest, ParentInfo, SpaceInfo};
use super::space::{LayerVariants, SearchSpace};
use super::variant::{BldMode, Origin, WorkItem};
use super::{Library, LibraryError, Stage, lock};
use crate::checkpoint::{StoreDtype, StoredCheckpoint, StreamedParent, write_tensor_file};
use crate::fault::Fault;
use crate::model::{BlockConfig, ModelConfig, TensorMap, build_block};
use crate::selection::Selection;
use crate::source::TokenSource;
use crate::tokenizer::Tokenizer;
use crate::train::RunControl;
use crate::train::state::first_difference;

/// The folder of a library where builds cache the parent's activations while they walk it.
pub const ACTIVATIONS: &str = "activations";

/// Training windows cached per layer at most; a larger token budget cycles over them.
pub const MAX_TRAIN_WINDOWS: usize = 2048;

/// The windows BLD trains on: the token budget in windows of `seq_len`, within
/// 1..=[`MAX_TRAIN_WINDOWS`].
pub fn train_windows(options: &BuildOptions) -> usize {
    options.bld.tokens.div_ceil(options.seq_len).clamp(1, MAX_TRAIN_WINDOWS)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildOptions {
    pub parent: PathBuf,
    /// Needed for text data when the parent directory has no `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    pub space: PathBuf,
    pub data: TokenSource,
    pub mode: BldMode,
    pub seq_len: usize,
    pub held_out_windows: usize,
    pub calibration_tokens: usize,
    pub linear_init: LinearInit,
    pub bld: BldSettings,
    /// Hybrid mode: children (a search's solutions) whose chosen blocks are trained as pairs.
    pub pairs: Vec<ChildChoice>,
    /// The trainable items this build trains, by their index among the trainable items in
    /// canonical order (`BuildPlan::trainable`); the manifest lists them all regardless.
    pub selection: Selection,
    /// Items trained at once (0 = one per core).
    pub workers: usize,
    /// Optimizer steps between an item's training checkpoints (0: none), from which a killed
    /// build resumes in the middle of the item.
    pub checkpoint_every: usize,
    /// The dtype of the parent's activations cached on disk for training (the walk's own
    /// stream stays f32).
    pub activation_cache: StoreDtype,
    pub progress: bool,
}

impl BuildOptions {
    /// The default settings for `parent`, `space` and `data`.
    pub fn new(parent: &Path, space: &Path, data: TokenSource) -> Self {
        Self {
            parent: parent.to_path_buf(),
            space: space.to_path_buf(),
            data,
            ..Self::default()
        }
    }
}

impl Default for BuildOptions {
    /// Every setting's default; `parent`, `space` and `data` must still be given.
    fn default() -> Self {
        Self {
            parent: PathBuf::new(),
            tokenizer: None,
            space: PathBuf::new(),
            data: TokenSource::Builtin { seed: 1 },
            mode: BldMode::Decoupled,
            seq_len: 128,
            held_out_windows: 32,
            calibration_tokens: 4096,
            linear_init: LinearInit::LeastSquares,
            bld: BldSettings::default(),
            pairs: Vec::new(),
            selection: Selection::All,
            workers: 0,
            checkpoint_every: 200,
            activation_cache: StoreDtype::Bf16,
            progress: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildReport {
    pub dir: PathBuf,
    /// Items with their own training that this build was asked for (all, or the selected part).
    pub trainable: usize,
    /// Items this process trained.
    pub trained_now: usize,
    /// Items that were already trained when the build started (a resumed build).
    pub already_trained: usize,
    /// Items another process sharing the directory trained meanwhile.
    #[serde(default)]
    pub trained_elsewhere: usize,
    pub seconds: f64,
    /// The library as built.
    pub library: Library,
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} items trained now, {} were already trained{} ({} with their own training), {:.1} s",
            self.dir.display(),
            self.trained_now,
            self.already_trained,
            if self.trained_elsewhere > 0 {
                format!(", {} trained by another process", self.trained_elsewhere)
            } else {
                String::new()
            },
            self.trainable,
            self.seconds
        )?;
        write!(f, "{}", self.library)
    }
}

/// The work items of `mode` in canonical order: per layer, attention variants, FFN variants,
/// then pairs.
pub fn work_items(mode: BldMode, layers: &[LayerVariants], pairs: &[WorkItem]) -> Vec<WorkItem> {
    let mut items = Vec::new();
    for (layer, variants) in layers.iter().enumerate() {
        if mode == BldMode::Coupled {
            for &attention in &variants.attention {
                for &ffn in &variants.ffn {
                    items.push(WorkItem::pair(layer, BlockConfig { attention, ffn }));
                }
            }
            continue;
        }
        items.extend(variants.attention.iter().map(|&a| WorkItem::attention(layer, a)));
        items.extend(variants.ffn.iter().map(|&f| WorkItem::ffn(layer, f)));
        items.extend(pairs.iter().filter(|p| p.layer == layer));
    }
    items
}

/// The blocks chosen by `children` (a search's solutions) as pair items; blocks that are the
/// parent's own or removed entirely have nothing to train and are left out.
pub fn pair_items(
    children: &[ChildChoice],
    config: &ModelConfig,
    layers: &[LayerVariants],
) -> Result<Vec<WorkItem>, LibraryError> {
    let mut pairs = Vec::new();
    for (s, choice) in children.iter().enumerate() {
        for (span, name) in choice.iter() {
            let bad = |problem: String| LibraryError::Settings(format!("pairs of child {s}: layer_{span}: {problem}"));
            if span.first != span.last || span.first >= layers.len() {
                return Err(bad(format!(
                    "hybrid BLD trains single-layer blocks of the parent's {} layers",
                    layers.len()
                )));
            }
            let block = layers[span.first]
                .block_named(name)
                .ok_or_else(|| bad(format!("`{name}` is not a block of the search space")))?;
            let item = WorkItem::pair(span.first, block);
            if item.origin(&config.blocks[span.first]) == Origin::Trained && !pairs.contains(&item) {
                pairs.push(item);
            }
        }
    }
    Ok(pairs)
}

/// What a new build would record in its manifest (every item, none yet run).
fn planned_manifest(
    options: &BuildOptions,
    checkpoint: &StoredCheckpoint,
    space: &SearchSpace,
    items: &[WorkItem],
    layers: Vec<LayerVariants>,
    pairs: Vec<WorkItem>,
) -> Result<Manifest, LibraryError> {
    let config = checkpoint.config();
    let items = items
        .iter()
        .map(|item| {
            (
                item.key(),
                ItemRecord::new(*item, item.origin(&config.blocks[item.layer])),
            )
        })
        .collect();
    let train_windows = train_windows(options);
    Ok(Manifest {
        format: super::manifest::FORMAT.into(),
        parent: ParentInfo {
            source: options.parent.clone(),
            fingerprint: checkpoint.fingerprint()?,
            config: config.clone(),
        },
        space: SpaceInfo {
            name: space.name.clone(),
            source: options.space.clone(),
            layers,
            fused_runs: space.fused_runs,
        },
        settings: BuildSettings {
            mode: options.mode,
            data: options.data.to_string(),
            seq_len: options.seq_len,
            train_windows,
            held_out_windows: options.held_out_windows,
            calibration_tokens: options.calibration_tokens,
            linear_init: options.linear_init,
            bld: options.bld.clone(),
            pairs,
            activation_cache: options.activation_cache,
        },
        items,
    })
}

/// The manifest to continue from: a new one, or the one in `dir` when it was built the same way
/// (extended by the planned items it lacks). A decoupled library may be extended to hybrid by
/// adding pairs. Runs under the manifest lock, so concurrent builds agree on one manifest.
fn start_manifest(dir: &Path, planned: Manifest) -> Result<Manifest, LibraryError> {
    std::fs::create_dir_all(dir).map_err(LibraryError::io(dir))?;
    let _held = lock::manifest(dir)?;
    if !Manifest::path(dir).exists() {
        let stray = std::fs::read_dir(dir)
            .map_err(LibraryError::io(dir))?
            .filter_map(Result::ok)
            .any(|entry| entry.file_name() != lock::LOCKS);
        if stray {
            return Err(LibraryError::Format {
                path: dir.to_path_buf(),
                problem: "the directory is not empty and holds no library manifest".into(),
            });
        }
        for folder in [Stage::Init, Stage::Trained] {
            let path = dir.join(folder.folder());
            std::fs::create_dir_all(&path).map_err(LibraryError::io(&path))?;
        }
        planned.write(dir)?;
        return Ok(planned);
    }
    let mut existing = Manifest::read(dir)?;
    let extends_to_hybrid = existing.settings.mode == BldMode::Decoupled && planned.settings.mode == BldMode::Hybrid;
    let comparable = |m: &Manifest| {
        let mut settings = serde_json::to_value(&m.settings).expect("settings serialise");
        if extends_to_hybrid {
            settings["mode"] = json!(null);
            settings["pairs"] = json!(null);
        }
        json!({
            "parent": { "fingerprint": m.parent.fingerprint },
            "space": { "layers": m.space.layers, "fused_runs": m.space.fused_runs },
            "settings": settings,
        })
    };
    if let Some((key, there, here)) = first_difference(&comparable(&existing), &comparable(&planned), "") {
        return Err(LibraryError::Mismatch {
            path: Manifest::path(dir),
            key,
            there: there.to_string(),
            here: here.to_string(),
        });
    }
    existing.settings = planned.settings;
    for (key, record) in planned.items {
        existing.items.entry(key).or_insert(record);
    }
    existing.write(dir)?;
    Ok(existing)
}

/// A library directory ready to train in: the parent, the manifest (created or extended to
/// this build) and the build's trainable items in canonical order, which a build's selection
/// indexes.
pub struct BuildPlan {
    /// The parent, read layer by layer.
    pub checkpoint: StoredCheckpoint,
    pub manifest: Manifest,
    pub trainable: Vec<WorkItem>,
}

impl BuildPlan {
    /// The indices (into `trainable`) that `selection` picks.
    pub fn selected(&self, selection: &Selection) -> Result<Vec<usize>, LibraryError> {
        selection
            .check(self.trainable.len(), self.checkpoint.config().num_layers())
            .map_err(|e| LibraryError::Settings(e.to_string()))?;
        Ok((0..self.trainable.len())
            .filter(|&i| selection.selects(i, self.trainable[i].layer))
            .collect())
    }

    /// Whether the item is trained according to the manifest as planned.
    pub fn is_trained(&self, item: &WorkItem) -> bool {
        self.manifest
            .items
            .get(&item.key())
            .is_some_and(|r| r.state == ItemState::Trained)
    }
}

/// Checks the options against the parent and space, and creates (or checks and extends) the
/// library's manifest in `dir`.
pub fn plan_build(dir: &Path, options: &BuildOptions) -> Result<BuildPlan, LibraryError> {
    if options.mode != BldMode::Hybrid && !options.pairs.is_empty() {
        return Err(LibraryError::Settings("pairs belong to --mode hybrid".into()));
    }
    let checkpoint = StoredCheckpoint::open(&options.parent)?;
    let config = checkpoint.config();
    if options.seq_len == 0 || options.seq_len > config.max_position_embeddings {
        return Err(LibraryError::Settings(format!(
            "--seq-len {} must be between 1 and the parent's {} positions",
            options.seq_len, config.max_position_embeddings
        )));
    }
    let space = SearchSpace::read(&options.space)?;
    let layers = space.resolve(config)?;
    if options.mode == BldMode::Hybrid && options.pairs.is_empty() {
        return Err(LibraryError::Settings(
            "--mode hybrid needs --pairs SOLUTIONS.json (the blocks to train together)".into(),
        ));
    }
    let pairs = pair_items(&options.pairs, config, &layers)?;
    let items = work_items(options.mode, &layers, &pairs);
    let trainable = items
        .iter()
        .filter(|i| i.origin(&config.blocks[i.layer]) == Origin::Trained)
        .copied()
        .collect();
    let planned = planned_manifest(options, &checkpoint, &space, &items, layers, pairs)?;
    let manifest = start_manifest(dir, planned)?;
    Ok(BuildPlan {
        checkpoint,
        manifest,
        trainable,
    })
}

/// Everything an item needs from its layer.
struct LayerContext<'a> {
    config: &'a ModelConfig,
    parent_block: BlockConfig,
    parent: TensorMap,
    calibration: Calibration,
    train: LayerActivations,
    held_out: LayerActivations,
}

/// Builds (or resumes) a library in `dir`: trains the selected items that are not trained yet.
pub fn build_library(dir: &Path, options: &BuildOptions, device: &Device) -> Result<BuildReport, LibraryError> {
    let started = std::time::Instant::now();
    let config = crate::checkpoint::Checkpoint::read_config(&options.parent)?;
    crate::memory_budget::check("library build", &build_estimate(&config, options), ADVICE)?;
    let plan = plan_build(dir, options)?;
    let selected: Vec<WorkItem> = plan
        .selected(&options.selection)?
        .into_iter()
        .map(|i| plan.trainable[i])
        .collect();
    if options.mode == BldMode::Hybrid && !options.selection.is_all() {
        let mut halves = plan
            .trainable
            .iter()
            .filter(|i| i.attention.is_none() || i.ffn.is_none());
        if let Some(half) = halves.find(|i| !plan.is_trained(i)) {
            return Err(LibraryError::Settings(format!(
                "a hybrid build trains part of its pairs only once the decoupled items are trained (`{}` is not): build them first",
                half.key()
            )));
        }
    }
    let pending: Vec<WorkItem> = selected.iter().filter(|i| !plan.is_trained(i)).copied().collect();
    let fault = crate::fault::injected().map_err(|e| LibraryError::Settings(e.to_string()))?;
    let counts = Counts::default();
    let library = Mutex::new(Library {
        dir: dir.to_path_buf(),
        manifest: plan.manifest,
    });
    if !pending.is_empty() {
        let run = ItemRun {
            library: &library,
            options,
            fault: fault.as_ref(),
            counts: &counts,
            device,
        };
        run.train_pending(&plan.checkpoint, &pending)?;
    }
    let library = Library::open(dir)?;
    {
        let _held = lock::manifest(dir)?;
        write_block_library(&library)?;
    }
    Ok(BuildReport {
        dir: dir.to_path_buf(),
        trainable: selected.len(),
        trained_now: counts.trained.load(Ordering::Relaxed),
        already_trained: selected.len() - pending.len(),
        trained_elsewhere: counts.elsewhere.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        library,
    })
}

#[derive(Default)]
struct Counts {
    trained: AtomicUsize,
    elsewhere: AtomicUsize,
}

/// What every item of one build shares.
struct ItemRun<'a> {
    library: &'a Mutex<Library>,
    options: &'a BuildOptions,
    fault: Option<&'a Fault>,
    counts: &'a Counts,
    device: &'a Device,
}

impl ItemRun<'_> {
    fn train_pending(&self, checkpoint: &StoredCheckpoint, pending: &[WorkItem]) -> Result<(), LibraryError> {
        let (settings, config, dir) = {
            let lib = self.library.lock().expect("library lock");
            (
                lib.manifest.settings.clone(),
                lib.manifest.parent.config.clone(),
                lib.dir.clone(),
            )
        };
        let options = self.options;
        let parent = StreamedParent::new(checkpoint, self.device);
        let tokenizer_path = options
            .tokenizer
            .clone()
            .or_else(|| Tokenizer::beside_model(&options.parent));
        let tokenizer = tokenizer_path
            .map(|p| Tokenizer::read(&p))
            .transpose()
            .map_err(crate::source::SourceError::from)?;
        let windows = options.data.stored_windows(
            checkpoint,
            self.device,
            tokenizer.as_ref(),
            settings.seq_len,
            settings.train_windows,
            settings.held_out_windows,
        )?;
        // Each process walks in a folder of its own (builds may share the library).
        let cache_root = dir.join(ACTIVATIONS);
        std::fs::create_dir_all(&cache_root).map_err(LibraryError::io(&cache_root))?;
        let cache = tempfile::Builder::new()
            .prefix("walk-")
            .tempdir_in(&cache_root)
            .map_err(LibraryError::io(&cache_root))?;
        let mut walks = Vec::new();
        for (name, split) in [("train", &windows.train), ("held-out", &windows.held_out)] {
            let folder = cache.path().join(name);
            std::fs::create_dir(&folder).map_err(LibraryError::io(&folder))?;
            walks.push(ActivationWalk::new(&parent, split, &folder, settings.activation_cache)?);
        }
        let last_layer = pending.iter().map(|i| i.layer).max().unwrap_or(0);
        let bar = crate::progress::bar(options.progress, "BLD items", 0, pending.len());
        for layer in 0..=last_layer {
            bar.set_message(format!("layer {layer}: parent"));
            let tensors = checkpoint.layer(layer)?;
            let block = build_block(&config, layer, &config.blocks[layer], &tensors, self.device)?;
            let train = walks[0].current(&block)?;
            let held_out = walks[1].current(&block)?;
            let here: Vec<WorkItem> = pending.iter().filter(|i| i.layer == layer).copied().collect();
            if !here.is_empty() {
                bar.set_message(format!("layer {layer}"));
                let calibration = calibration(&block, &train, settings.calibration_tokens, self.device)?;
                drop(block);
                let context = LayerContext {
                    config: &config,
                    parent_block: config.blocks[layer],
                    parent: tensors,
                    calibration,
                    train,
                    held_out,
                };
                self.train_layer(&context, &settings, &here, &bar)?;
                walks[0].advance(context.train)?;
                walks[1].advance(context.held_out)?;
            } else {
                walks[0].advance(train)?;
                walks[1].advance(held_out)?;
            }
        }
        drop(walks);
        cache.close().map_err(LibraryError::io(&cache_root))?;
        // Left when another process still walks, or after a killed build (then removed by hand).
        let _ = std::fs::remove_dir(&cache_root);
        bar.finish_and_clear();
        Ok(())
    }

    /// Trains one layer's items on parallel threads.
    fn train_layer(
        &self,
        context: &LayerContext,
        settings: &BuildSettings,
        here: &[WorkItem],
        bar: &indicatif::ProgressBar,
    ) -> Result<(), LibraryError> {
        // Sub-blocks first: a hybrid pair starts from its trained halves.
        let (singles, pairs): (Vec<WorkItem>, Vec<WorkItem>) =
            here.iter().partition(|i| i.attention.is_none() || i.ffn.is_none());
        for group in [singles, pairs] {
            // Items another process holds are left for last, then waited for.
            let mut deferred = Vec::new();
            for wait in [false, true] {
                let items = if wait {
                    std::mem::take(&mut deferred)
                } else {
                    group.clone()
                };
                let done = crate::parallel::map(self.options.workers, &items, |item| {
                    let done = self.run_item(context, settings, item, wait)?;
                    if done {
                        bar.inc(1);
                    }
                    Ok::<_, LibraryError>(done)
                })?;
                deferred = items.iter().zip(done).filter(|(_, d)| !d).map(|(i, _)| *i).collect();
            }
        }
        Ok(())
    }

    /// Takes the item's lock (waiting for it when `wait`) and trains the item unless another
    /// process has meanwhile; false when the lock was held elsewhere and not waited for.
    fn run_item(
        &self,
        context: &LayerContext,
        settings: &BuildSettings,
        item: &WorkItem,
        wait: bool,
    ) -> Result<bool, LibraryError> {
        let dir = self.library.lock().expect("library lock").dir.clone();
        let file = item.file_name();
        let held = if wait {
            Some(lock::item(&dir, &file)?)
        } else {
            lock::try_item(&dir, &file)?
        };
        let Some(_held) = held else {
            return Ok(false);
        };
        let fresh = Manifest::read(&dir)?;
        let state = fresh.items[&item.key()].state;
        self.library.lock().expect("library lock").manifest = fresh;
        if state == ItemState::Trained {
            self.counts.elsewhere.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        self.train_item(context, settings, item, state)?;
        self.counts.trained.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn update(&self, item: &WorkItem, change: impl FnOnce(&mut ItemRecord)) -> Result<(), LibraryError> {
        let mut lib = self.library.lock().expect("library lock");
        let (fresh, ()) = Manifest::update(&lib.dir, |manifest| {
            change(manifest.items.get_mut(&item.key()).expect("every item has a record"));
            Ok(())
        })?;
        lib.manifest = fresh;
        Ok(())
    }

    /// Initialises (or reloads the initial weights of), evaluates, trains (from its last
    /// checkpoint, if any) and saves one item; the caller holds the item's lock.
    fn train_item(
        &self,
        context: &LayerContext,
        settings: &BuildSettings,
        item: &WorkItem,
        state: ItemState,
    ) -> Result<(), LibraryError> {
        let key = item.key();
        if self.fault == Some(&Fault::Fail { item: key.clone() }) {
            return Err(LibraryError::Settings(format!(
                "{}=fail:{key}: injected fault",
                crate::fault::VARIABLE
            )));
        }
        let (init_path, trained_path, checkpoints) = {
            let lib = self.library.lock().expect("library lock");
            let stem = item.file_name().trim_end_matches(".safetensors").to_string();
            (
                lib.item_path(item, Stage::Init),
                lib.item_path(item, Stage::Trained),
                lib.dir.join("checkpoints").join(stem),
            )
        };
        let resumable = matches!(state, ItemState::Initialised | ItemState::Training);
        let init = if resumable && init_path.is_file() {
            crate::checkpoint::read_tensor_file(&init_path)?
        } else {
            let init = if item.attention.is_some() && item.ffn.is_some() && settings.mode == BldMode::Hybrid {
                // A hybrid pair starts from its decoupled halves, trained earlier.
                let lib = self.library.lock().expect("library lock").clone();
                lib.block_weights(item.layer, &item.own_block(), &context.parent, Stage::Trained)?
            } else {
                initial_weights(
                    context.config,
                    &context.parent_block,
                    item,
                    &context.parent,
                    &context.calibration,
                    settings.linear_init,
                )?
            };
            write_tensor_file(&init_path, &init)?;
            self.update(item, |r| r.state = ItemState::Initialised)?;
            init
        };
        let device = self.device;
        let evaluator = ItemNet::new(context.config, &context.parent_block, *item, &context.parent, device)?;
        let nmse_init = evaluator.evaluate(&evaluator.own_block(context.config, &init)?, &context.held_out)?;
        self.update(item, |r| {
            r.state = ItemState::Training;
            r.nmse_init = Some(nmse_init);
        })?;
        let trainer = ItemNet::new(
            context.config,
            &context.parent_block,
            *item,
            &context.parent,
            &device.clone().autodiff(),
        )?;
        let stall = match self.fault {
            Some(Fault::Stall { item: k, step }) if *k == key => Some(*step),
            _ => None,
        };
        let control = RunControl {
            checkpoint_every: self.options.checkpoint_every,
            stop_after: stall,
            progress: false,
        };
        let checkpoint_dir = (self.options.checkpoint_every > 0 || stall.is_some()).then_some(checkpoints.as_path());
        let (trained, outcome) = trainer.train(
            context.config,
            &init,
            &context.train,
            &settings.bld,
            control,
            checkpoint_dir,
        )?;
        if stall.is_some() {
            crate::fault::stall_forever();
        }
        let nmse_trained = evaluator.evaluate(&evaluator.own_block(context.config, &trained)?, &context.held_out)?;
        write_tensor_file(&trained_path, &trained)?;
        self.update(item, |r| {
            r.state = ItemState::Trained;
            r.nmse_trained = Some(nmse_trained);
            r.final_train_loss = Some(outcome.final_train_loss);
            r.tokens_seen = outcome.tokens_seen;
            r.steps = outcome.steps;
            r.seconds = outcome.seconds;
            r.resumed_from = outcome.resumed_from;
        })?;
        match std::fs::remove_dir_all(&checkpoints) {
            Err(cause) if cause.kind() != std::io::ErrorKind::NotFound => Err(LibraryError::Io {
                path: checkpoints,
                cause,
            }),
            _ => Ok(()),
        }
    }
}
