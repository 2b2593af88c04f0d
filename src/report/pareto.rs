//! The Pareto report of a sweep, in `reports/NAME/`: every solution and baseline of every point
//! as a table (`solutions.csv`, `solutions.parquet`), the objective plotted against each
//! constrained total with the front marked (`<total>.svg` / `.png`), and `index.html` and
//! `index.md` linking them with a summary per point. Reads search results; runs no search.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::plot::{Scatter, Series, write_scatter};
use crate::search::{SearchInput, SearchSpec, Sense, SolutionReport, Sweep, SweepPoint};
use crate::table::{Values, write_table};

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ReportError {
    pub path: PathBuf,
    pub problem: String,
}

/// What was written.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParetoReport {
    pub dir: PathBuf,
    pub table: PathBuf,
    pub plots: Vec<PathBuf>,
    pub page: PathBuf,
}

struct Row<'a> {
    value: f64,
    rank: usize,
    solution: &'a SolutionReport,
}

fn rows(points: &[SweepPoint]) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for point in points {
        let Some(report) = &point.report else { continue };
        for (rank, solution) in report.solutions.iter().enumerate() {
            out.push(Row {
                value: point.value,
                rank,
                solution,
            });
        }
        for solution in &report.baselines {
            out.push(Row {
                value: point.value,
                rank: 0,
                solution,
            });
        }
    }
    out
}

/// The points no other point beats on both axes (objective minimised unless `maximize`; the
/// quantity is better low for an upper limit, high for a lower one), in x order.
fn front(points: &[(f64, f64)], low_x_better: bool, maximize: bool) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    sorted.sort_by(|a, b| {
        let order = a.0.total_cmp(&b.0);
        if low_x_better { order } else { order.reverse() }
    });
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        let improves = out
            .last()
            .is_none_or(|last| if maximize { p.1 > last.1 } else { p.1 < last.1 });
        if improves {
            out.push(p);
        }
    }
    out
}

fn file_name(total: &str) -> String {
    total
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// Searches `library` at every value of `sweep` and writes the Pareto report into `out`: the
/// Pareto stage, as `tessera pareto` and `tessera run` call it.
pub fn pareto_front(
    library: &Path,
    spec: &SearchSpec,
    sweep: &Sweep,
    out: &Path,
    progress: bool,
) -> Result<ParetoFront, ReportError> {
    let fail = |problem: String| ReportError {
        path: library.to_path_buf(),
        problem,
    };
    let input = SearchInput::open(library).map_err(|e| fail(e.to_string()))?;
    let points = crate::search::sweep(&input, spec, sweep, progress).map_err(|e| fail(e.to_string()))?;
    let report = write_pareto(out, sweep, &points)?;
    Ok(ParetoFront { report, points })
}

/// A sweep's points and the report written of them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParetoFront {
    pub report: ParetoReport,
    pub points: Vec<SweepPoint>,
}

impl std::fmt::Display for ParetoFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let feasible = self.points.iter().filter(|p| p.report.is_some()).count();
        write!(
            f,
            "{feasible}/{} points feasible; table {}, {} plots, page {}",
            self.points.len(),
            self.report.table.display(),
            self.report.plots.len(),
            self.report.page.display()
        )
    }
}

/// Writes the report of `points` into `dir`.
pub fn write_pareto(dir: &Path, sweep: &Sweep, points: &[SweepPoint]) -> Result<ParetoReport, ReportError> {
    let fail = |path: &Path, problem: String| ReportError {
        path: path.to_path_buf(),
        problem,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let rows = rows(points);
    let objective = points
        .iter()
        .find_map(|p| p.report.as_ref())
        .map(|r| r.objective.clone());
    let totals: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.solution.totals.keys().cloned())
        .filter(|k| objective.as_ref().is_none_or(|o| &o.key != k))
        .collect();
    let stem = dir.join("solutions");
    write_table(&stem, table_columns(&format!("sweep {}", sweep.key), &rows, &totals))
        .map_err(|e| fail(&stem, e.to_string()))?;
    let maximize = objective.as_ref().is_some_and(|o| o.maximize);
    let objective_key = objective.as_ref().map_or("objective".to_string(), |o| o.key.clone());
    let methods: BTreeSet<&str> = rows.iter().map(|r| r.solution.method.as_str()).collect();
    let mut plots = Vec::new();
    for name in &totals {
        let sense = points
            .iter()
            .filter_map(|p| p.report.as_ref())
            .flat_map(|r| r.limits.iter())
            .find(|l| &l.name == name)
            .map_or(Sense::AtMost, |l| l.sense);
        let plot_stem = dir.join(file_name(name));
        write_front_plot(&plot_stem, name, &objective_key, sense, maximize, &methods, &rows)
            .map_err(|e| fail(&plot_stem, e))?;
        plots.push(plot_stem.with_extension("svg"));
    }
    let md = summary_markdown(sweep, points, &methods, &objective_key, maximize, &plots);
    let page_md = dir.join("index.md");
    std::fs::write(&page_md, &md).map_err(|e| fail(&page_md, e.to_string()))?;
    let page = dir.join("index.html");
    std::fs::write(&page, markdown_page(&md)).map_err(|e| fail(&page, e.to_string()))?;
    Ok(ParetoReport {
        dir: dir.to_path_buf(),
        table: stem.with_extension("csv"),
        plots,
        page,
    })
}

/// Every solution and baseline of every point as table columns: the swept value, the method,
/// its rank, objective, status, time, batch size, every total, and the choice.
fn table_columns<'a>(sweep_column: &'a str, rows: &[Row], totals: &'a BTreeSet<String>) -> Vec<(&'a str, Values)> {
    let float = |f: &dyn Fn(&Row) -> f64| Values::Float(rows.iter().map(f).collect());
    let status = |r: &Row| {
        serde_json::to_value(r.solution.status)
            .expect("status serialises")
            .to_string()
    };
    let mut columns = vec![
        (sweep_column, float(&|r| r.value)),
        (
            "method",
            Values::Text(rows.iter().map(|r| r.solution.method.clone()).collect()),
        ),
        ("rank", Values::Int(rows.iter().map(|r| r.rank as i64).collect())),
        ("objective", float(&|r| r.solution.objective)),
        ("status", Values::Text(rows.iter().map(status).collect())),
        ("solve_ms", float(&|r| r.solution.solve_ms)),
        (
            "batch_size",
            Values::Int(
                rows.iter()
                    .map(|r| r.solution.batch_size.map_or(-1, |b| b as i64))
                    .collect(),
            ),
        ),
    ];
    for name in totals {
        columns.push((
            name.as_str(),
            float(&|r| r.solution.totals.get(name).and_then(|v| v.as_f64()).unwrap_or(f64::NAN)),
        ));
    }
    let choice = |r: &Row| {
        r.solution
            .choice
            .iter()
            .map(|(span, name)| format!("layer_{span}={name}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    columns.push(("choice", Values::Text(rows.iter().map(choice).collect())));
    columns
}

/// The objective against one total, a series per method, with the front marked.
fn write_front_plot(
    stem: &Path,
    total: &str,
    objective_key: &str,
    sense: Sense,
    maximize: bool,
    methods: &BTreeSet<&str>,
    rows: &[Row],
) -> Result<(), String> {
    let point_of = |r: &Row| {
        r.solution
            .totals
            .get(total)
            .and_then(|v| v.as_f64())
            .map(|x| (x, r.solution.objective))
    };
    let series: Vec<Series> = methods
        .iter()
        .map(|m| Series {
            label: m.to_string(),
            points: rows
                .iter()
                .filter(|r| r.solution.method == *m)
                .filter_map(point_of)
                .collect(),
        })
        .collect();
    let all: Vec<(f64, f64)> = rows.iter().filter_map(point_of).collect();
    let front = front(&all, sense == Sense::AtMost, maximize);
    write_scatter(
        stem,
        &Scatter {
            title: &format!("{objective_key} against {total}"),
            x_label: total,
            y_label: objective_key,
            series: &series,
            front: &front,
            lines: false,
        },
    )
}

/// The page's Markdown: what was swept, the objective per point and method, and the plots.
fn summary_markdown(
    sweep: &Sweep,
    points: &[SweepPoint],
    methods: &BTreeSet<&str>,
    objective_key: &str,
    maximize: bool,
    plots: &[PathBuf],
) -> String {
    let mut md = format!(
        "# Pareto sweep of `{}` from {} to {} ({} points)\n\nObjective: {} `{}`. Table: [solutions.csv](solutions.csv), [solutions.parquet](solutions.parquet).\n\n",
        sweep.key,
        sweep.from,
        sweep.to,
        sweep.steps,
        if maximize { "maximise" } else { "minimise" },
        objective_key
    );
    let baseline_names: Vec<&str> = methods.iter().copied().filter(|m| *m != "mip").collect();
    md.push_str(&format!("| {} | mip | {} |\n", sweep.key, baseline_names.join(" | ")));
    md.push_str(&format!("|---|---|{}\n", "---|".repeat(baseline_names.len())));
    for point in points {
        let cell = |method: &str| -> String {
            match &point.report {
                None => "infeasible".into(),
                Some(r) => r
                    .solutions
                    .iter()
                    .chain(&r.baselines)
                    .find(|s| s.method == method)
                    .map_or("—".into(), |s| format!("{:.5}", s.objective)),
            }
        };
        let cells: Vec<String> = baseline_names.iter().map(|m| cell(m)).collect();
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            point.value,
            cell("mip"),
            cells.join(" | ")
        ));
    }
    md.push('\n');
    for plot in plots {
        let name = plot.file_name().expect("a file").to_string_lossy();
        md.push_str(&format!("![{name}]({name})\n\n"));
    }
    md
}

/// The little Markdown this report writes (headings, tables, images, paragraphs) as HTML.
fn markdown_page(md: &str) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut html = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>tessera Pareto report</title>\n<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>\n",
    );
    let mut in_table = false;
    for line in md.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                html.push_str("<table>\n");
                in_table = true;
            }
            let cells: Vec<String> = line.trim_matches('|').split('|').map(|c| escape(c.trim())).collect();
            html.push_str(&format!("<tr><td>{}</td></tr>\n", cells.join("</td><td>")));
            continue;
        }
        if in_table {
            html.push_str("</table>\n");
            in_table = false;
        }
        if let Some(title) = line.strip_prefix("# ") {
            html.push_str(&format!("<h1>{}</h1>\n", escape(title)));
        } else if let Some(rest) = line.strip_prefix("![") {
            let (_, src) = rest.split_once("](").unwrap_or(("", rest));
            html.push_str(&format!("<p><img src=\"{}\"></p>\n", escape(src.trim_end_matches(')'))));
        } else if !line.is_empty() {
            let linked = escape(line)
                .replace(
                    "[solutions.csv](solutions.csv)",
                    "<a href=\"solutions.csv\">solutions.csv</a>",
                )
                .replace(
                    "[solutions.parquet](solutions.parquet)",
                    "<a href=\"solutions.parquet\">solutions.parquet</a>",
                );
            html.push_str(&format!("<p>{linked}</p>\n"));
        }
    }
    if in_table {
        html.push_str("</table>\n");
    }
    html
}
