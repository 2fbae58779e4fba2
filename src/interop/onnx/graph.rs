//! The graph builder: nodes and initializers appended in forward order, each value with its
//! shape (batch axis left out) so that every layer can check what it receives.

use std::collections::HashSet;

use super::proto::{
    ATTR_FLOAT, ATTR_INT, ATTR_INTS, AttributeProto, Dimension, FLOAT, GraphProto, INT64,
    NodeProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};
use crate::error::{Error, Result};

/// A tensor of the graph: its name and its shape without the (dynamic) batch axis, `[C, H, W]`
/// for feature maps and `[F]` for features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub name: String,
    pub dims: Vec<usize>,
}

impl Value {
    /// `[C, H, W]`, or an error naming `layer` when the value is not a feature map.
    pub fn chw(&self, layer: &str) -> Result<[usize; 3]> {
        <[usize; 3]>::try_from(self.dims.as_slice()).map_err(|_| {
            Error::Model(format!(
                "ONNX export: {layer} expects a feature map, got a value of shape {:?} (batch \
                 axis left out)",
                self.dims
            ))
        })
    }
}

/// The symbolic name of the batch axis in the graph's input and output.
pub const BATCH: &str = "batch";

#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
}

impl Graph {
    /// `base`, or `base_2`, `base_3`... when taken: every node output and initializer has a
    /// name of its own.
    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.names.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.names.insert(name.clone());
        name
    }

    /// A float32 constant; non-finite values are refused, naming the tensor.
    pub fn weight(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Result<String> {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Model(format!(
                "ONNX export: tensor {name} holds a non-finite value ({}) at index {i}",
                values[i]
            )));
        }
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.initializer(name, dims, FLOAT, raw_data))
    }

    /// An int64 constant (the shape-like inputs of Slice and Pad).
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, &[values.len()], INT64, raw_data)
    }

    fn initializer(&mut self, name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        let name = self.unique(name);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.clone(),
            raw_data: raw,
        });
        name
    }

    /// Appends one node named `name` (made unique) whose single output, of shape `dims`, is
    /// named like the node.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: Vec<String>,
        attribute: Vec<AttributeProto>,
        dims: Vec<usize>,
    ) -> Value {
        let name = self.unique(name);
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![name.clone()],
            name: name.clone(),
            op_type: op_type.to_string(),
            attribute,
        });
        Value { name, dims }
    }

    /// The graph with `input` as its input (float32, batch axis [`BATCH`]) and `output` as its
    /// only output.
    pub fn finish(mut self, name: &str, input: &Value, output: &Value) -> Result<GraphProto> {
        // The output gets a stable name of its own, for deployers that look it up.
        let output = if output.name == OUTPUT {
            output.clone()
        } else if self.names.contains(OUTPUT) {
            return Err(Error::Model(format!(
                "ONNX export: a layer is named `{OUTPUT}`, the name reserved for the output"
            )));
        } else {
            self.node(
                "Identity",
                OUTPUT,
                vec![output.name.clone()],
                vec![],
                output.dims.clone(),
            )
        };
        Ok(GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            input: vec![value_info(input)],
            output: vec![value_info(&output)],
        })
    }

    /// The graph's input value, `[batch, C, H, W]`.
    pub fn input(&mut self, dims: &[usize]) -> Value {
        Value {
            name: self.unique(INPUT),
            dims: dims.to_vec(),
        }
    }
}

/// Names of the graph's input and output.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

fn value_info(v: &Value) -> ValueInfoProto {
    let batch = Dimension {
        dim_value: None,
        dim_param: Some(BATCH.to_string()),
    };
    let rest = v.dims.iter().map(|&d| Dimension {
        dim_value: Some(d as i64),
        dim_param: None,
    });
    ValueInfoProto {
        name: v.name.clone(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: std::iter::once(batch).chain(rest).collect(),
                }),
            }),
        }),
    }
}

pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        i: Some(i),
        r#type: ATTR_INT,
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, ints: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        ints: ints.iter().map(|&i| i as i64).collect(),
        r#type: ATTR_INTS,
        ..Default::default()
    }
}

pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        f: Some(f),
        r#type: ATTR_FLOAT,
        ..Default::default()
    }
}
