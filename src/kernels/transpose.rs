//! Eight rows of eight values turned into eight columns, in AVX registers where the CPU has
//! them: the move between a plane per channel (NCHW) and channels side by side per position
//! that [`super::depthwise_lanes`] makes both ways. Value by value, each move is a load and a
//! store to a different cache line; here it is eight loads, 24 shuffles and eight stores per
//! 64 values.

use super::simd::Isa;

/// `dst[j][i] = src[i][j]` for `i, j < 8`: row `i` of the block is the eight values at
/// `src[i]`, and column `j` is written as eight values at `dst[j]`.
///
/// # Safety
/// Every `src[i]` is valid for reading and every `dst[j]` for writing eight values; no `dst`
/// row overlaps a `src` row or another `dst` row.
#[inline]
pub(super) unsafe fn block8(isa: Isa, src: [*const f32; 8], dst: [*mut f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: AVX2 and AVX-512 machines have AVX (`simd::isa` detected one of them); the
        // pointers are the caller's contract.
        return unsafe { block8_avx(src, dst) };
    }
    let _ = isa;
    for (j, d) in dst.into_iter().enumerate() {
        for (i, s) in src.into_iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { *d.add(i) = *s.add(j) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn block8_avx(src: [*const f32; 8], dst: [*mut f32; 8]) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract (`block8`).
    unsafe {
        let r = src.map(|p| _mm256_loadu_ps(p));
        // Pairs of rows interleaved, then quadruples, then the 128-bit halves exchanged: the
        // textbook 8×8 transpose.
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let c = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (d, v) in dst.into_iter().zip(c) {
            _mm256_storeu_ps(d, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_comes_out_transposed_on_every_instruction_set() {
        let src: Vec<f32> = (0..8 * 11).map(|v| v as f32).collect();
        for isa in [Isa::Portable, super::super::simd::isa()] {
            // Rows 11 apart in `src`, columns 9 apart in `dst`.
            let mut dst = vec![-1f32; 8 * 9];
            let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
            // SAFETY: eight rows of eight inside each buffer, none overlapping.
            unsafe {
                let s: [*const f32; 8] = std::array::from_fn(|i| sp.add(i * 11));
                let d: [*mut f32; 8] = std::array::from_fn(|j| dp.add(j * 9));
                block8(isa, s, d);
            }
            for j in 0..8 {
                for i in 0..8 {
                    assert_eq!(dst[j * 9 + i], src[i * 11 + j], "{isa:?} ({i}, {j})");
                }
                assert_eq!(dst[j * 9 + 8], -1.0, "{isa:?}: wrote past a row");
            }
        }
    }
}
