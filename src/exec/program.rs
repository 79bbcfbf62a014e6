//! The executable program: values (by index), nodes over those values, constants, graph
//! inputs and outputs. It is independent of the compiler's IR; the IR lowers into it with the
//! builder methods, and tests build one straight from an ONNX `GraphProto`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::proto::{AttributeProto, GraphProto, ModelProto};

use super::tensor::Tensor;

/// A named value (tensor) of the program.
#[derive(Debug, Clone)]
pub struct ValueInfo {
    /// The ONNX name, unique within the program.
    pub name: String,
}

/// One operator application.
#[derive(Debug, Clone, Default)]
pub struct ExecNode {
    /// Node name, for error messages (may be empty).
    pub name: String,
    /// ONNX op type, e.g. `Conv`.
    pub op_type: String,
    /// Operator domain: `""` or `"ai.onnx"` for the default domain.
    pub domain: String,
    /// Input values; `None` for an omitted optional input.
    pub inputs: Vec<Option<usize>>,
    /// Output values; `None` for an omitted optional output.
    pub outputs: Vec<Option<usize>>,
    /// The node's attributes, as in ONNX.
    pub attrs: Vec<AttributeProto>,
}

impl ExecNode {
    /// `node 'name' (OpType)`, for error contexts.
    pub fn describe(&self) -> String {
        format!("node '{}' ({})", self.name, self.op_type)
    }
}

/// An executable program. Build it with [`Program::new`] and the `add_*` methods, or with
/// [`Program::from_graph`] / [`Program::from_model`]; then hand it to
/// [`Session::new`](super::Session::new).
#[derive(Debug, Clone)]
pub struct Program {
    /// All values, indexed by value id.
    pub values: Vec<ValueInfo>,
    /// All nodes, in any order (the session sorts them).
    pub nodes: Vec<ExecNode>,
    /// Values known before the run (initializers, folded constants).
    pub constants: Vec<(usize, Tensor)>,
    /// Graph inputs fed by the caller.
    pub inputs: Vec<usize>,
    /// Graph outputs.
    pub outputs: Vec<usize>,
    /// Version of the default ONNX opset (`""` / `ai.onnx`), which decides op semantics
    /// where they changed between versions (e.g. Softmax before 13).
    pub opset: i64,
    by_name: HashMap<String, usize>,
}

impl Program {
    /// An empty program for the given default-domain opset version.
    pub fn new(opset: i64) -> Program {
        Program {
            values: Vec::new(),
            nodes: Vec::new(),
            constants: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            opset,
            by_name: HashMap::new(),
        }
    }

    /// Adds a value named `name` and returns its id; if a value of that name exists already,
    /// returns the existing id.
    pub fn add_value(&mut self, name: impl Into<String>) -> usize {
        let name = name.into();
        if let Some(&id) = self.by_name.get(&name) {
            return id;
        }
        let id = self.values.len();
        self.by_name.insert(name.clone(), id);
        self.values.push(ValueInfo { name });
        id
    }

    /// The id of the value named `name`.
    pub fn value_id(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Makes `value` a constant with the given contents.
    pub fn add_constant(&mut self, value: usize, tensor: Tensor) {
        self.constants.push((value, tensor));
    }

    /// Declares `value` a graph input.
    pub fn add_input(&mut self, value: usize) {
        self.inputs.push(value);
    }

    /// Declares `value` a graph output.
    pub fn add_output(&mut self, value: usize) {
        self.outputs.push(value);
    }

    /// Adds a node and returns its index.
    pub fn add_node(&mut self, node: ExecNode) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Builds a program from an ONNX model, reading the default-domain opset from
    /// `opset_import`.
    pub fn from_model(model: &ModelProto) -> Result<Program> {
        let opset = model
            .opset_import
            .iter()
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .map(|o| o.version())
            .unwrap_or(21);
        let graph = model.graph.as_ref().ok_or_else(|| Error::user("model has no graph"))?;
        Program::from_graph(graph, opset)
    }

    /// Builds a program from an ONNX graph: initializers and `Constant` nodes become
    /// constants; graph inputs that are not initializers become inputs.
    pub fn from_graph(graph: &GraphProto, opset: i64) -> Result<Program> {
        let mut p = Program::new(opset);
        for init in &graph.initializer {
            let name = init.name.clone().unwrap_or_default();
            let t = Tensor::from_proto(init)?;
            let v = p.add_value(name);
            p.add_constant(v, t);
        }
        let inits: std::collections::HashSet<&str> =
            graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
        for inp in &graph.input {
            let name = inp.name.as_deref().unwrap_or("");
            if !inits.contains(name) {
                let v = p.add_value(name);
                p.add_input(v);
            }
        }
        for n in &graph.node {
            let op_type = n.op_type.clone().unwrap_or_default();
            let domain = n.domain.clone().unwrap_or_default();
            let name = n.name.clone().unwrap_or_default();
            if op_type == "Constant" && (domain.is_empty() || domain == "ai.onnx") && n.output.len() == 1 {
                let t = constant_attr_value(&n.attribute)
                    .map_err(|e| e.context(format!("node '{name}' (Constant)")))?;
                let v = p.add_value(n.output[0].clone());
                p.add_constant(v, t);
                continue;
            }
            let inputs = n.input.iter().map(|s| if s.is_empty() { None } else { Some(p.add_value(s.clone())) }).collect();
            let outputs =
                n.output.iter().map(|s| if s.is_empty() { None } else { Some(p.add_value(s.clone())) }).collect();
            p.add_node(ExecNode { name, op_type, domain, inputs, outputs, attrs: n.attribute.clone() });
        }
        for out in &graph.output {
            let v = p.add_value(out.name.clone().unwrap_or_default());
            p.add_output(v);
        }
        Ok(p)
    }
}

/// The tensor of a `Constant` node, from whichever `value*` attribute it carries.
pub fn constant_attr_value(attrs: &[AttributeProto]) -> Result<Tensor> {
    for a in attrs {
        match a.name.as_deref().unwrap_or("") {
            "value" => {
                let t = a.t.as_ref().ok_or_else(|| Error::user("attribute 'value' holds no tensor"))?;
                return Tensor::from_proto(t);
            }
            "value_float" => return Ok(Tensor::scalar(a.f.unwrap_or(0.0))),
            "value_floats" => return Tensor::new(vec![a.floats.len()], a.floats.clone()),
            "value_int" => return Ok(Tensor::scalar(a.i.unwrap_or(0))),
            "value_ints" => return Tensor::new(vec![a.ints.len()], a.ints.clone()),
            "sparse_value" | "value_string" | "value_strings" => {
                return Err(Error::user(format!(
                    "Constant attribute '{}' is not supported by the reference interpreter",
                    a.name()
                )))
            }
            _ => {}
        }
    }
    Err(Error::user("Constant node has no value attribute"))
}
