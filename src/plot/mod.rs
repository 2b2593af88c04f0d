//! Drawing: scatter plots with a marked front or curves, and heat maps, each written as SVG and
//! PNG with a bundled font. Used by the fusion stage (its dependency heat map) and the report;
//! knows no pipeline stage.

pub mod heatmap;
pub mod scatter;

pub use heatmap::{HeatMap, write_dependency_heatmap, write_heatmap};
pub use scatter::{Scatter, Series, write_scatter};
