//! Showing pictures in a Jupyter notebook run by the evcxr kernel: evcxr passes output between
//! its content markers to the notebook as that MIME type. Prints; draws nothing itself.

/// Shows `svg` (an SVG document) as the cell's output.
pub fn show_svg(svg: &str) {
    println!("EVCXR_BEGIN_CONTENT image/svg+xml\n{svg}\nEVCXR_END_CONTENT");
}
