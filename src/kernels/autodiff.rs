//! The autodiff side of [`super::ConvKernels`]: the forward pass runs the inner backend's
//! kernel, the backward pass its two gradient kernels (burn's own autodiff conv2d would call
//! the inner backend's default gradients instead, which is where burn-flex spends its time).

use burn::backend::autodiff::{
    Autodiff, NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, TensorMetadata};

use super::ConvKernels;
use super::activation::Activation;

#[derive(Debug)]
struct Conv2dBackward;

impl<B: ConvKernels> Backward<B, 2> for Conv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, options) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_state);
        if let Some(node) = node_x {
            let dx = B::meal_conv2d_x_backward(x.clone(), w.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, B::meal_conv2d_weight_backward(x, w, grad, options));
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl<B: ConvKernels> Backward<B, 3> for BatchNormBackward {
    /// Input and gamma by checkpoint; batch mean, variance and output as computed; epsilon and
    /// whether the ReLU was fused.
    type State = (
        NodeId,
        NodeId,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        f64,
        bool,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, var, output, epsilon, relu) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        let gamma: FloatTensor<B> = checkpointer.retrieve_node_output(gamma_state);
        let (dx, dgamma, dbeta) =
            B::meal_batch_norm_train_backward(x, gamma, mean, var, output, grad, epsilon, relu);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

#[derive(Debug)]
struct ShortcutBackward;

impl<B: ConvKernels> Backward<B, 1> for ShortcutBackward {
    /// Stride, zero channels per side, input height and width.
    type State = (usize, usize, usize, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (stride, pad, h, w) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(
                node.id,
                B::meal_shortcut_a_backward(grad, stride, pad, h, w),
            );
        }
    }
}

#[derive(Debug)]
struct ActivationBackward;

impl<B: ConvKernels> Backward<B, 1> for ActivationBackward {
    /// The input by checkpoint, and which activation.
    type State = (NodeId, Activation);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, act) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::meal_activation_backward(x, grad, act));
        }
    }
}

#[derive(Debug)]
struct AddReluBackward;

impl<B: ConvKernels> Backward<B, 2> for AddReluBackward {
    /// The forward's output: its sign is the ReLU's mask.
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_a, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let g = B::meal_relu_backward(ops.state, grad);
        // The sum passes the same gradient to both terms (a clone shares the buffer).
        for node in [node_a, node_b].into_iter().flatten() {
            grads.register::<B>(node.id, g.clone());
        }
    }
}

impl<B: ConvKernels, C: CheckpointStrategy> ConvKernels for Autodiff<B, C> {
    fn meal_add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        match AddReluBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::meal_add_relu(a.into_primitive(), b.into_primitive());
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::meal_add_relu(a.into_primitive(), b.into_primitive()))
            }
        }
    }

    fn meal_activation(x: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        match ActivationBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish((x_state, act), B::meal_activation(x.into_primitive(), act))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::meal_activation(x.into_primitive(), act)),
        }
    }

    fn meal_shortcut_a(x: FloatTensor<Self>, stride: usize, pad: usize) -> FloatTensor<Self> {
        let shape = x.shape();
        match ShortcutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (stride, pad, shape[2], shape[3]),
                B::meal_shortcut_a(x.into_primitive(), stride, pad),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::meal_shortcut_a(x.into_primitive(), stride, pad))
            }
        }
    }

    fn meal_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (y, mean, var) = B::meal_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                let state = (
                    x_state,
                    gamma_state,
                    mean.clone(),
                    var.clone(),
                    y.clone(),
                    epsilon,
                    relu,
                );
                (
                    prep.finish(state, y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::meal_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    relu,
                );
                (
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
        }
    }

    fn meal_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y =
                    B::meal_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, w_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::meal_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }
}
