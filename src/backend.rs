//! Device selection. burn 0.22 dispatches at run time: the default build compiles burn-flex
//! (pure-Rust CPU); the `cuda` feature adds burn-cuda, the `wgpu` feature burn's wgpu runtime
//! (Vulkan, Metal or DirectX 12, whichever the machine has).
//!
//! The device is chosen once per process: `--device` (any command that computes) wins over a
//! config's `device` key, which wins over the `BURN_DEVICE` environment variable; `auto` takes
//! CUDA device 0 when the build has CUDA and the machine a working one, else flex (never wgpu:
//! it is named, as a software adapter must not be taken for a GPU). Everything
//! then asks [`device`] for it, so no function signature carries a device.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, RwLock};

use burn::tensor::Device;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod limits;
mod random;
pub mod read;
pub use random::{drawn, seeded, unseeded};

/// A device as the user names it: `auto`, `flex`, `cuda` (= `cuda:0`), `cuda:N`, `wgpu` (the
/// adapter wgpu prefers) or `wgpu:N` (the N-th adapter wgpu lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Auto,
    Flex,
    Cuda(usize),
    /// `None`: wgpu's preferred adapter.
    Wgpu(Option<usize>),
}

impl DeviceSpec {
    /// Whether the device runs on a cubecl runtime (CUDA, wgpu), whose buffers have a size
    /// limit ([`limits`]).
    pub fn is_cube(&self) -> bool {
        matches!(self, Self::Cuda(_) | Self::Wgpu(_))
    }
}

const NAMES: &str = "auto, flex, cuda, cuda:N, wgpu, wgpu:N (N = GPU index)";

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "auto" => Ok(Self::Auto),
            "flex" => Ok(Self::Flex),
            "cuda" => Ok(Self::Cuda(0)),
            "wgpu" => Ok(Self::Wgpu(None)),
            other => {
                let Some((runtime, index)) = other.split_once(':') else {
                    return Err(format!("unknown device {s:?}: expected one of {NAMES}"));
                };
                let make: fn(usize) -> Self = match runtime {
                    "cuda" => Self::Cuda,
                    "wgpu" => |i| Self::Wgpu(Some(i)),
                    _ => return Err(format!("unknown device {s:?}: expected one of {NAMES}")),
                };
                index.parse::<usize>().map(make).map_err(|_| {
                    format!(
                        "unknown device {s:?}: the GPU index after `{runtime}:` must be a number \
                         ({NAMES})"
                    )
                })
            }
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> String {
        spec.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Flex => f.write_str("flex"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Wgpu(None) => f.write_str("wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
        }
    }
}

/// Whether this binary was built with the CUDA backend.
pub const HAS_CUDA: bool = cfg!(feature = "cuda");
/// Whether this binary was built with burn's wgpu backend.
pub const HAS_WGPU: bool = cfg!(feature = "wgpu");

struct Selected {
    spec: DeviceSpec,
    device: Device,
    name: String,
}

/// The device of this process once chosen; `--device` as given on the command line.
static SELECTED: RwLock<Option<Selected>> = RwLock::new(None);
static REQUESTED: Mutex<Option<DeviceSpec>> = Mutex::new(None);

/// Records `--device`; it then overrides any config's `device` key in [`select`].
pub fn request(spec: Option<DeviceSpec>) {
    *REQUESTED.lock().unwrap_or_else(|e| e.into_inner()) = spec;
}

/// The `--device` flag of this process, if one was given.
pub fn requested() -> Option<DeviceSpec> {
    *REQUESTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Chooses, checks and remembers the device of this process: the `--device` flag if given,
/// else `configured` (a config's `device` key), resolving `auto`. Returns the device's name.
pub fn select(configured: DeviceSpec) -> Result<String> {
    let spec = resolve(requested().unwrap_or(configured))?;
    if let Some(s) = SELECTED.read().unwrap_or_else(|e| e.into_inner()).as_ref()
        && s.spec == spec
    {
        return Ok(s.name.clone());
    }
    let (device, name) = open(spec)?;
    tracing::info!("device: {name}");
    *SELECTED.write().unwrap_or_else(|e| e.into_inner()) = Some(Selected { spec, device, name });
    Ok(describe_selected())
}

/// Resolves `auto`: `BURN_DEVICE` if set, else CUDA device 0 when this build has CUDA and the
/// machine has a CUDA device, else flex.
pub fn resolve(spec: DeviceSpec) -> Result<DeviceSpec> {
    if spec != DeviceSpec::Auto {
        return Ok(spec);
    }
    if let Ok(env) = std::env::var("BURN_DEVICE") {
        let parsed = env
            .parse::<DeviceSpec>()
            .map_err(|e| Error::Config(format!("environment variable BURN_DEVICE: {e}")))?;
        if parsed != DeviceSpec::Auto {
            return Ok(parsed);
        }
    }
    Ok(if cuda_device_count() > 0 {
        DeviceSpec::Cuda(0)
    } else {
        DeviceSpec::Flex
    })
}

/// Opens `spec` (not `auto`) and runs a tiny computation on it, so that a missing driver or
/// runtime library is reported here, as an error, rather than as a panic deep in a run.
pub fn open(spec: DeviceSpec) -> Result<(Device, String)> {
    match spec {
        DeviceSpec::Auto => open(resolve(spec)?),
        DeviceSpec::Flex => Ok((Device::flex(), "flex".to_string())),
        DeviceSpec::Cuda(index) => open_cuda(index),
        DeviceSpec::Wgpu(index) => open_wgpu(index),
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(index: usize) -> Result<(Device, String)> {
    Err(Error::Other(format!(
        "device cuda:{index}: this meal was built without CUDA; build it with \
         `scripts/setup-gpu-build.sh && cargo build --release --features cuda` (see README), \
         or use --device flex"
    )))
}

#[cfg(feature = "cuda")]
fn open_cuda(index: usize) -> Result<(Device, String)> {
    let count = cuda_device_count();
    if count == 0 {
        return Err(Error::Other(format!(
            "device cuda:{index}: no CUDA device found (the NVIDIA driver library libcuda.so \
             could not be loaded, or it lists no GPU); use --device flex"
        )));
    }
    if index >= count {
        return Err(Error::Other(format!(
            "device cuda:{index} does not exist: this machine has {count} CUDA device(s), \
             cuda:0..cuda:{}",
            count - 1
        )));
    }
    let device = Device::cuda(index);
    let spec = DeviceSpec::Cuda(index);
    let name = probe(
        &spec,
        &device,
        "is the CUDA runtime's libnvrtc on LD_LIBRARY_PATH?",
    )?;
    Ok((device, format!("{spec} ({name})")))
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu(index: Option<usize>) -> Result<(Device, String)> {
    let spec = DeviceSpec::Wgpu(index);
    Err(Error::Other(format!(
        "device {spec}: this meal was built without wgpu; build it with \
         `cargo build --release --features wgpu` (see README), or use --device flex"
    )))
}

#[cfg(feature = "wgpu")]
fn open_wgpu(index: Option<usize>) -> Result<(Device, String)> {
    use burn::tensor::{DeviceKind, DeviceType};
    let spec = DeviceSpec::Wgpu(index);
    // Listing the adapters opens no device; wgpu's instance creation does not panic.
    let adapters = quietly(|| Device::enumerate(DeviceType::Wgpu).to_vec())
        .map_err(|m| Error::Other(format!("device {spec}: wgpu could not list adapters: {m}")))?;
    let device = match index {
        None => Device::wgpu(DeviceKind::DefaultDevice),
        Some(i) => adapters.get(i).cloned().ok_or_else(|| {
            Error::Other(format!(
                "device {spec} does not exist: wgpu lists {} adapter(s){}",
                adapters.len(),
                if adapters.is_empty() {
                    " (no Vulkan, Metal or DirectX 12 driver found; on Linux without a GPU, \
                     Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`)"
                        .to_string()
                } else {
                    format!(", wgpu:0..wgpu:{}", adapters.len() - 1)
                }
            ))
        })?,
    };
    let name = probe(
        &spec,
        &device,
        "is a Vulkan, Metal or DirectX 12 driver installed?",
    )?;
    Ok((device, format!("{spec} ({name})")))
}

/// Mesa's Vulkan drivers (lavapipe among them) print an error on every start when
/// `XDG_RUNTIME_DIR` is unset, as it is in containers and CI; this points it at a private
/// folder under the system's temporary directory then.
///
/// # Safety
///
/// It writes the process environment: call it before any other thread runs (the binary does
/// so first thing in `main`; a test harness before its tests start threads of their own).
pub unsafe fn ensure_runtime_dir() {
    if cfg!(not(all(feature = "wgpu", target_os = "linux")))
        || std::env::var_os("XDG_RUNTIME_DIR").is_some()
    {
        return;
    }
    // One folder for every run, not one per process: nothing would remove them.
    let dir = std::env::temp_dir().join("meal-xdg-runtime");
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let made = builder.create(&dir);
    let usable = made.is_ok() || std::fs::metadata(&dir).is_ok_and(|m| m.is_dir());
    if usable {
        // SAFETY: the caller guarantees no other thread reads the environment meanwhile.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

/// cubecl's wgpu runtime turns a wgpu validation error (a buffer bound past the adapter's
/// limit, say) into a panic on its device thread, catches it there and fails the next read,
/// which meal reports as its own error; the default hook would still print that caught panic
/// with a backtrace, as if meal had crashed. This prints each such wgpu error once, on one
/// line, and leaves every other panic to the hook installed before.
pub fn note_runtime_errors() {
    if cfg!(not(feature = "wgpu")) {
        return;
    }
    let previous = std::panic::take_hook();
    let seen = Mutex::new(std::collections::HashSet::new());
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        match message {
            Some(m) if m.starts_with("wgpu error: ") => {
                let line = read::one_line(m);
                if seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(line.clone())
                {
                    eprintln!("note: {line}");
                }
            }
            _ => previous(info),
        }
    }));
}

/// Runs a first kernel on `device` and returns its name: runtimes panic (instead of erroring)
/// when a driver or compiler library is missing, and this turns that into an error naming the
/// device.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn probe(spec: &DeviceSpec, device: &Device, hint: &str) -> Result<String> {
    let probe = device.clone();
    let outcome = quietly(move || {
        let name = probe
            .identity()
            .map(|id| id.name)
            .unwrap_or_else(|| "unknown GPU".into());
        let sum = Tensor::<1>::from_floats([1.0f32, 2.0, 3.0], &probe)
            .mul_scalar(2.0)
            .sum()
            .try_into_scalar::<f32>();
        (name, sum)
    });
    match outcome {
        Ok((name, Ok(12.0))) => Ok(name),
        Ok((_, Ok(sum))) => Err(Error::Other(format!(
            "device {spec}: a test computation returned {sum} instead of 12"
        ))),
        Ok((_, Err(e))) => Err(Error::Other(format!(
            "device {spec} could not run a kernel: {e} ({hint})"
        ))),
        Err(message) => Err(Error::Other(format!(
            "device {spec} could not run a kernel: {message} ({hint})"
        ))),
    }
}

/// Runs `f`, turning a panic into its message without printing the panic.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    out.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// CUDA devices this process can use (0 without the `cuda` feature or without a driver; the
/// enumeration checks for libcuda before asking it).
pub fn cuda_device_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        Device::enumerate(burn::tensor::DeviceType::Cuda).len()
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// The device every command computes on: the selected one, or burn's default for library
/// callers that never selected.
pub fn device() -> Device {
    match SELECTED.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(s) => s.device.clone(),
        None => Device::default(),
    }
}

/// The resolved choice behind [`device`], once one was selected.
pub fn selected_spec() -> Option<DeviceSpec> {
    SELECTED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|s| s.spec)
}

/// The autodiff twin of [`device`], used for training.
pub fn autodiff_device() -> Device {
    device().autodiff()
}

/// The selected device's name for logs, `run.txt` and reports (`flex`, `cuda:0 (NVIDIA H200)`).
pub fn describe_selected() -> String {
    match SELECTED.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(s) => s.name.clone(),
        None => describe(&Device::default()),
    }
}

/// A short description of any device.
pub fn describe(device: &Device) -> String {
    let selected = SELECTED.read().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = selected.as_ref()
        && s.device == *device
    {
        return s.name.clone();
    }
    format!("{device:?}")
}
