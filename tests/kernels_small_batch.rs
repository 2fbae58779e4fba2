//! The convolution forward pass when the batch is smaller than the thread count: the kernels then
//! share each image (or chunk of images) out by output rows or output channels, and must give
//! exactly the values of one thread running the whole batch. Checked bit for bit on the layers
//! of resnet20, resnet18_cifar and a 224×224 ImageNet network at batch 1 and 8, with and without
//! the BatchNorm+ReLU epilogue of the eval path, on every instruction set this CPU has, with the
//! workers parked and polling (`kernels::hot`, which shares out smaller layers). The input and
//! weight gradients too, at batch 1 and 8, against the thread count.

mod isa_common;

use isa_common::on_every_isa;
use meal::kernels::conv::{self, ConvShape};
use meal::kernels::hot::hot;
use meal::kernels::simd::Isa;
use meal::kernels::winograd;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `(cin, hw, cout, k, stride, pad)` of a network's distinct convolutions.
type Layer = (usize, usize, usize, usize, usize, usize);

const RESNET20: [Layer; 6] = [
    (3, 32, 16, 3, 1, 1),
    (16, 32, 16, 3, 1, 1),
    (16, 32, 32, 3, 2, 1),
    (32, 16, 32, 3, 1, 1),
    (32, 16, 64, 3, 2, 1),
    (64, 8, 64, 3, 1, 1),
];

const RESNET18_CIFAR: [Layer; 11] = [
    (3, 32, 64, 3, 1, 1),
    (64, 32, 64, 3, 1, 1),
    (64, 32, 128, 3, 2, 1),
    (64, 32, 128, 1, 2, 0),
    (128, 16, 128, 3, 1, 1),
    (128, 16, 256, 3, 2, 1),
    (128, 16, 256, 1, 2, 0),
    (256, 8, 256, 3, 1, 1),
    (256, 8, 512, 3, 2, 1),
    (256, 8, 512, 1, 2, 0),
    (512, 4, 512, 3, 1, 1),
];

/// A ResNet-50 / MobileNet-like 224×224 network: the 7×7/2 stem, a 1×1 expansion, a 3×3/2, and
/// (narrowed) the later stages' 1×1 and 3×3 layers: 14×14 maps read in place and shared out by
/// rows that end inside a micro-tile (fewer output channels than positions) or by output
/// channels (more), and 7×7 maps whose 49 columns end in one-vector tiles.
const IMAGENET_224: [Layer; 7] = [
    (3, 224, 64, 7, 2, 3),
    (64, 56, 256, 1, 1, 0),
    (128, 56, 128, 3, 2, 1),
    (256, 14, 128, 1, 1, 0),
    (128, 14, 256, 1, 1, 0),
    (256, 7, 128, 1, 1, 0),
    (128, 7, 64, 3, 1, 1),
];

fn shape(batch: usize, (cin, hw, cout, k, stride, pad): Layer) -> ConvShape {
    ConvShape::square(batch, (cin, hw, cout), (k, stride, pad))
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    assert!(
        want.iter().all(|v| v.is_finite()),
        "{what}: non-finite reference"
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: value {i} is {} where one thread gives {}",
            got[i], want[i]
        );
    }
}

/// One thread (the whole-image path) against pools with more threads than images (3 for
/// batch 1, 16 for batch 8, so every image is shared out), plain and with the epilogue; and
/// batch 1 against the first image of batch 8 where both take the same lowering.
fn check_layers(isa: Isa, net: &str, layers: &[Layer]) {
    let mut rng = ChaCha8Rng::seed_from_u64(26);
    let (one, three, sixteen) = (pool(1), pool(3), pool(16));
    for &layer in layers {
        let s8 = shape(8, layer);
        let s1 = shape(1, layer);
        assert!(s8.supported(), "{net} {s8:?}");
        let x = random(&mut rng, 8 * s8.cin * s8.h * s8.w, 1.0);
        let fan_in = (s8.cin * s8.kh * s8.kw) as f32;
        let w = random(
            &mut rng,
            s8.cout * s8.cin * s8.kh * s8.kw,
            fan_in.sqrt().recip(),
        );
        let scale = random(&mut rng, s8.cout, 2.0);
        let shift = random(&mut rng, s8.cout, 1.0);
        let mut firsts = Vec::new();
        for (s, wide) in [(s1, &three), (s8, &sixteen)] {
            let x = &x[..s.batch * s.cin * s.h * s.w];
            let plain = || conv::forward(&s, x, &w);
            let fused = || {
                conv::forward_affine(
                    &s,
                    x,
                    &w,
                    &scale,
                    &shift,
                    meal::kernels::activation::OutputAct::Relu,
                )
            };
            let what = |k: &str| format!("{net} {isa:?} {k} batch {} {layer:?}", s.batch);
            let want = one.install(plain);
            assert_bits(&what("conv"), &wide.install(plain), &want);
            let want_fused = one.install(fused);
            assert_bits(&what("conv+bn+relu"), &wide.install(fused), &want_fused);
            // With the workers polling (`kernels::hot`) smaller layers are shared out too.
            assert_bits(&what("hot conv"), &wide.install(|| hot(plain)), &want);
            let hot_fused = wide.install(|| hot(fused));
            assert_bits(&what("hot conv+bn+relu"), &hot_fused, &want_fused);
            firsts.push((winograd::applies(&s), want));
        }
        let ((wino1, y1), (wino8, y8)) = (&firsts[0], &firsts[1]);
        if wino1 == wino8 {
            let what = format!("{net} {isa:?} batch 1 against batch 8's first image {layer:?}");
            assert_bits(&what, y1, &y8[..y1.len()]);
        }
    }
}

#[test]
fn small_batches_share_images_out_exactly_on_resnet20() {
    on_every_isa("resnet20", |isa| check_layers(isa, "resnet20", &RESNET20));
}

#[test]
fn small_batches_share_images_out_exactly_on_resnet18_cifar() {
    on_every_isa("resnet18_cifar", |isa| {
        check_layers(isa, "resnet18_cifar", &RESNET18_CIFAR)
    });
}

#[test]
fn small_batches_share_images_out_exactly_at_224() {
    on_every_isa("imagenet_224", |isa| {
        check_layers(isa, "imagenet_224", &IMAGENET_224)
    });
    // Depthwise 3×3 (groups = channels) is not these kernels' shape: it goes to
    // `kernels::depthwise`, one task per plane (forward) or per channel (weight gradient), so
    // its values do not depend on how the work is shared out (tests/kernels_depthwise.rs).
    let mut dw = shape(1, (32, 112, 32, 3, 1, 1));
    dw.groups = 32;
    assert!(
        !dw.supported(),
        "depthwise now reaches meal's kernels: test it here"
    );
}

/// The eval-mode BatchNorm(+ReLU) after a Winograd convolution, shared out by channel rows: each
/// value is `relu(x · scale[c] + shift[c])` of its own channel, whatever the thread count.
#[test]
fn eval_batch_norm_shares_channel_rows_out_exactly() {
    use meal::kernels::batch_norm::{BnShape, channel_affine, channel_affine_in_place};
    on_every_isa("channel_affine", |isa| {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for (batch, channels, spatial) in [(1, 64, 1024), (1, 512, 16), (8, 16, 1024), (1, 3, 7)] {
            let shape = BnShape {
                batch,
                channels,
                spatial,
            };
            let x = random(&mut rng, shape.len(), 2.0);
            let scale = random(&mut rng, channels, 2.0);
            let shift = random(&mut rng, channels, 1.0);
            let want: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = i / spatial % channels;
                    let t = v * scale[c] + shift[c];
                    if t < 0.0 { 0.0 } else { t }
                })
                .collect();
            let what = format!("{isa:?} {shape:?}");
            for threads in [1, 3, 16] {
                let p = pool(threads);
                let y = p.install(|| channel_affine(shape, &x, &scale, &shift, true));
                assert_bits(&format!("{what} on {threads} threads"), &y, &want);
                let mut z = x.clone();
                p.install(|| channel_affine_in_place(shape, &mut z, &scale, &shift, true));
                assert_bits(&format!("{what} in place on {threads}"), &z, &want);
            }
        }
    });
}

/// The input gradient (whose im2col chunks of images are cut to give every thread one) and the
/// weight gradient (fixed groups of images or positions) of the same layers on 1, 3 and 16
/// threads, bit for bit.
#[test]
fn gradients_do_not_depend_on_the_thread_count() {
    // On every instruction set, which also holds the other tests' forcing of one off.
    on_every_isa("gradients against the thread count", |isa| {
        let mut rng = ChaCha8Rng::seed_from_u64(27);
        let pools = [pool(1), pool(3), pool(16)];
        for (net, layers) in [
            ("resnet18_cifar", &RESNET18_CIFAR[..]),
            ("imagenet", &IMAGENET_224[..]),
        ] {
            for &layer in layers {
                for batch in [1, 8] {
                    let s = shape(batch, layer);
                    let x = random(&mut rng, batch * s.cin * s.h * s.w, 1.0);
                    let w = random(&mut rng, s.cout * s.cin * s.kh * s.kw, 0.1);
                    let dy = random(&mut rng, batch * s.cout * s.ho() * s.wo(), 1.0);
                    let dx = pools[0].install(|| conv::backward_input(&s, &dy, &w));
                    let dw = pools[0].install(|| conv::backward_weight(&s, &x, &dy));
                    for p in &pools[1..] {
                        let what = |k: &str| {
                            format!(
                                "{net} {isa:?} {k} batch {batch} {layer:?} on {} threads",
                                p.current_num_threads()
                            )
                        };
                        assert_bits(
                            &what("input grad"),
                            &p.install(|| conv::backward_input(&s, &dy, &w)),
                            &dx,
                        );
                        assert_bits(
                            &what("weight grad"),
                            &p.install(|| conv::backward_weight(&s, &x, &dy)),
                            &dw,
                        );
                    }
                }
            }
        }
    });
}
