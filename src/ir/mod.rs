//! The intermediate representation every pass works on.
//!
//! A [`Model`] holds the main [`Graph`] plus everything else of the ONNX model (opset
//! imports, metadata, functions, training info) carried through untouched.
//!
//! Architecture invariants (checked by [`verify::verify`] after every pass in tests and
//! debug builds, and with `--verify-each`):
//! - every value has at most one producer: a graph input, an initializer or one node
//!   output; a value used by a node or a graph output has one;
//! - every use recorded on a value matches a node input (or sub-graph reference) and
//!   the other way round;
//! - ids are generational: a [`NodeId`] or [`ValueId`] of a removed node/value never
//!   resolves again, even after its slot is reused;
//! - value names are unique in the graph; graph output names are stable across passes;
//! - the node graph is acyclic; [`Graph::topo_order`] is deterministic (ties broken by
//!   the node's position in the emission order).
//!
//! Sub-graphs (If/Loop/Scan bodies) stay as ONNX `GraphProto` attributes; the outer
//! values they reference are recorded as implicit inputs of their node so they are
//! never removed as dead.

pub mod edit;
pub mod export;
pub mod import;
pub mod shape;
pub mod tensor;
pub mod verify;

pub use tensor::Tensor;

/// Prefix of graph metadata keys that carry calibration annotations through ONNX.
pub const QUANT_KEY_PREFIX: &str = "sparseqc.quant/";

use crate::error::{Error, Result};
use crate::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TypeProto, ValueInfoProto};
use std::collections::HashMap;

/// A node handle. Stale handles (of removed nodes) never resolve.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NodeId {
    index: u32,
    generation: u32,
}

/// A value (tensor edge) handle. Stale handles never resolve.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ValueId {
    index: u32,
    generation: u32,
}

/// Where a value comes from.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Producer {
    /// Declared in `graph.input` (possibly with a default initializer).
    GraphInput,
    /// A constant initializer.
    Initializer,
    /// Output `slot` of a node.
    Node(NodeId, usize),
    /// Nothing yet (a fresh value about to be connected).
    None,
}

/// One consumer of a value: input `slot` of `node`, or a reference from inside one of
/// the node's sub-graphs (`slot == IMPLICIT`).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct Use {
    pub node: NodeId,
    pub slot: usize,
}

/// `Use::slot` for a reference from a sub-graph.
pub const IMPLICIT: usize = usize::MAX;

/// Element type and shape of a value, as far as known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    /// ONNX `TensorProto.DataType` code; 0 when unknown.
    pub elem: i32,
    /// `None` when the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(i64),
    Param(String),
    Unknown,
}

/// Calibration result annotated on a value (see the `calibrate` pass).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantInfo {
    /// The clipping threshold: values in [-amax, amax] map to [-127, 127].
    pub amax: f32,
    /// `amax / 127`.
    pub scale: f32,
    /// How amax was chosen (`max`, `entropy`, `percentile:99.99`, `mse`, `cache`, ...).
    pub method: String,
    /// Fraction of calibration values with |x| > amax.
    pub clipped: f64,
}

impl QuantInfo {
    /// `amax = 2.5, scale = 0.019685039, method = "entropy", clipped = 0.00012`
    pub fn to_text(&self) -> String {
        format!(
            "amax = {:?}, scale = {:?}, method = {}, clipped = {:.6}",
            self.amax,
            self.scale,
            crate::util::quote(&self.method),
            self.clipped
        )
    }
    pub fn from_text(s: &str) -> Result<QuantInfo> {
        let mut q = QuantInfo { amax: f32::NAN, scale: f32::NAN, method: String::new(), clipped: 0.0 };
        // `key = value, ...`; a value is a quoted string (the text form's escapes, which may
        // hold commas) or the text up to the next comma
        let mut rest = s.trim();
        while !rest.is_empty() {
            let (k, after) = rest.split_once('=').ok_or_else(|| Error::user(format!("bad quant annotation '{s}'")))?;
            let after = after.trim_start();
            let (v, tail) = if after.starts_with('"') {
                let (v, used) = crate::text::unquote_prefix(after).map_err(|e| e.context(format!("quant annotation '{s}'")))?;
                (v, &after[used..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            let tail = tail.trim_start();
            rest = match tail.strip_prefix(',') {
                Some(t) => t.trim_start(),
                None if tail.is_empty() => tail,
                None => return Err(Error::user(format!("bad quant annotation '{s}': expected ',' before '{tail}'"))),
            };
            let num = || v.parse::<f64>().map_err(|_| Error::user(format!("bad number '{v}' in quant annotation '{s}'")));
            match k.trim() {
                "amax" => q.amax = num()? as f32,
                "scale" => q.scale = num()? as f32,
                "clipped" => q.clipped = num()?,
                "method" => q.method = v,
                other => return Err(Error::user(format!("unknown key '{other}' in quant annotation '{s}'"))),
            }
        }
        if !(q.amax.is_finite() && q.scale.is_finite()) {
            return Err(Error::user(format!("quant annotation '{s}' needs amax and scale")));
        }
        Ok(q)
    }
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub producer: Producer,
    pub uses: Vec<Use>,
    /// Element type and shape (from the model's declarations or shape inference).
    pub ty: Option<ValueType>,
    /// The value_info declaration read from the model, kept so an untouched value is
    /// written back exactly.
    pub info: Option<ValueInfoProto>,
    /// The constant data of an initializer.
    pub constant: Option<Tensor>,
    /// Calibration annotation.
    pub quant: Option<QuantInfo>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op_type: String,
    pub domain: String,
    pub name: String,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Vec<AttributeProto>,
    /// Outer values referenced from this node's sub-graphs.
    pub implicit_inputs: Vec<ValueId>,
    /// Remaining NodeProto fields (doc_string, overload, metadata_props, device
    /// configurations), carried through untouched.
    pub rest: NodeProto,
}

#[derive(Clone, Debug)]
struct Slot<T> {
    generation: u32,
    item: Option<T>,
}

/// The main graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Slot<Node>>,
    values: Vec<Slot<Value>>,
    free_nodes: Vec<u32>,
    free_values: Vec<u32>,
    /// Emission order; export writes nodes in a topological order that follows it.
    order: Vec<NodeId>,
    names: HashMap<String, ValueId>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// The declarations of `inputs` and `outputs` as read (parallel vectors); export
    /// writes them back with the current value names.
    pub input_info: Vec<ValueInfoProto>,
    pub output_info: Vec<ValueInfoProto>,
    /// value_info entries naming no value of the graph, kept so no data is dropped.
    pub orphan_value_info: Vec<ValueInfoProto>,
    /// Initializer order as in the file.
    pub initializers: Vec<ValueId>,
    /// value_info order as in the file.
    pub value_info: Vec<ValueId>,
    /// Remaining GraphProto fields (name, doc_string, sparse_initializer,
    /// quantization_annotation, metadata_props).
    pub rest: GraphProto,
}

/// A whole model.
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    /// Every ModelProto field except `graph`, carried through untouched.
    pub rest: ModelProto,
}

impl Model {
    /// The opset version of the default ONNX domain.
    pub fn opset(&self) -> i64 {
        self.rest
            .opset_import
            .iter()
            .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
            .map(|o| o.version())
            .unwrap_or(1)
    }
}

/// A new node to insert.
#[derive(Clone, Debug, Default)]
pub struct NodeSpec {
    pub op_type: String,
    pub domain: String,
    pub name: String,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Vec<AttributeProto>,
}

impl NodeSpec {
    pub fn new(op_type: &str, name: &str, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) -> Self {
        NodeSpec { op_type: op_type.into(), name: name.into(), inputs, outputs, ..Default::default() }
    }
    pub fn attr(mut self, a: AttributeProto) -> Self {
        self.attrs.push(a);
        self
    }
}

/// Where to insert a node in the emission order.
#[derive(Copy, Clone, Debug)]
pub enum Position {
    Before(NodeId),
    After(NodeId),
    End,
}

impl Graph {
    // ---------- lookups ----------

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        let s = self.nodes.get(id.index as usize)?;
        if s.generation == id.generation {
            s.item.as_ref()
        } else {
            None
        }
    }
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        let s = self.nodes.get_mut(id.index as usize)?;
        if s.generation == id.generation {
            s.item.as_mut()
        } else {
            None
        }
    }
    pub fn value(&self, id: ValueId) -> Option<&Value> {
        let s = self.values.get(id.index as usize)?;
        if s.generation == id.generation {
            s.item.as_ref()
        } else {
            None
        }
    }
    pub fn value_mut(&mut self, id: ValueId) -> Option<&mut Value> {
        let s = self.values.get_mut(id.index as usize)?;
        if s.generation == id.generation {
            s.item.as_mut()
        } else {
            None
        }
    }
    /// Node lookup that reports a stale id as an internal error.
    pub fn n(&self, id: NodeId) -> Result<&Node> {
        self.node(id).ok_or_else(|| Error::internal(format!("stale node id {id:?}")))
    }
    /// Value lookup that reports a stale id as an internal error.
    pub fn v(&self, id: ValueId) -> Result<&Value> {
        self.value(id).ok_or_else(|| Error::internal(format!("stale value id {id:?}")))
    }
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }
    pub fn name_of(&self, v: ValueId) -> &str {
        self.value(v).map(|x| x.name.as_str()).unwrap_or("<stale>")
    }
    /// Nodes in emission order (not necessarily topological after edits; see `topo_order`).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.order.iter().copied().filter(|id| self.node(*id).is_some()).collect()
    }
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.values.iter().enumerate().filter_map(|(i, s)| {
            s.item.as_ref().map(|_| ValueId { index: i as u32, generation: s.generation })
        })
    }
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|s| s.item.is_some()).count()
    }
    /// The node producing `v`, if any.
    pub fn producer_node(&self, v: ValueId) -> Option<(NodeId, &Node)> {
        match self.value(v)?.producer {
            Producer::Node(n, _) => self.node(n).map(|x| (n, x)),
            _ => None,
        }
    }
    pub fn is_graph_output(&self, v: ValueId) -> bool {
        self.outputs.contains(&v)
    }
    /// The constant data behind `v`: an initializer that is not a graph input, or the
    /// output of a Constant node with a `value` tensor.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        let val = self.value(v)?;
        match val.producer {
            Producer::Initializer => val.constant.as_ref(),
            _ => None,
        }
    }
    /// `constant`, also looking through a Constant node's `value` attribute (returns a clone).
    pub fn constant_value(&self, v: ValueId) -> Option<Tensor> {
        if let Some(t) = self.constant(v) {
            return Some(t.clone());
        }
        let (_, n) = self.producer_node(v)?;
        if n.op_type == "Constant" && n.domain.is_empty() {
            let a = n.attrs.iter().find(|a| a.name() == "value")?;
            return a.t.clone().map(Tensor::new);
        }
        None
    }

    // ---------- construction ----------

    fn alloc_value(&mut self, v: Value) -> ValueId {
        if let Some(i) = self.free_values.pop() {
            let s = &mut self.values[i as usize];
            s.item = Some(v);
            ValueId { index: i, generation: s.generation }
        } else {
            self.values.push(Slot { generation: 0, item: Some(v) });
            ValueId { index: (self.values.len() - 1) as u32, generation: 0 }
        }
    }

    /// Adds a value with an exact name; fails if the name is taken.
    pub fn add_value(&mut self, name: &str) -> Result<ValueId> {
        if self.names.contains_key(name) {
            return Err(Error::user(format!("tensor '{name}' is defined twice (two producers)")));
        }
        let id = self.alloc_value(Value {
            name: name.to_string(),
            producer: Producer::None,
            uses: vec![],
            ty: None,
            info: None,
            constant: None,
            quant: None,
        });
        self.names.insert(name.to_string(), id);
        Ok(id)
    }

    /// A name not used yet, derived from `base` deterministically (`base`, `base_1`, ...).
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.names.contains_key(base) {
            return base.to_string();
        }
        let mut i = 1;
        loop {
            let n = format!("{base}_{i}");
            if !self.names.contains_key(&n) {
                return n;
            }
            i += 1;
        }
    }

    /// Adds a value with a fresh name derived from `base`.
    pub fn add_fresh_value(&mut self, base: &str) -> ValueId {
        let n = self.fresh_name(base);
        // cannot fail: the name is fresh
        self.add_value(&n).expect("fresh name is unique")
    }

    /// Adds a constant initializer (appended to the initializer list).
    pub fn add_initializer(&mut self, name: &str, mut t: Tensor) -> Result<ValueId> {
        let id = self.add_value(name)?;
        t.proto.name = Some(name.to_string());
        let v = self.value_mut(id).expect("just added");
        v.producer = Producer::Initializer;
        v.ty = Some(ValueType { elem: t.dtype(), shape: Some(t.dims().iter().map(|&d| Dim::Known(d)).collect()) });
        v.constant = Some(t);
        self.initializers.push(id);
        Ok(id)
    }

    /// Adds a constant with a fresh name derived from `base`.
    pub fn add_fresh_initializer(&mut self, base: &str, t: Tensor) -> ValueId {
        let n = self.fresh_name(base);
        self.add_initializer(&n, t).expect("fresh name is unique")
    }

    /// Turns a value with no producer (e.g. the output of a removed Constant node) into
    /// an initializer holding `t` (appended to the initializer list).
    pub fn make_initializer(&mut self, v: ValueId, mut t: Tensor) -> Result<()> {
        let val = self.value_mut(v).ok_or_else(|| Error::internal("make_initializer on a stale value"))?;
        if val.producer != Producer::None {
            return Err(Error::internal(format!("make_initializer: '{}' still has a producer", val.name)));
        }
        t.proto.name = Some(val.name.clone());
        val.producer = Producer::Initializer;
        val.ty = Some(ValueType { elem: t.dtype(), shape: Some(t.dims().iter().map(|&d| Dim::Known(d)).collect()) });
        val.constant = Some(t);
        self.initializers.push(v);
        Ok(())
    }

    /// Replaces the data of an initializer in place (keeps its name and position).
    pub fn set_constant(&mut self, v: ValueId, mut t: Tensor) -> Result<()> {
        let val = self.value_mut(v).ok_or_else(|| Error::internal("set_constant on a stale value"))?;
        if val.producer != Producer::Initializer {
            return Err(Error::internal(format!("set_constant: '{}' is not an initializer", val.name)));
        }
        t.proto.name = Some(val.name.clone());
        val.ty = Some(ValueType { elem: t.dtype(), shape: Some(t.dims().iter().map(|&d| Dim::Known(d)).collect()) });
        if let Some(info) = val.info.as_mut() {
            info.r#type = Some(type_proto(val.ty.as_ref().expect("set above")));
        }
        val.constant = Some(t);
        Ok(())
    }

    /// Inserts a node; its output values must have no producer yet.
    pub fn add_node(&mut self, spec: NodeSpec, pos: Position) -> Result<NodeId> {
        for o in spec.outputs.iter().flatten() {
            let v = self.v(*o)?;
            if v.producer != Producer::None {
                return Err(Error::internal(format!("add_node: value '{}' already has a producer", v.name)));
            }
        }
        for i in spec.inputs.iter().flatten() {
            self.v(*i)?;
        }
        let node = Node {
            op_type: spec.op_type,
            domain: spec.domain,
            name: spec.name,
            inputs: spec.inputs.clone(),
            outputs: spec.outputs.clone(),
            attrs: spec.attrs,
            implicit_inputs: vec![],
            rest: NodeProto::default(),
        };
        let id = if let Some(i) = self.free_nodes.pop() {
            let s = &mut self.nodes[i as usize];
            s.item = Some(node);
            NodeId { index: i, generation: s.generation }
        } else {
            self.nodes.push(Slot { generation: 0, item: Some(node) });
            NodeId { index: (self.nodes.len() - 1) as u32, generation: 0 }
        };
        for (slot, i) in spec.inputs.iter().enumerate() {
            if let Some(i) = i {
                self.value_mut(*i).expect("checked").uses.push(Use { node: id, slot });
            }
        }
        for (slot, o) in spec.outputs.iter().enumerate() {
            if let Some(o) = o {
                self.value_mut(*o).expect("checked").producer = Producer::Node(id, slot);
            }
        }
        match pos {
            Position::End => self.order.push(id),
            Position::Before(a) | Position::After(a) => {
                let at = self.order.iter().position(|x| *x == a).ok_or_else(|| Error::internal("add_node: anchor not found"))?;
                let at = if matches!(pos, Position::After(_)) { at + 1 } else { at };
                self.order.insert(at, id);
            }
        }
        Ok(id)
    }

    /// Rewires input `slot` of `node` to `value` (or to nothing).
    pub fn set_input(&mut self, node: NodeId, slot: usize, value: Option<ValueId>) -> Result<()> {
        let old = {
            let n = self.node_mut(node).ok_or_else(|| Error::internal("set_input on a stale node"))?;
            if slot >= n.inputs.len() {
                n.inputs.resize(slot + 1, None);
            }
            std::mem::replace(&mut n.inputs[slot], value)
        };
        if let Some(o) = old {
            if let Some(v) = self.value_mut(o) {
                if let Some(p) = v.uses.iter().position(|u| u.node == node && u.slot == slot) {
                    v.uses.remove(p);
                }
            }
        }
        if let Some(nv) = value {
            self.value_mut(nv).ok_or_else(|| Error::internal("set_input with a stale value"))?.uses.push(Use { node, slot });
        }
        Ok(())
    }

    /// Points every node use of `old` at `new`. Graph outputs are not touched (their
    /// names must stay stable); use [`Graph::replace_value`] for that.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) -> Result<()> {
        let uses = self.v(old)?.uses.clone();
        for u in uses {
            if u.slot == IMPLICIT {
                return Err(Error::user(format!(
                    "cannot rewire '{}': it is referenced by name from a sub-graph",
                    self.name_of(old)
                )));
            }
            self.set_input(u.node, u.slot, Some(new))?;
        }
        Ok(())
    }

    /// Makes `new` take the place of `old` everywhere, graph outputs included. When `old`
    /// is a graph output, `new` takes over `old`'s name (and `old` gets a fresh one), so
    /// output names stay stable.
    pub fn replace_value(&mut self, old: ValueId, new: ValueId) -> Result<()> {
        self.replace_uses(old, new)?;
        if self.outputs.contains(&old) {
            let old_name = self.v(old)?.name.clone();
            let new_name = self.v(new)?.name.clone();
            let tmp = self.fresh_name(&format!("{old_name}__replaced"));
            self.rename(old, &tmp)?;
            self.rename(new, &old_name)?;
            let _ = new_name;
            for o in self.outputs.iter_mut() {
                if *o == old {
                    *o = new;
                }
            }
        }
        Ok(())
    }

    /// Renames a value (must not be referenced from sub-graphs).
    pub fn rename(&mut self, v: ValueId, name: &str) -> Result<()> {
        if let Some(o) = self.names.get(name) {
            if *o != v {
                return Err(Error::internal(format!("rename: '{name}' is taken")));
            }
            return Ok(());
        }
        let val = self.value_mut(v).ok_or_else(|| Error::internal("rename of a stale value"))?;
        let old = std::mem::replace(&mut val.name, name.to_string());
        if let Some(info) = val.info.as_mut() {
            info.name = Some(name.to_string());
        }
        if let Some(c) = val.constant.as_mut() {
            c.proto.name = Some(name.to_string());
        }
        self.names.remove(&old);
        self.names.insert(name.to_string(), v);
        Ok(())
    }

    /// Removes a node. Its inputs lose the use; its outputs lose their producer (they
    /// must be removed or given a new producer before the graph verifies).
    pub fn remove_node(&mut self, id: NodeId) -> Result<Node> {
        let node = {
            let s = self.nodes.get_mut(id.index as usize).ok_or_else(|| Error::internal("remove of unknown node"))?;
            if s.generation != id.generation || s.item.is_none() {
                return Err(Error::internal("remove of a stale node"));
            }
            s.generation += 1;
            self.free_nodes.push(id.index);
            s.item.take().expect("checked")
        };
        for i in node.inputs.iter().flatten().chain(node.implicit_inputs.iter()) {
            if let Some(v) = self.value_mut(*i) {
                v.uses.retain(|u| u.node != id);
            }
        }
        for o in node.outputs.iter().flatten() {
            if let Some(v) = self.value_mut(*o) {
                v.producer = Producer::None;
            }
        }
        self.order.retain(|x| *x != id);
        Ok(node)
    }

    /// Appends a graph output.
    pub fn add_output(&mut self, v: ValueId) -> Result<()> {
        let val = self.v(v)?;
        let info = ValueInfoProto { name: Some(val.name.clone()), r#type: val.ty.as_ref().map(type_proto), ..Default::default() };
        self.outputs.push(v);
        self.output_info.push(info);
        Ok(())
    }

    /// Removes a value that nothing uses (also from the initializer/value_info lists).
    pub fn remove_value(&mut self, id: ValueId) -> Result<()> {
        let v = self.v(id)?;
        if !v.uses.is_empty() || self.outputs.contains(&id) {
            return Err(Error::internal(format!("remove_value: '{}' is still used", v.name)));
        }
        let producer = v.producer;
        let name = v.name.clone();
        if let Producer::Node(n, slot) = producer {
            if let Some(node) = self.node_mut(n) {
                node.outputs[slot] = None;
            }
        }
        self.names.remove(&name);
        self.initializers.retain(|x| *x != id);
        self.value_info.retain(|x| *x != id);
        if let Some(p) = self.inputs.iter().position(|x| *x == id) {
            self.inputs.remove(p);
            if p < self.input_info.len() {
                self.input_info.remove(p);
            }
        }
        let s = &mut self.values[id.index as usize];
        s.generation += 1;
        s.item = None;
        self.free_values.push(id.index);
        Ok(())
    }

    /// A deterministic topological order of the live nodes: Kahn's algorithm, always
    /// emitting the ready node that comes first in the emission order. Fails on a cycle,
    /// naming a node on it.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let live = self.node_ids();
        let rank: HashMap<NodeId, usize> = live.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut indeg = vec![0usize; live.len()];
        for (i, id) in live.iter().enumerate() {
            let n = self.node(*id).expect("live");
            for v in n.inputs.iter().flatten().chain(n.implicit_inputs.iter()) {
                if let Some((p, _)) = self.producer_node(*v) {
                    if rank.contains_key(&p) {
                        indeg[i] += 1;
                    }
                }
            }
        }
        let mut heap = std::collections::BinaryHeap::new();
        for (i, d) in indeg.iter().enumerate() {
            if *d == 0 {
                heap.push(std::cmp::Reverse(i));
            }
        }
        let mut out = Vec::with_capacity(live.len());
        while let Some(std::cmp::Reverse(i)) = heap.pop() {
            let id = live[i];
            out.push(id);
            let n = self.node(id).expect("live");
            let mut seen: Vec<(usize, NodeId)> = Vec::new();
            for o in n.outputs.iter().flatten() {
                for u in &self.value(*o).expect("live").uses {
                    seen.push((0, u.node));
                }
            }
            for (_, c) in seen {
                if let Some(&ci) = rank.get(&c) {
                    indeg[ci] -= 1;
                    if indeg[ci] == 0 {
                        heap.push(std::cmp::Reverse(ci));
                    }
                }
            }
        }
        if out.len() != live.len() {
            let stuck = live.iter().enumerate().find(|(i, _)| indeg[*i] > 0).map(|(_, id)| *id);
            let desc = stuck.and_then(|id| self.node(id)).map(|n| format!("'{}' ({})", n.name, n.op_type)).unwrap_or_default();
            return Err(Error::user(format!("the graph has a cycle through node {desc}")));
        }
        Ok(out)
    }

    /// Re-sorts the emission order topologically (stable).
    pub fn sort(&mut self) -> Result<()> {
        self.order = self.topo_order()?;
        Ok(())
    }

    /// Values that no node uses and that are not graph outputs.
    pub fn is_dead(&self, v: ValueId) -> bool {
        self.value(v).map(|x| x.uses.is_empty()).unwrap_or(true) && !self.outputs.contains(&v)
    }
}

// ---------- attribute helpers ----------

use crate::proto::attribute_proto::AttributeType;

impl Node {
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attrs.iter().find(|a| a.name() == name)
    }
    pub fn attr_i(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(|a| a.i)
    }
    pub fn attr_f(&self, name: &str) -> Option<f32> {
        self.attr(name).and_then(|a| a.f)
    }
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }
    pub fn attr_s(&self, name: &str) -> Option<String> {
        self.attr(name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).to_string())
    }
    /// Sets (replaces or appends) an attribute.
    pub fn set_attr(&mut self, a: AttributeProto) {
        if let Some(x) = self.attrs.iter_mut().find(|x| x.name() == a.name()) {
            *x = a;
        } else {
            self.attrs.push(a);
        }
    }
    pub fn remove_attr(&mut self, name: &str) {
        self.attrs.retain(|a| a.name() != name);
    }
    /// A short description for messages: `'conv1' (Conv)`.
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            format!("<unnamed> ({})", self.op_type)
        } else {
            format!("'{}' ({})", self.name, self.op_type)
        }
    }
    /// A node-level annotation (stored in the node's ONNX metadata_props).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.rest.metadata_props.iter().find(|m| m.key() == key).map(|m| m.value())
    }
    pub fn set_annotation(&mut self, key: &str, value: &str) {
        if let Some(m) = self.rest.metadata_props.iter_mut().find(|m| m.key() == key) {
            m.value = Some(value.to_string());
        } else {
            self.rest
                .metadata_props
                .push(crate::proto::StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) });
        }
    }
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(v), r#type: Some(AttributeType::Int as i32), ..Default::default() }
}
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), f: Some(v), r#type: Some(AttributeType::Float as i32), ..Default::default() }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), ints: v.to_vec(), r#type: Some(AttributeType::Ints as i32), ..Default::default() }
}
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
        r#type: Some(AttributeType::String as i32),
        ..Default::default()
    }
}
pub fn attr_tensor(name: &str, t: Tensor) -> AttributeProto {
    AttributeProto { name: Some(name.into()), t: Some(t.proto), r#type: Some(AttributeType::Tensor as i32), ..Default::default() }
}

// ---------- types ----------

impl ValueType {
    pub fn from_proto(t: &TypeProto) -> Option<ValueType> {
        use crate::proto::type_proto::Value as V;
        use crate::proto::tensor_shape_proto::dimension::Value as DV;
        match t.value.as_ref()? {
            V::TensorType(tt) => Some(ValueType {
                elem: tt.elem_type(),
                shape: tt.shape.as_ref().map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            // exporters write -1 for a dynamic dim
                            Some(DV::DimValue(v)) if *v < 0 => Dim::Unknown,
                            Some(DV::DimValue(v)) => Dim::Known(*v),
                            Some(DV::DimParam(p)) => Dim::Param(p.clone()),
                            None => Dim::Unknown,
                        })
                        .collect()
                }),
            }),
            _ => None,
        }
    }
    /// Known static dims, or None if any is symbolic/unknown.
    pub fn static_dims(&self) -> Option<Vec<i64>> {
        self.shape.as_ref()?.iter().map(|d| if let Dim::Known(v) = d { Some(*v) } else { None }).collect()
    }
}

/// Builds a TypeProto for a tensor type.
pub fn type_proto(t: &ValueType) -> TypeProto {
    use crate::proto::tensor_shape_proto::dimension::Value as DV;
    use crate::proto::tensor_shape_proto::Dimension;
    use crate::proto::type_proto::{Tensor as TT, Value as V};
    TypeProto {
        value: Some(V::TensorType(TT {
            elem_type: Some(t.elem),
            shape: t.shape.as_ref().map(|s| crate::proto::TensorShapeProto {
                dim: s
                    .iter()
                    .map(|d| Dimension {
                        value: match d {
                            Dim::Known(v) => Some(DV::DimValue(*v)),
                            Dim::Param(p) => Some(DV::DimParam(p.clone())),
                            Dim::Unknown => None,
                        },
                        denotation: None,
                    })
                    .collect(),
            }),
        })),
        denotation: None,
    }
}
