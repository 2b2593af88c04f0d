//! The chosen architecture drawn layer by layer (after Figure 6 of the Puzzle paper): one column
//! per parent layer, for the parent and for the child, an attention cell (coloured by kind, with
//! its KV heads) above an FFN bar (its height the FFN's width). A child block standing for a span
//! of parent layers (a fused run) is drawn across its span. Plain SVG text; reads configs only.

use std::fmt::Write;

use crate::checkpoint::LayerSpan;
use crate::model::{AttentionConfig, FfnConfig, ModelConfig};

const COLUMN: usize = 52;
const LEFT: usize = 90;
const ATTENTION_H: usize = 34;
const FFN_H: usize = 70;

fn attention_cell(attention: &AttentionConfig, parent_kv: usize) -> (&'static str, String) {
    match attention {
        AttentionConfig::Gqa { kv_heads } if *kv_heads >= parent_kv => ("#4477aa", format!("kv {kv_heads}")),
        AttentionConfig::Gqa { kv_heads } => ("#88ccee", format!("kv {kv_heads}")),
        AttentionConfig::Linear => ("#ddcc77", "linear".into()),
        AttentionConfig::NoOp => ("#f4f4f4", "—".into()),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One model's two rows at height `top`; `spans[k]` are the parent layers block `k` stands for.
fn draw_model(
    svg: &mut String,
    label: &str,
    config: &ModelConfig,
    spans: &[LayerSpan],
    top: usize,
    scale: f64,
    parent_kv: usize,
) {
    let _ = writeln!(
        svg,
        r#"<text x="8" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        top + ATTENTION_H / 2 + 5,
        escape(label)
    );
    let ffn_top = top + ATTENTION_H + 6;
    for (block, span) in config.blocks.iter().zip(spans) {
        let x = LEFT + span.first * COLUMN;
        let width = span.layers() * COLUMN - 4;
        let (color, text) = attention_cell(&block.attention, parent_kv);
        let _ = writeln!(
            svg,
            r##"<rect x="{x}" y="{top}" width="{}" height="{ATTENTION_H}" fill="{color}" stroke="#555"/><text x="{}" y="{}" font-size="11" text-anchor="middle">{text}</text>"##,
            COLUMN - 4,
            x + (COLUMN - 4) / 2,
            top + ATTENTION_H / 2 + 4
        );
        for extra in 1..span.layers() {
            let _ = writeln!(
                svg,
                r##"<rect x="{}" y="{top}" width="{}" height="{ATTENTION_H}" fill="#f4f4f4" stroke="#555"/><text x="{}" y="{}" font-size="11" text-anchor="middle">—</text>"##,
                x + extra * COLUMN,
                COLUMN - 4,
                x + extra * COLUMN + (COLUMN - 4) / 2,
                top + ATTENTION_H / 2 + 4
            );
        }
        let (height, color, text) = match block.ffn {
            FfnConfig::SwiGlu { intermediate } => {
                let per_layer = intermediate as f64 / span.layers() as f64;
                let fused = if span.layers() > 1 { " fused" } else { "" };
                (
                    ((per_layer * scale).round() as usize).clamp(3, FFN_H),
                    "#cc6677",
                    format!("{intermediate}{fused}"),
                )
            }
            FfnConfig::Linear => (FFN_H / 5, "#ddcc77", "linear".into()),
            FfnConfig::NoOp => (0, "#ffffff", "—".into()),
        };
        let _ = writeln!(
            svg,
            r##"<rect x="{x}" y="{ffn_top}" width="{width}" height="{FFN_H}" fill="#fafafa" stroke="#555"/><rect x="{x}" y="{}" width="{width}" height="{height}" fill="{color}"/><text x="{}" y="{}" font-size="11" text-anchor="middle">{text}</text>"##,
            ffn_top + FFN_H - height,
            x + width / 2,
            ffn_top + 14
        );
    }
}

/// An SVG of `parent` above `child`; `child_spans[k]` are the parent layers child block `k`
/// stands for.
///
/// ```
/// use tessera::checkpoint::LayerSpan;
/// use tessera::model::{AttentionConfig, ModelConfig};
/// use tessera::report::architecture_svg;
///
/// let parent = ModelConfig::uniform(64, 128, 2, 4, 2, 384, 256);
/// let mut child = parent.clone();
/// child.blocks[1].attention = AttentionConfig::NoOp;
/// let svg = architecture_svg(&parent, &child, &[LayerSpan::single(0), LayerSpan::single(1)]);
/// assert!(svg.starts_with("<svg") && svg.contains("kv 2"));
/// ```
pub fn architecture_svg(parent: &ModelConfig, child: &ModelConfig, child_spans: &[LayerSpan]) -> String {
    let layers = parent.num_layers();
    let parent_spans: Vec<LayerSpan> = (0..layers).map(LayerSpan::single).collect();
    let parent_kv = parent
        .blocks
        .iter()
        .filter_map(|b| match b.attention {
            AttentionConfig::Gqa { kv_heads } => Some(kv_heads),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let widest = parent
        .blocks
        .iter()
        .map(|b| match b.ffn {
            FfnConfig::SwiGlu { intermediate } => intermediate,
            _ => 0,
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let scale = (FFN_H - 16) as f64 / widest as f64;
    let row = ATTENTION_H + FFN_H + 30;
    let width = LEFT + layers * COLUMN + 20;
    let height = 40 + 2 * row + 60;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">"#
    );
    svg.push('\n');
    for layer in 0..layers {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="24" font-size="11" text-anchor="middle">L{layer}</text>"#,
            LEFT + layer * COLUMN + (COLUMN - 4) / 2
        );
    }
    draw_model(&mut svg, "parent", parent, &parent_spans, 34, scale, parent_kv);
    draw_model(&mut svg, "child", child, child_spans, 34 + row, scale, parent_kv);
    let legend_y = 34 + 2 * row;
    let items = [
        ("#4477aa", "attention, parent's KV heads"),
        ("#88ccee", "attention, fewer KV heads"),
        ("#ddcc77", "linear"),
        ("#f4f4f4", "removed"),
        ("#cc6677", "SwiGLU FFN (bar: width)"),
    ];
    for (k, (color, text)) in items.iter().enumerate() {
        let x = 8 + (k % 3) * 230;
        let y = legend_y + (k / 3) * 22;
        let _ = writeln!(
            svg,
            r##"<rect x="{x}" y="{y}" width="14" height="14" fill="{color}" stroke="#555"/><text x="{}" y="{}" font-size="12">{text}</text>"##,
            x + 20,
            y + 12
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BlockConfig;

    #[test]
    fn a_fused_span_is_drawn_across_its_layers_and_kinds_are_labelled() {
        let gqa = |kv_heads| BlockConfig {
            attention: AttentionConfig::Gqa { kv_heads },
            ffn: FfnConfig::SwiGlu { intermediate: 384 },
        };
        let parent = ModelConfig {
            blocks: vec![gqa(2); 4],
            ..ModelConfig::uniform(64, 128, 4, 4, 2, 384, 256)
        };
        let child = ModelConfig {
            blocks: vec![
                gqa(1),
                BlockConfig {
                    attention: AttentionConfig::NoOp,
                    ffn: FfnConfig::SwiGlu { intermediate: 480 },
                },
                BlockConfig {
                    attention: AttentionConfig::Linear,
                    ffn: FfnConfig::NoOp,
                },
            ],
            ..parent.clone()
        };
        let spans = [
            LayerSpan::single(0),
            LayerSpan { first: 1, last: 2 },
            LayerSpan::single(3),
        ];
        let svg = architecture_svg(&parent, &child, &spans);
        assert!(svg.contains(">kv 1<") && svg.contains(">kv 2<") && svg.contains(">linear<"));
        assert!(svg.contains(">480 fused<"), "the fused FFN is labelled with its width");
        // The fused FFN spans two columns: 2 * COLUMN - 4 wide.
        assert!(svg.contains(&format!(r#"width="{}" height="{FFN_H}""#, 2 * COLUMN - 4)));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
