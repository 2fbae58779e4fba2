//! The SGD update in one pass over the parameter, its gradient and its momentum buffer.
//!
//! burn's optimizer builds the step from about eight element-wise tensor ops, most of which
//! allocate a fresh tensor: for the 15 M weights of MEAL's discriminator second layers (and the
//! student's 11 M) that is a few hundred megabytes of writes, zero-fills and page faults per step.
//! Here the parameter and the buffer are updated in place, with the same float operations in the
//! same order as burn's (and so PyTorch's) formula, so the results are bit-identical.

use rayon::prelude::*;

/// The scalars of one step, as `f32` like burn's (which converts each to the element type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub nesterov: bool,
}

/// Elements per parallel task: large enough that rayon's overhead vanishes.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn update(s: SgdStep, theta: &mut f32, grad: f32, v: Option<&mut f32>, first: bool) {
    let mut g = grad;
    if s.weight_decay != 0.0 {
        g += *theta * s.weight_decay;
    }
    if let Some(v) = v {
        *v = if first { g } else { g + *v * s.momentum };
        g = if s.nesterov { *v * s.momentum + g } else { *v };
    }
    *theta -= g * s.lr;
}

/// Updates `param` (and `velocity`, when momentum is on) in place. `first`: the buffer holds
/// nothing yet and is set to the gradient, as PyTorch does on the first step.
pub fn step(
    s: SgdStep,
    param: &mut [f32],
    grad: &[f32],
    velocity: Option<&mut [f32]>,
    first: bool,
) {
    assert_eq!(param.len(), grad.len());
    match velocity {
        Some(v) => {
            assert_eq!(v.len(), param.len());
            param
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|((p, g), v)| {
                    for ((p, &g), v) in p.iter_mut().zip(g).zip(v) {
                        update(s, p, g, Some(v), first);
                    }
                });
        }
        None => param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(p, g)| {
                for (p, &g) in p.iter_mut().zip(g) {
                    update(s, p, g, None, first);
                }
            }),
    }
}
