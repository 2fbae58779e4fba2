//! Hard-swish and SiLU, forward and input gradient, one pass each over `f32` slices.
//!
//! Built from burn's ops, hard-swish is four passes forward (add, clamp, divide, multiply) and
//! six backward, SiLU two and four, each a full read and write of an activation map: at 224×224
//! they were a tenth of a `tf_mobilenetv3_large_100` training step. Hard-swish's values are
//! those of the ops it replaces, bit for bit (its division by 6 an exact multiply and
//! correction, `div_by`); SiLU's sigmoid uses a vectorised `exp` (within 2 ulp of the C
//! library's). The gradients are PyTorch's closed forms (`hardswish_backward`,
//! `silu_backward`).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::simd;

/// An element-wise activation with a fused kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x · (clamp(x + 3, 0, 6) / 6)` (`nn.Hardswish`).
    HardSwish,
    /// `x · sigmoid(x)` (`nn.SiLU`).
    Silu,
}

/// The activation an inference kernel applies to its output as it writes it (after the
/// BatchNorm it folds): ReLU as `relu?` in [`super::batch_norm`], the others as here, so that
/// the fused values are those of the separate passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputAct {
    Identity,
    Relu,
    Fused(Activation),
}

impl OutputAct {
    /// The ReLU an affine kernel applies itself, and the activation that follows it.
    pub fn split(self) -> (bool, Option<Activation>) {
        match self {
            OutputAct::Identity => (false, None),
            OutputAct::Relu => (true, None),
            OutputAct::Fused(a) => (false, Some(a)),
        }
    }

    #[inline(always)]
    pub(super) fn apply(self, t: f32) -> f32 {
        match self {
            OutputAct::Identity => t,
            OutputAct::Relu => {
                if t < 0.0 {
                    0.0
                } else {
                    t
                }
            }
            OutputAct::Fused(Activation::HardSwish) => hard_swish(t),
            OutputAct::Fused(Activation::Silu) => t * sigmoid(t),
        }
    }
}

/// Values per parallel task: big enough that rayon's hand-off is noise.
const CHUNK: usize = 1 << 15;

#[inline(always)]
pub(super) fn hard_swish(x: f32) -> f32 {
    x * div_by((x + 3.0).clamp(0.0, 6.0), 6.0)
}

/// `x / d` for a constant `d` without a division: the quotient rounded from `x · RN(1/d)`,
/// corrected once by its exact residual (Markstein's iteration; `1 / d` is folded at compile
/// time). A vector division bound hard-swish and its gradient (0.205 and 0.209 ns per value in
/// cache; 0.081 and 0.101 this way). The correction can miss by an ulp only where the quotient
/// is subnormal, which the two uses never see: `clamp(x + 3, 0, 6)` is 0, a multiple of 2⁻²²
/// (the ulp of an `x` in [−3, −2]) or at least 1, so `c / 6` is the division bit for bit; and
/// where `x / 3` is subnormal, `x / 3 + 0.5` is 0.5 either way (checked over every `x` in
/// [−3, 3] once; the tests check every value they can reach in ±[1, 3], the clamped sums, and a
/// sample of the rest).
#[inline(always)]
fn div_by(x: f32, d: f32) -> f32 {
    let inv = 1.0 / d;
    let q = x * inv;
    // `q · (−d) + x`, not `(−q) · d + x`: a NaN keeps its sign.
    let r = q.mul_add(-d, x);
    r.mul_add(inv, q)
}

/// Adding and taking away 1.5·2²³ rounds to the nearest integer without a rounding call.
const ROUND: f32 = 12_582_912.0;

/// `eˣ` within 2 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6 polynomial in `r`, `2ⁿ` put
/// in the exponent bits), in operations the compiler vectorises: the C library's `expf`, one
/// call per value, was a sixth of a `tf_efficientnet_b0` forward. The reduction and the
/// polynomial are fused multiply-adds (`mul_add`: one instruction where the kernels are
/// compiled for AVX2 or AVX-512, the C library's `fmaf` on the portable path): a SiLU value
/// took 0.35–0.48 ns in cache instead of 0.52 with separate multiplies and adds, and each step
/// rounds once less.
/// Saturates at `e^±88`; NaN stays NaN.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p: f32 = 1.987_569_1e-4;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    y * pow2_rounded(t)
}

/// `2ⁿ` for `t = n + ROUND` (`exp`'s rounding trick): `t`'s bits are ROUND's plus `n` (|n| ≤ 127,
/// far inside the 2²² the trick allows), so integer lanes give `2ⁿ` where `n as i32`, a
/// saturating cast, compiled to a scalar loop per lane.
#[inline(always)]
fn pow2_rounded(t: f32) -> f32 {
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `1 / (1 + e⁻ˣ)`, through `e^−|x|` so that nothing overflows.
#[inline(always)]
pub(super) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

#[inline(always)]
fn hard_swish_grad(x: f32, g: f32) -> f32 {
    if x < -3.0 {
        0.0
    } else if x <= 3.0 {
        g * (div_by(x, 3.0) + 0.5)
    } else {
        g
    }
}

#[inline(always)]
fn silu_grad(x: f32, g: f32) -> f32 {
    let s = sigmoid(x);
    g * (s * (1.0 + x * (1.0 - s)))
}

/// Values per vectorised step: a whole number of vectors on every instruction set.
const LANES: usize = 16;

#[inline(always)]
fn forward_lanes(act: Activation, x: &mut [f32; LANES]) {
    match act {
        Activation::HardSwish => x.iter_mut().for_each(|v| *v = hard_swish(*v)),
        Activation::Silu => x.iter_mut().for_each(|v| *v = *v * sigmoid(*v)),
    }
}

#[inline(always)]
fn forward_inner(act: Activation, x: &mut [f32]) {
    let whole = x.len() / LANES * LANES;
    let (body, rest) = x.split_at_mut(whole);
    match act {
        // One loop along the slice: over 16-value blocks, the compiler vectorised hard-swish
        // across the blocks instead, a gather and a scatter per vector (0.46 ns per value in
        // cache, as much as SiLU's exponential and division).
        Activation::HardSwish => body.iter_mut().for_each(|v| *v = hard_swish(*v)),
        Activation::Silu => {
            for c in body.chunks_exact_mut(LANES) {
                forward_lanes(act, c.try_into().expect("LANES values"));
            }
        }
    }
    // The tail through a padded copy: a convolution's epilogue calls this per output row (196
    // values at 14×14), and a scalar tail with its division per value was a quarter of the time.
    // Element-wise, so the values are those of the scalar loop.
    if !rest.is_empty() {
        let mut pad = [0.0; LANES];
        pad[..rest.len()].copy_from_slice(rest);
        forward_lanes(act, &mut pad);
        rest.copy_from_slice(&pad[..rest.len()]);
    }
}

isa_versions!(forward_isa, forward_inner, (act: Activation, x: &mut [f32]));

#[inline(always)]
fn map_inner(act: Activation, x: &[f32], out: &mut [MaybeUninit<f32>]) {
    let pairs = out.iter_mut().zip(x);
    match act {
        Activation::HardSwish => pairs.for_each(|(d, &v)| {
            d.write(hard_swish(v));
        }),
        Activation::Silu => pairs.for_each(|(d, &v)| {
            d.write(v * sigmoid(v));
        }),
    }
}

isa_versions!(map_isa, map_inner, (act: Activation, x: &[f32], out: &mut [MaybeUninit<f32>]));

#[inline(always)]
fn backward_inner(act: Activation, x: &[f32], dy: &mut [f32]) {
    match act {
        Activation::HardSwish => dy
            .iter_mut()
            .zip(x)
            .for_each(|(g, &v)| *g = hard_swish_grad(v, *g)),
        Activation::Silu => dy
            .iter_mut()
            .zip(x)
            .for_each(|(g, &v)| *g = silu_grad(v, *g)),
    }
}

isa_versions!(backward_isa, backward_inner, (act: Activation, x: &[f32], dy: &mut [f32]));

/// `x = act(x)` in place.
pub fn forward_in_place(act: Activation, x: &mut [f32]) {
    let isa = simd::isa();
    // SAFETY: `simd::isa` is this CPU's.
    x.par_chunks_mut(CHUNK)
        .for_each(|c| unsafe { forward_isa(isa, act, c) });
}

#[inline(always)]
unsafe fn tile_inner(act: Activation, c: *mut f32, ld: usize, rows: usize, width: usize) {
    for m in 0..rows {
        // SAFETY: the caller's contract (`forward_tile`).
        let run = unsafe { std::slice::from_raw_parts_mut(c.add(m * ld), width) };
        forward_inner(act, run);
    }
}

isa_versions!(tile_isa, tile_inner, (act: Activation, c: *mut f32, ld: usize, rows: usize, width: usize));

/// `act` over `rows` runs of `width` values, `ld` apart from `c`: a tile the gemm has just
/// stored, still in the first-level cache. The values are [`forward_row`]'s.
///
/// # Safety
/// `isa` is this CPU's (or below it), and every run is valid for reads and writes and
/// touched by no one else meanwhile.
pub(super) unsafe fn forward_tile(
    isa: simd::Isa,
    act: Activation,
    c: *mut f32,
    ld: usize,
    rows: usize,
    width: usize,
) {
    // SAFETY: the caller's contract.
    unsafe { tile_isa(isa, act, c, ld, rows, width) }
}

/// `x = act(x)` in place on the calling thread: a row an output pass has just written.
pub(super) fn forward_row(act: Activation, x: &mut [f32]) {
    // SAFETY: `simd::isa` is this CPU's.
    unsafe { forward_isa(simd::isa(), act, x) }
}

/// `act(x)`.
pub fn forward(act: Activation, x: &[f32]) -> Vec<f32> {
    let isa = simd::isa();
    let mut y = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        // SAFETY: `simd::isa` is this CPU's.
        .for_each(|(d, s)| unsafe { map_isa(isa, act, s, d) });
    // SAFETY: every chunk of the first `x.len()` values was written above.
    unsafe { y.set_len(x.len()) };
    y
}

/// `dy = dy · act'(x)` in place: the input gradient at `x` given the output gradient `dy`.
pub fn backward_in_place(act: Activation, x: &[f32], dy: &mut [f32]) {
    assert_eq!(x.len(), dy.len(), "activation gradient: shapes differ");
    let isa = simd::isa();
    // SAFETY: `simd::isa` is this CPU's.
    dy.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(g, v)| unsafe { backward_isa(isa, act, v, g) });
}

#[cfg(test)]
mod tests {
    use super::{
        Activation, OutputAct, ROUND, div_by, exp, forward_row, hard_swish, pow2_rounded, sigmoid,
    };

    #[test]
    fn rows_of_every_length_give_the_scalar_values() {
        for act in [Activation::HardSwish, Activation::Silu] {
            for n in 0..=40 {
                let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.77).sin() * 9.0).collect();
                let mut row = x.clone();
                forward_row(act, &mut row);
                for (i, (&got, &v)) in row.iter().zip(&x).enumerate() {
                    let want = OutputAct::Fused(act).apply(v);
                    assert_eq!(got.to_bits(), want.to_bits(), "{act:?}, length {n}, at {i}");
                }
            }
        }
    }

    #[test]
    fn pow2_from_the_rounding_trick_is_exact_for_every_exponent_exp_makes() {
        for n in -126..=127 {
            let t = (n as f32 + 0.25) + ROUND;
            assert_eq!(pow2_rounded(t), 2f32.powi(n), "n = {n}");
        }
    }

    #[test]
    fn dividing_by_6_is_the_division_on_every_clamped_sum() {
        let check = |c: f32| assert_eq!(div_by(c, 6.0).to_bits(), (c / 6.0).to_bits(), "{c:e} / 6");
        // Every float in [1, 6], and every multiple of 2⁻²² in [0, 1].
        (1f32.to_bits()..=6f32.to_bits()).for_each(|b| check(f32::from_bits(b)));
        let step = 1.0 / (1u32 << 22) as f32;
        (0..1u32 << 22).for_each(|k| check(k as f32 * step));
        // Those are all the clamped sums: below 1, `x + 3` is exact for `x` in [−3, −2], whose
        // ulp is 2⁻²².
        for b in 2f32.to_bits()..=3f32.to_bits() {
            let c = (3.0 - f32::from_bits(b)).clamp(0.0, 6.0);
            assert_eq!((c / step).fract(), 0.0, "{c:e} is not a multiple of 2⁻²²");
        }
        // And hard-swish is still the formula with a division, special values included.
        let xs = [
            -3.5,
            -3.0,
            -2.999_999_8,
            -1.0,
            -0.0,
            0.0,
            1e-30,
            0.7,
            2.999_999_8,
            3.0,
            9.0,
        ];
        let inf = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN];
        for x in xs
            .into_iter()
            .chain(inf)
            .chain((0..4000).map(|i| i as f32 * 0.0023 - 4.6))
        {
            let want = x * ((x + 3.0).clamp(0.0, 6.0) / 6.0);
            assert_eq!(
                hard_swish(x).to_bits(),
                want.to_bits(),
                "hard-swish at {x:e}"
            );
        }
    }

    #[test]
    fn dividing_by_3_gives_the_gradients_sum_between_the_kinks() {
        let check = |x: f32| {
            let (got, want) = (div_by(x, 3.0) + 0.5, x / 3.0 + 0.5);
            assert_eq!(got.to_bits(), want.to_bits(), "{x:e} / 3 + 0.5");
        };
        // Every float in ±[1, 3], every 97th below 1 (subnormals included).
        for (lo, hi) in [(1f32, 3f32), (-1.0, -3.0)] {
            (lo.to_bits()..=hi.to_bits()).for_each(|b| check(f32::from_bits(b)));
        }
        for sign in [0, 1u32 << 31] {
            (0..1f32.to_bits())
                .step_by(97)
                .for_each(|b| check(f32::from_bits(b | sign)));
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(f32::NAN).is_nan());
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(-200.0) < 1e-30);
        assert_eq!(sigmoid(200.0), 1.0);
    }
}
