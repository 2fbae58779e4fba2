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

/// `dst[c·ld + t] = line[start + c + m·t]` for `c < count` and `t < len`, zero where the
/// index falls outside `line`: the columns of a run of tiles along a row read as if
/// zero-padded on both sides, column `c` of tile `t` into row `c` of `dst`. The Winograd
/// transforms gather their patches this way. With AVX-512, `len ≤ 16` and `m·len ≤ 32`, two
/// masked loads and one lane permute per column; a value at a time otherwise (a value at a
/// time, and with each column's bounds worked out afresh, it took two thirds of the input
/// transform's time at 32×32).
///
/// # Safety
/// `dst` is valid for writes of `len` values at each of `count` rows `ld` apart.
pub(super) unsafe fn every_nth_rows(
    isa: Isa,
    (line, start): (&[f32], isize),
    m: usize,
    (count, len): (usize, usize),
    dst: *mut f32,
    ld: usize,
) {
    assert!(m > 0);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && len <= 16 && m * len <= 32 && count <= 16 {
        // SAFETY: the CPU has AVX-512F (`simd::isa`); the lengths are checked just above,
        // `dst`'s is the contract.
        return unsafe { every_nth_rows_avx512((line, start), m, (count, len), dst, ld) };
    }
    let _ = isa;
    for c in 0..count {
        for t in 0..len {
            let at = start + (c + m * t) as isize;
            let v = usize::try_from(at)
                .ok()
                .and_then(|at| line.get(at))
                .map_or(0.0, |&x| x);
            // SAFETY: row `c`'s value `t` (the contract).
            unsafe { *dst.add(c * ld + t) = v };
        }
    }
}

/// [`every_nth_rows`] by two masked loads and a permute per column.
///
/// # Safety
/// The CPU has AVX-512F; `len ≤ 16`, `m·len ≤ 32`, `count ≤ 16`, and `dst` as there.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn every_nth_rows_avx512(
    (line, start): (&[f32], isize),
    m: usize,
    (count, len): (usize, usize),
    dst: *mut f32,
    ld: usize,
) {
    use std::arch::x86_64::*;
    // Bit j: value `start + j` lies inside `line`, for the 64 values any column reads.
    let lo = (-start).clamp(0, 64);
    let hi = (line.len() as isize - start).clamp(0, 64);
    let ones = |n: isize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let inside = if hi > lo { ones(hi) & !ones(lo) } else { 0 };
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // Lanes past `len` may index past 31; the permute reads only an index's low five bits,
    // and their values are not stored.
    let index = _mm512_mullo_epi32(lane, _mm512_set1_epi32(m as i32));
    let keep = ((1u32 << len) - 1) as u16;
    if inside == 0 {
        // No loads at all: a masked load's suppressed lanes on an address outside any mapping
        // (an empty line's) cost a microcode assist each on AMD.
        for c in 0..count {
            // SAFETY: row `c`'s `len` values (the contract).
            unsafe { _mm512_mask_storeu_ps(dst.add(c * ld), keep, _mm512_setzero_ps()) };
        }
        return;
    }
    for c in 0..count {
        let from = start + c as isize;
        let at = |j: isize| line.as_ptr().wrapping_offset(from + j);
        // SAFETY: the loads touch only values inside `line` (masked), the store row `c`'s
        // `len` values (the contract).
        unsafe {
            let a = _mm512_maskz_loadu_ps((inside >> c) as u16, at(0));
            let b = _mm512_maskz_loadu_ps((inside >> (c + 16)) as u16, at(16));
            let v = _mm512_permutex2var_ps(a, index, b);
            if len == 8 {
                _mm256_storeu_ps(dst.add(c * ld), _mm512_castps512_ps256(v));
            } else {
                _mm512_mask_storeu_ps(dst.add(c * ld), keep, v);
            }
        }
    }
}

/// `dst[m·t + k] = src[k][t]` for the first `len` values of `dst`, `m = src.len()`: the `m`
/// column phases of a row put back together (the Winograd output tiles' columns). With
/// AVX-512, `m` 2 or 4 and `len ≤ 32`, two lane permutes; with AVX2 unpacks and shuffles; a
/// value at a time otherwise.
///
/// # Safety
/// `dst` is valid for `len` writes. (Each `src[k]` must hold the `⌈(len − k)/m⌉` values that
/// `len` needs, or the call panics; the vector path reads `32/m` from each row, and runs only
/// where they hold that many.)
pub(super) unsafe fn interleave_to(isa: Isa, src: &[&[f32]], dst: *mut f32, len: usize) {
    let m = src.len();
    #[cfg(target_arch = "x86_64")]
    if (m == 2 || m == 4) && len <= 32 && src.iter().all(|r| r.len() >= 32 / m) {
        // SAFETY: the CPU has the instruction set (`simd::isa`); the rows' lengths are
        // checked just above, `dst`'s is the contract.
        match isa {
            Isa::Avx512 => return unsafe { interleave_avx512(src, dst, len) },
            Isa::Avx2 => return unsafe { interleave_avx2(src, dst, len) },
            Isa::Portable => {}
        }
    }
    let _ = isa;
    for i in 0..len {
        // SAFETY: `i < len` (the contract).
        unsafe { *dst.add(i) = src[i % m][i / m] };
    }
}

/// [`interleave_to`] of two rows of 16 or four of 8 values, by unpacks and lane shuffles
/// (value by value and out of line, it took as many samples as the Winograd output transform
/// itself on 64-channel 32×32 layers).
///
/// # Safety
/// The CPU has AVX2; `src` holds 2 rows of at least 16 values or 4 of at least 8, and `dst` is
/// valid for `len ≤ 32` writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interleave_avx2(src: &[&[f32]], dst: *mut f32, len: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the rows hold the values loaded (the contract).
    let load = |r: usize, at: usize| unsafe { _mm256_loadu_ps(src[r].as_ptr().add(at)) };
    let out: [__m256; 4] = if src.len() == 2 {
        // Unpacks pair the rows' values within each 128-bit half; the halves' permutes put
        // the pairs in order.
        let pairs = |a: __m256, b: __m256| {
            let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
            (
                _mm256_permute2f128_ps::<0x20>(lo, hi),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            )
        };
        let (o0, o1) = pairs(load(0, 0), load(1, 0));
        let (o2, o3) = pairs(load(0, 8), load(1, 8));
        [o0, o1, o2, o3]
    } else {
        // A 4×8 transpose: t_k holds values k and k + 4 of the four rows.
        let (a, b, c, d) = (load(0, 0), load(1, 0), load(2, 0), load(3, 0));
        let (lo_ab, lo_cd) = (_mm256_unpacklo_ps(a, b), _mm256_unpacklo_ps(c, d));
        let (hi_ab, hi_cd) = (_mm256_unpackhi_ps(a, b), _mm256_unpackhi_ps(c, d));
        let t0 = _mm256_shuffle_ps::<0x44>(lo_ab, lo_cd);
        let t1 = _mm256_shuffle_ps::<0xEE>(lo_ab, lo_cd);
        let t2 = _mm256_shuffle_ps::<0x44>(hi_ab, hi_cd);
        let t3 = _mm256_shuffle_ps::<0xEE>(hi_ab, hi_cd);
        [
            _mm256_permute2f128_ps::<0x20>(t0, t1),
            _mm256_permute2f128_ps::<0x20>(t2, t3),
            _mm256_permute2f128_ps::<0x31>(t0, t1),
            _mm256_permute2f128_ps::<0x31>(t2, t3),
        ]
    };
    // SAFETY: `len` values of `dst` are writable (the contract); the stores and the mask
    // cover no more. Each vector stored from its register: through a buffer (whole vectors
    // below `len`, the rest copied), the compiler made the stores one `memcpy` call per row,
    // 1.8% of resnet18_cifar's training step.
    unsafe {
        for (k, &v) in out.iter().enumerate() {
            let rest = len.saturating_sub(8 * k);
            if rest >= 8 {
                _mm256_storeu_ps(dst.add(8 * k), v);
            } else if rest > 0 {
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest as i32), lane);
                _mm256_maskstore_ps(dst.add(8 * k), mask, v);
            }
        }
    }
}

/// [`interleave_to`] of two rows of 16 or four of 8 values.
///
/// # Safety
/// The CPU has AVX-512F; `src` holds 2 rows of at least 16 values or 4 of at least 8, and
/// `dst` is valid for `len ≤ 32` writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave_avx512(src: &[&[f32]], dst: *mut f32, len: usize) {
    use std::arch::x86_64::*;
    let m = src.len();
    // Lane j of a half takes t = j / m and k = j % m: with two rows, row k's lane t (the
    // permute numbers the second vector's lanes 16..32); with four, the first vector holds
    // rows 0 and 1 (lanes 0..8 and 8..16), the second rows 2 and 3.
    let (lo, hi) = if m == 2 {
        (
            _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23),
            _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31),
        )
    } else {
        (
            _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27),
            _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31),
        )
    };
    // SAFETY: the rows hold the values loaded (the contract).
    let (a, b) = unsafe {
        if m == 2 {
            (
                _mm512_loadu_ps(src[0].as_ptr()),
                _mm512_loadu_ps(src[1].as_ptr()),
            )
        } else {
            let pair = |r: usize| {
                let lo = _mm512_castps256_ps512(_mm256_loadu_ps(src[r].as_ptr()));
                let hi = _mm256_castps_pd(_mm256_loadu_ps(src[r + 1].as_ptr()));
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), hi))
            };
            (pair(0), pair(2))
        }
    };
    let mask = |n: usize| ((1u32 << n.min(16)) - 1) as u16;
    // SAFETY: `len` values of `dst` are writable (the contract), the masks cover no more.
    unsafe {
        _mm512_mask_storeu_ps(dst, mask(len), _mm512_permutex2var_ps(a, lo, b));
        if len > 16 {
            let second = _mm512_permutex2var_ps(a, hi, b);
            _mm512_mask_storeu_ps(dst.add(16), mask(len - 16), second);
        }
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
    fn every_nth_rows_reads_a_zero_padded_row_on_every_instruction_set() {
        for isa in super::super::simd::available() {
            for n in [0usize, 1, 5, 16, 31, 32, 33, 40, 70] {
                let line: Vec<f32> = (0..n).map(|v| v as f32 + 0.5).collect();
                let starts = [-20isize, -3, -1, 0, 1, 7, n as isize - 2, n as isize + 1];
                for (m, len, count, &start) in [2usize, 4]
                    .into_iter()
                    .flat_map(|m| (1..=32 / m).map(move |len| (m, len)))
                    .flat_map(|(m, len)| [1usize, 4, 6].map(|count| (m, len, count)))
                    .flat_map(|(m, len, count)| starts.iter().map(move |s| (m, len, count, s)))
                {
                    // Rows `len + 3` apart: the slack past each row must stay as it was.
                    let ld = len + 3;
                    let mut dst = vec![-1f32; count * ld];
                    // SAFETY: `count` rows of `len` values, `ld` apart.
                    unsafe {
                        every_nth_rows(isa, (&line, start), m, (count, len), dst.as_mut_ptr(), ld)
                    };
                    for c in 0..count {
                        for t in 0..ld {
                            let at = start + (c + m * t) as isize;
                            let want = if t >= len {
                                -1.0
                            } else if (0..n as isize).contains(&at) {
                                line[at as usize]
                            } else {
                                0.0
                            };
                            assert_eq!(
                                dst[c * ld + t],
                                want,
                                "{isa:?}: line of {n}, from {start}, every {m}th, row {c}, value {t} of {len}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn interleave_puts_phases_back_together_on_every_instruction_set() {
        for isa in super::super::simd::available() {
            for m in [1usize, 2, 3, 4] {
                for len in 0..=40usize {
                    // Rows of exactly the values `len` needs, and of 16 (what the vector path
                    // reads).
                    for room in [len.div_ceil(m), 16.max(len.div_ceil(m))] {
                        let rows: Vec<Vec<f32>> = (0..m)
                            .map(|k| (0..room).map(|t| (100 * k + t) as f32).collect())
                            .collect();
                        let src: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
                        let mut dst = vec![-1f32; len + 5];
                        // SAFETY: `dst` holds `len` values (and slack).
                        unsafe { interleave_to(isa, &src, dst.as_mut_ptr(), len) };
                        for (i, &v) in dst.iter().enumerate() {
                            let want = if i < len { rows[i % m][i / m] } else { -1.0 };
                            assert_eq!(
                                v, want,
                                "{isa:?}: {m} rows of {room}, {len} values, value {i}"
                            );
                        }
                    }
                }
            }
        }
    }

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
