//! Fused CPU kernels, each with a hand-written backward pass, for the element-wise hot spots of
//! training on burn-flex: SwiGLU's gate (`silu(gate) * up`), the scaled causal softmax of
//! attention and the rotary embedding. Under autodiff burn builds each from four to eight
//! primitive ops, each with its own pass over memory (and a scalar `exp`); here each is one pass
//! forward and one backward, with an `exp` the compiler vectorises. Other devices and dtypes
//! take the composed burn ops, so results agree everywhere up to rounding. Knows tensor maths
//! only, nothing of layers or checkpoints.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::{silu, softmax};

#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `silu(gate) * up`, element-wise.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last axis of `scores * scale`, where row `r` of each matrix is the query
    /// at position `offset + r % seq` and sees only the columns up to that position.
    fn causal_softmax(scores: FloatTensor<Self>, scale: f32, seq: usize, offset: usize) -> FloatTensor<Self>;
    /// Rotate-half RoPE of `x: [batch, heads, seq, head_dim]` with tables `[seq, head_dim]`.
    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `x * cos + rotate_half(x) * sin` with `rotate_half([x1, x2]) = [-x2, x1]` on the last axis;
/// `cos`, `sin: [seq, head_dim]` are the tables for `x`'s positions.
pub fn rope(x: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<4> {
    if !fusable(&x) {
        return composed_rope(x, cos, sin);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
    ))
}

/// `silu(gate) * up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if !fusable(&gate) || gate.dims() != up.dims() {
        return silu(gate) * up;
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::swiglu(gate.into_dispatch(), up.into_dispatch()))
}

/// Attention probabilities from raw scores `[batch, kv_heads, group * seq, context]` whose rows
/// are the queries of a group stacked position-fastest, at positions `offset..offset + seq`.
pub fn causal_softmax(scores: Tensor<4>, scale: f64, seq: usize, offset: usize) -> Tensor<4> {
    if !fusable(&scores) {
        return composed_causal_softmax(scores, scale, seq, offset);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::causal_softmax(
        scores.into_dispatch(),
        scale as f32,
        seq,
        offset,
    ))
}

fn composed_causal_softmax(scores: Tensor<4>, scale: f64, seq: usize, offset: usize) -> Tensor<4> {
    let [_, _, rows, context] = scores.dims();
    let mut scores = scores * scale;
    if seq > 1 {
        let mask = Tensor::<2, Bool>::tril_mask([seq, context], offset as i64, &scores.device())
            .repeat_dim(0, rows / seq)
            .unsqueeze::<4>();
        scores = scores.mask_fill(mask, f32::NEG_INFINITY);
    }
    softmax(scores, 3)
}

fn composed_rope(x: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<4> {
    let head_dim = x.dims()[3];
    let half = head_dim / 2;
    let x1 = x.clone().slice_dim(3, 0..half);
    let x2 = x.clone().slice_dim(3, half..head_dim);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.unsqueeze::<4>() + rotated * sin.unsqueeze::<4>()
}

pub(super) fn fusable<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32 && tensor.device().inner() == Device::flex()
}

impl FusedOps for Flex {
    fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        like(&gate, zip_map(&values(&gate), &values(&up), |g, u| g * sigmoid(g) * u))
    }

    fn causal_softmax(scores: FlexTensor, scale: f32, seq: usize, offset: usize) -> FlexTensor {
        let context = *scores.layout().shape().last().expect("scores have a last axis");
        let mut probs = values(&scores).into_owned();
        causal_softmax_rows(&mut probs, context, scale, seq, offset);
        like(&scores, probs)
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        rotate(&x, &cos, &sin, Direction::Forward)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SwiGlu;

        impl Backward<Flex, 2> for SwiGlu {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (gate, up) = ops.state;
                binary::<Flex, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    |grad| swiglu_grad_gate(&gate, &up, &grad),
                    |grad| swiglu_grad_up(&gate, &grad),
                );
            }
        }

        let prep = SwiGlu.prepare::<C>([gate.node(), up.node()]).compute_bound().stateful();
        let (gate, up) = (gate.into_primitive(), up.into_primitive());
        let output = Flex::swiglu(gate.clone(), up.clone());
        record(prep, (gate, up), output)
    }

    fn causal_softmax(scores: FloatTensor<Self>, scale: f32, seq: usize, offset: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CausalSoftmax;

        impl Backward<Flex, 1> for CausalSoftmax {
            type State = (FlexTensor, f32);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (probs, scale) = ops.state;
                unary::<Flex, _>(ops.parents, ops.node, grads, |grad| softmax_grad(&probs, &grad, scale));
            }
        }

        let prep = CausalSoftmax.prepare::<C>([scores.node()]).compute_bound().stateful();
        let probs = Flex::causal_softmax(scores.into_primitive(), scale, seq, offset);
        record(prep, (probs.clone(), scale), probs)
    }

    /// The tables are constants: no gradient flows into them.
    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Rope;

        impl Backward<Flex, 1> for Rope {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (cos, sin) = ops.state;
                unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                    rotate(&grad, &cos, &sin, Direction::Backward)
                });
            }
        }

        let prep = Rope.prepare::<C>([x.node()]).compute_bound().stateful();
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let output = Flex::rope(x.into_primitive(), cos.clone(), sin.clone());
        record(prep, (cos, sin), output)
    }
}

/// Puts `output` on the autodiff graph, keeping `state` for the backward pass only when some
/// input is tracked. The state holds clones of Flex tensors, which share their buffers.
pub(super) fn record<O, C, const N: usize>(
    prep: OpsKind<O, Flex, O::State, C, N>,
    state: O::State,
    output: FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>>
where
    O: Backward<Flex, N>,
    C: CheckpointStrategy,
{
    match prep {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// RoPE rotates each pair `(i, i + half)` by `+angle` (`Forward`); its gradient is the rotation
/// by `-angle` (`Backward`).
fn rotate(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, direction: Direction) -> FlexTensor {
    let mut out = values(x).into_owned();
    let head_dim = cos.layout().shape()[1];
    rotate_rows(&mut out, &values(cos), &values(sin), head_dim, direction);
    like(x, out)
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Forward,
    Backward,
}

/// `d/dgate [silu(gate) * up] = up * s * (1 + gate * (1 - s))` with `s = sigmoid(gate)`.
fn swiglu_grad_gate(gate: &FlexTensor, up: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let up_times_grad = zip_map(&values(up), &values(grad), |u, d| u * d);
    let out = zip_map(&values(gate), &up_times_grad, |g, ud| {
        let s = sigmoid(g);
        ud * s * (1.0 + g * (1.0 - s))
    });
    like(grad, out)
}

fn swiglu_grad_up(gate: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    like(grad, zip_map(&values(gate), &values(grad), |g, d| d * g * sigmoid(g)))
}

fn softmax_grad(probs: &FlexTensor, grad: &FlexTensor, scale: f32) -> FlexTensor {
    let context = *probs.layout().shape().last().expect("scores have a last axis");
    let mut out = values(grad).into_owned();
    softmax_grad_rows(&mut out, &values(probs), context, scale);
    like(grad, out)
}

/// Defines a kernel twice, as written and compiled for AVX2 (8 lanes instead of SSE's 4), and
/// picks one at run time; the kernels are plain loops that the compiler vectorises either way.
macro_rules! kernel {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn plain($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                fn with_avx2($($arg: $ty),*) $(-> $ret)? {
                    plain($($arg),*)
                }
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { with_avx2($($arg),*) };
            }
            plain($($arg),*)
        }
    };
}

kernel! {
    fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
        let mut out = vec![0.0; a.len()];
        for ((out, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *out = f(x, y);
        }
        out
    }
}

kernel! {
    /// Row `r` of `scores` (rows of `context` values) becomes the softmax of its first
    /// `offset + r % seq + 1` values times `scale`, then zeros.
    fn causal_softmax_rows(scores: &mut [f32], context: usize, scale: f32, seq: usize, offset: usize) {
        for (r, row) in scores.chunks_mut(context).enumerate() {
            let visible = (offset + r % seq + 1).min(context);
            let (seen, hidden) = row.split_at_mut(visible);
            let max = seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * scale;
            seen.iter_mut().for_each(|x| *x = exp(*x * scale - max));
            let inverse = 1.0 / seen.iter().sum::<f32>();
            seen.iter_mut().for_each(|x| *x *= inverse);
            hidden.fill(0.0);
        }
    }
}

kernel! {
    /// Rotates, in place, every row of `x` (rows of `head_dim` values, one per position, the
    /// positions of one head after another) by its position's row of the tables.
    fn rotate_rows(x: &mut [f32], cos: &[f32], sin: &[f32], head_dim: usize, direction: Direction) {
        let half = head_dim / 2;
        for head in x.chunks_mut(cos.len()) {
            let rows = head.chunks_mut(head_dim).zip(cos.chunks(head_dim)).zip(sin.chunks(head_dim));
            for ((row, c), s) in rows {
                let (x1, x2) = row.split_at_mut(half);
                let ((c1, c2), (s1, s2)) = (c.split_at(half), s.split_at(half));
                for i in 0..half {
                    let (a, b) = (x1[i], x2[i]);
                    (x1[i], x2[i]) = match direction {
                        Direction::Forward => (a * c1[i] - b * s1[i], b * c2[i] + a * s2[i]),
                        Direction::Backward => (a * c1[i] + b * s2[i], b * c2[i] - a * s1[i]),
                    };
                }
            }
        }
    }
}

kernel! {
    /// `grad` becomes `scale * p * (grad - Σ grad·p)` row by row; masked entries have `p = 0`.
    fn softmax_grad_rows(grad: &mut [f32], probs: &[f32], context: usize, scale: f32) {
        for (row, p) in grad.chunks_mut(context).zip(probs.chunks(context)) {
            let dot: f32 = row.iter().zip(p).map(|(g, p)| g * p).sum();
            row.iter_mut().zip(p).for_each(|(g, &p)| *g = scale * p * (*g - dot));
        }
    }
}

/// The elements in logical (row-major) order, borrowed when the tensor is already laid out so.
fn values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => std::borrow::Cow::Borrowed(slice),
        // One copy: the contiguous tensor owns its buffer, which becomes the Vec.
        None => std::borrow::Cow::Owned(
            tensor
                .to_contiguous()
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32 tensor"),
        ),
    }
}

fn like(template: &FlexTensor, data: Vec<f32>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, template.layout().shape().clone()))
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `e^x` within 4e-7 relative on [-87, 88] (saturating outside), branch-free so that loops over
/// slices vectorise: `x = n·ln2 + r`, Cephes' `expf` polynomial for `e^r` on `|r| ≤ ln2/2`, and
/// `2^n` built in the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5.0e-1;
    let y = p * r * r + r + 1.0;
    // The low mantissa bits of `shifted` hold `n` in two's complement; no float-to-int conversion.
    let two_to_n = f32::from_bits(shifted.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    two_to_n * y
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn leaf<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 3.0), device).require_grad()
    }

    #[test]
    fn fused_swiglu_matches_the_composed_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        let (gate, up) = (leaf([2, 5, 37], &device), leaf([2, 5, 37], &device));
        let weights = Tensor::<3>::random([2, 5, 37], Distribution::Normal(0.0, 1.0), &device);
        let fused = swiglu(gate.clone(), up.clone());
        let composed = silu(gate.clone()) * up.clone();
        assert!(max_diff(fused.clone(), composed.clone()) < 1e-4);
        let fused_grads = (fused * weights.clone()).sum().backward();
        let composed_grads = (composed * weights).sum().backward();
        for x in [&gate, &up] {
            let (a, b) = (x.grad(&fused_grads).unwrap(), x.grad(&composed_grads).unwrap());
            assert!(max_diff(a, b) < 1e-4);
        }
    }

    #[test]
    fn fused_causal_softmax_matches_the_masked_composed_ops() {
        let device = Device::flex().autodiff();
        // (group, seq, offset): prefill, prefill after cached positions, one decode step.
        for (group, seq, offset) in [(2, 7, 0), (3, 4, 5), (2, 1, 8)] {
            let context = offset + seq;
            let scores = leaf([2, 2, group * seq, context], &device);
            let weights = Tensor::<4>::random(scores.dims(), Distribution::Normal(0.0, 1.0), &device);
            let fused = causal_softmax(scores.clone(), 0.3, seq, offset);
            let composed = composed_causal_softmax(scores.clone(), 0.3, seq, offset);
            assert!(
                max_diff(fused.clone(), composed.clone()) < 1e-6,
                "{group} {seq} {offset}"
            );
            let fused_grad = scores.grad(&(fused * weights.clone()).sum().backward()).unwrap();
            let composed_grad = scores.grad(&(composed * weights).sum().backward()).unwrap();
            assert!(max_diff(fused_grad, composed_grad) < 1e-6, "{group} {seq} {offset}");
        }
    }

    #[test]
    fn fused_rope_matches_the_composed_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        let rope = crate::model::rope::Rope::new(8, 10000.0, &crate::model::config::RopeScaling::None);
        // A transposed input, as attention passes it, at positions 4..9.
        let input = leaf([2, 5, 3, 8], &device);
        let (cos, sin) = rope.tables(4, 5, &device).cos_sin();
        let weights = Tensor::<4>::random([2, 3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        // Each graph gets its own transpose node: burn cannot run backward twice through one.
        let fused = super::rope(input.clone().swap_dims(1, 2), cos.clone(), sin.clone());
        let composed = composed_rope(input.clone().swap_dims(1, 2), cos, sin);
        assert!(max_diff(fused.clone(), composed.clone()) < 1e-5);
        let fused_grad = input.grad(&(fused * weights.clone()).sum().backward()).unwrap();
        let composed_grad = input.grad(&(composed * weights).sum().backward()).unwrap();
        assert!(max_diff(fused_grad, composed_grad) < 1e-5);
    }

    #[test]
    fn vectorised_exp_is_within_a_few_ulp_of_the_library_exp() {
        for i in -8700..8799 {
            let x = i as f32 * 0.01 + 0.003;
            let (ours, reference) = (exp(x), x.exp());
            assert!(
                ((ours - reference) / reference).abs() < 4e-7,
                "exp({x}) = {ours}, not {reference}"
            );
        }
        assert!(exp(f32::NAN).is_nan());
    }
}
