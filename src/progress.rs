//! The one progress bar of every long stage: a counted bar on stderr, or a hidden one when the
//! caller prints JSON or runs quietly. Knows nothing of the work it counts.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units of `what` (e.g. `"BLD items"`), starting at `start`; hidden unless `show`.
pub fn bar(show: bool, what: &str, start: usize, total: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let template = format!("{{spinner}} {what} {{pos}}/{{len}} [{{bar:30}}] {{msg}} ({{elapsed}}, eta {{eta}})");
    ProgressBar::new(total as u64).with_position(start as u64).with_style(
        ProgressStyle::with_template(&template)
            .expect("a valid template")
            .progress_chars("=> "),
    )
}
