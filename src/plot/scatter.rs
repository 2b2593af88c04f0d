//! Scatter plots of one quantity against another with a marked front (or curves), drawn once for any
//! plotters backend and written as SVG (text as text, no font needed) and PNG (text rendered
//! with the bundled DejaVu Sans, so no system font is needed either).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One series of points with a label.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Scatter<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    /// Joined by a line and drawn on top.
    pub front: &'a [(f64, f64)],
    /// Each series drawn as a line through its points (a curve) instead of as dots.
    pub lines: bool,
}

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-3).max(1e-9);
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, plot: &Scatter) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let text = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(text)?;
    let all = || {
        plot.series
            .iter()
            .flat_map(|s| s.points.iter())
            .chain(plot.front.iter())
    };
    let (x0, x1) = range(all().map(|p| p.0));
    let (y0, y1) = range(all().map(|p| p.1));
    let mut chart = ChartBuilder::on(&area)
        .caption(plot.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(plot.x_label)
        .y_desc(plot.y_label)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(text)?;
    for (i, series) in plot.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if plot.lines {
            chart
                .draw_series(LineSeries::new(series.points.iter().copied(), color.stroke_width(2)))
                .map_err(text)?
                .label(series.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], color.stroke_width(2)));
        } else {
            chart
                .draw_series(series.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(text)?
                .label(series.label.as_str())
                .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
        }
    }
    if !plot.front.is_empty() {
        chart
            .draw_series(LineSeries::new(plot.front.iter().copied(), BLACK.stroke_width(2)))
            .map_err(text)?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(text)?;
    area.present().map_err(text)
}

/// Makes the bundled font plotters' `sans-serif` (once), for PNG text.
pub(crate) fn register_font() -> Result<(), String> {
    let registered =
        REGISTERED.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if *registered {
        Ok(())
    } else {
        Err("the bundled font assets/fonts/DejaVuSans.ttf could not be read".into())
    }
}

/// Writes `<stem>.svg` and `<stem>.png`.
pub fn write_scatter(stem: &Path, plot: &Scatter) -> Result<(), String> {
    register_font()?;
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, (800, 520)).into_drawing_area(), plot)?;
    let png = stem.with_extension("png");
    draw(BitMapBackend::new(&png, (800, 520)).into_drawing_area(), plot)
}
