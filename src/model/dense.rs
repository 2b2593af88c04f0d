//! Matrix products on burn-flex (linear layers, the tied LM head, attention's two products),
//! through `gemm` directly, with a hand-written backward pass. burn-flex allocates every matmul
//! output zeroed and then copies it once more to align it: two extra passes over the output and
//! a fresh page for it, about a tenth of a training step of the default parent. Here each
//! product is written once into its own buffer; transposes are strides, never copies. Other
//! devices and dtypes take burn's ops. Knows tensor maths only, nothing of layers' roles or
//! checkpoints.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, binary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::prelude::*;
use rayon::prelude::*;

use super::fused::{fusable, record};

#[backend_extension(Flex, Autodiff)]
pub trait DenseOps: Backend {
    /// `lhs: [..., m, k] · rhs: [..., k, n]` (a batch of matrices when there are leading axes,
    /// equal on both sides): `[..., m, n]`.
    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// A linear layer applied to `x: [..., in]`.
pub fn dense<const D: usize>(x: Tensor<D>, layer: &Linear) -> Tensor<D> {
    match layer.bias {
        None => project(x, layer.weight.val()),
        Some(_) => layer.forward(x),
    }
}

/// `x · weight` over the last axis of `x` (`weight: [in, out]`, any strides).
pub fn project<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    let [rows, cols] = weight.dims();
    let mut dims = x.dims();
    let flat = matmul(x.reshape([dims[..D - 1].iter().product(), rows]), weight);
    dims[D - 1] = cols;
    flat.reshape(dims)
}

/// `lhs · rhs` over the last two axes (any strides), batched over equal leading axes.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let (a, b) = (lhs.dims(), rhs.dims());
    if !fusable(&lhs) || !fusable(&rhs) || a[..D - 2] != b[..D - 2] {
        return lhs.matmul(rhs);
    }
    Tensor::from_dispatch(<Dispatch as DenseOps>::matmul(lhs.into_dispatch(), rhs.into_dispatch()))
}

/// A stack of equally shaped matrices in one buffer (one matrix, or a batch of them): matrix `i`
/// starts at `data[offsets[i]]`; row and column strides are in elements.
struct Stack<'a> {
    data: &'a [f32],
    offsets: Vec<usize>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Stack<'a> {
    /// The matrices of the last two axes, one per index of the leading axes, read through the
    /// tensor's own strides.
    fn of(tensor: &'a FlexTensor) -> Self {
        let layout = tensor.layout();
        let (shape, strides) = (layout.shape().to_vec(), layout.strides());
        let rank = shape.len();
        let mut offsets = vec![layout.start_offset()];
        for axis in 0..rank - 2 {
            offsets = offsets
                .iter()
                .flat_map(|&o| (0..shape[axis]).map(move |i| (o as isize + i as isize * strides[axis]) as usize))
                .collect();
        }
        Self {
            data: tensor.storage::<f32>(),
            offsets,
            rows: shape[rank - 2],
            cols: shape[rank - 1],
            row_stride: strides[rank - 2],
            col_stride: strides[rank - 1],
        }
    }

    fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Below this many multiply-adds a product runs on one thread (burn-flex's threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// `lhs[i] · rhs[i]` for every matrix of the stacks, into one new row-major buffer, matrix after
/// matrix.
fn products(lhs: &Stack, rhs: &Stack) -> Vec<f32> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    debug_assert_eq!((k, lhs.offsets.len()), (rhs.rows, rhs.offsets.len()));
    let (count, size) = (lhs.offsets.len(), m * n);
    let mut out = Vec::<f32>::with_capacity(count * size);
    let one = |i: usize, dst: *mut f32, parallelism: gemm::Parallelism| {
        // SAFETY: both operands lie inside their buffers for the shapes and strides given (their
        // tensors' own layouts), and `dst` has room for the `m * n` values gemm writes there
        // (`read_dst` is false, so it never reads them).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                1,
                n as isize,
                false,
                lhs.data.as_ptr().add(lhs.offsets[i]),
                lhs.col_stride,
                lhs.row_stride,
                rhs.data.as_ptr().add(rhs.offsets[i]),
                rhs.col_stride,
                rhs.row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    if size > 0 {
        let spare = out.spare_capacity_mut();
        if count == 1 {
            let parallelism = if m * n * k >= PARALLEL_WORK {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            };
            one(0, spare.as_mut_ptr().cast(), parallelism);
        } else {
            let run = |(i, dst): (usize, &mut [std::mem::MaybeUninit<f32>])| {
                one(i, dst.as_mut_ptr().cast(), gemm::Parallelism::None)
            };
            if count * m * n * k >= PARALLEL_WORK {
                spare.par_chunks_mut(size).enumerate().for_each(run);
            } else {
                spare.chunks_mut(size).enumerate().for_each(run);
            }
        }
        // SAFETY: every matrix of the output was written above.
        unsafe { out.set_len(count * size) };
    }
    out
}

fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

impl DenseOps for Flex {
    fn matmul(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
        let mut dims = lhs.layout().shape().to_vec();
        *dims.last_mut().expect("a matrix has two axes") = rhs.layout().shape()[dims.len() - 1];
        tensor(products(&Stack::of(&lhs), &Stack::of(&rhs)), Shape::from(dims))
    }
}

impl<C: CheckpointStrategy> DenseOps for Autodiff<Flex, C> {
    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Matmul;

        impl Backward<Flex, 2> for Matmul {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (lhs, rhs) = ops.state;
                binary::<Flex, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    // d lhs = grad · rhsᵀ
                    |grad| {
                        let out = products(&Stack::of(&grad), &Stack::of(&rhs).transposed());
                        tensor(out, lhs.layout().shape().clone())
                    },
                    // d rhs = lhsᵀ · grad
                    |grad| {
                        let out = products(&Stack::of(&lhs).transposed(), &Stack::of(&grad));
                        tensor(out, rhs.layout().shape().clone())
                    },
                );
            }
        }

        let prep = Matmul.prepare::<C>([lhs.node(), rhs.node()]).compute_bound().stateful();
        let (lhs, rhs) = (lhs.into_primitive(), rhs.into_primitive());
        let output = Flex::matmul(lhs.clone(), rhs.clone());
        record(prep, (lhs, rhs), output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn projection_matches_burns_matmul_forward_and_backward() {
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::random([2, 5, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weight = Tensor::<2>::random([24, 37], Distribution::Normal(0.0, 1.0), &device).require_grad();
        // A transposed view as the weight, as the tied LM head passes it.
        let stored = Tensor::<2>::random([37, 24], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let mix = Tensor::<3>::random([2, 5, 37], Distribution::Normal(0.0, 1.0), &device);
        // Each graph gets its own transpose node: burn cannot run backward twice through one.
        let weights = |transposed: bool| match transposed {
            false => weight.clone(),
            true => stored.clone().transpose(),
        };
        for transposed in [false, true] {
            let ours = project(x.clone(), weights(transposed));
            let burns = x
                .clone()
                .reshape([10, 24])
                .matmul(weights(transposed))
                .reshape([2, 5, 37]);
            assert!(max_diff(ours.clone(), burns.clone()) < 1e-4);
            let ours = (ours * mix.clone()).sum().backward();
            let burns = (burns * mix.clone()).sum().backward();
            assert!(max_diff(x.grad(&ours).unwrap(), x.grad(&burns).unwrap()) < 1e-4);
            let leaf = if transposed { &stored } else { &weight };
            assert!(max_diff(leaf.grad(&ours).unwrap(), leaf.grad(&burns).unwrap()) < 1e-4);
        }
    }

    #[test]
    fn batched_product_matches_burns_matmul_on_strided_operands() {
        let device = Device::flex().autodiff();
        let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (random([2, 3, 6, 5]).require_grad(), random([2, 6, 3, 4]).require_grad());
        let mix = random([2, 3, 6, 6]);
        // `a · bᵀ` with `b` read through swapped axes, as attention multiplies queries and keys.
        let operands = || {
            (
                a.clone(),
                b.clone().swap_dims(1, 2).reshape([2, 3, 6, 4]).swap_dims(2, 3),
            )
        };
        let (lhs, rhs) = operands();
        assert_eq!(rhs.dims(), [2, 3, 4, 6]);
        let ours = matmul(lhs.clone(), random([2, 3, 5, 7]));
        assert_eq!(ours.dims(), [2, 3, 6, 7]);
        let ours = matmul(lhs.clone().slice_dim(3, 0..4), rhs);
        let (lhs, rhs) = operands();
        let burns = lhs.slice_dim(3, 0..4).matmul(rhs);
        assert!(max_diff(ours.clone(), burns.clone()) < 1e-4);
        let ours = (ours * mix.clone()).sum().backward();
        let burns = (burns * mix).sum().backward();
        for leaf in [&a, &b] {
            assert!(max_diff(leaf.grad(&ours).unwrap(), leaf.grad(&burns).unwrap()) < 1e-4);
        }
    }
}
