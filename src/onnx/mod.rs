//! The ONNX file boundary: reading a model from disk (memory-mapped, zero-copy tensor
//! bytes, external data resolved safely, unknown fields detected) and writing one back
//! (atomically, with external data when asked or when protobuf's 2 GB limit requires).
//!
//! Nothing in here knows about the IR; `crate::ir` converts between `proto::ModelProto`
//! and the IR.

pub mod external;
pub mod load;
pub mod save;
pub mod wire;

pub use load::{load, LoadOptions, LoadedModel};
pub use save::{save, ExternalPolicy, SaveOptions, SaveSummary};

use crate::proto::{AttributeProto, GraphProto, ModelProto, TensorProto};

/// Calls `f` on every tensor stored anywhere in the model: graph initializers, sparse
/// initializers, tensor attributes of nodes (Constant's `value` among them), and all of
/// that inside sub-graphs, functions and training info.
pub fn for_each_tensor_mut(model: &mut ModelProto, f: &mut dyn FnMut(&mut TensorProto) -> crate::Result<()>) -> crate::Result<()> {
    if let Some(g) = model.graph.as_mut() {
        graph_tensors(g, f)?;
    }
    for func in &mut model.functions {
        for n in &mut func.node {
            for a in &mut n.attribute {
                attr_tensors(a, f)?;
            }
        }
        for a in &mut func.attribute_proto {
            attr_tensors(a, f)?;
        }
    }
    for t in &mut model.training_info {
        if let Some(g) = t.initialization.as_mut() {
            graph_tensors(g, f)?;
        }
        if let Some(g) = t.algorithm.as_mut() {
            graph_tensors(g, f)?;
        }
    }
    Ok(())
}

fn graph_tensors(g: &mut GraphProto, f: &mut dyn FnMut(&mut TensorProto) -> crate::Result<()>) -> crate::Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for s in &mut g.sparse_initializer {
        if let Some(v) = s.values.as_mut() {
            f(v)?;
        }
        if let Some(i) = s.indices.as_mut() {
            f(i)?;
        }
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            attr_tensors(a, f)?;
        }
    }
    Ok(())
}

fn attr_tensors(a: &mut AttributeProto, f: &mut dyn FnMut(&mut TensorProto) -> crate::Result<()>) -> crate::Result<()> {
    if let Some(t) = a.t.as_mut() {
        f(t)?;
    }
    for t in &mut a.tensors {
        f(t)?;
    }
    if let Some(g) = a.g.as_mut() {
        graph_tensors(g, f)?;
    }
    for g in &mut a.graphs {
        graph_tensors(g, f)?;
    }
    for s in a.sparse_tensor.iter_mut().chain(a.sparse_tensors.iter_mut()) {
        if let Some(v) = s.values.as_mut() {
            f(v)?;
        }
        if let Some(i) = s.indices.as_mut() {
            f(i)?;
        }
    }
    Ok(())
}
