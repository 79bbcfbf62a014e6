//! Shape inference for the ops the passes touch. Fills `Value::ty` of node outputs where
//! the input types are known; leaves anything it cannot infer alone (never guesses).

use super::*;

fn dims_of(g: &Graph, v: Option<ValueId>) -> Option<Vec<Dim>> {
    g.value(v?)?.ty.as_ref()?.shape.clone()
}
fn elem_of(g: &Graph, v: Option<ValueId>) -> i32 {
    v.and_then(|v| g.value(v)).and_then(|x| x.ty.as_ref()).map(|t| t.elem).unwrap_or(0)
}

fn known(d: &Dim) -> Option<i64> {
    if let Dim::Known(v) = d {
        Some(*v)
    } else {
        None
    }
}

fn broadcast(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { a[i + a.len() - n].clone() } else { Dim::Known(1) };
            let y = if i + b.len() >= n { b[i + b.len() - n].clone() } else { Dim::Known(1) };
            match (&x, &y) {
                (Dim::Known(1), _) => y,
                (_, Dim::Known(1)) => x,
                (Dim::Known(p), Dim::Known(q)) if p == q => x,
                (Dim::Known(_), _) => x,
                (_, Dim::Known(_)) => y,
                _ => x,
            }
        })
        .collect()
}

/// Output length of a window op along one axis; `None` (unknown) for attributes no valid
/// model has (stride < 1, arithmetic overflowing i64): the verifier and the op report those.
fn window_out(input: i64, k: i64, stride: i64, dil: i64, pb: i64, pe: i64, ceil: bool) -> Option<i64> {
    if stride < 1 {
        return None;
    }
    let eff = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let span = input.checked_add(pb)?.checked_add(pe)?.checked_sub(eff)?;
    if span < 0 {
        return Some(0);
    }
    if ceil {
        (span.checked_add(stride - 1)? / stride).checked_add(1)
    } else {
        (span / stride).checked_add(1)
    }
}

/// The product of known dims, `None` when one is unknown or the product overflows.
fn product<'a>(dims: impl Iterator<Item = &'a Dim>) -> Option<i64> {
    dims.map(known).try_fold(1i64, |a, b| a.checked_mul(b?))
}

/// Output shape of a Conv/pooling window op given the input shape and kernel dims.
fn spatial(n: &Node, x: &[Dim], kernel: &[i64], lead: Vec<Dim>) -> Option<Vec<Dim>> {
    let sp = x.len().checked_sub(2)?;
    if kernel.len() != sp {
        return None;
    }
    let strides = n.attr_ints("strides").map(|s| s.to_vec()).unwrap_or(vec![1; sp]);
    let dil = n.attr_ints("dilations").map(|s| s.to_vec()).unwrap_or(vec![1; sp]);
    let pads = n.attr_ints("pads").map(|s| s.to_vec()).unwrap_or(vec![0; 2 * sp]);
    let auto = crate::util::AutoPad::parse(&n.attr_s("auto_pad").unwrap_or_default())?;
    let ceil = n.attr_i("ceil_mode").unwrap_or(0) != 0;
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        return None;
    }
    let mut out = lead;
    for i in 0..sp {
        let d = match known(&x[2 + i]) {
            Some(d) => d,
            None => {
                out.push(Dim::Unknown);
                continue;
            }
        };
        let o = match auto {
            a if a.is_same() => kernel[i]
                .checked_sub(1)
                .and_then(|k1| dil[i].checked_mul(k1))
                .and_then(|e| e.checked_add(1))
                .map(|extent| a.same_pads(d, extent, strides[i]).2),
            crate::util::AutoPad::Valid => window_out(d, kernel[i], strides[i], dil[i], 0, 0, ceil),
            _ => window_out(d, kernel[i], strides[i], dil[i], pads[i], pads[i + sp], ceil),
        };
        out.push(o.map(Dim::Known).unwrap_or(Dim::Unknown));
    }
    Some(out)
}

fn infer_node(g: &Graph, n: &Node) -> Option<Vec<ValueType>> {
    let x = n.inputs.first().copied().flatten();
    let elem = elem_of(g, x);
    let one = |shape: Option<Vec<Dim>>, elem: i32| Some(vec![ValueType { elem, shape }]);
    if !n.domain.is_empty() && n.domain != "ai.onnx" {
        return None;
    }
    match n.op_type.as_str() {
        "Relu" | "Clip" | "Sigmoid" | "Tanh" | "LeakyRelu" | "HardSigmoid" | "HardSwish" | "Identity" | "Dropout"
        | "BatchNormalization" | "Softmax" | "Neg" | "Abs" | "Sqrt" | "Exp" | "Erf" => one(dims_of(g, x), elem),
        "QuantizeLinear" => {
            let zp = n.inputs.get(2).copied().flatten();
            let e = if zp.is_some() { elem_of(g, zp) } else { 2 /* uint8 */ };
            one(dims_of(g, x), if e == 0 { 3 } else { e })
        }
        "DequantizeLinear" => one(dims_of(g, x), 1),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" => {
            let mut s = dims_of(g, x)?;
            for i in n.inputs.iter().skip(1) {
                s = broadcast(&s, &dims_of(g, *i)?);
            }
            one(Some(s), elem)
        }
        "Conv" => {
            let xs = dims_of(g, x)?;
            let w = dims_of(g, n.inputs.get(1).copied().flatten())?;
            // a Conv needs N, C and a spatial dim on both (a malformed model may lack them)
            if xs.len() < 3 || w.len() < 3 {
                return None;
            }
            let kernel: Vec<i64> = match n.attr_ints("kernel_shape") {
                Some(k) => k.to_vec(),
                None => w.iter().skip(2).map(known).collect::<Option<Vec<_>>>()?,
            };
            one(spatial(n, &xs, &kernel, vec![xs[0].clone(), w[0].clone()]), elem)
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let xs = dims_of(g, x)?;
            if xs.len() < 3 {
                return None;
            }
            let kernel = n.attr_ints("kernel_shape")?.to_vec();
            one(spatial(n, &xs, &kernel, vec![xs[0].clone(), xs[1].clone()]), elem)
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let xs = dims_of(g, x)?;
            let mut s = xs[..2.min(xs.len())].to_vec();
            s.extend(std::iter::repeat_n(Dim::Known(1), xs.len().saturating_sub(2)));
            one(Some(s), elem)
        }
        "Flatten" => {
            let xs = dims_of(g, x)?;
            let r = xs.len() as i64;
            let mut axis = n.attr_i("axis").unwrap_or(1);
            if axis < 0 {
                axis += r;
            }
            let prod = |d: &[Dim]| -> Dim {
                product(d.iter()).map(Dim::Known).unwrap_or(Dim::Unknown)
            };
            let a = (axis.clamp(0, r)) as usize;
            one(Some(vec![prod(&xs[..a]), prod(&xs[a..])]), elem)
        }
        "Gemm" => {
            let a = dims_of(g, x)?;
            let b = dims_of(g, n.inputs.get(1).copied().flatten())?;
            if a.len() != 2 || b.len() != 2 {
                return None;
            }
            let ta = n.attr_i("transA").unwrap_or(0) != 0;
            let tb = n.attr_i("transB").unwrap_or(0) != 0;
            let m = if ta { a[1].clone() } else { a[0].clone() };
            let nn = if tb { b[0].clone() } else { b[1].clone() };
            one(Some(vec![m, nn]), elem)
        }
        "MatMul" => {
            let a = dims_of(g, x)?;
            let b = dims_of(g, n.inputs.get(1).copied().flatten())?;
            if a.len() < 2 || b.len() < 2 {
                return None;
            }
            let batch = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]);
            let mut s = batch;
            s.push(a[a.len() - 2].clone());
            s.push(b[b.len() - 1].clone());
            one(Some(s), elem)
        }
        "Reshape" => {
            let shape = g.constant_value(n.inputs.get(1).copied().flatten()?)?.to_i64().ok()?;
            let xs = dims_of(g, x)?;
            let allowzero = n.attr_i("allowzero").unwrap_or(0) != 0;
            let mut out: Vec<Dim> = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d == 0 && !allowzero {
                        xs.get(i).cloned().unwrap_or(Dim::Unknown)
                    } else if d == -1 {
                        Dim::Unknown
                    } else {
                        Dim::Known(d)
                    }
                })
                .collect();
            if let Some(pos) = shape.iter().position(|&d| d == -1) {
                let total: Option<i64> = product(xs.iter());
                let rest: Option<i64> = product(out.iter().enumerate().filter(|(i, _)| *i != pos).map(|(_, d)| d));
                if let (Some(t), Some(r)) = (total, rest) {
                    if let Some(q) = t.checked_div(r) {
                        out[pos] = Dim::Known(q);
                    }
                }
            }
            one(Some(out), elem)
        }
        "Transpose" => {
            let xs = dims_of(g, x)?;
            let perm: Vec<usize> = match n.attr_ints("perm") {
                Some(p) => p.iter().map(|&v| v as usize).collect(),
                None => (0..xs.len()).rev().collect(),
            };
            one(Some(perm.iter().map(|&p| xs.get(p).cloned().unwrap_or(Dim::Unknown)).collect()), elem)
        }
        "Concat" => {
            let mut s = dims_of(g, x)?;
            let r = s.len() as i64;
            let mut axis = n.attr_i("axis")?;
            if axis < 0 {
                axis += r;
            }
            let a = axis as usize;
            let mut total = known(s.get(a)?);
            for i in n.inputs.iter().skip(1) {
                let d = dims_of(g, *i)?;
                total = match (total, d.get(a).and_then(known)) {
                    (Some(t), Some(v)) => t.checked_add(v),
                    _ => None,
                };
            }
            s[a] = total.map(Dim::Known).unwrap_or(Dim::Unknown);
            one(Some(s), elem)
        }
        "Pad" => {
            let xs = dims_of(g, x)?;
            let pads = match n.inputs.get(1).copied().flatten() {
                Some(p) => g.constant_value(p)?.to_i64().ok()?,
                None => n.attr_ints("pads")?.to_vec(),
            };
            if n.inputs.get(3).copied().flatten().is_some() || pads.len() != 2 * xs.len() {
                return None;
            }
            let r = xs.len();
            one(
                Some(
                    xs.iter()
                        .enumerate()
                        .map(|(i, d)| known(d).and_then(|v| v.checked_add(pads[i])?.checked_add(pads[i + r])).map(Dim::Known).unwrap_or(Dim::Unknown))
                        .collect(),
                ),
                elem,
            )
        }
        "Shape" => {
            let xs = dims_of(g, x)?;
            one(Some(vec![Dim::Known(xs.len() as i64)]), 7)
        }
        _ => None,
    }
}

/// Infers output types in topological order. Returns how many values got a type.
pub fn infer(g: &mut Graph) -> Result<usize> {
    let mut filled = 0;
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if let Some(types) = infer_node(g, n) {
            let outs = n.outputs.clone();
            for (o, t) in outs.iter().zip(types) {
                if let Some(o) = o {
                    let v = g.value_mut(*o).expect("live output");
                    let better = match &v.ty {
                        None => true,
                        Some(old) => old.shape.is_none() && t.shape.is_some(),
                    };
                    if better {
                        v.ty = Some(t);
                        filled += 1;
                    }
                }
            }
        }
    }
    Ok(filled)
}
