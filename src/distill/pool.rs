//! Adaptive 1-d pooling with PyTorch's window rule, and MEAL's stage feature (spec §1.4).
//!
//! Output index `i` of `n` reads the input window `[floor(i·L/n), ceil((i+1)·L/n))`. Every window
//! holds at most `K = ceil(L/n) + 1` elements, so both kinds are computed from one `select` of
//! the `n·K` window members (each window padded to `K` by repeating its last element):
//! - `Avg`: a weighted sum of the candidates (weight `1/len` for real members, `0` for padding);
//! - `Max`: the position of the first maximum is found on a detached copy and the output is a
//!   single differentiable `gather`, so the gradient goes to that one element, like PyTorch.
//!
//! The cost is `O(B·C·(L + n))` in both directions (a dense window matrix would cost
//! `O(B·C·L·n)`: 256 × 10000 multiply-adds per channel for the usual MEAL upsampling).

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The pooling of `--pool_out`: adaptive average (the default) or adaptive max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    #[default]
    Avg,
    Max,
}

/// The windows of an adaptive pooling from `len_in` to `len_out`.
struct Windows {
    /// The largest window.
    k: usize,
    /// `start + min(j, len - 1)` for window `i` and slot `j`, flattened as `i·k + j`.
    members: Vec<i64>,
    /// The first element of every window.
    starts: Vec<i64>,
    /// The last element of every window.
    lasts: Vec<i64>,
    /// `1/len` for the real members of a window, `0` for the padding (flattened like `members`).
    weights: Vec<f32>,
}

impl Windows {
    fn new(len_in: usize, len_out: usize) -> Self {
        let bounds = |i: usize| {
            let (l, n) = (len_in as u128, len_out as u128);
            let i = i as u128;
            let start = (i * l) / n;
            let end = ((i + 1) * l).div_ceil(n);
            (start as usize, end as usize)
        };
        let k = (0..len_out)
            .map(|i| {
                let (s, e) = bounds(i);
                e - s
            })
            .max()
            .unwrap_or(1);
        let mut members = Vec::with_capacity(len_out * k);
        let mut weights = Vec::with_capacity(len_out * k);
        let mut starts = Vec::with_capacity(len_out);
        let mut lasts = Vec::with_capacity(len_out);
        for i in 0..len_out {
            let (s, e) = bounds(i);
            let len = e - s;
            starts.push(s as i64);
            lasts.push(e as i64 - 1);
            for j in 0..k {
                members.push((s + j.min(len - 1)) as i64);
                weights.push(if j < len { 1.0 / len as f32 } else { 0.0 });
            }
        }
        Self {
            k,
            members,
            starts,
            lasts,
            weights,
        }
    }

    /// Slot `j` of every window that has one: `(window, input position, weight)` as three
    /// lists, the padding left out.
    fn slot(&self, j: usize) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
        let (mut rows, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..self.starts.len() {
            let w = self.weights[i * self.k + j];
            if w > 0.0 {
                rows.push(i as i64);
                targets.push(self.members[i * self.k + j]);
                weights.push(w);
            }
        }
        (rows, targets, weights)
    }
}

/// `AdaptiveAvgPool1d(out_len)` / `AdaptiveMaxPool1d(out_len)` over the last axis of
/// `(B, C, L)`, for both `out_len > L` (upsampling, the usual MEAL case) and `out_len ≤ L`.
/// Differentiable; ties in a max window go to the first maximum, as in PyTorch.
///
/// # Panics
/// When `out_len` or `L` is 0.
pub fn adaptive_pool1d(x: Tensor<3>, out_len: usize, kind: PoolKind) -> Tensor<3> {
    let [b, c, len_in] = x.dims();
    assert!(
        out_len > 0 && len_in > 0,
        "adaptive_pool1d: empty input ({len_in}) or output ({out_len})"
    );
    let device = x.device();
    if len_in == out_len {
        return x;
    }
    let windows = Windows::new(len_in, out_len);
    let k = windows.k;
    let members = int_tensor(windows.members, &device);
    if k == 1 {
        return x.select(2, members);
    }
    match kind {
        PoolKind::Avg => {
            let weights = Tensor::<4>::from_data(
                TensorData::new(windows.weights, [1, 1, out_len, k]),
                &device,
            );
            x.select(2, members)
                .reshape([b, c, out_len, k])
                .mul(weights)
                .sum_dim(3)
                .reshape([b, c, out_len])
        }
        PoolKind::Max => {
            let slot = x
                .clone()
                .detach()
                .select(2, members)
                .reshape([b, c, out_len, k])
                .argmax(3)
                .reshape([b, c, out_len]);
            // A padding slot repeats the window's last element: clamping to it keeps the index
            // right whichever of equal candidates the backend's argmax returns.
            let starts = int_tensor(windows.starts, &device)
                .reshape([1, 1, out_len])
                .expand([b, c, out_len]);
            let lasts = int_tensor(windows.lasts, &device)
                .reshape([1, 1, out_len])
                .expand([b, c, out_len]);
            x.gather(2, slot.add(starts).min_pair(lasts))
        }
    }
}

fn int_tensor(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// MEAL's stage feature (spec §1.4): `(B, C, H, W)` → view `(B, C, H·W)` → adaptive pool to
/// `out_len` → reduce over channels (mean for `Avg`, max for `Max`) → `(B, out_len)`.
/// The batch dimension is kept for `B = 1` (the reference squeezes it away).
///
/// The channel reduction is done *before* the pooling, which is `C` times cheaper:
/// - `Avg`: the channel mean and the window means are both linear, so they commute exactly
///   (up to float rounding);
/// - `Max`: `max_c max_{j∈W} x[c, j] = max_{j∈W} max_c x[c, j]`, so the values are identical.
///   The gradient goes to one maximal element either way; the two orders can only pick
///   different ones when distinct elements tie exactly for the maximum of a window, where both
///   choices are valid subgradients.
pub fn stage_feature(x: Tensor<4>, out_len: usize, kind: PoolKind) -> Tensor<2> {
    pool_map(channel_reduce(x, kind), out_len, kind)
}

/// The first half of [`stage_feature`]: `(B, C, H, W)` → `(B, H·W)`, the channel mean (or max).
pub fn channel_reduce(x: Tensor<4>, kind: PoolKind) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    let v = x.reshape([b, c, h * w]);
    let reduced = match kind {
        PoolKind::Avg => v.mean_dim(1),
        PoolKind::Max => v.max_dim(1),
    };
    reduced.reshape([b, h * w])
}

/// The second half of [`stage_feature`]: adaptive pooling of `(B, L)` rows to `(B, out_len)`.
pub fn pool_map(map: Tensor<2>, out_len: usize, kind: PoolKind) -> Tensor<2> {
    let [b, len] = map.dims();
    adaptive_pool1d(map.reshape([b, 1, len]), out_len, kind).reshape([b, out_len])
}

/// `Pᵀ·w` for the adaptive average pooling `P` from `len_in` to `n = w.dims()[0]` values:
/// row `l` of the result is `Σ_i P[i, l]·w[i, :]`, so `pool(m)·w = m·(Pᵀ·w)` for every `m`.
///
/// A discriminator whose first layer reads a pooled vector of length `n ≫ len_in` can thus
/// read the `len_in` values it was pooled from: `len_in / n` of the multiply-adds, forward and
/// backward. Differentiable: the gradient reaching `w` is `P·∂(Pᵀ·w)`, the same sparse map
/// scattered back. `P` has at most `K` entries per window, so this costs `O(K·n·cols)`, one
/// pass over `w` per window slot, and the later slots only touch the windows that long.
pub fn fold_rows(w: Tensor<2>, len_in: usize) -> Tensor<2> {
    let [len_out, cols] = w.dims();
    assert!(
        len_out > 0 && len_in > 0,
        "fold_rows: empty input ({len_in}) or output ({len_out})"
    );
    let device = w.device();
    let windows = Windows::new(len_in, len_out);
    let mut folded = Tensor::<2>::zeros([len_in, cols], &device);
    for j in 0..windows.k {
        let (rows, targets, weights) = windows.slot(j);
        let n = rows.len();
        if n == 0 {
            continue;
        }
        // Every window has a first slot: then the rows are all of `w`, in order.
        let picked = if n == len_out {
            w.clone()
        } else {
            w.clone().select(0, int_tensor(rows, &device))
        };
        let scale = Tensor::<2>::from_data(TensorData::new(weights, [n, 1]), &device);
        folded = folded.select_assign(
            0,
            int_tensor(targets, &device),
            picked.mul(scale),
            IndexingUpdateOp::Add,
        );
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_pytorch_rule() {
        let w = Windows::new(10, 3);
        assert_eq!(w.starts, vec![0, 3, 6]);
        assert_eq!(w.k, 4);
        assert_eq!(w.members, vec![0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9]);
        let up = Windows::new(2, 3);
        // windows [0,1), [0,2), [1,2)
        assert_eq!(up.members, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(up.weights, vec![1.0, 0.0, 0.5, 0.5, 1.0, 0.0]);
    }

    #[test]
    fn max_ties_go_to_the_first_maximum() {
        let device = Device::default().autodiff();
        let x = Tensor::<3>::ones([1, 1, 10], &device).require_grad();
        let out = adaptive_pool1d(x.clone(), 3, PoolKind::Max);
        let grads = out.sum().backward();
        let g = x.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
        // windows [0,4), [3,7), [6,10): PyTorch picks the first maximum of each
        assert_eq!(g, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn folded_rows_act_like_pooling_first() {
        let device = Device::default();
        for (len_in, len_out) in [(5, 13), (7, 3), (4, 4), (1, 6)] {
            let m = Tensor::<2>::random([3, len_in], burn::tensor::Distribution::Default, &device);
            let w = Tensor::<2>::random([len_out, 4], burn::tensor::Distribution::Default, &device);
            let pooled_first = pool_map(m.clone(), len_out, PoolKind::Avg).matmul(w.clone());
            let folded = m.matmul(fold_rows(w, len_in));
            let a = pooled_first.try_into_vec_as::<f32>().unwrap();
            let b = folded.try_into_vec_as::<f32>().unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "{len_in}->{len_out}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn batch_of_one_keeps_its_dim() {
        let device = Device::default();
        let x = Tensor::<4>::ones([1, 2, 3, 3], &device);
        assert_eq!(stage_feature(x, 20, PoolKind::Avg).dims(), [1, 20]);
    }
}
