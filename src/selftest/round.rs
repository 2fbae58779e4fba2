//! The tiny end-to-end round of `meal selftest`: a teacher trained for one epoch and resumed
//! for a second, a MEAL student distilled from it the same way, and the student's checkpoint
//! loaded back on this device and on the CPU (checkpoints hold host bytes, so a run written on
//! a GPU must load anywhere). The images are the first 300 of `data/cifar10-mini`'s test
//! batch, compiled in, so the binary needs no files.

use std::path::Path;

use burn::tensor::{Device, Distribution, Tensor};

use super::{Check, Tolerance};
use crate::backend::DeviceSpec;
use crate::train::model_io;

const TEST_BATCH: &[u8] = include_bytes!("../../data/cifar10-mini/test_batch.bin");
const META: &str = include_str!("../../data/cifar10-mini/batches.meta.txt");
const RECORD: usize = 1 + 3 * 32 * 32;
const TRAIN_IMAGES: usize = 200;
const TEST_IMAGES: usize = 100;

/// Writes a 200/100-image CIFAR-10 binary dataset into `dir`.
fn write_data(dir: &Path) -> Result<(), String> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write("data_batch_1.bin", &TEST_BATCH[..TRAIN_IMAGES * RECORD])?;
    write(
        "test_batch.bin",
        &TEST_BATCH[TRAIN_IMAGES * RECORD..(TRAIN_IMAGES + TEST_IMAGES) * RECORD],
    )?;
    write("batches.meta.txt", META.as_bytes())
}

fn common_keys(run_dir: &Path, data: &Path, device: DeviceSpec) -> String {
    format!(
        r#"
epochs = 1
batch_size = 50
eval_batch_size = 50
lr = 0.05
seed = 5
num_workers = 1
run_dir = {run_dir:?}
device = "{device}"
schedule = {{ kind = "multistep", milestones = [1], gamma = 0.5 }}

[data]
path = {data:?}
"#,
        run_dir = run_dir.display().to_string(),
        data = data.display().to_string(),
    )
}

fn parse(text: &str) -> Result<toml::Table, String> {
    text.parse().map_err(|e| format!("selftest config: {e}"))
}

fn accuracy_ok(
    what: &str,
    top1: f64,
    epochs_done: usize,
    want_epochs: usize,
) -> Result<String, String> {
    if epochs_done != want_epochs {
        return Err(format!(
            "{what}: {epochs_done} epochs done, expected {want_epochs}"
        ));
    }
    if !(0.0..=100.0).contains(&top1) {
        return Err(format!("{what}: test top-1 {top1} is not a percentage"));
    }
    Ok(format!("{epochs_done} epoch(s), test top-1 {top1:.1}%"))
}

/// Runs the round in `work` (created, left in place for inspection; its `data/`, `teacher/`
/// and `student/` are replaced) on the selected device.
pub fn round(work: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let spec = crate::backend::selected_spec().unwrap_or(DeviceSpec::Flex);
    // A work folder used before would hold finished runs, which a fresh run refuses.
    for sub in ["data", "teacher", "student"] {
        let _ = std::fs::remove_dir_all(work.join(sub));
    }
    let data = work.join("data");
    if let Err(e) = write_data(&data) {
        checks.push(Check::from_result("selftest data", Err(e)));
        return checks;
    }
    let quiet = crate::progress::quiet();
    crate::progress::set_quiet(true);

    let teacher_dir = work.join("teacher");
    let teacher = (|| -> Result<String, String> {
        let table = parse(&format!(
            "arch = \"resnet8\"\n{}",
            common_keys(&teacher_dir, &data, spec)
        ))?;
        let config: crate::train::TrainConfig =
            crate::config::from_table(table.clone(), "train config").map_err(|e| e.to_string())?;
        let out = crate::train::train(crate::train::Start::Fresh {
            config: Box::new(config),
            table,
        })
        .map_err(|e| e.to_string())?;
        accuracy_ok("teacher", out.last.top1, out.epochs_done, 1)
    })();
    let teacher_ok = teacher.is_ok();
    checks.push(Check::from_result(
        "train a resnet8 teacher (1 epoch)",
        teacher,
    ));
    if teacher_ok {
        let resumed = crate::train::train(crate::train::Start::Resume {
            run_dir: teacher_dir.clone(),
            sets: vec!["epochs=2".into()],
        })
        .map_err(|e| e.to_string())
        .and_then(|o| accuracy_ok("resumed teacher", o.last.top1, o.epochs_done, 2));
        checks.push(Check::from_result("resume the teacher to epoch 2", resumed));
    }

    let student_dir = work.join("student");
    if teacher_ok {
        let distilled = (|| -> Result<String, String> {
            let table = parse(&format!(
                "student = \"resnet8\"\nteachers = [{{ checkpoint = {:?} }}]\n{}",
                teacher_dir.display().to_string(),
                common_keys(&student_dir, &data, spec)
            ))?;
            let config: crate::distill::DistillConfig =
                crate::config::from_table(table.clone(), "distill config")
                    .map_err(|e| e.to_string())?;
            let out = crate::distill::distill(crate::distill::DistillStart::Fresh {
                config: Box::new(config),
                table,
            })
            .map_err(|e| e.to_string())?;
            accuracy_ok("student", out.last.top1, out.epochs_done, 1)
        })();
        let distilled_ok = distilled.is_ok();
        checks.push(Check::from_result(
            "distil a resnet8 student with MEAL (1 epoch)",
            distilled,
        ));
        if distilled_ok {
            let resumed = crate::distill::distill(crate::distill::DistillStart::Resume {
                run_dir: student_dir.clone(),
                sets: vec!["epochs=2".into()],
            })
            .map_err(|e| e.to_string())
            .and_then(|o| accuracy_ok("resumed student", o.last.top1, o.epochs_done, 2));
            checks.push(Check::from_result("resume the student to epoch 2", resumed));
            checks.push(Check::from_result(
                "student checkpoint loads here and on the CPU alike",
                across_devices(&student_dir.join(crate::train::run_dir::LAST)),
            ));
        }
    }
    crate::progress::set_quiet(quiet);
    checks
}

/// Loads `checkpoint` on the selected device and on flex and compares their logits.
pub fn across_devices(checkpoint: &Path) -> Result<String, String> {
    let here = crate::backend::device();
    let cpu = Device::flex();
    let (net_here, meta, _) = model_io::load_model(checkpoint, &here).map_err(|e| e.to_string())?;
    let (net_cpu, _, _) = model_io::load_model(checkpoint, &cpu).map_err(|e| e.to_string())?;
    let [c, h, w] = meta.input_shape;
    let x = crate::backend::unseeded(|| {
        Tensor::<4>::random([4, c, h, w], Distribution::Normal(0.0, 1.0), &cpu)
    });
    let values = |t: Tensor<2>| -> Result<Vec<f64>, String> {
        let v = crate::backend::read::floats(t, "a model's logits").map_err(|e| e.to_string())?;
        Ok(v.into_iter().map(f64::from).collect())
    };
    let on_cpu = values(net_cpu.forward(x.clone()).logits)?;
    let x = crate::backend::read::data(x, "the random input").map_err(|e| e.to_string())?;
    let x_here = Tensor::<4>::from_data(x, &here);
    let on_here = values(net_here.forward(x_here).logits)?;
    if on_cpu.iter().any(|v| !v.is_finite()) {
        return Err("the CPU's logits are not finite".into());
    }
    let err = Tolerance::for_selected().compare("logits here vs CPU", &on_here, &on_cpu)?;
    Ok(format!(
        "{} logits, max abs difference {err:.2e}",
        on_cpu.len()
    ))
}
