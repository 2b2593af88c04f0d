//! A heat map of an upper-triangular matrix (the fusion stage's layer dependencies): one cell
//! per pair, white at 0 to dark red at the largest value, with the value written in the cell;
//! SVG and PNG like the other plots.

use std::path::Path;

use ndarray::ArrayView2;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::scatter::register_font;

pub struct HeatMap<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// `values[[i, j]]`, drawn for `j > i` only.
    pub values: ArrayView2<'a, f64>,
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, map: &HeatMap) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let text = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(text)?;
    let n = map.values.nrows();
    let last = n.saturating_sub(1);
    let top = map
        .values
        .indexed_iter()
        .filter(|((i, j), _)| j > i)
        .map(|(_, &v)| v)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut chart = ChartBuilder::on(&area)
        .caption(map.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        // A segmented `0..last` has a segment for every value of `0..=last`.
        .build_cartesian_2d((0..last).into_segmented(), (0..last).into_segmented())
        .map_err(text)?;
    let row_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(k) if *k < n => (n - 1 - k).to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .y_label_formatter(&row_label)
        .x_desc(map.x_label)
        .y_desc(map.y_label)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(text)?;
    // Row i at the top: y runs from n-1 (top) down to 0, so row i is drawn at n-1-i.
    let cell = |i: usize, j: usize| {
        (
            SegmentValue::Exact(j),
            SegmentValue::Exact(n - 1 - i),
            SegmentValue::Exact(j + 1),
            SegmentValue::Exact(n - i),
        )
    };
    for (i, row) in map.values.rows().into_iter().enumerate() {
        for (j, &value) in row.iter().enumerate().skip(i + 1) {
            let shade = (value / top).clamp(0.0, 1.0);
            let color = RGBColor(255, (255.0 * (1.0 - shade)) as u8, (255.0 * (1.0 - shade)) as u8);
            let (x0, y0, x1, y1) = cell(i, j);
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, y0), (x1, y1)], color.filled())))
                .map_err(text)?;
            let ink = if shade > 0.6 { WHITE } else { BLACK };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{value:.3}"),
                    (SegmentValue::CenterOf(j), SegmentValue::CenterOf(n - 1 - i)),
                    ("sans-serif", 12)
                        .into_font()
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(text)?;
        }
    }
    area.present().map_err(text)
}

/// Writes `<stem>.svg` and `<stem>.png`.
pub fn write_heatmap(stem: &Path, map: &HeatMap) -> Result<(), String> {
    register_font()?;
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, (720, 640)).into_drawing_area(), map)?;
    let png = stem.with_extension("png");
    draw(BitMapBackend::new(&png, (720, 640)).into_drawing_area(), map)
}

/// The fusion stage's dependency matrix `M[i][j]` as a heat map (`<stem>.svg` / `.png`).
pub fn write_dependency_heatmap(stem: &Path, values: ArrayView2<'_, f64>) -> Result<(), String> {
    write_heatmap(
        stem,
        &HeatMap {
            title: "layer dependency (cosine distance)",
            x_label: "layer j (runs after i)",
            y_label: "layer i (skipped)",
            values,
        },
    )
}
