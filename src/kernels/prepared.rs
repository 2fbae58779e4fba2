//! Convolution weights kept in the form the kernels read them while a model answers requests.
//!
//! Every forward call packs its weight into the micro-kernel's panels, or, on a Winograd layer,
//! transforms it (four times its size for F(4×4)): at batch 1 that was 15% of resnet18_cifar's
//! forward (BENCHMARKS.md), redone on every request for weights that do not change. Inside an
//! [`Inference`] scope the packed form is kept per weight buffer and reused.
//!
//! A kept form cannot go stale. Its entry holds a clone of the weight tensor, a counted
//! reference to its buffer; while the entry lives that buffer is neither freed (so no other
//! tensor can be given its address, the key) nor written in place: burn-flex writes a buffer in
//! place only when it holds the sole reference (`Arc::get_mut`, or `Arc::make_mut`, which
//! copies a shared one), and so do meal's in-place ops (`flex::owned_values`). An optimiser
//! step, a loaded checkpoint or any arithmetic on the weight therefore yields another buffer,
//! hence another key. The scope belongs to the thread that runs the forward and its entries go
//! with it, so weights trained elsewhere, or after the scope, are never found shared.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::rc::Rc;

use burn::backend::flex::FlexTensor;
use burn::backend::{DType, TensorMetadata};

use super::conv::{self, ConvShape, Epilogue};
use super::gemm::Panels;
use super::pointwise;
use super::simd;
use super::winograd;

/// Kept forms beyond this many bytes are not kept (the call packs its weight as without a
/// scope): a bound on the memory a scope can hold, far above a ResNet-50's (about 300 MB).
const MAX_BYTES: usize = 1 << 30;

/// While a value of this type lives, the convolutions that the current thread runs keep their
/// packed weights for the next call ([`inference`]). Scopes nest; the kept forms are dropped
/// when the outermost one ends.
pub struct Inference {
    // Tied to the thread whose cache it opened.
    _thread: PhantomData<*const ()>,
}

/// Opens an [`Inference`] scope on this thread: a model's repeated eval forwards (`meal
/// predict`, `meal eval`, `meal bench --latency`) then pack each weight once. The results are
/// bit for bit those of the forward without it.
pub fn inference() -> Inference {
    CACHE.with_borrow_mut(|c| c.depth += 1);
    Inference {
        _thread: PhantomData,
    }
}

impl Drop for Inference {
    fn drop(&mut self) {
        let dropped = CACHE.with_borrow_mut(|c| {
            c.depth -= 1;
            if c.depth == 0 {
                c.bytes = 0;
                std::mem::take(&mut c.entries)
            } else {
                HashMap::new()
            }
        });
        // The weights' clones are released outside the borrow.
        drop(dropped);
    }
}

/// Whether an [`Inference`] scope is open on this thread.
pub fn active() -> bool {
    CACHE.with_borrow(|c| c.depth > 0)
}

/// A convolution's weight in the form its forward reads.
pub(super) enum Packed {
    /// Panels for the direct and im2col lowerings.
    Panels(Panels),
    /// The Winograd kernel transform for tiles of side `m`.
    Winograd { m: usize, u: Vec<f32> },
}

impl Packed {
    fn bytes(&self) -> usize {
        4 * match self {
            Packed::Panels(p) => p.data.len(),
            Packed::Winograd { u, .. } => u.len(),
        }
    }
}

/// Which form a call of shape `s` reads: the same weight at another batch size can take the
/// other lowering, so the form is part of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Form {
    Panels,
    Winograd(usize),
}

fn form(s: &ConvShape) -> Form {
    if winograd::applies(s) {
        Form::Winograd(winograd::tile_for(s))
    } else {
        Form::Panels
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The buffer's address; unique while the entry holds the buffer.
    addr: usize,
    /// `[cout, cin, kh, kw]` (groups are always 1 here).
    dims: [usize; 4],
    form: Form,
    isa: &'static str,
}

struct Entry {
    /// Keeps the buffer alive and shared (see the module's note): never read.
    _weight: FlexTensor,
    packed: Rc<Packed>,
}

#[derive(Default)]
struct Cache {
    depth: usize,
    bytes: usize,
    entries: HashMap<Key, Entry>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The kept form of `weight` for a forward of shape `s`, packed now on first use; `None` outside
/// a scope, for grouped convolutions, 1×1 maps' layers, and for weights not stored as one contiguous `f32` buffer
/// (their values are copied per call, so there is no buffer to key on).
pub(super) fn lookup(weight: &FlexTensor, s: &ConvShape) -> Option<Rc<Packed>> {
    // A 1×1 map's layer reads its weight as stored (`pointwise`).
    if !active() || s.groups != 1 || weight.dtype() != DType::F32 || pointwise::applies(s) {
        return None;
    }
    if !weight.is_contiguous() || weight.layout().start_offset() != 0 {
        return None;
    }
    let n = weight.layout().num_elements();
    let values = &weight.as_slice::<f32>()?[..n];
    if n != s.cout * s.k() || weight.shape().num_dims() != 4 {
        return None;
    }
    let key = Key {
        addr: values.as_ptr() as usize,
        dims: [s.cout, s.cin, s.kh, s.kw],
        form: form(s),
        isa: simd::isa().name(),
    };
    if let Some(e) = CACHE.with_borrow(|c| c.entries.get(&key).map(|e| e.packed.clone())) {
        return Some(e);
    }
    let packed = Rc::new(match key.form {
        Form::Panels => Packed::Panels(conv::pack_weight(s, values, 0)),
        Form::Winograd(m) => Packed::Winograd {
            m,
            u: winograd::transformed_kernel(m, s, values),
        },
    });
    CACHE.with_borrow_mut(|c| {
        if c.bytes + packed.bytes() <= MAX_BYTES {
            c.bytes += packed.bytes();
            let entry = Entry {
                _weight: weight.clone(),
                packed: packed.clone(),
            };
            c.entries.insert(key, entry);
        }
    });
    Some(packed)
}

/// `relu?(conv(x, w) · scale + shift)` (with `epi`) or `conv(x, w)` on the kept form of `w`:
/// the products of [`conv::forward_affine`] in the same order, so the same values.
pub(super) fn forward(
    s: &ConvShape,
    x: &[f32],
    packed: &Packed,
    epi: Option<Epilogue>,
) -> Vec<f32> {
    assert!(s.supported(), "unsupported convolution {s:?}");
    assert_eq!(x.len(), s.batch * s.cin * s.h * s.w);
    if s.batch * s.cout * s.ho() * s.wo() == 0 {
        return Vec::new();
    }
    match packed {
        Packed::Winograd { m, u } => {
            let y = winograd::forward_transformed(*m, s, x, u);
            conv::winograd_epilogue(s, y, epi)
        }
        Packed::Panels(p) => conv::forward_panels(simd::isa(), s, x, std::slice::from_ref(p), epi),
    }
}
