//! The figures a parent's library, scores and assembled child come to (`streaming_figures`):
//! recorded once by one version of tessera as a JSON fixture and compared, figure by figure,
//! with what another version computes, within a relative tolerance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera::assemble::{AssembleOptions, assemble_child};
use tessera::checkpoint::{StoreDtype, load_model};
use tessera::library::interchange::span_key;
use tessera::library::{BuildOptions, ChildChoice, ItemState, Origin, block_name, build_library};
use tessera::score::{ScoreOptions, score_library};
use tessera::search::{Objective, SearchReport, SolutionReport, Status};
use tessera::selection::Selection;
use tessera::source::TokenSource;
use tessera::tokenizer::Tokenizer;

/// Two figures agree when `|got − expected| ≤ RELATIVE_TOLERANCE · max(|expected|, SCALE_FLOOR)`:
/// relative 1e-5, absolute 1e-7 for figures near 0.
pub const RELATIVE_TOLERANCE: f64 = 1e-5;
pub const SCALE_FLOOR: f64 = 1e-2;

/// Everything recorded about one parent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Which tessera wrote the file: `git rev-parse HEAD` and the cargo profile.
    pub written_by: WrittenBy,
    /// SHA-256 of the parent's files: figures of another parent cannot be compared.
    pub parent_sha256: String,
    /// The case's settings; figures of other settings cannot be compared.
    pub settings: Value,
    /// Per trainable library item (`layer_0/kv1`): its BLD figures from the manifest.
    pub items: BTreeMap<String, ItemFigures>,
    /// Per layer key (`layer_0`) and block name (`kv1 + ffn32`): its replace-1-block scores.
    pub scores: BTreeMap<String, BTreeMap<String, ScoreFigures>>,
    pub child: ChildFigures,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenBy {
    pub commit: String,
    pub profile: String,
}

impl WrittenBy {
    pub fn now() -> Self {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map_or("unknown".into(), |o| {
                String::from_utf8_lossy(&o.stdout).trim().to_string()
            });
        let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
        Self {
            commit,
            profile: profile.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemFigures {
    pub nmse_init: f64,
    pub nmse_trained: f64,
    pub final_train_loss: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreFigures {
    pub kl_div: f64,
    pub lm_loss: f64,
    pub cosine_distance: f64,
}

/// The assembled child on fixed token ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildFigures {
    /// Its block per layer key, as a solutions file names them.
    pub choice: BTreeMap<String, String>,
    /// The ids it reads (one sequence, no padding).
    pub ids: Vec<u32>,
    /// Mean −log p(next id) over the sequence (log-softmax in f64).
    pub mean_nll: f64,
    /// The largest logits at a few positions.
    pub top_logits: Vec<TopLogits>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopLogits {
    pub position: usize,
    /// Vocabulary indices, largest logit first.
    pub indices: Vec<usize>,
    pub values: Vec<f32>,
}

/// Logits kept per probed position.
pub const TOP_K: usize = 5;

impl ChildFigures {
    /// The figures of `logits` (`[positions, vocab]`, row-major) for `ids`, with the top logits
    /// at `positions`.
    pub fn from_logits(choice: BTreeMap<String, String>, ids: &[u32], logits: &[f32], positions: &[usize]) -> Self {
        let vocab = logits.len() / ids.len();
        let row = |p: usize| &logits[p * vocab..(p + 1) * vocab];
        let nll: f64 = (0..ids.len() - 1)
            .map(|p| {
                let row = row(p);
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
                let log_sum = row.iter().map(|&x| (f64::from(x) - max).exp()).sum::<f64>().ln() + max;
                log_sum - f64::from(row[ids[p + 1] as usize])
            })
            .sum();
        let top_logits = positions
            .iter()
            .map(|&position| {
                let row = row(position);
                let mut order: Vec<usize> = (0..vocab).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                order.truncate(TOP_K);
                TopLogits {
                    position,
                    values: order.iter().map(|&i| row[i]).collect(),
                    indices: order,
                }
            })
            .collect();
        Self {
            choice,
            ids: ids.to_vec(),
            mean_nll: nll / (ids.len() - 1) as f64,
            top_logits,
        }
    }
}

impl Figures {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; write it with TESSERA_WRITE_FIXTURES=1 (tests/fixtures/README.md)",
                path.display()
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not a figures file: {e}", path.display()))
    }

    pub fn write(&self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = serde_json::to_string_pretty(self).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
    }
}

/// Where the figures of `case` are read from and written to: `tests/fixtures/streaming/`, or
/// the directory `TESSERA_FIGURES_DIR` names (to compare two runs without touching the
/// committed files).
pub fn figures_path(case: &str) -> PathBuf {
    let dir = std::env::var_os("TESSERA_FIGURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streaming"));
    dir.join(format!("{case}.json"))
}

/// Whether this run (re)writes the fixtures instead of checking against them.
pub fn writing_fixtures() -> bool {
    std::env::var("TESSERA_WRITE_FIXTURES").is_ok_and(|v| v == "1")
}

/// SHA-256 of a file, or of a directory's files (name and hash of each, in name order).
pub fn parent_sha256(path: &Path) -> String {
    if path.is_file() {
        return super::sha256_hex(&std::fs::read(path).unwrap());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let listing: String = files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            format!("{name} {}\n", super::sha256_hex(&std::fs::read(p).unwrap()))
        })
        .collect();
    super::sha256_hex(listing.as_bytes())
}

/// The largest relative difference seen per kind of figure, and every figure out of tolerance.
#[derive(Default)]
pub struct Comparison {
    largest: BTreeMap<&'static str, (f64, String)>,
    failures: Vec<String>,
}

impl Comparison {
    /// Compares the figures of one case; panics, listing every difference, when any is out of
    /// tolerance or the two were not computed from the same parent, settings, items and blocks.
    pub fn check(case: &str, got: &Figures, expected: &Figures) {
        assert_eq!(
            got.parent_sha256, expected.parent_sha256,
            "{case}: the parent is not the one the figures were recorded on"
        );
        assert_eq!(
            got.settings, expected.settings,
            "{case}: the settings changed since the figures were recorded; rewrite them with today's code"
        );
        let mut comparison = Comparison::default();
        comparison.items(&got.items, &expected.items);
        comparison.scores(&got.scores, &expected.scores);
        comparison.child(&got.child, &expected.child);
        comparison.report(case, expected);
    }

    fn figure(&mut self, kind: &'static str, what: &str, got: f64, expected: f64) {
        let relative = (got - expected).abs() / expected.abs().max(SCALE_FLOOR);
        // NaN compares false: it fails and is recorded as the largest difference.
        let entry = self.largest.entry(kind).or_insert((0.0, String::new()));
        if relative.is_nan() || relative > entry.0 {
            *entry = (relative, what.to_string());
        }
        if relative.is_nan() || relative > RELATIVE_TOLERANCE {
            self.failures.push(format!(
                "{kind} of {what}: {got:e}, recorded {expected:e} (relative {relative:.2e})"
            ));
        }
    }

    fn same_keys<T>(&mut self, what: &str, got: &BTreeMap<String, T>, expected: &BTreeMap<String, T>) {
        let names = |m: &BTreeMap<String, T>| m.keys().cloned().collect::<Vec<_>>();
        if names(got) != names(expected) {
            self.failures.push(format!(
                "{what}: computed {:?}, recorded {:?}",
                names(got),
                names(expected)
            ));
        }
    }

    fn items(&mut self, got: &BTreeMap<String, ItemFigures>, expected: &BTreeMap<String, ItemFigures>) {
        self.same_keys("trainable items", got, expected);
        for (key, e) in expected {
            let Some(g) = got.get(key) else { continue };
            self.figure("nmse_init", key, g.nmse_init, e.nmse_init);
            self.figure("nmse_trained", key, g.nmse_trained, e.nmse_trained);
            self.figure("final_train_loss", key, g.final_train_loss, e.final_train_loss);
        }
    }

    fn scores(
        &mut self,
        got: &BTreeMap<String, BTreeMap<String, ScoreFigures>>,
        expected: &BTreeMap<String, BTreeMap<String, ScoreFigures>>,
    ) {
        self.same_keys("scored layers", got, expected);
        for (layer, blocks) in expected {
            let Some(got_blocks) = got.get(layer) else { continue };
            self.same_keys(&format!("blocks scored at {layer}"), got_blocks, blocks);
            for (block, e) in blocks {
                let Some(g) = got_blocks.get(block) else { continue };
                let what = format!("{layer} {block}");
                self.figure("kl_div", &what, g.kl_div, e.kl_div);
                self.figure("lm_loss", &what, g.lm_loss, e.lm_loss);
                self.figure("cosine_distance", &what, g.cosine_distance, e.cosine_distance);
            }
        }
    }

    fn child(&mut self, got: &ChildFigures, expected: &ChildFigures) {
        if (&got.choice, &got.ids) != (&expected.choice, &expected.ids) {
            self.failures.push(format!(
                "child: computed {:?} on {:?}, recorded {:?} on {:?}",
                got.choice, got.ids, expected.choice, expected.ids
            ));
            return;
        }
        self.figure("child mean_nll", "the child", got.mean_nll, expected.mean_nll);
        for (g, e) in got.top_logits.iter().zip(&expected.top_logits) {
            for (rank, (&value, &recorded)) in g.values.iter().zip(&e.values).enumerate() {
                let what = format!("position {} rank {rank}", e.position);
                self.figure("child top logits", &what, f64::from(value), f64::from(recorded));
            }
            // Ranks may only swap between logits that tie within the tolerance.
            let mut got_set = g.indices.clone();
            let mut expected_set = e.indices.clone();
            got_set.sort_unstable();
            expected_set.sort_unstable();
            if got_set != expected_set {
                self.failures.push(format!(
                    "child top-{TOP_K} at position {}: indices {:?}, recorded {:?}",
                    e.position, g.indices, e.indices
                ));
            }
        }
    }

    fn report(self, case: &str, expected: &Figures) {
        let mut text = format!(
            "{case}: figures against those recorded by {} ({}); largest relative difference per kind:\n",
            expected.written_by.commit, expected.written_by.profile
        );
        for (kind, (relative, what)) in &self.largest {
            let at = if what.is_empty() { "every one equal" } else { what };
            text += &format!("  {kind:<18} {relative:.3e}  ({at})\n");
        }
        uncaptured(&text);
        assert!(
            self.failures.is_empty(),
            "{case}: {} figures differ from the recorded ones by more than {RELATIVE_TOLERANCE:e} relative:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// One parent and the work whose figures are recorded: a library built on `layers`, its blocks
/// there scored, and one fixed child assembled from it.
pub struct Case {
    /// The fixture's file stem.
    pub name: &'static str,
    pub parent: PathBuf,
    pub space: PathBuf,
    pub data: TokenSource,
    /// For text data and the probe ids (default: the parent's own).
    pub tokenizer: Option<PathBuf>,
    /// The layers whose items are trained and whose blocks are scored.
    pub layers: Selection,
    pub seq_len: usize,
    pub held_out_windows: usize,
    pub calibration_tokens: usize,
    pub bld_tokens: usize,
    pub score_windows: usize,
    /// The child's blocks that differ from the parent's, by layer.
    pub child: Vec<(usize, &'static str)>,
    /// Text whose first `probe_tokens` ids the child reads; the ids are kept in the fixture,
    /// so later runs need neither the text nor the tokenizer to agree.
    pub probe_text: &'static str,
    pub probe_tokens: usize,
}

impl Case {
    /// Checks this case against its fixture, or writes the fixture under
    /// `TESSERA_WRITE_FIXTURES=1`.
    pub fn check_or_write(&self) {
        let path = figures_path(self.name);
        let device = Device::flex();
        let work = tempfile::tempdir().unwrap();
        if writing_fixtures() {
            let figures = self.figures(work.path(), &device, &self.probe_ids());
            figures.write(&path);
            uncaptured(&format!("{}: figures written to {}\n", self.name, path.display()));
        } else {
            let expected = Figures::read(&path);
            let figures = self.figures(work.path(), &device, &expected.child.ids);
            Comparison::check(self.name, &figures, &expected);
        }
    }

    /// What decides the figures besides the parent and the code; recorded with them.
    fn settings(&self) -> Value {
        let file_name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        let data = match &self.data {
            TokenSource::Text { path } => format!("text {}", file_name(path)),
            other => other.to_string(),
        };
        serde_json::json!({
            "space": file_name(&self.space),
            "data": data,
            "layers": self.layers.to_string(),
            "seq_len": self.seq_len,
            "held_out_windows": self.held_out_windows,
            "calibration_tokens": self.calibration_tokens,
            "bld_tokens": self.bld_tokens,
            "score_windows": self.score_windows,
        })
    }

    fn probe_ids(&self) -> Vec<u32> {
        let path = self
            .tokenizer
            .clone()
            .or_else(|| Tokenizer::beside_model(&self.parent))
            .expect("the parent has a tokenizer");
        let mut ids = Tokenizer::read(&path).unwrap().encode(self.probe_text, true).unwrap();
        assert!(
            ids.len() >= self.probe_tokens,
            "{}: the probe text is too short",
            self.name
        );
        ids.truncate(self.probe_tokens);
        ids
    }

    /// Builds, scores and assembles in `work`, and returns the figures, the child read on `ids`.
    pub fn figures(&self, work: &Path, device: &Device, ids: &[u32]) -> Figures {
        let timer = Instant::now();
        let mut options = BuildOptions::new(&self.parent, &self.space, self.data.clone());
        options.tokenizer = self.tokenizer.clone();
        options.seq_len = self.seq_len;
        options.held_out_windows = self.held_out_windows;
        options.calibration_tokens = self.calibration_tokens;
        options.bld.tokens = self.bld_tokens;
        options.selection = self.layers.clone();
        // The in-memory code the fixtures come from held the activations as f32.
        options.activation_cache = StoreDtype::F32;
        let library = work.join("library");
        let built = build_library(&library, &options, device).unwrap();
        let items: BTreeMap<String, ItemFigures> = built
            .library
            .manifest
            .items
            .iter()
            .filter(|(_, r)| r.origin == Origin::Trained && r.state == ItemState::Trained)
            .map(|(key, r)| {
                let figure = |v: Option<f64>, what: &str| v.unwrap_or_else(|| panic!("{key}: no {what}"));
                let figures = ItemFigures {
                    nmse_init: figure(r.nmse_init, "nmse_init"),
                    nmse_trained: figure(r.nmse_trained, "nmse_trained"),
                    final_train_loss: figure(r.final_train_loss, "final_train_loss"),
                };
                (key.clone(), figures)
            })
            .collect();
        assert!(!items.is_empty(), "{}: no item was trained", self.name);
        let built_at = timer.elapsed();

        let scoring = ScoreOptions {
            tokenizer: self.tokenizer.clone(),
            windows: self.score_windows,
            selection: self.layers.clone(),
            ..ScoreOptions::default()
        };
        let mut scores: BTreeMap<String, BTreeMap<String, ScoreFigures>> = BTreeMap::new();
        for row in score_library(&library, &scoring, device).unwrap().blocks {
            let figures = ScoreFigures {
                kl_div: row.scores.kl_div,
                lm_loss: row.scores.lm_loss,
                cosine_distance: row.scores.cosine_distance,
            };
            scores
                .entry(span_key(row.span))
                .or_default()
                .insert(row.variant, figures);
        }
        let scored_at = timer.elapsed();

        let parent_blocks = &built.library.manifest.parent.config.blocks;
        let names: Vec<String> = parent_blocks
            .iter()
            .enumerate()
            .map(|(layer, block)| match self.child.iter().find(|(l, _)| *l == layer) {
                Some((_, name)) => name.to_string(),
                None => block_name(block),
            })
            .collect();
        let choice = ChildChoice::per_layer(&names);
        let child = self.assembled_child(work, &library, &choice, device, ids);
        uncaptured(&format!(
            "{}: built {:.1} s, scored {:.1} s, assembled and read {:.1} s ({} profile)\n",
            self.name,
            built_at.as_secs_f64(),
            (scored_at - built_at).as_secs_f64(),
            (timer.elapsed() - scored_at).as_secs_f64(),
            WrittenBy::now().profile
        ));
        Figures {
            written_by: WrittenBy::now(),
            parent_sha256: parent_sha256(&self.parent),
            settings: self.settings(),
            items,
            scores,
            child,
        }
    }

    /// Assembles `choice` through a solutions file, as `tessera assemble` does, and reads the
    /// written child on `ids`.
    fn assembled_child(
        &self,
        work: &Path,
        library: &Path,
        choice: &ChildChoice,
        device: &Device,
        ids: &[u32],
    ) -> ChildFigures {
        let solutions = work.join("solutions.json");
        let fixed = SolutionReport {
            method: "fixed".into(),
            objective: 0.0,
            totals: Default::default(),
            choice: choice.clone(),
            status: Status::Heuristic,
            solve_ms: 0.0,
            batch_size: None,
        };
        SearchReport {
            objective: Objective {
                key: "metrics.kl_div".into(),
                maximize: false,
            },
            limits: Vec::new(),
            solutions: vec![fixed],
            baselines: Vec::new(),
            baselines_without: Vec::new(),
            measured: None,
            closed_loop: Vec::new(),
            chosen_round: None,
        }
        .write(&solutions)
        .unwrap();
        let options = AssembleOptions {
            library: library.to_path_buf(),
            solution: solutions.display().to_string().parse().unwrap(),
            parent: None,
            dtype: StoreDtype::F32,
        };
        let assembled = assemble_child(&work.join("child"), &options).unwrap();
        let model = load_model(&assembled.child.model, device).unwrap();
        let tokens = model.tokens_tensor(&[ids.to_vec()]).unwrap();
        let logits = model.forward(tokens, None, false).unwrap().logits;
        let logits = logits.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let named = choice
            .iter()
            .map(|(span, name)| (span_key(*span), name.clone()))
            .collect();
        let positions = [0, ids.len() / 2, ids.len() - 1];
        ChildFigures::from_logits(named, ids, &logits, &positions)
    }
}

/// Writes to stderr past libtest's capture: these lines are what a reader of the run wants.
pub fn uncaptured(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}
