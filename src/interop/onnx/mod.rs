//! Zoo model → ONNX, for inference with ONNX Runtime, TensorRT or OpenVINO.
//!
//! A hand-written writer, not a trace: every zoo model emits its own nodes ([`ToOnnx`],
//! walking the structure of its `forward`), because meal's forward passes run through meal's
//! own kernels (src/kernels/), which a capture of burn's tensor operations would not see. The
//! messages are encoded with `prost` ([`proto`]).
//!
//! The model is the eval-mode network: BatchNorm as `BatchNormalization` on the running
//! statistics, the logits as the only output. Opset [`OPSET`], float32, a symbolic batch axis
//! (`batch`), the spatial size fixed to the checkpoint's input size, the weights embedded as
//! initializers. The graph's input is the *normalised* image; the normalisation and the
//! rest of the input settings are in the model's `metadata_props` ([`metadata`]).

pub mod graph;
pub mod layers;
pub mod models;
pub mod proto;
pub mod timm;

use prost::Message;

pub use graph::{BATCH, INPUT, OUTPUT};
pub use layers::ToOnnx;

use crate::error::{Error, Result};
use crate::models::Net;
use crate::train::model_io::ModelMeta;
use proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

/// The default-domain operator set the graph is written against: opset 17 (ONNX 1.12) is
/// read by every current runtime, TensorRT 8.5+ and OpenVINO included.
pub const OPSET: i64 = 17;

/// The IR version that goes with [`OPSET`] (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// The metadata written beside the graph: what a deployer needs to feed it.
pub fn metadata(meta: &ModelMeta) -> Vec<(String, String)> {
    let join = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        ("arch".into(), meta.arch.clone()),
        ("num_classes".into(), meta.num_classes.to_string()),
        (
            "input_shape".into(),
            meta.input_shape
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("input_layout".into(), "NCHW, RGB".into()),
        ("mean".into(), join(&meta.normalization.mean)),
        ("std".into(), join(&meta.normalization.std)),
        (
            "normalization".into(),
            "input = (pixel / 255 - mean) / std, per channel".into(),
        ),
        ("class_names".into(), meta.class_names.join(",")),
    ]
}

/// The ONNX model of `net` (described by `meta`).
pub fn model(net: &Net, meta: &ModelMeta) -> Result<ModelProto> {
    let mut g = graph::Graph::default();
    let input = g.input(&meta.input_shape);
    let logits = net
        .to_onnx(&mut g, "", input.clone())
        .map_err(|e| in_arch(e, &meta.arch))?;
    if logits.dims != [meta.num_classes] {
        return Err(Error::Model(format!(
            "ONNX export: {} gives logits of shape {:?}, its header says {} classes",
            meta.arch, logits.dims, meta.num_classes
        )));
    }
    let graph = g.finish(&meta.arch, &input, &logits)?;
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "meal".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} ({} classes), eval mode; input: normalised NCHW images, see metadata",
            meta.arch, meta.num_classes
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata(meta)
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    })
}

/// An encoded `.onnx` file.
#[derive(Debug, Clone)]
pub struct OnnxFile {
    pub bytes: Vec<u8>,
    /// Constant tensors embedded in the graph (weights, BatchNorm buffers, shape operands).
    pub initializers: usize,
}

/// The `.onnx` file of `net` (described by `meta`).
pub fn encode(net: &Net, meta: &ModelMeta) -> Result<OnnxFile> {
    let model = model(net, meta)?;
    // protobuf's own limit: larger files need external data, which no zoo model comes near.
    let len = model.encoded_len();
    if len > i32::MAX as usize {
        return Err(Error::Model(format!(
            "ONNX export: {} would be {len} bytes, over protobuf's 2 GiB limit",
            meta.arch
        )));
    }
    let initializers = model.graph.as_ref().map_or(0, |g| g.initializer.len());
    Ok(OnnxFile {
        bytes: model.encode_to_vec(),
        initializers,
    })
}

/// Names the architecture in a writer error.
fn in_arch(e: Error, arch: &str) -> Error {
    match e {
        Error::Model(m) => Error::Model(match m.strip_prefix("ONNX export: ") {
            Some(rest) => format!("ONNX export of {arch}: {rest}"),
            None => m,
        }),
        e => e,
    }
}
