//! Device→host reads that fail as meal's errors. burn's `into_data` and `into_scalar` panic when
//! the device reports a failure, and a GPU runtime reports a computation it could not run (a
//! buffer over the adapter's binding limit, memory exhausted, a lost device) only at the next
//! read, whichever read that is. Every read of the program therefore goes through here, naming
//! what it was reading.

use std::fmt::Display;

use burn::tensor::kind::Basic;
use burn::tensor::{Element, Tensor, TensorData};

use crate::error::{Error, Result};

/// What the user can do about a failed computation, whatever it was.
const ADVICE: &str = "a computation queued on the device failed (a tensor larger than the device \
                      can bind in one buffer, memory exhausted, or a lost device); try smaller \
                      sizes (batch, image size, model or discriminator widths) or another \
                      device (--device flex runs on the CPU)";

/// The error of a failed read of `what` (`the step's losses`, `a model's logits`).
pub fn read_failed(what: &str, reason: impl Display) -> Error {
    Error::device(format!(
        "reading {what} back failed: {}; {ADVICE}",
        one_line(&reason.to_string())
    ))
}

/// burn's execution errors span lines ("An error happened during execution\nCaused by:\n  …")
/// and, after many failed kernels, thousands of characters; the CLI prints one line per error.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 600;
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "No backtrace available" && *l != "Asked at:")
        .collect::<Vec<_>>()
        .join(" ");
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{} …", &line[..cut]),
        None => line,
    }
}

/// `t` copied to the host.
pub fn data<const D: usize, K: Basic>(t: Tensor<D, K>, what: &str) -> Result<TensorData> {
    t.try_into_data().map_err(|e| read_failed(what, e))
}

/// `t` copied to the host as `f32` values, row-major.
pub fn floats<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>().map_err(|e| read_failed(what, e))
}

/// The one value of `t`.
pub fn scalar<E: Element, const D: usize, K: Basic>(t: Tensor<D, K>, what: &str) -> Result<E> {
    t.try_into_scalar::<E>().map_err(|e| read_failed(what, e))
}

/// Waits for everything queued on `device` and reports any computation that failed: for the
/// reads that burn makes itself and cannot fail (a module's record when a checkpoint is
/// serialised), so that a failure is an error before anything is written.
pub fn sync(device: &burn::tensor::Device, what: &str) -> Result<()> {
    device.sync().map_err(|e| read_failed(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_is_one_line_naming_what_and_what_to_do() {
        let e = read_failed(
            "the step's losses",
            "An error happened during execution\nCaused by:\n  Buffer binding 0 range 200000000 \
             exceeds limit 134217728",
        );
        let text = e.to_string();
        assert!(matches!(e, Error::Device { .. }), "{e:?}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.contains(
                "reading the step's losses back failed: An error happened during execution \
                 Caused by: Buffer binding 0 range 200000000 exceeds limit 134217728; "
            ),
            "{text}"
        );
        assert!(text.contains("--device flex"), "{text}");
    }

    #[test]
    fn a_long_reason_is_cut() {
        let reason = format!(
            "Caused by:\n{}\nNo backtrace available\nAsked at:\n",
            "x".repeat(2000)
        );
        let line = one_line(&reason);
        assert!(
            line.starts_with("Caused by: xxx") && line.ends_with(" …"),
            "{line}"
        );
        assert!(line.chars().count() < 700, "{}", line.len());
        assert_eq!(one_line("a\n  b\nNo backtrace available"), "a b");
    }

    #[test]
    fn reads_return_the_values() {
        let device = burn::tensor::Device::flex();
        let t = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        assert_eq!(floats(t.clone(), "t").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(scalar::<f32, 1, _>(t.clone().sum(), "sum").unwrap(), 10.0);
        assert!(scalar::<bool, 1, _>(t.clone().is_finite().all(), "finite").unwrap());
        assert_eq!(data(t, "t").unwrap().shape().to_vec(), vec![2, 2]);
    }
}
