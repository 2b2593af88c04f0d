//! BLD throughput: builds a library into a scratch directory and reports its wall time and the
//! training tokens per second of each sub-block kind (median over the items of that kind, each
//! item timed on its own thread while the others run beside it, as in a real build).

use burn::prelude::Device;
use serde::Serialize;

use crate::library::{BuildOptions, Library, LibraryError, Origin, build_library};
use crate::model::{AttentionConfig, FfnConfig};

#[derive(Debug, Serialize)]
pub struct KindRate {
    pub kind: String,
    pub items: usize,
    pub median_tokens_per_s: f64,
    pub median_item_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct BldBench {
    pub wall_seconds: f64,
    pub items: usize,
    pub tokens_per_item: usize,
    pub kinds: Vec<KindRate>,
}

fn kind(attention: Option<AttentionConfig>, ffn: Option<FfnConfig>) -> String {
    let part = |a: Option<AttentionConfig>, f: Option<FfnConfig>| match (a, f) {
        (Some(AttentionConfig::Gqa { .. }), _) => "attention gqa",
        (Some(AttentionConfig::Linear), _) => "attention linear",
        (_, Some(FfnConfig::SwiGlu { .. })) => "ffn swiglu",
        (_, Some(FfnConfig::Linear)) => "ffn linear",
        _ => "removed",
    };
    match (attention, ffn) {
        (Some(_), Some(_)) => format!("pair: {} + {}", part(attention, None), part(None, ffn)),
        _ => part(attention, ffn).to_string(),
    }
}

/// Builds the library of `options` into a fresh temporary directory and times it.
pub fn bench_bld(options: &BuildOptions, device: &Device) -> Result<BldBench, LibraryError> {
    let scratch = tempfile::tempdir().map_err(LibraryError::io(&std::env::temp_dir()))?;
    let dir = scratch.path().join("library");
    let report = build_library(&dir, options, device)?;
    let library = Library::open(&dir)?;
    let mut by_kind: std::collections::BTreeMap<String, (Vec<f64>, Vec<f64>)> = Default::default();
    for record in library.manifest.items.values().filter(|r| r.origin == Origin::Trained) {
        let entry = by_kind.entry(kind(record.item.attention, record.item.ffn)).or_default();
        entry.0.push(record.tokens_seen as f64 / record.seconds);
        entry.1.push(record.seconds);
    }
    Ok(BldBench {
        wall_seconds: report.seconds,
        items: report.trained_now,
        tokens_per_item: options.bld.tokens,
        kinds: by_kind
            .into_iter()
            .map(|(kind, (rates, seconds))| KindRate {
                kind,
                items: rates.len(),
                median_tokens_per_s: crate::stats::median(&rates),
                median_item_seconds: crate::stats::median(&seconds),
            })
            .collect(),
    })
}

impl std::fmt::Display for BldBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "built {} items of {} tokens each in {:.1} s wall ({} cores)",
            self.items,
            self.tokens_per_item,
            self.wall_seconds,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )?;
        writeln!(
            f,
            "{:<40} {:>6} {:>16} {:>14}",
            "sub-block kind", "items", "median tok/s", "median item s"
        )?;
        for k in &self.kinds {
            writeln!(
                f,
                "{:<40} {:>6} {:>16.0} {:>14.2}",
                k.kind, k.items, k.median_tokens_per_s, k.median_item_seconds
            )?;
        }
        write!(
            f,
            "(tokens/s of one item's training while the other cores train other items)"
        )
    }
}
