//! `meal selftest`: the numerical checks against PyTorch (the committed golden values, compiled
//! into the binary) and a tiny train → resume → distill → resume round, on the selected
//! device. A new GPU, driver or build proves itself here before it is trusted with a run.
//! The integration tests call the same checks, on the device `MEAL_TEST_DEVICE` names.

pub mod fill;
pub mod golden;
pub mod losses;
pub mod models;
pub mod round;
pub mod tolerance;

pub use tolerance::{ElementTolerance, Tolerance};

use burn::tensor::Device;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// The largest error and its bound on success; what differed on failure.
    pub detail: String,
}

impl Check {
    pub fn from_result(name: impl Into<String>, result: Result<String, String>) -> Self {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Self {
            name: name.into(),
            passed,
            detail,
        }
    }
}

/// The device of the integration tests: `MEAL_TEST_DEVICE` (`flex` when unset), selected for
/// the whole test process. Panics with the reason when it cannot be opened, since a test
/// cannot run without it.
pub fn test_device() -> Device {
    let spec = match std::env::var("MEAL_TEST_DEVICE") {
        Ok(s) => s
            .parse::<crate::backend::DeviceSpec>()
            .unwrap_or_else(|e| panic!("MEAL_TEST_DEVICE: {e}")),
        Err(_) => crate::backend::DeviceSpec::Flex,
    };
    crate::backend::select(spec).unwrap_or_else(|e| panic!("MEAL_TEST_DEVICE={spec}: {e}"));
    crate::backend::device()
}

/// The `device = "..."` value that puts a test's run on the test device.
pub fn test_device_name() -> String {
    std::env::var("MEAL_TEST_DEVICE").unwrap_or_else(|_| "flex".into())
}

/// The golden comparisons on `device` (plain, not autodiff), with `tol`: the models `archs`
/// (from [`models::select`]) and the loss checks.
pub fn golden_checks(device: &Device, tol: &Tolerance, archs: &[&str]) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(models::zoo(device, tol, archs));
    let ad = device.clone().autodiff();
    checks.push(Check::from_result(
        "similarity losses and gradients vs PyTorch",
        losses::similarity(&ad, tol),
    ));
    checks.push(Check::from_result(
        "BCE-with-logits and gradient vs PyTorch",
        losses::bce(&ad, tol),
    ));
    checks.push(Check::from_result(
        "gradient reversal vs PyTorch",
        losses::gradient_reversal(&ad, tol),
    ));
    checks
}
