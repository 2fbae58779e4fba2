use burn::tensor::Tensor;

/// What every zoo model returns: the feature maps MEAL can match (in network order) and the
/// logits. MEAL's "output list" is `stages` followed by `logits` (spec §1.4), so output index
/// `stages.len()` (or `-1`) is the logits.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub stages: Vec<Tensor<4>>,
    pub logits: Tensor<2>,
}

impl ModelOutput {
    /// Number of entries in the MEAL output list (stages + logits).
    pub fn len(&self) -> usize {
        self.stages.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}
