//! What a model costs: its parameters, counted as PyTorch does (trainable tensors only; burn's
//! `num_params` also counts BatchNorm running statistics, which PyTorch keeps as buffers), and
//! the multiply-accumulates of one forward pass.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::flops::counting;
use super::registry::Net;

#[derive(Default)]
struct TrainableCounter {
    path: Vec<String>,
    count: usize,
}

impl ModuleVisitor for TrainableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let is_buffer = matches!(
            self.path.last().map(String::as_str),
            Some("running_mean" | "running_var")
        );
        if !is_buffer {
            self.count += param.shape().num_elements();
        }
    }
}

/// Number of trainable parameters (what `sum(p.numel() for p in model.parameters())` gives).
pub fn trainable_params<M: Module>(module: &M) -> usize {
    let mut counter = TrainableCounter::default();
    module.visit(&mut counter);
    counter.count
}

/// MACs of one forward pass of `net` on an input of shape `input` (`[B, C, H, W]`; the total
/// scales with `B`, so `[1, 3, 32, 32]` gives the per-image CIFAR figure). The forward runs on
/// the plain (non-autodiff) twin of the model, in evaluation mode, on zeros.
pub fn count_macs(net: &Net, input: [usize; 4]) -> u64 {
    let plain = net.valid();
    let device = plain
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(crate::backend::device);
    let x = Tensor::<4>::zeros(input, &device);
    counting(|| plain.forward(x)).1
}
