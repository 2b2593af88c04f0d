//! `library build`: resolves the search space against the parent, lists the work items of the
//! chosen BLD mode (or the part of them a work selection picks), and for each layer in turn computes the parent's
//! activations once, then initialises, evaluates and trains that layer's items on parallel
//! threads, saving each finished item at once. A killed build resumes from the manifest and
//! loses at most the items that were in progress.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::activations::{ActivationWalk, LayerActivations, calibration};
use super::bld::{BldSettings, ItemNet};
use super::init::{Calibration, LinearInit, initial_weights};
use super::interchange::{ChildChoice, write_block_library};
use super::manifest::{BuildSettings, ItemRecord, ItemState, Manifest, ParentInfo, SpaceInfo};
use super::space::{LayerVariants, SearchSpace};
use super::variant::{BldMode, Origin, WorkItem};
use super::{Library, LibraryError, Stage, layer_tensors};
use crate::checkpoint::{Checkpoint, write_tensor_file};
use crate::model::{BlockConfig, ModelConfig, TensorMap};
use crate::selection::Selection;
use crate::source::TokenSource;
use crate::tokenizer::Tokenizer;
use crate::train::state::first_difference;

/// Training windows kept in memory per layer at most; a larger token budget cycles over them.
pub const MAX_TRAIN_WINDOWS: usize = 2048;

#[derive(Clone, Debug)]
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
    /// canonical order (every item not selected is left out of this library's manifest).
    pub selection: Selection,
    /// Items trained at once (0 = one per core).
    pub workers: usize,
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
            progress: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildReport {
    pub dir: PathBuf,
    /// Items with their own training in this library (or in the selected part).
    pub trainable: usize,
    pub trained_now: usize,
    /// Items that were already trained when the build started (a resumed build).
    pub already_trained: usize,
    pub seconds: f64,
    /// The library as built.
    pub library: Library,
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} items trained now, {} were already trained ({} with their own training), {:.1} s",
            self.dir.display(),
            self.trained_now,
            self.already_trained,
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

/// What a new build would record in its manifest (items not yet run).
fn planned_manifest(
    options: &BuildOptions,
    checkpoint: &Checkpoint,
    space: &SearchSpace,
    layers: Vec<LayerVariants>,
    pairs: Vec<WorkItem>,
) -> Manifest {
    let config = &checkpoint.config;
    let mut trainable_index = 0;
    let items = work_items(options.mode, &layers, &pairs)
        .into_iter()
        .filter_map(|item| {
            let origin = item.origin(&config.blocks[item.layer]);
            if origin == Origin::Trained {
                let mine = options.selection.selects(trainable_index, item.layer);
                trainable_index += 1;
                if !mine {
                    return None;
                }
            }
            Some((item.key(), ItemRecord::new(item, origin)))
        })
        .collect();
    let train_windows = options.bld.tokens.div_ceil(options.seq_len).clamp(1, MAX_TRAIN_WINDOWS);
    Manifest {
        format: super::manifest::FORMAT.into(),
        parent: ParentInfo {
            source: options.parent.clone(),
            fingerprint: checkpoint.fingerprint(),
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
        },
        selection: options.selection.clone(),
        items,
    }
}

/// The manifest to continue from: a new one, or the one in `dir` when it was built the same way.
/// A decoupled library may be extended to hybrid by adding pairs.
fn start_manifest(dir: &Path, planned: Manifest) -> Result<Manifest, LibraryError> {
    if !Manifest::path(dir).exists() {
        if dir.exists() && std::fs::read_dir(dir).map_err(LibraryError::io(dir))?.next().is_some() {
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
            "selection": m.selection,
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
    for record in existing.items.values_mut() {
        if record.state == ItemState::Training {
            record.state = ItemState::Initialised;
        }
    }
    existing.write(dir)?;
    Ok(existing)
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

/// Builds (or resumes) a library in `dir`.
pub fn build_library(dir: &Path, options: &BuildOptions, device: &Device) -> Result<BuildReport, LibraryError> {
    let started = std::time::Instant::now();
    if options.mode == BldMode::Hybrid && !options.selection.is_all() {
        return Err(LibraryError::Settings(
            "a hybrid build cannot be split: split the decoupled build, merge, then run hybrid on the merged library"
                .into(),
        ));
    }
    if options.mode != BldMode::Hybrid && !options.pairs.is_empty() {
        return Err(LibraryError::Settings("pairs belong to --mode hybrid".into()));
    }
    let (checkpoint, _) = Checkpoint::read(&options.parent)?;
    let config = checkpoint.config.clone();
    if options.seq_len == 0 || options.seq_len > config.max_position_embeddings {
        return Err(LibraryError::Settings(format!(
            "--seq-len {} must be between 1 and the parent's {} positions",
            options.seq_len, config.max_position_embeddings
        )));
    }
    let space = SearchSpace::read(&options.space)?;
    let layers = space.resolve(&config)?;
    if options.mode == BldMode::Hybrid && options.pairs.is_empty() {
        return Err(LibraryError::Settings(
            "--mode hybrid needs --pairs SOLUTIONS.json (the blocks to train together)".into(),
        ));
    }
    let pairs = pair_items(&options.pairs, &config, &layers)?;
    let planned = planned_manifest(options, &checkpoint, &space, layers, pairs);
    let manifest = start_manifest(dir, planned)?;
    let trainable: Vec<WorkItem> = manifest
        .items
        .values()
        .filter(|r| r.origin == Origin::Trained)
        .map(|r| r.item)
        .collect();
    let pending: Vec<WorkItem> = manifest
        .items
        .values()
        .filter(|r| r.origin == Origin::Trained && r.state != ItemState::Trained)
        .map(|r| r.item)
        .collect();
    let already_trained = trainable.len() - pending.len();
    let library = Mutex::new(Library {
        dir: dir.to_path_buf(),
        manifest,
    });
    if !pending.is_empty() {
        train_pending(&library, &checkpoint, options, &pending, device)?;
    }
    let library = library.into_inner().unwrap_or_else(|p| p.into_inner());
    write_block_library(&library)?;
    Ok(BuildReport {
        dir: dir.to_path_buf(),
        trainable: trainable.len(),
        trained_now: pending.len(),
        already_trained,
        seconds: started.elapsed().as_secs_f64(),
        library,
    })
}

fn train_pending(
    library: &Mutex<Library>,
    checkpoint: &Checkpoint,
    options: &BuildOptions,
    pending: &[WorkItem],
    device: &Device,
) -> Result<(), LibraryError> {
    let (settings, config) = {
        let lib = library.lock().expect("library lock");
        (lib.manifest.settings.clone(), lib.manifest.parent.config.clone())
    };
    let model = checkpoint.build(device)?;
    let tokenizer_path = options
        .tokenizer
        .clone()
        .or_else(|| Tokenizer::beside_model(&options.parent));
    let tokenizer = tokenizer_path
        .map(|p| Tokenizer::read(&p))
        .transpose()
        .map_err(crate::source::SourceError::from)?;
    let windows = options.data.windows(
        &model,
        tokenizer.as_ref(),
        settings.seq_len,
        settings.train_windows,
        settings.held_out_windows,
    )?;
    let mut train_walk = ActivationWalk::new(&model, &windows.train)?;
    let mut held_out_walk = ActivationWalk::new(&model, &windows.held_out)?;
    let last_layer = pending.iter().map(|i| i.layer).max().unwrap_or(0);
    let bar = crate::progress::bar(options.progress, "BLD items", 0, pending.len());
    for layer in 0..=last_layer {
        let train = train_walk.current();
        let held_out = held_out_walk.current();
        let here: Vec<WorkItem> = pending.iter().filter(|i| i.layer == layer).copied().collect();
        if !here.is_empty() {
            bar.set_message(format!("layer {layer}"));
            let context = LayerContext {
                config: &config,
                parent_block: config.blocks[layer],
                parent: layer_tensors(&checkpoint.weights, layer),
                calibration: calibration(&model.layers[layer], &train, settings.calibration_tokens),
                train: train.clone(),
                held_out: held_out.clone(),
            };
            // Sub-blocks first: a hybrid pair starts from its trained halves.
            let (singles, pairs): (Vec<WorkItem>, Vec<WorkItem>) =
                here.iter().partition(|i| i.attention.is_none() || i.ffn.is_none());
            for group in [singles, pairs] {
                crate::parallel::map(options.workers, &group, |item| {
                    let result = train_item(library, &context, &settings, item, device);
                    bar.inc(1);
                    result
                })?;
            }
        }
        train_walk.advance(train);
        held_out_walk.advance(held_out);
    }
    bar.finish_and_clear();
    Ok(())
}

fn update(library: &Mutex<Library>, item: &WorkItem, change: impl FnOnce(&mut ItemRecord)) -> Result<(), LibraryError> {
    let mut lib = library.lock().expect("library lock");
    let record = lib
        .manifest
        .items
        .get_mut(&item.key())
        .expect("every item has a record");
    change(record);
    lib.manifest.write(&lib.dir)
}

/// Initialises (or reloads the initial weights of), evaluates, trains and saves one item.
fn train_item(
    library: &Mutex<Library>,
    context: &LayerContext,
    settings: &BuildSettings,
    item: &WorkItem,
    device: &Device,
) -> Result<(), LibraryError> {
    let (state, init_path, trained_path) = {
        let lib = library.lock().expect("library lock");
        (
            lib.manifest.items[&item.key()].state,
            lib.item_path(item, Stage::Init),
            lib.item_path(item, Stage::Trained),
        )
    };
    let init = if state == ItemState::Initialised && init_path.is_file() {
        crate::checkpoint::read_tensor_file(&init_path)?
    } else {
        let init = if item.attention.is_some() && item.ffn.is_some() && settings.mode == BldMode::Hybrid {
            // A hybrid pair starts from its decoupled halves, trained earlier in this build.
            let lib = library.lock().expect("library lock").clone();
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
        update(library, item, |r| r.state = ItemState::Initialised)?;
        init
    };
    let evaluator = ItemNet::new(context.config, &context.parent_block, *item, &context.parent, device)?;
    let nmse_init = evaluator.evaluate(&evaluator.own_block(context.config, &init)?, &context.held_out);
    update(library, item, |r| {
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
    let (trained, outcome) = trainer.train(context.config, &init, &context.train, &settings.bld)?;
    let nmse_trained = evaluator.evaluate(&evaluator.own_block(context.config, &trained)?, &context.held_out);
    write_tensor_file(&trained_path, &trained)?;
    update(library, item, |r| {
        r.state = ItemState::Trained;
        r.nmse_trained = Some(nmse_trained);
        r.final_train_loss = Some(outcome.final_train_loss);
        r.tokens_seen = outcome.tokens_seen;
        r.steps = outcome.steps;
        r.seconds = outcome.seconds;
    })
}
