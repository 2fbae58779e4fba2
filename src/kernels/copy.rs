//! Row copies the kernels make between their buffers.

/// `dst = src` for a short row (an image row of 4 to 64 values) in eight-value blocks, stored
/// as volatile so that the compiler keeps them as vector moves: it turns any plain copy loop
/// back into a `memmove` call, and for rows this short the call cost more than the copy (4% of
/// a resnet20 step).
///
/// # Safety
/// `dst` is valid for `src.len()` writes.
pub(super) unsafe fn copy_row_to(dst: *mut f32, src: &[f32]) {
    let mut blocks = src.chunks_exact(8);
    let mut i = 0;
    for b in &mut blocks {
        let block: [f32; 8] = b.try_into().expect("chunks of 8");
        // SAFETY: `dst + i .. dst + i + 8` is writable (the function's contract); `[f32; 8]`
        // has `f32`'s alignment.
        unsafe { std::ptr::write_volatile(dst.add(i).cast::<[f32; 8]>(), block) };
        i += 8;
    }
    for &v in blocks.remainder() {
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(dst.add(i), v) };
        i += 1;
    }
}

/// [`copy_row_to`] between slices of equal length.
pub(super) fn copy_row(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len());
    // SAFETY: `dst` holds `src.len()` values.
    unsafe { copy_row_to(dst.as_mut_ptr(), src) }
}
