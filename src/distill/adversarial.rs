//! The adversarial loss of MEAL (spec §1.7): BCE-with-logits of a discriminator on student rows
//! followed by teacher rows.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::Result;

/// `BCEWithLogitsLoss(reduction = mean)`: `max(z,0) − z·y + log1p(exp(−|z|))` averaged over all
/// elements.
///
/// The two non-smooth pieces (`max(z,0)` and `|z|`) are written with one shared mask
/// `z ≥ 0`, so that their kinks cancel and the gradient is `sigmoid(z) − y` everywhere,
/// `z = 0` included (an independent `relu` and `abs` would give `−y` there; with the reference
/// discriminator's final ReLU, `z = 0` is common).
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let negative = logits.clone().lower_elem(0.0);
    let non_negative = negative.clone().bool_not();
    // −|z|: −z where z ≥ 0, z elsewhere.
    let minus_abs = logits
        .clone()
        .mask_where(non_negative, logits.clone().neg());
    // max(z, 0)
    let positive_part = logits.clone().mask_fill(negative, 0.0);
    positive_part
        .sub(logits.mul(targets))
        .add(minus_abs.exp().log1p())
        .mean()
}

/// Targets for a discriminator batch of `batch` student rows followed by `batch` teacher rows:
/// student rows `[1, 0]`, teacher rows `[0, 1]` (spec §1.7).
pub fn discriminator_targets(batch: usize, device: &Device) -> Tensor<2> {
    let mut values = Vec::with_capacity(4 * batch);
    for _ in 0..batch {
        values.extend_from_slice(&[1.0f32, 0.0]);
    }
    for _ in 0..batch {
        values.extend_from_slice(&[0.0f32, 1.0]);
    }
    Tensor::from_data(TensorData::new(values, [2 * batch, 2]), device)
}

/// Accuracy of a discriminator on its `2·batch` rows: `(accuracy on the student rows, accuracy
/// on the teacher rows)`. A row is correct when its argmax matches its target's (student → 0,
/// teacher → 1); a tie counts as index 0, like `torch.max`.
pub fn discriminator_accuracy(logits: Tensor<2>, batch: usize) -> Result<(f64, f64)> {
    let [rows, cols] = logits.dims();
    assert_eq!(
        rows,
        2 * batch,
        "discriminator_accuracy: expected {} rows, got {rows}",
        2 * batch
    );
    assert_eq!(
        cols, 2,
        "discriminator_accuracy: expected 2 columns, got {cols}"
    );
    if batch == 0 {
        return Ok((0.0, 0.0));
    }
    let values = crate::backend::read::floats(logits, "a discriminator's outputs")?;
    Ok(accuracy_of_rows(&values, batch))
}

/// [`discriminator_accuracy`] on outputs already on the host (`2·batch` rows of 2).
pub fn accuracy_of_rows(values: &[f32], batch: usize) -> (f64, f64) {
    if batch == 0 {
        return (0.0, 0.0);
    }
    let predicted = |row: usize| usize::from(values[2 * row + 1] > values[2 * row]);
    let student = (0..batch).filter(|&r| predicted(r) == 0).count();
    let teacher = (batch..2 * batch).filter(|&r| predicted(r) == 1).count();
    (student as f64 / batch as f64, teacher as f64 / batch as f64)
}
