//! Training and inference throughput of a zoo model on random CIFAR-sized data, the numbers in
//! BENCHMARKS.md. Usage: cargo run --release --example bench -- [ARCH] [BATCH] [STEPS]
//! (scripts/bench/torch_bench.py measures the same work with PyTorch).

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use meal::train::optim::SgdSettings;
use meal::train::tensors::cross_entropy;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arch = args.get(1).map(String::as_str).unwrap_or("resnet20");
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let device = meal::backend::autodiff_device();
    device.seed(0);
    let mut model = meal::models::build(arch, 10, &device).expect("known arch");
    let mut optim = SgdSettings::default().init();
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let t = Instant::now();
        let loss = cross_entropy(model.forward(x.clone()).logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
        let _: f32 = loss.into_scalar();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let train = batch as f64 * times.len() as f64 / times.iter().sum::<f64>();
    let eval = model.valid();
    let xi = x.inner();
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let t = Instant::now();
        let _ = eval.forward(xi.clone()).logits.into_data();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let infer = batch as f64 * times.len() as f64 / times.iter().sum::<f64>();
    println!(
        "{{\"framework\": \"meal/burn-flex\", \"arch\": \"{arch}\", \"batch\": {batch}, \"steps\": {steps}, \"train_img_per_s\": {train:.1}, \"infer_img_per_s\": {infer:.1}}}"
    );
}
