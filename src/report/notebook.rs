//! Showing pictures in a Jupyter notebook run by the evcxr kernel: evcxr passes output between
//! its content markers to the notebook as that MIME type (one picture per cell: the last one
//! shown wins, so several go into one HTML block). Prints; draws nothing itself.

/// Shows `svg` (an SVG document) as the cell's output.
pub fn show_svg(svg: &str) {
    println!("EVCXR_BEGIN_CONTENT image/svg+xml\n{svg}\nEVCXR_END_CONTENT");
}

/// Shows `html` (a fragment; inline SVG documents are fine) as the cell's output.
pub fn show_html(html: &str) {
    println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT");
}
