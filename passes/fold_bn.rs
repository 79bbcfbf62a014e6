//! `fold-bn`: folds inference-mode BatchNormalization into the Conv, ConvTranspose,
//! Gemm or MatMul that produces its input.
//!
//! y = scale · (x − mean) / √(var + ε) + B = a·x + b with a = scale/√(var+ε),
//! b = B − mean·a, per channel (axis 1 of x). Folding multiplies the producer's weights
//! by `a` along its output-channel axis and sets its bias to `bias·a + b`:
//! - Conv, weights K×C/g×k…: axis 0, any group count, 1-D/2-D/3-D;
//! - ConvTranspose, weights C×(K/g)×k…: output channel of weight [c, j] is
//!   (c / (C/g))·(K/g) + j;
//! - Gemm: output column n: rows of B when transB=1, columns otherwise; C becomes
//!   C·a + b/β (C must broadcast along n);
//! - MatMul with a constant 2-D B and a 2-D output: columns of B, then an Add of b.
//! Arithmetic is done in f64. A BN in training mode or with non-constant parameters is
//! left alone; one whose producer cannot take it (another op, or a producer whose output
//! has other consumers) stays a BatchNormalization (TensorRT runs it as a Scale layer) or,
//! with `standalone=mul-add`, becomes a constant per-channel Mul + Add.

use crate::ir::edit::{const_f32, drop_dead_constants, node_label, set_const_input};
use crate::error::Result;
use crate::ir::{attr_float, Model, NodeId, NodeSpec, Position, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, ReportItem};

pub const NAME: &str = "fold-bn";
pub const OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "standalone",
    OptionKind::Str,
    "keep",
    "what to do with a BN that cannot be folded: keep | mul-add",
)];

pub struct FoldBn {
    mul_add: bool,
}

impl FoldBn {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        let mode = o.str("standalone").unwrap_or("keep");
        let mul_add = match mode {
            "keep" => false,
            "mul-add" => true,
            other => {
                return Err(crate::error::Error::usage(format!("fold-bn: standalone must be keep or mul-add, not '{other}'")))
            }
        };
        Ok(FoldBn { mul_add })
    }
}

struct BnParams {
    a: Vec<f64>,
    b: Vec<f64>,
    params: Vec<ValueId>,
}

enum Verdict {
    Fold(BnParams),
    Skip(String),
}

fn bn_params(m: &Model, id: NodeId) -> Verdict {
    let g = &m.graph;
    let n = g.node(id).expect("live");
    let opset = m.opset();
    if n.attr_i("training_mode").unwrap_or(0) != 0 {
        return Verdict::Skip("training_mode=1: batch statistics are computed at run time".into());
    }
    if opset < 9 && n.attr_i("spatial").unwrap_or(1) == 0 {
        return Verdict::Skip("spatial=0 (per-activation statistics) is not foldable per channel".into());
    }
    for (i, o) in n.outputs.iter().enumerate().skip(1) {
        if let Some(o) = o {
            if !g.v(*o).map(|v| v.uses.is_empty() && !g.is_graph_output(*o)).unwrap_or(true) {
                return Verdict::Skip(format!("output {i} (running statistics) is used: training mode"));
            }
        }
    }
    let eps = n.attr_f("epsilon").unwrap_or(1e-5) as f64;
    let mut vals = Vec::new();
    let mut params = Vec::new();
    for (slot, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
        match const_f32(g, n.inputs.get(slot).copied().flatten()) {
            Some((v, d, _)) => {
                params.push(v);
                vals.push(d)
            }
            None => return Verdict::Skip(format!("its {what} input is not a constant float tensor")),
        }
    }
    let c = vals[0].len();
    if vals.iter().any(|v| v.len() != c) {
        return Verdict::Skip("its parameters have different lengths".into());
    }
    let a: Vec<f64> = (0..c).map(|i| vals[0][i] as f64 / (vals[3][i] as f64 + eps).sqrt()).collect();
    let b: Vec<f64> = (0..c).map(|i| vals[1][i] as f64 - vals[2][i] as f64 * a[i]).collect();
    Verdict::Fold(BnParams { a, b, params })
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|x| *x as f32).collect()
}

/// Tries to fold into producer `p`; Err(reason) when it cannot.
fn fold_into(m: &mut Model, p: NodeId, bn: &BnParams) -> Result<std::result::Result<(), String>> {
    let g = &mut m.graph;
    let pn = g.n(p)?.clone();
    let c = bn.a.len();
    if !matches!(pn.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm" | "MatMul") || !pn.domain.is_empty() {
        return Ok(Err(format!("its input comes from {}, which has no weights to fold into", pn.op_type)));
    }
    let Some((_, w, wd)) = const_f32(g, pn.inputs.get(1).copied().flatten()) else {
        return Ok(Err(format!("{} weight is not a constant float tensor", pn.op_type)));
    };
    let pname = if pn.name.is_empty() { pn.op_type.clone() } else { pn.name.clone() };
    match pn.op_type.as_str() {
        "Conv" | "ConvTranspose" => {
            if wd.len() < 3 {
                return Ok(Err("weight rank < 3".into()));
            }
            let group = pn.attr_i("group").unwrap_or(1).max(1) as usize;
            let inner: usize = wd[2..].iter().map(|&d| d as usize).product();
            let (d0, d1) = (wd[0] as usize, wd[1] as usize);
            let k_out = if pn.op_type == "Conv" { d0 } else { d1 * group };
            if k_out != c {
                return Ok(Err(format!("{} has {k_out} output channels, the BN {c}", pn.op_type)));
            }
            let mut nw = w.clone();
            for i0 in 0..d0 {
                for i1 in 0..d1 {
                    let oc = if pn.op_type == "Conv" { i0 } else { (i0 / (d0 / group)) * d1 + i1 };
                    let base = (i0 * d1 + i1) * inner;
                    for x in &mut nw[base..base + inner] {
                        *x = (*x as f64 * bn.a[oc]) as f32;
                    }
                }
            }
            let bias: Vec<f64> = match const_f32(g, pn.inputs.get(2).copied().flatten()) {
                Some((_, b, _)) if b.len() == c => b.iter().zip(0..c).map(|(x, i)| *x as f64 * bn.a[i] + bn.b[i]).collect(),
                Some(_) => return Ok(Err("bias length differs from the channel count".into())),
                None if pn.inputs.get(2).copied().flatten().is_some() => return Ok(Err("bias is not constant".into())),
                None => bn.b.clone(),
            };
            set_const_input(g, p, 1, &format!("{pname}.weight_folded"), Tensor::from_f32("", &wd, &nw))?;
            set_const_input(g, p, 2, &format!("{pname}.bias_folded"), Tensor::from_f32("", &[c as i64], &to_f32(&bias)))?;
        }
        "Gemm" => {
            if wd.len() != 2 {
                return Ok(Err("Gemm weight is not 2-D".into()));
            }
            let tb = pn.attr_i("transB").unwrap_or(0) != 0;
            let (rows, cols) = (wd[0] as usize, wd[1] as usize);
            let n_out = if tb { rows } else { cols };
            if n_out != c {
                return Ok(Err(format!("Gemm has {n_out} outputs, the BN {c}")));
            }
            let mut nw = w.clone();
            for r in 0..rows {
                for col in 0..cols {
                    let o = if tb { r } else { col };
                    nw[r * cols + col] = (w[r * cols + col] as f64 * bn.a[o]) as f32;
                }
            }
            let beta = pn.attr_f("beta").unwrap_or(1.0) as f64;
            let cin = pn.inputs.get(2).copied().flatten();
            let newc: Vec<f64> = match (cin, const_f32(g, cin)) {
                (None, _) => bn.b.clone(),
                (Some(_), Some((_, cv, cd))) => {
                    let n: usize = cd.iter().map(|&d| d as usize).product();
                    if n == 1 {
                        (0..c).map(|i| cv[0] as f64 * bn.a[i] + bn.b[i] / if beta == 0.0 { 1.0 } else { beta }).collect()
                    } else if n == c && cd.last().copied() == Some(c as i64) {
                        (0..c).map(|i| cv[i] as f64 * bn.a[i] + bn.b[i] / if beta == 0.0 { 1.0 } else { beta }).collect()
                    } else {
                        return Ok(Err("Gemm C is not a per-output vector".into()));
                    }
                }
                (Some(_), None) => return Ok(Err("Gemm C is not constant".into())),
            };
            let newc = if beta == 0.0 { bn.b.clone() } else { newc };
            set_const_input(g, p, 1, &format!("{pname}.weight_folded"), Tensor::from_f32("", &wd, &nw))?;
            set_const_input(g, p, 2, &format!("{pname}.bias_folded"), Tensor::from_f32("", &[c as i64], &to_f32(&newc)))?;
            if beta == 0.0 {
                g.node_mut(p).expect("live").set_attr(attr_float("beta", 1.0));
            }
        }
        "MatMul" => {
            let out = pn.outputs.first().copied().flatten();
            let rank = out.and_then(|o| g.value(o)).and_then(|v| v.ty.as_ref()).and_then(|t| t.shape.as_ref()).map(|s| s.len());
            if wd.len() != 2 || rank != Some(2) {
                return Ok(Err("MatMul output is not 2-D, so the BN channel axis is not the output axis".into()));
            }
            let (rows, cols) = (wd[0] as usize, wd[1] as usize);
            if cols != c {
                return Ok(Err(format!("MatMul has {cols} outputs, the BN {c}")));
            }
            let mut nw = w.clone();
            for r in 0..rows {
                for col in 0..cols {
                    nw[r * cols + col] = (w[r * cols + col] as f64 * bn.a[col]) as f32;
                }
            }
            set_const_input(g, p, 1, &format!("{pname}.weight_folded"), Tensor::from_f32("", &wd, &nw))?;
            // MatMul has no bias: the shift becomes an Add after it
            let out = out.expect("rank known implies output");
            let bias = g.add_fresh_initializer(&format!("{pname}.bias_folded"), Tensor::from_f32("", &[c as i64], &to_f32(&bn.b)));
            let sum = g.add_fresh_value(&format!("{}_biased", g.name_of(out)));
            let ty = g.v(out)?.ty.clone();
            g.v(sum)?;
            g.value_mut(sum).expect("new").ty = ty;
            g.replace_uses(out, sum)?;
            g.add_node(
                NodeSpec::new("Add", &format!("{pname}/bn_shift"), vec![Some(out), Some(bias)], vec![Some(sum)]),
                Position::After(p),
            )?;
        }
        other => return Ok(Err(format!("its input comes from {other}, which has no weights to fold into"))),
    }
    Ok(Ok(()))
}

/// Replaces a BN by a constant per-channel Mul + Add (rank of x must be known).
fn to_mul_add(m: &mut Model, id: NodeId, bn: &BnParams) -> Result<std::result::Result<(), String>> {
    let g = &mut m.graph;
    let n = g.n(id)?.clone();
    let x = n.inputs[0].expect("BN has an input");
    let y = n.outputs[0].expect("BN has an output");
    let rank = g.v(x)?.ty.as_ref().and_then(|t| t.shape.as_ref()).map(|s| s.len());
    let Some(rank) = rank.filter(|r| *r >= 2) else { return Ok(Err("the input rank is unknown".into())) };
    let c = bn.a.len() as i64;
    let mut dims = vec![c];
    dims.extend(std::iter::repeat_n(1, rank - 2));
    let label = if n.name.is_empty() { "bn".to_string() } else { n.name.clone() };
    let a = g.add_fresh_initializer(&format!("{label}.mul"), Tensor::from_f32("", &dims, &to_f32(&bn.a)));
    let b = g.add_fresh_initializer(&format!("{label}.add"), Tensor::from_f32("", &dims, &to_f32(&bn.b)));
    let mid = g.add_fresh_value(&format!("{label}.scaled"));
    g.remove_node(id)?;
    let mul = g.add_node(NodeSpec::new("Mul", &format!("{label}/mul"), vec![Some(x), Some(a)], vec![Some(mid)]), Position::End)?;
    g.add_node(NodeSpec::new("Add", &format!("{label}/add"), vec![Some(mid), Some(b)], vec![Some(y)]), Position::After(mul))?;
    Ok(Ok(()))
}

impl Pass for FoldBn {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let mut rep = PassReport::new(NAME);
        crate::ir::shape::infer(&mut m.graph)?;
        let bns: Vec<NodeId> = m
            .graph
            .topo_order()?
            .into_iter()
            .filter(|id| m.graph.node(*id).map(|n| n.op_type == "BatchNormalization" && n.domain.is_empty()).unwrap_or(false))
            .collect();
        let (mut folded, mut kept, mut converted) = (0, 0, 0);
        for id in bns {
            let label = node_label(&m.graph, id);
            let params = match bn_params(m, id) {
                Verdict::Fold(p) => p,
                Verdict::Skip(why) => {
                    rep.item(ReportItem::new(&label, "BatchNormalization", "kept", format!("not folded: {why}")));
                    kept += 1;
                    continue;
                }
            };
            let n = m.graph.n(id)?.clone();
            let x = n.inputs[0].ok_or_else(|| crate::error::Error::user(format!("BatchNormalization {label} has no input")))?;
            let y = n.outputs[0].ok_or_else(|| crate::error::Error::user(format!("BatchNormalization {label} has no output")))?;
            let producer = m.graph.producer_node(x).map(|(p, _)| p);
            let reason = match producer {
                None => "its input is a graph input or constant".to_string(),
                Some(p) => {
                    let shared = m.graph.v(x)?.uses.len() != 1 || m.graph.is_graph_output(x);
                    if shared {
                        format!("{} output has other consumers", node_label(&m.graph, p))
                    } else {
                        match fold_into(m, p, &params)? {
                            Ok(()) => {
                                // the BN's users now read what the BN read (the producer output,
                                // or the bias Add a MatMul fold inserted)
                                let src = m.graph.n(id)?.inputs[0].expect("BN input");
                                m.graph.remove_node(id)?;
                                m.graph.replace_value(y, src)?;
                                m.graph.remove_value(y)?;
                                for o in n.outputs.iter().skip(1).flatten() {
                                    if m.graph.is_dead(*o) {
                                        m.graph.remove_value(*o)?;
                                    }
                                }
                                drop_dead_constants(&mut m.graph, &params.params)?;
                                let into = node_label(&m.graph, p);
                                let op = m.graph.n(p)?.op_type.clone();
                                rep.item(
                                    ReportItem::new(&label, "BatchNormalization", "folded", format!("into {op} '{into}'"))
                                        .with("into", into)
                                        .with("channels", params.a.len()),
                                );
                                folded += 1;
                                continue;
                            }
                            Err(why) => why,
                        }
                    }
                }
            };
            if self.mul_add {
                match to_mul_add(m, id, &params)? {
                    Ok(()) => {
                        drop_dead_constants(&mut m.graph, &params.params)?;
                        rep.item(ReportItem::new(&label, "BatchNormalization", "mul-add", format!("not foldable ({reason}); became a constant per-channel Mul + Add")));
                        converted += 1;
                    }
                    Err(why) => {
                        rep.item(ReportItem::new(&label, "BatchNormalization", "kept", format!("not foldable ({reason}); kept as BatchNormalization: {why}")));
                        kept += 1;
                    }
                }
            } else {
                rep.item(ReportItem::new(&label, "BatchNormalization", "kept", format!("not foldable ({reason}); kept as BatchNormalization (TensorRT runs it as a Scale layer)")));
                kept += 1;
            }
        }
        rep.changed = folded + converted > 0;
        rep.summary = format!("{folded} BatchNormalization folded, {converted} turned into Mul+Add, {kept} kept");
        rep.stat("folded", folded);
        rep.stat("mul_add", converted);
        rep.stat("kept", kept);
        Ok(rep)
    }
}
