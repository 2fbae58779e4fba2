use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use meal::models;
fn main() {
    let device = meal::backend::autodiff_device();
    let m = models::build("resnet20", 10, &device).unwrap();
    println!(
        "params {} trainable {}",
        m.num_params(),
        meal::models::trainable_params(&m)
    );
    let mut optim = meal::train::optim::SgdSettings::default().init();
    let mut m = m;
    for bs in [128usize] {
        let x: Tensor<4> = Tensor::random([bs, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        for i in 0..4 {
            let t = std::time::Instant::now();
            let out = m.forward(x.clone());
            let loss = out.logits.clone().powi_scalar(2).mean();
            let grads = loss.backward();
            let g = burn::optim::GradientsParams::from_grads(grads, &m);
            m = optim.step(0.1, m, g);
            let _ = m.num_params();
            let v: f32 = loss.into_scalar();
            println!(
                "step {i} bs {bs} {:?} loss {v} -> {:.0} img/s",
                t.elapsed(),
                bs as f64 / t.elapsed().as_secs_f64()
            );
        }
        let v = m.valid();
        let xi = x.clone().inner();
        let t = std::time::Instant::now();
        let o = v.forward(xi);
        let _: Vec<f32> = o.logits.into_data().try_to_vec::<f32>().unwrap();
        println!(
            "infer {:?} {:.0} img/s",
            t.elapsed(),
            bs as f64 / t.elapsed().as_secs_f64()
        );
    }
}
