//! `meal bench`: the one way meal measures its speed. Training and inference throughput of a
//! zoo model, or of a whole MEAL step, on seeded random data, with the machine it ran on, so
//! that scripts/bench/compare.sh can put it beside the PyTorch twin measured in the same run.

pub mod arch;
pub mod input;
pub mod latency;
pub mod machine;
pub mod pipeline;
pub mod timing;
pub mod workload;

use std::path::PathBuf;

use serde::Serialize;

use crate::distill::config::MealConfig;
use crate::error::{Error, Result};
pub use input::Input;
pub use latency::{LATENCY_BATCHES, Latency};
pub use pipeline::{PipelineOptions, run_pipeline};
pub use timing::Throughput;
pub use workload::{WORKLOADS, Workload};

/// What to measure.
#[derive(Debug, Clone)]
pub enum Target {
    Arch(String),
    Workload(String),
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub target: Target,
    pub batch: usize,
    pub warmup: usize,
    pub steps: usize,
    pub seed: u64,
    /// Side of the square input images; default: the model's own (the student's, for a
    /// workload).
    pub image_size: Option<usize>,
    /// `KEY=VALUE` overrides of a workload's MEAL config (`meal.` prefix optional), e.g.
    /// the discriminator fold off for a before/after.
    pub sets: Vec<String>,
}

/// One measurement, as `--json` prints it (one line).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub framework: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    pub batch: usize,
    pub image_size: usize,
    pub classes: usize,
    /// Forward multiply-accumulates per image of the model (for a workload: the student's).
    pub macs_per_image: u64,
    pub warmup: usize,
    pub steps: usize,
    pub device: String,
    pub threads: usize,
    pub cpu: Option<String>,
    pub simd: Vec<String>,
    /// Median images/s of the training step (for a workload: the whole MEAL step).
    pub train_img_per_s: f64,
    pub train: Throughput,
    /// Median images/s of the eval-mode forward (for a workload: the student's).
    pub infer_img_per_s: f64,
    pub infer: Throughput,
    /// Achieved GFLOP/s of the median steps, counted as direct convolutions would compute
    /// them: 2 flops per forward MAC, the training step three forwards' worth (the backward
    /// pass computes two products per forward one). A Winograd layer does fewer
    /// multiplications, so this can exceed the machine's peak. Absent for a workload, whose
    /// step also runs teachers and discriminators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<Gflops>,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mb: Option<f64>,
}

/// [`BenchReport::gflops`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gflops {
    pub train: f64,
    pub infer: f64,
}

impl Gflops {
    /// From the forward MACs per image and the median images/s of the two steps.
    pub fn direct_count(macs_per_image: u64, train_img_per_s: f64, infer_img_per_s: f64) -> Self {
        let per_s = |flops_per_image: f64, img_per_s: f64| flops_per_image * img_per_s / 1e9;
        let forward = 2.0 * macs_per_image as f64;
        Gflops {
            train: per_s(3.0 * forward, train_img_per_s),
            infer: per_s(forward, infer_img_per_s),
        }
    }
}

/// Times `f` as training and evaluation run it: on this thread, the pool's other workers polling
/// when it is one of them (`kernels::hot::here`).
fn polled<R>(f: impl FnOnce() -> R) -> R {
    crate::kernels::hot::here(&crate::backend::device(), f)
}

pub fn run(o: &BenchOptions) -> Result<BenchReport> {
    if o.batch == 0 {
        return Err(Error::Config("bench: --batch must be at least 1".into()));
    }
    let (input, run, arch, workload) = match &o.target {
        Target::Arch(_) if !o.sets.is_empty() => {
            return Err(Error::Config(
                "bench: --set changes a workload's MEAL config; it does not apply to --arch".into(),
            ));
        }
        Target::Arch(a) => {
            let input = Input::natural(a)?.with_size(o.image_size)?;
            let run = polled(|| arch::bench_arch(a, input, o.batch, o.warmup, o.steps, o.seed))?;
            (input, run, Some(a.clone()), None)
        }
        Target::Workload(name) => {
            let w = workload::workload(name)?;
            let config = with_sets(w.meal_config()?, &o.sets)?;
            let input = Input::natural(w.student)?.with_size(o.image_size)?;
            let run = polled(|| {
                workload::bench_workload(w, &config, input, o.batch, o.warmup, o.steps, o.seed)
            })?;
            (input, run, None, Some(name.clone()))
        }
    };
    let (train, infer) = (run.train, run.infer);
    let (cpu, simd) = match machine::cpu() {
        Some((model, simd)) => (Some(model), simd),
        None => (None, Vec::new()),
    };
    let gflops = arch
        .is_some()
        .then(|| Gflops::direct_count(run.macs_per_image, train.median, infer.median));
    Ok(BenchReport {
        framework: format!("meal {}", env!("CARGO_PKG_VERSION")),
        arch,
        workload,
        batch: o.batch,
        image_size: input.size,
        classes: input.classes,
        macs_per_image: run.macs_per_image,
        warmup: o.warmup,
        steps: o.steps,
        device: crate::backend::describe(&crate::backend::device()),
        threads: machine::threads(),
        cpu,
        simd,
        train_img_per_s: train.median,
        train,
        infer_img_per_s: infer.median,
        infer,
        gflops,
        peak_rss_mb: machine::peak_rss_mb(),
    })
}

/// What `meal bench --latency` measures: a zoo model's eval forward timed run by run.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    pub arch: String,
    pub warmup: usize,
    pub steps: usize,
    pub seed: u64,
    /// Also write the timed weights as a meal checkpoint here (for `meal export`).
    pub save_model: Option<PathBuf>,
    /// Side of the square input images (`None`: the model's own).
    pub image_size: Option<usize>,
}

/// One latency measurement, as `--latency --json` prints it (one line).
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub framework: String,
    pub arch: String,
    pub warmup: usize,
    pub steps: usize,
    /// Side of the square input images.
    pub size: usize,
    pub device: String,
    pub threads: usize,
    pub cpu: Option<String>,
    pub simd: Vec<String>,
    /// One entry per batch of [`LATENCY_BATCHES`], ms per image.
    pub latency: Vec<Latency>,
}

pub fn run_latency(o: &LatencyOptions) -> Result<LatencyReport> {
    let input = Input::natural(&o.arch)?.with_size(o.image_size)?;
    let latency = latency::bench_latency(
        &o.arch,
        input,
        o.warmup,
        o.steps,
        o.seed,
        o.save_model.as_deref(),
    )?;
    let (cpu, simd) = match machine::cpu() {
        Some((model, simd)) => (Some(model), simd),
        None => (None, Vec::new()),
    };
    Ok(LatencyReport {
        framework: format!("meal {}", env!("CARGO_PKG_VERSION")),
        arch: o.arch.clone(),
        warmup: o.warmup,
        steps: o.steps,
        size: input.size,
        device: crate::backend::describe(&crate::backend::device()),
        // The pool the kernels run on (RAYON_NUM_THREADS sets it), not the CPUs present.
        threads: rayon::current_num_threads(),
        cpu,
        simd,
        latency,
    })
}

impl LatencyReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a latency report serialises")
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} eval forward latency at {}x{}, {} timed runs per batch after {} warm-up, {} on {} thread(s)\n",
            self.arch, self.size, self.size, self.steps, self.warmup, self.device, self.threads
        );
        for l in &self.latency {
            s += &format!(
                "  batch {:<3} {:>9.3} ms/image median, {:.3} ms/image p90\n",
                l.batch, l.median_ms_per_image, l.p90_ms_per_image
            );
        }
        s += &format!(
            "  cpu {} [{}]",
            self.cpu.as_deref().unwrap_or("unknown"),
            self.simd.join(" ")
        );
        s
    }
}

fn with_sets(config: MealConfig, sets: &[String]) -> Result<MealConfig> {
    if sets.is_empty() {
        return Ok(config);
    }
    let mut table = toml::Table::try_from(&config)
        .map_err(|e| Error::Other(format!("bench: cannot tabulate the MEAL config: {e}")))?;
    for s in sets {
        crate::config::apply_set(&mut table, s.strip_prefix("meal.").unwrap_or(s))?;
    }
    crate::config::from_table(table, "bench --set (keys of [meal])")
}

impl BenchReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a bench report serialises")
    }

    /// The human-readable summary.
    pub fn to_text(&self) -> String {
        let what = match (&self.arch, &self.workload) {
            (Some(a), _) => format!("{a} (train step / eval forward)"),
            (_, Some(w)) => format!("workload {w} (MEAL step / student eval forward)"),
            _ => unreachable!("a report names its arch or workload"),
        };
        let line = |name: &str, t: &Throughput| {
            format!(
                "  {name:<6} {:>9.1} img/s median ({:.1} ms/step), min {:.1}, max {:.1}\n",
                t.median, t.median_ms, t.min, t.max
            )
        };
        let mut s = format!(
            "{what}, batch {} of {}×{} images ({} classes, {:.3} GMAC/image forward), {} timed steps after {} warm-up, {} on {} thread(s)\n",
            self.batch,
            self.image_size,
            self.image_size,
            self.classes,
            self.macs_per_image as f64 / 1e9,
            self.steps,
            self.warmup,
            self.device,
            self.threads
        );
        s += &line("train", &self.train);
        s += &line("infer", &self.infer);
        if let Some(g) = self.gflops {
            s += &format!(
                "  achieved {:.1} GFLOP/s train, {:.1} infer (direct-convolution count: 2 per \
                 MAC, training 3 forwards)\n",
                g.train, g.infer
            );
        }
        s += &match self.peak_rss_mb {
            Some(mb) => format!("  peak RSS {mb:.0} MiB\n"),
            None => "  peak RSS unknown (no /proc/self/status)\n".into(),
        };
        s += &format!(
            "  cpu {} [{}]",
            self.cpu.as_deref().unwrap_or("unknown"),
            self.simd.join(" ")
        );
        s
    }
}
