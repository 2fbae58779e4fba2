//! The check before a command computes on a GPU runtime that no tensor known up front (a
//! parameter of the student, a teacher or a discriminator) is larger than the device holds in
//! one buffer. Past that limit the runtime does not fail where the tensor is made: wgpu rejects
//! the kernels that bind it, cubecl skips them, and the failure surfaces at a later read, far
//! from its cause. This check names the parameter instead, before anything is allocated.
//!
//! The limit is cubecl's largest page on the device (`DeviceProperties::memory.max_page_size`,
//! the most cubecl's allocator hands out in one buffer): on wgpu the smaller of the adapter's
//! `max_storage_buffer_binding_size` and `max_buffer_size` (lavapipe binds 128 MiB; discrete
//! GPUs under Vulkan up to 4 GiB), on CUDA a quarter of the device's memory. flex has none.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};

/// The largest buffer one tensor may occupy on `device`, `None` on a device without such a
/// limit (flex).
pub fn max_buffer_bytes(device: &Device) -> Option<u64> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        use burn::backend::DispatchDevice;
        let plain = device.clone().without_autodiff();
        match plain.as_dispatch() {
            DispatchDevice::Cube(cube) => Some(cube.client().properties().memory.max_page_size),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    {
        let _ = device;
        None
    }
}

/// One float parameter: its module path, shape and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSize {
    pub path: String,
    pub shape: Vec<usize>,
    pub bytes: u64,
}

/// Every float parameter of `module`, its path under `prefix`, without initialising any (a lazy
/// parameter is sized from its shape as `f32`, every device's default float).
pub fn param_sizes<M: Module>(prefix: &str, module: &M) -> Vec<ParamSize> {
    #[derive(Default)]
    struct Sizes {
        path: Vec<String>,
        found: Vec<ParamSize>,
    }
    impl ModuleVisitor for Sizes {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.lazy_shape().to_vec();
            let width = if param.is_initialized() {
                param.val().dtype().size()
            } else {
                std::mem::size_of::<f32>()
            };
            let elements: usize = shape.iter().product();
            self.found.push(ParamSize {
                path: self.path.join("."),
                shape,
                bytes: (elements * width) as u64,
            });
        }
    }
    let mut v = Sizes {
        path: vec![prefix.to_string()],
        ..Sizes::default()
    };
    module.visit(&mut v);
    v.found
}

/// What to change when a parameter of a group does not fit: given the parameter and the limit.
type Advice = Box<dyn Fn(&ParamSize, u64) -> String>;

/// The parameters a command is about to allocate, in groups that each know what to change.
#[derive(Default)]
pub struct Preflight {
    params: Vec<(ParamSize, usize)>,
    advice: Vec<Advice>,
}

impl Preflight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `params` with the `advice` for any of them that does not fit.
    pub fn add(
        &mut self,
        params: Vec<ParamSize>,
        advice: impl Fn(&ParamSize, u64) -> String + 'static,
    ) {
        let group = self.advice.len();
        self.advice.push(Box::new(advice));
        self.params.extend(params.into_iter().map(|p| (p, group)));
    }

    /// Adds the parameters of the model `arch` would build with `classes` classes, under
    /// `prefix`, without initialising any of them.
    pub fn arch(&mut self, prefix: &str, arch: &str, classes: usize) -> Result<()> {
        let build = crate::models::arch_info(arch)?.build;
        // flex: the shapes cost no device memory, and a lazy parameter is never drawn.
        let net = super::unseeded(|| build(&Device::flex(), classes.max(1)));
        let arch = arch.to_string();
        self.add(param_sizes(prefix, &net), move |_, _| {
            format!(
                "{arch} cannot run on this device as it is; use a device with a larger limit \
                 (discrete GPUs under Vulkan bind up to 4 GiB) or --device flex"
            )
        });
        Ok(())
    }

    /// Fails when a parameter is larger than the selected device holds in one buffer; nothing
    /// to check on a device without such a limit.
    pub fn check(&self) -> Result<()> {
        if !super::selected_spec().is_some_and(|s| s.is_cube()) {
            return Ok(());
        }
        self.check_against(max_buffer_bytes(&super::device()))
    }

    /// [`check`](Self::check) against `limit` bytes (`None`: no limit).
    pub fn check_against(&self, limit: Option<u64>) -> Result<()> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let mut over: Vec<&(ParamSize, usize)> = self
            .params
            .iter()
            .filter(|(p, _)| p.bytes > limit)
            .collect();
        over.sort_by_key(|(p, _)| std::cmp::Reverse(p.bytes));
        let Some((worst, group)) = over.first() else {
            return Ok(());
        };
        let others = match over.len() - 1 {
            0 => String::new(),
            1 => " (and 1 other parameter)".into(),
            n => format!(" (and {n} other parameters)"),
        };
        Err(Error::device(format!(
            "{} ({} f32, {} bytes) is larger than the {} bytes ({}) this device holds in one \
             buffer{others}, so its kernels would not run; {}",
            worst.path,
            worst
                .shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("×"),
            thousands(worst.bytes),
            thousands(limit),
            binary(limit),
            (self.advice[*group])(worst, limit)
        )))
    }
}

/// `200000000` as `200,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size in the largest binary unit it fills (`128 MiB`, `4 GiB`, `1.5 GiB`).
fn binary(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_without_initialising() {
        let device = Device::flex();
        let layer = burn::nn::LinearConfig::new(6, 4).init(&device);
        let sizes = param_sizes("d", &layer);
        assert_eq!(
            sizes,
            vec![
                ParamSize {
                    path: "d.weight".into(),
                    shape: vec![6, 4],
                    bytes: 96
                },
                ParamSize {
                    path: "d.bias".into(),
                    shape: vec![4],
                    bytes: 16
                },
            ]
        );
        assert!(!layer.weight.is_initialized());
    }

    #[test]
    fn the_largest_parameter_over_the_limit_is_named_with_its_size_and_the_limit() {
        let p = |path: &str, shape: Vec<usize>| ParamSize {
            bytes: 4 * shape.iter().product::<usize>() as u64,
            path: path.into(),
            shape,
        };
        let mut check = Preflight::new();
        check.add(vec![p("student.fc.weight", vec![512, 10])], |_, _| {
            "student advice".into()
        });
        check.add(
            vec![
                p("discriminators.list.0.layers.0.weight", vec![10000, 5000]),
                p("discriminators.list.1.layers.0.weight", vec![5000, 2500]),
            ],
            |p, limit| format!("shrink {} under {limit}", p.path),
        );
        assert!(check.check_against(None).is_ok());
        assert!(check.check_against(Some(200_000_000)).is_ok());
        let e = check.check_against(Some(134_217_728)).unwrap_err();
        assert!(matches!(e, Error::Device { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(
                "discriminators.list.0.layers.0.weight (10000×5000 f32, 200,000,000 bytes) is \
                 larger than the 134,217,728 bytes (128 MiB) this device holds in one buffer, \
                 so its kernels would not run; shrink discriminators.list.0.layers.0.weight \
                 under 134217728"
            ),
            "{text}"
        );
        let e = check
            .check_against(Some(40_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("(and 1 other parameter)"), "{e}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(thousands(134217728), "134,217,728");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(binary(134217728), "128 MiB");
        assert_eq!(binary(4 << 30), "4 GiB");
        assert_eq!(binary(3 << 29), "1.5 GiB");
        assert_eq!(binary(100), "100 bytes");
    }
}
