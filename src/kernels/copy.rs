//! Row copies the kernels make between their buffers.

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
