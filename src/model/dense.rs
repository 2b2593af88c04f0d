//! Matrix products of linear layers on burn-flex, through `gemm` directly, with a hand-written
//! backward pass. burn-flex allocates every matmul output zeroed and then copies it once more to
//! align it: two extra passes over the output and a fresh page for it, about a tenth of a
//! training step of the default parent. Here each product is written once into its own buffer;
//! transposes are strides, never copies. Other devices and dtypes take burn's ops. Knows tensor
//! maths only, nothing of layers' roles or checkpoints.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, binary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::prelude::*;

use super::fused::{fusable, record, values};

#[backend_extension(Flex, Autodiff)]
pub trait DenseOps: Backend {
    /// `x · weight` for `x: [..., k]` and `weight: [k, n]`: `[..., n]`.
    fn project(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
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
    if !fusable(&x) || !fusable(&weight) {
        let [rows, cols] = weight.dims();
        let mut dims = x.dims();
        let flat = x.reshape([dims[..D - 1].iter().product(), rows]).matmul(weight);
        dims[D - 1] = cols;
        return flat.reshape(dims);
    }
    Tensor::from_dispatch(<Dispatch as DenseOps>::project(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// A row-major or strided matrix operand: its elements from `data[offset]`, row and column
/// strides in elements.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    offset: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Operand<'a> {
    fn contiguous(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            offset: 0,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    fn matrix(tensor: &'a FlexTensor) -> Self {
        let layout = tensor.layout();
        let strides = layout.strides();
        Self {
            data: tensor.storage::<f32>(),
            offset: layout.start_offset(),
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }

    fn transposed(self) -> Self {
        Self {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Below this many multiply-adds a product runs on one thread (burn-flex's threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// `lhs [m, k] · rhs [k, n]` into a new row-major buffer.
fn product(m: usize, k: usize, n: usize, lhs: Operand, rhs: Operand) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(m * n);
    let parallelism = if m * n * k >= PARALLEL_WORK {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    if m * n > 0 {
        // SAFETY: both operands lie inside their slices for the shapes and strides given (their
        // tensors' own layouts), and `out` has room for `m * n` values, all of which gemm writes
        // (`read_dst` is false) before the length is set.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                lhs.data.as_ptr().add(lhs.offset),
                lhs.col_stride,
                lhs.row_stride,
                rhs.data.as_ptr().add(rhs.offset),
                rhs.col_stride,
                rhs.row_stride,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            out.set_len(m * n);
        }
    }
    out
}

fn with_last_dim(tensor: &FlexTensor, last: usize) -> Shape {
    let mut dims = tensor.layout().shape().to_vec();
    *dims.last_mut().expect("a tensor with axes") = last;
    Shape::from(dims)
}

fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

impl DenseOps for Flex {
    fn project(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let [k, n] = [weight.layout().shape()[0], weight.layout().shape()[1]];
        let rows = values(&x);
        let out = product(
            rows.len() / k,
            k,
            n,
            Operand::contiguous(&rows, k),
            Operand::matrix(&weight),
        );
        tensor(out, with_last_dim(&x, n))
    }
}

impl<C: CheckpointStrategy> DenseOps for Autodiff<Flex, C> {
    fn project(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Project;

        impl Backward<Flex, 2> for Project {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (x, weight) = ops.state;
                let [k, n] = [weight.layout().shape()[0], weight.layout().shape()[1]];
                binary::<Flex, _, _>(
                    ops.parents,
                    ops.node,
                    grads,
                    // d x = grad · weightᵀ
                    |grad| {
                        let grad_rows = values(&grad);
                        let m = grad_rows.len() / n;
                        let rhs = Operand::matrix(&weight).transposed();
                        tensor(
                            product(m, n, k, Operand::contiguous(&grad_rows, n), rhs),
                            with_last_dim(&grad, k),
                        )
                    },
                    // d weight = xᵀ · grad
                    |grad| {
                        let (rows, grad_rows) = (values(&x), values(&grad));
                        let m = rows.len() / k;
                        let lhs = Operand::contiguous(&rows, k).transposed();
                        let out = product(k, m, n, lhs, Operand::contiguous(&grad_rows, n));
                        tensor(out, Shape::from(vec![k, n]))
                    },
                );
            }
        }

        let prep = Project
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (x, weight) = (x.into_primitive(), weight.into_primitive());
        let output = Flex::project(x.clone(), weight.clone());
        record(prep, (x, weight), output)
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
}
