//! Training-free initialisation of every variant from the parent (Puzzle App. A): FFN channels
//! kept by their contribution `C_i = mean|X_i| · ‖W_down[:, i]‖₂`, KV heads mean-pooled per
//! group, linear attention `W_o · W_v`, linear FFN `W_down · W_up`, or either linear map fitted
//! by least squares on calibration activations. Works on host tensors under checkpoint names;
//! knows nothing of training or the library directory.

use faer::linalg::solvers::Solve;
use ndarray::{Array2, ArrayView2, Axis, Ix2, IxDyn};
use serde::{Deserialize, Serialize};

use super::variant::WorkItem;
use crate::model::{AttentionConfig, BlockConfig, FfnConfig, HostTensor, ModelConfig, TensorMap, host_tensor};

/// How linear sub-blocks start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearInit {
    /// `W_o · W_v` (each token attends to itself) and `W_down · W_up` (gate ignored).
    Product,
    /// A ridge-regularised least-squares fit of the parent sub-block's output on its normalised
    /// input, over the calibration tokens. The default: on stories260K its held-out normalised
    /// MSE before BLD is 0.04–0.09 for linear attention (product: 0.16–0.33) and 0.13–0.18 for
    /// a linear FFN (product: 1.2–11, worse than removing the FFN).
    #[default]
    LeastSquares,
}

crate::named!(LinearInit { "product" => LinearInit::Product, "least-squares" => LinearInit::LeastSquares });

/// What the parent does on calibration text at one layer, as far as initialisation needs it.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Mean |silu(gate·x) ⊙ (up·x)| per channel of the parent's SwiGLU.
    pub ffn_activation: Option<Vec<f32>>,
    /// Normalised input and output of the parent attention, `[tokens, hidden]` each.
    pub attention_io: Option<(HostTensor, HostTensor)>,
    /// Normalised input and output of the parent FFN, `[tokens, hidden]` each.
    pub ffn_io: Option<(HostTensor, HostTensor)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InitError {
    #[error("layer {layer}: {problem}")]
    Unsupported { layer: usize, problem: String },
    #[error("layer {layer}: calibration data is missing: {what}")]
    NoCalibration { layer: usize, what: &'static str },
}

/// `a · b` of two matrices.
fn matmul(a: &HostTensor, b: &HostTensor) -> HostTensor {
    let (a, b) = (matrix(a), matrix(b));
    a.dot(&b).into_dyn()
}

fn matrix(t: &HostTensor) -> ArrayView2<'_, f32> {
    t.view().into_dimensionality::<Ix2>().expect("a matrix")
}

/// The rows `pick` of a matrix, in that order.
fn rows(t: &HostTensor, pick: impl Iterator<Item = usize>) -> HostTensor {
    let picked: Vec<usize> = pick.collect();
    t.select(Axis(0), &picked)
}

/// The parent's KV heads regrouped into `child` heads of `head_dim` rows each: the mean of each
/// group of parent heads, or each parent head repeated when the child has more.
pub fn regroup_kv_heads(weight: &HostTensor, head_dim: usize, child: usize) -> HostTensor {
    let (rows, cols) = (weight.shape()[0], weight.shape()[1]);
    let parent = rows / head_dim;
    let heads = weight
        .view()
        .into_shape_with_order((parent, head_dim * cols))
        .expect("rows split into heads");
    let mut out = Array2::<f32>::zeros((child, head_dim * cols));
    for (c, mut row) in out.rows_mut().into_iter().enumerate() {
        let members: Vec<usize> = if child <= parent {
            let group = parent / child;
            (c * group..(c + 1) * group).collect()
        } else {
            vec![c / (child / parent)]
        };
        for &m in &members {
            row += &heads.row(m);
        }
        row *= 1.0 / members.len() as f32;
    }
    out.into_shape_with_order(IxDyn(&[child * head_dim, cols]))
        .expect("heads back to rows")
}

/// Channel contributions of a SwiGLU: mean |activation| times the norm of the channel's
/// column of `W_down` (`[hidden, intermediate]`).
pub fn channel_contributions(activation: &[f32], down: &HostTensor) -> Vec<f32> {
    matrix(down)
        .columns()
        .into_iter()
        .zip(activation)
        .map(|(column, a)| a * column.iter().map(|w| w.powi(2)).sum::<f32>().sqrt())
        .collect()
}

/// The `width` channels with the largest scores, in their original order.
pub fn top_channels(scores: &[f32], width: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept = order[..width.min(scores.len())].to_vec();
    kept.sort_unstable();
    kept
}

/// A SwiGLU keeping only `channels` of the parent's (gate/up rows, down columns).
pub fn prune_ffn(parent: &TensorMap, prefix: &str, channels: &[usize]) -> TensorMap {
    let get = |n: &str| &parent[&format!("{prefix}.mlp.{n}")];
    let mut out = TensorMap::new();
    for name in ["gate_proj.weight", "up_proj.weight"] {
        out.insert(
            format!("{prefix}.mlp.{name}"),
            rows(get(name), channels.iter().copied()),
        );
    }
    let down = get("down_proj.weight").select(Axis(1), channels);
    out.insert(
        format!("{prefix}.mlp.down_proj.weight"),
        down.as_standard_layout().into_owned(),
    );
    out
}

/// Solves the ridge least-squares problem `min ‖Y − X Wᵀ − 1bᵀ‖² + λ‖W‖²` for `W` (`[out, in]`)
/// and, with `intercept`, a bias `b` (`[out]`), with `X: [tokens, in]`, `Y: [tokens, out]` and
/// λ a small fraction of the mean diagonal of XᵀX: the normal equations `(XᵀX + λI) Wᵀ = XᵀY`
/// (X with a column of ones for the bias) by faer's Cholesky factorisation, in f64.
pub fn least_squares(x: &HostTensor, y: &HostTensor, intercept: bool) -> (HostTensor, Option<HostTensor>) {
    let (x, y) = (matrix(x).mapv(f64::from), matrix(y).mapv(f64::from));
    let x = match intercept {
        true => ndarray::concatenate![Axis(1), x, Array2::ones((x.nrows(), 1))],
        false => x,
    };
    let gram = x.t().dot(&x);
    let cross = x.t().dot(&y);
    let n = gram.nrows();
    let ridge = 1e-4 * gram.diag().sum() / n as f64 + 1e-12;
    let a = faer::Mat::from_fn(n, n, |i, j| gram[[i, j]] + if i == j { ridge } else { 0.0 });
    let b = faer::Mat::from_fn(n, cross.ncols(), |i, j| cross[[i, j]]);
    // XᵀX + λI is symmetric positive definite for any λ > 0: the factorisation cannot fail.
    let solution = a
        .llt(faer::Side::Lower)
        .expect("a ridge-regularised Gram matrix is positive definite")
        .solve(&b);
    // The solution is Wᵀ (and bᵀ in its last row with an intercept): column c is row c of W.
    let (out, inputs) = (cross.ncols(), n - usize::from(intercept));
    let weight = host_tensor(
        vec![out, inputs],
        (0..out)
            .flat_map(|c| (0..inputs).map(move |i| (c, i)))
            .map(|(c, i)| solution[(i, c)] as f32)
            .collect(),
    );
    let bias = intercept.then(|| host_tensor(vec![out], (0..out).map(|c| solution[(inputs, c)] as f32).collect()));
    (weight, bias)
}

/// What every variant of one layer starts from: the parent layer's tensors (under checkpoint
/// names with `prefix`), its calibration statistics and how linear maps start.
struct LayerInit<'a> {
    layer: usize,
    prefix: String,
    parent: &'a TensorMap,
    calibration: &'a Calibration,
    linear: LinearInit,
}

impl LayerInit<'_> {
    fn get(&self, name: &str) -> &HostTensor {
        &self.parent[&format!("{}.{name}", self.prefix)]
    }
}

/// The initial tensors of an attention variant at a layer whose parent has GQA attention.
fn attention_init(
    config: &ModelConfig,
    attention: AttentionConfig,
    parent_kv: usize,
    at: &LayerInit,
) -> Result<TensorMap, InitError> {
    let (get, prefix, layer) = (|n: &str| at.get(n), &at.prefix, at.layer);
    let head_dim = config.head_dim;
    let mut out = TensorMap::new();
    out.insert(
        format!("{prefix}.input_layernorm.weight"),
        get("input_layernorm.weight").clone(),
    );
    let bias = config.attention_bias;
    match attention {
        AttentionConfig::Gqa { kv_heads } => {
            // The queries, the output and the per-head q/k norms stay the parent's.
            let kept = [
                "q_proj.weight",
                "q_proj.bias",
                "o_proj.weight",
                "o_proj.bias",
                "q_norm.weight",
                "k_norm.weight",
            ];
            for name in kept.iter().map(|n| format!("self_attn.{n}")) {
                if let Some(tensor) = at.parent.get(&format!("{prefix}.{name}")) {
                    out.insert(format!("{prefix}.{name}"), tensor.clone());
                }
            }
            for name in ["k_proj", "v_proj"] {
                let weight = get(&format!("self_attn.{name}.weight"));
                out.insert(
                    format!("{prefix}.self_attn.{name}.weight"),
                    regroup_kv_heads(weight, head_dim, kv_heads),
                );
                if bias.on_qkv() {
                    let b = get(&format!("self_attn.{name}.bias"));
                    let as_rows = b.view().into_shape_with_order(IxDyn(&[b.len(), 1])).expect("a vector");
                    let pooled = regroup_kv_heads(&as_rows.to_owned(), head_dim, kv_heads);
                    let len = pooled.len();
                    let pooled = pooled.into_shape_with_order(IxDyn(&[len])).expect("a column");
                    out.insert(format!("{prefix}.self_attn.{name}.bias"), pooled);
                }
            }
        }
        AttentionConfig::Linear => {
            let (weight, linear_bias) = match at.linear {
                LinearInit::Product => {
                    // Each token attends to itself: out = W_o (W_v x + b_v) + b_o, the values
                    // repeated over each KV group's query heads.
                    let group = config.num_attention_heads / parent_kv;
                    let per_query = |t: &HostTensor| {
                        rows(
                            t,
                            (0..config.num_attention_heads).flat_map(|q| {
                                let kv = q / group;
                                kv * head_dim..(kv + 1) * head_dim
                            }),
                        )
                    };
                    let o = get("self_attn.o_proj.weight");
                    let weight = matmul(o, &per_query(get("self_attn.v_proj.weight")));
                    let linear_bias = bias.on_qkv().then(|| {
                        let v_bias = get("self_attn.v_proj.bias");
                        let column = v_bias
                            .view()
                            .into_shape_with_order(IxDyn(&[v_bias.len(), 1]))
                            .expect("a vector");
                        let folded = matmul(o, &per_query(&column.to_owned()));
                        let mut folded = folded.into_shape_with_order(IxDyn(&[o.shape()[0]])).expect("a column");
                        if bias.on_output() {
                            folded += get("self_attn.o_proj.bias");
                        }
                        folded
                    });
                    (weight, linear_bias)
                }
                LinearInit::LeastSquares => {
                    let (x, y) = at.calibration.attention_io.as_ref().ok_or(InitError::NoCalibration {
                        layer,
                        what: "attention inputs and outputs",
                    })?;
                    least_squares(x, y, bias.on_qkv())
                }
            };
            out.insert(format!("{prefix}.self_attn.linear_attn.weight"), weight);
            if let Some(linear_bias) = linear_bias {
                out.insert(format!("{prefix}.self_attn.linear_attn.bias"), linear_bias);
            }
        }
        AttentionConfig::NoOp => {}
    }
    Ok(out)
}

/// The initial tensors of an FFN variant at a layer whose parent FFN is `parent_width` wide.
fn ffn_init(ffn: FfnConfig, parent_width: usize, at: &LayerInit) -> Result<TensorMap, InitError> {
    let (get, prefix, layer) = (|n: &str| at.get(n), &at.prefix, at.layer);
    let mut out = TensorMap::new();
    out.insert(
        format!("{prefix}.post_attention_layernorm.weight"),
        get("post_attention_layernorm.weight").clone(),
    );
    match ffn {
        FfnConfig::SwiGlu { intermediate } if intermediate > parent_width => {
            return Err(InitError::Unsupported {
                layer,
                problem: format!("a SwiGLU of {intermediate} channels is wider than the parent's {parent_width}"),
            });
        }
        FfnConfig::SwiGlu { intermediate } => {
            let activation = at.calibration.ffn_activation.as_ref().ok_or(InitError::NoCalibration {
                layer,
                what: "FFN activations",
            })?;
            let scores = channel_contributions(activation, get("mlp.down_proj.weight"));
            out.extend(prune_ffn(at.parent, prefix, &top_channels(&scores, intermediate)));
        }
        FfnConfig::Linear => {
            let weight = match at.linear {
                LinearInit::Product => matmul(get("mlp.down_proj.weight"), get("mlp.up_proj.weight")),
                LinearInit::LeastSquares => {
                    let (x, y) = at.calibration.ffn_io.as_ref().ok_or(InitError::NoCalibration {
                        layer,
                        what: "FFN inputs and outputs",
                    })?;
                    least_squares(x, y, false).0
                }
            };
            out.insert(format!("{prefix}.mlp.linear_mlp.weight"), weight);
        }
        FfnConfig::NoOp => {}
    }
    Ok(out)
}

/// The initial weights of `item`'s own sub-blocks at its layer, from the parent layer's tensors
/// (`parent`, under checkpoint names) and calibration statistics of that layer.
pub fn initial_weights(
    config: &ModelConfig,
    parent_block: &BlockConfig,
    item: &WorkItem,
    parent: &TensorMap,
    calibration: &Calibration,
    linear: LinearInit,
) -> Result<TensorMap, InitError> {
    let layer = item.layer;
    let at = LayerInit {
        layer,
        prefix: format!("model.layers.{layer}"),
        parent,
        calibration,
        linear,
    };
    let unsupported = |problem: String| InitError::Unsupported { layer, problem };
    let mut out = TensorMap::new();
    if let Some(attention) = item.attention.filter(|a| *a != AttentionConfig::NoOp) {
        let AttentionConfig::Gqa { kv_heads: parent_kv } = parent_block.attention else {
            return Err(unsupported(format!(
                "attention variant {attention:?} needs a parent with softmax attention here"
            )));
        };
        out.extend(attention_init(config, attention, parent_kv, &at)?);
    }
    if let Some(ffn) = item.ffn.filter(|f| *f != FfnConfig::NoOp) {
        let FfnConfig::SwiGlu {
            intermediate: parent_width,
        } = parent_block.ffn
        else {
            return Err(unsupported(format!("FFN variant {ffn:?} needs a SwiGLU parent here")));
        };
        out.extend(ffn_init(ffn, parent_width, &at)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostValues;

    #[test]
    fn kv_heads_are_averaged_per_group_or_repeated() {
        // Four heads of one row each: values 1, 2, 3, 4 (two columns).
        let weight = host_tensor(vec![4, 2], vec![1., 1., 2., 2., 3., 3., 4., 4.]);
        assert_eq!(regroup_kv_heads(&weight, 1, 2).values(), [1.5, 1.5, 3.5, 3.5]);
        assert_eq!(regroup_kv_heads(&weight, 1, 1).values(), [2.5, 2.5]);
        assert_eq!(regroup_kv_heads(&weight, 1, 4), weight);
        let two = host_tensor(vec![2, 1], vec![1., 2.]);
        assert_eq!(regroup_kv_heads(&two, 1, 4).values(), [1., 1., 2., 2.]);
        let rows_of_two = host_tensor(vec![4, 1], vec![1., 2., 3., 4.]);
        assert_eq!(regroup_kv_heads(&rows_of_two, 2, 1).values(), [2., 3.]);
    }

    #[test]
    fn top_channels_keep_the_largest_in_order() {
        assert_eq!(top_channels(&[0.1, 0.9, 0.5, 0.7], 2), vec![1, 3]);
    }

    #[test]
    fn least_squares_recovers_a_linear_map() {
        let w = host_tensor(vec![2, 3], vec![1., -2., 0.5, 0.25, 3., -1.]);
        let x = host_tensor(
            vec![6, 3],
            vec![
                1., 0., 2., 0., 1., -1., 3., 1., 0., -1., 2., 1., 0.5, 0.5, 0.5, 2., -1., 1.,
            ],
        );
        let y = matmul(&x, &crate::model::transposed(&w));
        let (fitted, _) = least_squares(&x, &y, false);
        for (a, b) in fitted.iter().zip(w.iter()) {
            assert!((a - b).abs() < 1e-3, "{fitted:?} vs {w:?}");
        }
        let shifted = &y + &ndarray::arr1(&[0.5f32, -2.0]).into_dyn();
        let (fitted, bias) = least_squares(&x, &shifted, true);
        let bias = bias.unwrap();
        assert!((bias[0] - 0.5).abs() < 1e-2 && (bias[1] + 2.0).abs() < 1e-2, "{bias:?}");
        assert!(
            fitted.iter().zip(w.iter()).all(|(a, b)| (a - b).abs() < 1e-2),
            "{fitted:?}"
        );
    }
}
