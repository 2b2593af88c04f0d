//! A run's report, `reports/<run>/index.html`: the parent-vs-child table, what each stage
//! found, the architecture drawn layer by layer, the Pareto plots, the fusion heat map and the
//! training curves. Self-contained: every picture is copied or drawn into the report folder.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::architecture::architecture_svg;
use super::pareto::ReportError;
use super::summary::Summary;
use crate::checkpoint::LayerSpan;
use crate::model::ModelConfig;
use crate::plot::{Scatter, Series, write_scatter};

/// A training curve plot: named series of (step, value).
#[derive(Clone, Debug)]
pub struct Curve {
    pub title: String,
    pub y_label: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

pub struct RunPage<'a> {
    pub name: &'a str,
    pub summary: &'a Summary,
    /// Each stage and the seconds its work took.
    pub stages: &'a [(String, f64)],
    pub parent: &'a ModelConfig,
    pub child: &'a ModelConfig,
    /// The parent layers each child block stands for.
    pub child_spans: &'a [LayerSpan],
    pub fused_runs: &'a [String],
    /// SVG files of the search's Pareto plots.
    pub pareto_plots: &'a [PathBuf],
    /// SVG file of the fusion dependency heat map.
    pub heatmap: &'a Path,
    pub curves: &'a [Curve],
    /// One sentence per finding.
    pub notes: &'a [String],
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;max-width:1500px;color:#222}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#eee}h2{margin-top:28px;border-bottom:1px solid #ccc}\
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots img{width:560px;border:1px solid #ddd}img.wide{width:760px}";

/// Writes `dir/index.html` and the pictures it shows; returns the page's path.
pub fn write_run_page(dir: &Path, page: &RunPage) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tessera run {0}</title><style>{STYLE}</style></head><body>\n<h1>tessera run <code>{0}</code></h1>\n",
        escape(page.name)
    );
    summary_section(&mut html, page);
    architecture_section(&mut html, dir, page)?;
    pictures_section(&mut html, dir, page)?;
    curves_section(&mut html, dir, page)?;
    html.push_str("</body></html>\n");
    let index = dir.join("index.html");
    std::fs::write(&index, html).map_err(|e| fail(&index, e.to_string()))?;
    Ok(index)
}

fn fail(path: &Path, problem: String) -> ReportError {
    ReportError {
        path: path.to_path_buf(),
        problem,
    }
}

/// The parent-vs-child table, what each stage found and each stage's time.
fn summary_section(html: &mut String, page: &RunPage) {
    html.push_str("<h2>Parent and child</h2>\n<table><tr>");
    for header in Summary::HEADERS {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr>\n");
    for row in page.summary.cells() {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(&cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    if let Some(fusion) = &page.summary.fusion {
        let _ = writeln!(html, "<p>{}.</p>", escape(&fusion.to_string()));
    }
    let _ = writeln!(
        html,
        "<p>Accuracy on {} held-out tasks of each kind (greedy): multi-step arithmetic with thinking on and off, one-step sums with thinking off (where answering directly is right); format: think tags present iff thinking is on, over all replies. Request time measured, interleaved, median: {}. KV bytes per token of context in bf16. NLL, and KL to the parent, per token: on {}; KL also on chats (the parent's own greedy replies to held-out prompts of both kinds, thinking on and off), the text post-training is about.</p>",
        page.summary.eval_tasks,
        escape(&page.summary.request),
        escape(&page.summary.windows)
    );
    html.push_str("<h2>What each stage found</h2>\n<ul>\n");
    for note in page.notes {
        let _ = writeln!(html, "<li>{}</li>", escape(note));
    }
    html.push_str("</ul>\n<table><tr><th>stage</th><th>seconds of work</th></tr>\n");
    for (stage, seconds) in page.stages {
        let _ = writeln!(html, "<tr><td>{}</td><td>{seconds:.1}</td></tr>", escape(stage));
    }
    html.push_str("</table>\n");
}

/// The child drawn layer by layer against the parent (`architecture.svg`).
fn architecture_section(html: &mut String, dir: &Path, page: &RunPage) -> Result<(), ReportError> {
    let architecture = dir.join("architecture.svg");
    std::fs::write(
        &architecture,
        architecture_svg(page.parent, page.child, page.child_spans),
    )
    .map_err(|e| fail(&architecture, e.to_string()))?;
    let fused = if page.fused_runs.is_empty() {
        "no run fused".to_string()
    } else {
        format!("fused runs (parent layers): {}", page.fused_runs.join(", "))
    };
    let _ = writeln!(
        html,
        "<h2>Architecture, layer by layer</h2>\n<p>{} layers → {} blocks; {}.</p>\n<img class=\"wide\" src=\"architecture.svg\">",
        page.parent.num_layers(),
        page.child.num_layers(),
        escape(&fused)
    );
    Ok(())
}

/// The search's Pareto plots and the fusion heat map, copied into the report folder.
fn pictures_section(html: &mut String, dir: &Path, page: &RunPage) -> Result<(), ReportError> {
    let copy_in = |source: &Path, name: String| -> Result<String, ReportError> {
        std::fs::copy(source, dir.join(&name)).map_err(|e| fail(source, format!("copying into the report: {e}")))?;
        Ok(name)
    };
    html.push_str("<h2>Pareto fronts of the search</h2>\n<div class=\"plots\">\n");
    for plot in page.pareto_plots {
        let file_name = plot
            .file_name()
            .map_or("plot.svg".into(), |n| n.to_string_lossy().into_owned());
        let name = copy_in(plot, format!("pareto-{file_name}"))?;
        let _ = writeln!(html, "<img src=\"{}\">", escape(&name));
    }
    html.push_str("</div>\n");
    let heatmap = copy_in(page.heatmap, "dependency.svg".into())?;
    let _ = writeln!(
        html,
        "<h2>FFN fusion: layer dependency</h2>\n<p>M[i][j]: cosine distance of layer j's contribution with and without layer i before it; low values mark layers that can run in parallel.</p>\n<div class=\"plots\"><img src=\"{heatmap}\"></div>"
    );
    Ok(())
}

/// Each training curve drawn (`curve-K.svg`).
fn curves_section(html: &mut String, dir: &Path, page: &RunPage) -> Result<(), ReportError> {
    html.push_str("<h2>Training curves</h2>\n<div class=\"plots\">\n");
    for (k, curve) in page.curves.iter().enumerate() {
        let stem = dir.join(format!("curve-{k}"));
        let series: Vec<Series> = curve
            .series
            .iter()
            .map(|(label, points)| Series {
                label: label.clone(),
                points: points.clone(),
            })
            .collect();
        write_scatter(
            &stem,
            &Scatter {
                title: &curve.title,
                x_label: "step",
                y_label: &curve.y_label,
                series: &series,
                front: &[],
                lines: true,
            },
        )
        .map_err(|e| fail(&stem, e))?;
        let _ = writeln!(html, "<img src=\"curve-{k}.svg\">");
    }
    html.push_str("</div>\n");
    Ok(())
}
