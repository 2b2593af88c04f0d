//! The trainable float parameters of any burn module, addressed by traversal order and dotted
//! path: their layout, their gradients, and in-place replacement. Lets one optimizer and one
//! checkpoint format serve every model the stages train (whole Llamas, single blocks, …).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Gradients;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    pub path: String,
    pub shape: Vec<usize>,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Default)]
struct LayoutVisitor {
    stack: Vec<String>,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for LayoutVisitor {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push(ParamInfo {
            path: self.stack.join("."),
            shape: param.val().dims().to_vec(),
        });
    }
}

/// Every float parameter in traversal order.
pub fn layout<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut visitor = LayoutVisitor::default();
    module.visit(&mut visitor);
    visitor.out
}

struct GradVisitor<'a> {
    grads: &'a Gradients,
    out: Vec<Option<Tensor<1>>>,
}

impl ModuleVisitor for GradVisitor<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let numel = value.dims().iter().product::<usize>();
        self.out.push(value.grad(self.grads).map(|g| g.reshape([numel])));
    }
}

/// Each parameter's gradient, flattened (`None` where the loss does not depend on it).
pub fn gradients<M: Module>(module: &M, grads: &Gradients) -> Vec<Option<Tensor<1>>> {
    let mut visitor = GradVisitor { grads, out: Vec::new() };
    module.visit(&mut visitor);
    visitor.out
}

struct ValueVisitor {
    out: Vec<Tensor<1>>,
}

impl ModuleVisitor for ValueVisitor {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let numel = value.dims().iter().product::<usize>();
        self.out.push(value.reshape([numel]));
    }
}

/// Each parameter's current value, flattened and detached from autodiff.
pub fn values<M: Module>(module: &M) -> Vec<Tensor<1>> {
    let mut visitor = ValueVisitor { out: Vec::new() };
    module.visit(&mut visitor);
    visitor.out
}

struct IndexedMapper<F> {
    index: usize,
    update: F,
}

impl<F: FnMut(usize, Tensor<1>) -> Tensor<1>> ModuleMapper for IndexedMapper<F> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.index;
        self.index += 1;
        let (id, tensor, mapper) = param.consume();
        let (autodiff, require_grad) = (tensor.is_autodiff(), tensor.is_require_grad());
        let dims = tensor.dims();
        let numel = dims.iter().product::<usize>();
        let mut updated: Tensor<D> = (self.update)(index, tensor.inner().reshape([numel])).reshape(dims);
        if autodiff {
            updated = Tensor::from_inner(updated);
            if require_grad {
                updated = updated.require_grad();
            }
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// Replaces each parameter by `update(index, flattened value)` (outside autodiff), keeping its
/// identity and whether it requires gradients.
pub fn map_values<M: Module>(module: M, update: impl FnMut(usize, Tensor<1>) -> Tensor<1>) -> M {
    module.map(&mut IndexedMapper { index: 0, update })
}
