//! A squeeze-excitation's gate applied in place: `x[b, c, ·] *= s[b, c]`.
//!
//! burn's broadcast multiply of `(B, C, H, W)` by `(B, C, 1, 1)` allocates a new map and walks
//! it through the generic broadcasting loop; here each plane is one scaled row, written over
//! the input, which nothing else holds at inference (the depthwise output the gate follows).

use rayon::prelude::*;

use super::simd;

/// Values per parallel task: big enough that rayon's hand-off is noise.
const TASK: usize = 1 << 14;

#[inline(always)]
fn scale_row_inner(row: &mut [f32], s: f32) {
    for v in row.iter_mut() {
        *v *= s;
    }
}

isa_versions!(scale_row, scale_row_inner, (row: &mut [f32], s: f32));

/// `x[p·spatial ..][..spatial] *= s[p]` for every plane `p`.
pub fn scale_in_place(x: &mut [f32], spatial: usize, s: &[f32]) {
    assert_eq!(
        x.len(),
        s.len() * spatial,
        "plane scale: {} planes",
        s.len()
    );
    if spatial == 0 {
        return;
    }
    let isa = simd::isa();
    x.par_chunks_mut(spatial)
        .zip(s.par_iter())
        .with_min_len(TASK.div_ceil(spatial))
        // SAFETY: `simd::isa` is this CPU's.
        .for_each(|(row, &v)| unsafe { scale_row(isa, row, v) });
}
