//! Row copies the kernels make between their buffers.

use super::simd::Isa;

/// `dst = src` for a short row (an image row of 4 to 64 values), in four-value vector moves
/// the compiler cannot see as a copy: it turns any plain copy loop back into a `memmove` call,
/// and for rows this short the call cost more than the copy (4% of a resnet20 step). Each
/// vector passes through an empty `asm!` on its way from the load to the store. (Volatile
/// stores of eight-value arrays, the way before, were compiled through a stack slot: every
/// block stored and loaded twice, 5% of a resnet20 training step in the image padding alone.)
///
/// # Safety
/// `dst` is valid for `src.len()` writes.
#[inline(always)]
pub(super) unsafe fn copy_row_to(dst: *mut f32, src: &[f32]) {
    let mut blocks = src.chunks_exact(4);
    let mut i = 0;
    for b in &mut blocks {
        // SAFETY: `dst + i .. dst + i + 4` is writable (the function's contract), `b` holds 4.
        unsafe { copy4(dst.add(i), b.as_ptr()) };
        i += 4;
    }
    for &v in blocks.remainder() {
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(dst.add(i), v) };
        i += 1;
    }
}

/// Four values from `src` to `dst` (unaligned), opaque to the compiler's idiom recognition.
///
/// # Safety
/// Both are valid for four values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn copy4(dst: *mut f32, src: *const f32) {
    use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
    // SAFETY: the caller's contract; SSE is part of x86-64.
    unsafe {
        let mut v = _mm_loadu_ps(src);
        std::arch::asm!("/* {0} */", inout(xmm_reg) v, options(pure, nomem, nostack, preserves_flags));
        _mm_storeu_ps(dst, v);
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn copy4(dst: *mut f32, src: *const f32) {
    // SAFETY: the caller's contract; `[f32; 4]` has `f32`'s alignment.
    unsafe {
        std::ptr::write_volatile(dst.cast::<[f32; 4]>(), src.cast::<[f32; 4]>().read());
    }
}

/// [`copy_row_to`] between slices of equal length.
pub(super) fn copy_row(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: `dst` holds `src.len()` values.
    unsafe { copy_row_to(dst.as_mut_ptr(), src) }
}

/// `first[i] = src[2i]` and `second[i] = src[2i + 1]`: a row split into its even and odd
/// columns, the stride-2 phases of the direct and depthwise kernels' padded layouts. A walk
/// stepping by two through `src` per phase ran a value at a time, 27% of resnet20's 16→32
/// stride-2 layer at batch 1; with whole vectors loaded and their lanes permuted that layer
/// took 0.83 of the time, MobileNetV3's 3×3/2 stem 0.68 and resnet18's 1×1/2 shortcut 0.87.
pub(super) fn split_pairs(isa: Isa, src: &[f32], first: &mut [f32], second: &mut [f32]) {
    let n = src.len();
    assert!(first.len() >= n.div_ceil(2) && second.len() >= n / 2);
    #[cfg(target_arch = "x86_64")]
    let done = match isa {
        // SAFETY: the CPU has the set (`simd::isa`); the lengths are asserted above.
        Isa::Avx512 => unsafe { split_pairs_avx512(src, first, second) },
        // SAFETY: as above.
        Isa::Avx2 => unsafe { split_pairs_avx2(src, first, second) },
        Isa::Portable => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = isa;
        0
    };
    let pairs = src[done..].chunks_exact(2);
    if let [last] = pairs.remainder() {
        first[n / 2] = *last;
    }
    let (first, second) = (&mut first[done / 2..], &mut second[done / 2..]);
    for ((a, b), p) in first.iter_mut().zip(second.iter_mut()).zip(pairs) {
        *a = p[0];
        *b = p[1];
    }
}

/// [`split_pairs`] of the whole blocks of 32 values; returns how many it did.
///
/// # Safety
/// The CPU has AVX-512F; `first` and `second` hold `src.len() / 2` values each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_pairs_avx512(src: &[f32], first: &mut [f32], second: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let whole = src.len() / 32 * 32;
    for i in (0..whole).step_by(32) {
        // SAFETY: `i + 32 ≤ src.len()`, and `i/2 + 16 ≤ src.len()/2` values of each output.
        unsafe {
            let lo = _mm512_loadu_ps(src.as_ptr().add(i));
            let hi = _mm512_loadu_ps(src.as_ptr().add(i + 16));
            _mm512_storeu_ps(
                first.as_mut_ptr().add(i / 2),
                _mm512_permutex2var_ps(lo, even, hi),
            );
            _mm512_storeu_ps(
                second.as_mut_ptr().add(i / 2),
                _mm512_permutex2var_ps(lo, odd, hi),
            );
        }
    }
    whole
}

/// [`split_pairs`] of the whole blocks of 16 values; returns how many it did.
///
/// # Safety
/// The CPU has AVX2; `first` and `second` hold `src.len() / 2` values each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn split_pairs_avx2(src: &[f32], first: &mut [f32], second: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let whole = src.len() / 16 * 16;
    for i in (0..whole).step_by(16) {
        // SAFETY: `i + 16 ≤ src.len()`, and `i/2 + 8 ≤ src.len()/2` values of each output.
        unsafe {
            let lo = _mm256_loadu_ps(src.as_ptr().add(i));
            let hi = _mm256_loadu_ps(src.as_ptr().add(i + 8));
            // Within each 128-bit half: lo's two evens then hi's (odds likewise); the 64-bit
            // permute puts lo's four before hi's.
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi);
            let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
            let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
            _mm256_storeu_ps(first.as_mut_ptr().add(i / 2), e);
            _mm256_storeu_ps(second.as_mut_ptr().add(i / 2), o);
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_into_their_even_and_odd_columns_on_every_instruction_set() {
        for isa in super::super::simd::available() {
            // Lengths around the vector blocks (16 and 32 values) and past several of them.
            for n in (0..70usize).chain([95, 96, 97, 224, 225]) {
                let src: Vec<f32> = (0..n).map(|v| v as f32 + 0.5).collect();
                // One value of slack each, left as it was.
                let mut first = vec![-1f32; n.div_ceil(2) + 1];
                let mut second = vec![-1f32; n / 2 + 1];
                split_pairs(isa, &src, &mut first, &mut second);
                let even: Vec<f32> = src.iter().copied().step_by(2).collect();
                let odd: Vec<f32> = src.iter().copied().skip(1).step_by(2).collect();
                assert_eq!(first[..even.len()], even[..], "{isa:?}, {n} values: evens");
                assert_eq!(second[..odd.len()], odd[..], "{isa:?}, {n} values: odds");
                assert_eq!(
                    first[even.len()],
                    -1.0,
                    "{isa:?}, {n} values: past the evens"
                );
                assert_eq!(
                    second[odd.len()],
                    -1.0,
                    "{isa:?}, {n} values: past the odds"
                );
            }
        }
    }
}
