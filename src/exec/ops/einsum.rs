//! Einsum: the equation is parsed into labels per operand (an ellipsis becomes numbered
//! broadcast labels, aligned right), repeated labels within an operand take its diagonal,
//! labels that no other operand nor the output uses are summed out at once, and operands
//! are contracted left to right, each pair as a batched matrix product (permute to
//! [batch, free, contracted] x [batch, contracted, free], then one GEMM per batch, through
//! matrixmultiply's dgemm). Computed in f64, returned in the inputs' float type.

use crate::error::{Error, Result};

use super::super::tensor::{numel, DType, Tensor};
use super::shape::{gather_strided, strides};
use super::{Float, Kernel, NodeCtx};

/// Labels: letters are 0..52, ellipsis dimensions 100 + k.
type Label = u32;
const ELL: Label = 100;

struct EinsumKernel {
    equation: String,
}

pub(crate) fn build_einsum(cx: &NodeCtx) -> Result<Box<dyn Kernel>> {
    cx.require_inputs(1, usize::MAX)?;
    let a = cx.attrs();
    if !a.has("equation") {
        return Err(Error::user("Einsum attribute 'equation' is required"));
    }
    let equation: String = a.string("equation", "")?.chars().filter(|c| !c.is_whitespace()).collect();
    if equation.chars().any(|c| !(c.is_ascii_alphabetic() || matches!(c, ',' | '-' | '>' | '.'))) {
        return Err(Error::user(format!("Einsum attribute 'equation' = '{equation}' has an invalid character")));
    }
    Ok(Box::new(EinsumKernel { equation }))
}

fn letter(c: char) -> Label {
    if c.is_ascii_lowercase() {
        c as Label - 'a' as Label
    } else {
        26 + c as Label - 'A' as Label
    }
}

/// Splits a term into letters and the position of its ellipsis (if any).
fn term_labels(term: &str) -> Result<(Vec<Label>, Option<usize>)> {
    let mut labels = Vec::new();
    let mut ell = None;
    let mut rest = term;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ell.is_some() {
                return Err(Error::user(format!("Einsum term '{term}' has two ellipses")));
            }
            ell = Some(labels.len());
            rest = r;
        } else {
            let c = rest.chars().next().unwrap_or('.');
            if !c.is_ascii_alphabetic() {
                return Err(Error::user(format!("Einsum term '{term}' is malformed")));
            }
            labels.push(letter(c));
            rest = &rest[1..];
        }
    }
    Ok((labels, ell))
}

/// Parsed equation: each operand's labels (one per axis) and the output's labels.
pub(crate) fn parse(eq: &str, ranks: &[usize]) -> Result<(Vec<Vec<Label>>, Vec<Label>)> {
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(Error::user(format!("Einsum equation '{eq}' has {} operands, {} inputs given", terms.len(), ranks.len())));
    }
    let parsed: Vec<(Vec<Label>, Option<usize>)> = terms.iter().map(|t| term_labels(t)).collect::<Result<_>>()?;
    let mut n_ell = 0;
    for ((labels, ell), &r) in parsed.iter().zip(ranks) {
        match ell {
            Some(_) if labels.len() <= r => n_ell = n_ell.max(r - labels.len()),
            None if labels.len() == r => {}
            _ => return Err(Error::user(format!("Einsum equation '{eq}' does not match an input of rank {r}"))),
        }
    }
    let ops: Vec<Vec<Label>> = parsed
        .iter()
        .zip(ranks)
        .map(|((labels, ell), &r)| match ell {
            None => labels.clone(),
            Some(p) => {
                let k = r - labels.len();
                let mut v = labels[..*p].to_vec();
                v.extend((n_ell - k..n_ell).map(|i| ELL + i as Label));
                v.extend_from_slice(&labels[*p..]);
                v
            }
        })
        .collect();
    let out = match rhs {
        Some(r) => {
            let (labels, ell) = term_labels(r)?;
            let mut v = Vec::new();
            for (i, &l) in labels.iter().enumerate() {
                if ell == Some(i) {
                    v.extend((0..n_ell).map(|i| ELL + i as Label));
                }
                if v.contains(&l) {
                    return Err(Error::user(format!("Einsum output '{r}' repeats a label")));
                }
                if !ops.iter().any(|o| o.contains(&l)) {
                    return Err(Error::user(format!("Einsum output '{r}' has a label that no input has")));
                }
                v.push(l);
            }
            if ell == Some(labels.len()) {
                v.extend((0..n_ell).map(|i| ELL + i as Label));
            }
            v
        }
        None => {
            // implicit: broadcast dims, then the letters used exactly once, alphabetically
            let mut v: Vec<Label> = (0..n_ell).map(|i| ELL + i as Label).collect();
            let mut once: Vec<Label> =
                (0..52).filter(|l| ops.iter().map(|o| o.iter().filter(|&&x| x == *l).count()).sum::<usize>() == 1).collect();
            once.sort_unstable();
            v.extend(once);
            v
        }
    };
    Ok((ops, out))
}

/// A tensor in f64 with one label per axis.
#[derive(Clone)]
struct Op {
    labels: Vec<Label>,
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Op {
    fn permute(&self, order: &[Label]) -> Op {
        let st = strides(&self.shape);
        let pos: Vec<usize> = order.iter().map(|l| self.labels.iter().position(|x| x == l).unwrap_or(0)).collect();
        let shape: Vec<usize> = pos.iter().map(|&p| self.shape[p]).collect();
        let pst: Vec<usize> = pos.iter().map(|&p| st[p]).collect();
        Op { labels: order.to_vec(), data: gather_strided(&self.data, &shape, &pst, 0), shape }
    }

    /// Collapses repeated labels to their diagonal.
    fn diagonal(self) -> Op {
        let mut uniq: Vec<Label> = Vec::new();
        for &l in &self.labels {
            if !uniq.contains(&l) {
                uniq.push(l);
            }
        }
        if uniq.len() == self.labels.len() {
            return self;
        }
        let st = strides(&self.shape);
        let shape: Vec<usize> = uniq.iter().map(|l| self.shape[self.labels.iter().position(|x| x == l).unwrap_or(0)]).collect();
        // stride of each unique label: the sum of the strides of its axes
        let ust: Vec<usize> =
            uniq.iter().map(|l| self.labels.iter().zip(&st).filter(|(x, _)| *x == l).map(|(_, s)| s).sum()).collect();
        Op { labels: uniq, data: gather_strided(&self.data, &shape, &ust, 0), shape }
    }

    /// Sums out every label not in `keep`.
    fn sum_except(self, keep: &[Label]) -> Op {
        if self.labels.iter().all(|l| keep.contains(l)) {
            return self;
        }
        let kept: Vec<Label> = self.labels.iter().copied().filter(|l| keep.contains(l)).collect();
        let summed: Vec<Label> = self.labels.iter().copied().filter(|l| !keep.contains(l)).collect();
        let mut order = kept.clone();
        order.extend(&summed);
        let p = self.permute(&order);
        let inner = numel(&p.shape[kept.len()..]);
        let shape = p.shape[..kept.len()].to_vec();
        let data = if inner == 0 {
            vec![0.0; numel(&shape)]
        } else {
            p.data.chunks(inner).map(|c| c.iter().sum()).collect()
        };
        Op { labels: kept, shape, data }
    }

    fn size(&self, l: Label) -> Option<usize> {
        self.labels.iter().position(|&x| x == l).map(|p| self.shape[p])
    }

    /// Broadcasts the axis of label `l` (of size 1) to `n`.
    fn broadcast(self, l: Label, n: usize) -> Op {
        let Some(p) = self.labels.iter().position(|&x| x == l) else { return self };
        if self.shape[p] == n {
            return self;
        }
        let mut st = strides(&self.shape);
        st[p] = 0;
        let mut shape = self.shape.clone();
        shape[p] = n;
        Op { labels: self.labels.clone(), data: gather_strided(&self.data, &shape, &st, 0), shape }
    }
}

/// Contracts two operands, keeping the labels in `keep`.
fn contract(a: Op, b: Op, keep: &[Label]) -> Result<Op> {
    let shared: Vec<Label> = a.labels.iter().copied().filter(|l| b.labels.contains(l)).collect();
    let (mut a, mut b) = (a, b);
    for &l in &shared {
        let (sa, sb) = (a.size(l).unwrap_or(1), b.size(l).unwrap_or(1));
        if sa != sb {
            if sa == 1 {
                a = a.broadcast(l, sb);
            } else if sb == 1 {
                b = b.broadcast(l, sa);
            } else {
                return Err(Error::user(format!("Einsum operands disagree on a dimension: {sa} and {sb}")));
            }
        }
    }
    let batch: Vec<Label> = shared.iter().copied().filter(|l| keep.contains(l)).collect();
    let sum: Vec<Label> = shared.iter().copied().filter(|l| !keep.contains(l)).collect();
    let left: Vec<Label> = a.labels.iter().copied().filter(|l| !shared.contains(l)).collect();
    let right: Vec<Label> = b.labels.iter().copied().filter(|l| !shared.contains(l)).collect();
    let pa = a.permute(&[batch.clone(), left.clone(), sum.clone()].concat());
    let pb = b.permute(&[batch.clone(), sum.clone(), right.clone()].concat());
    let dim = |o: &Op, ls: &[Label]| -> usize { ls.iter().map(|&l| o.size(l).unwrap_or(1)).product() };
    let (nb, m, k, n) = (dim(&pa, &batch), dim(&pa, &left), dim(&pa, &sum), dim(&pb, &right));
    let mut y = vec![0f64; nb * m * n];
    if m * n > 0 {
        for i in 0..nb {
            let (ab, bb) = (&pa.data[i * m * k..(i + 1) * m * k], &pb.data[i * k * n..(i + 1) * k * n]);
            let yb = &mut y[i * m * n..(i + 1) * m * n];
            if k == 0 {
                continue;
            }
            // SAFETY: the slices hold m*k, k*n and m*n elements, row-major with the strides given.
            unsafe {
                matrixmultiply::dgemm(m, k, n, 1.0, ab.as_ptr(), k as isize, 1, bb.as_ptr(), n as isize, 1, 0.0, yb.as_mut_ptr(), n as isize, 1);
            }
        }
    }
    let labels = [batch.clone(), left.clone(), right.clone()].concat();
    let mut shape: Vec<usize> = batch.iter().chain(&left).map(|&l| pa.size(l).unwrap_or(1)).collect();
    shape.extend(right.iter().map(|&l| pb.size(l).unwrap_or(1)));
    Ok(Op { labels, shape, data: y })
}

fn einsum<T: Float>(eq: &str, xs: &[&Tensor]) -> Result<Tensor> {
    let ranks: Vec<usize> = xs.iter().map(|x| x.rank()).collect();
    let (labels, out) = parse(eq, &ranks)?;
    let mut ops: Vec<Op> = Vec::with_capacity(xs.len());
    for (x, l) in xs.iter().zip(labels) {
        let data: Vec<f64> = x.as_slice::<T>()?.iter().map(|v| v.to_f64()).collect();
        ops.push(Op { labels: l, shape: x.shape().to_vec(), data }.diagonal());
    }
    // size of each output label: the largest over the operands (1 broadcasts)
    let out_shape: Vec<usize> = out.iter().map(|&l| ops.iter().filter_map(|o| o.size(l)).max().unwrap_or(1)).collect();
    let needed = |rest: &[Op]| -> Vec<Label> {
        let mut k = out.clone();
        for o in rest {
            k.extend(&o.labels);
        }
        k
    };
    let mut it = ops.into_iter();
    let first = it.next().ok_or_else(|| Error::user("Einsum needs at least one input"))?;
    let rest: Vec<Op> = it.collect();
    let mut acc = first.sum_except(&needed(&rest));
    for (i, b) in rest.iter().enumerate() {
        let later = needed(&rest[i + 1..]);
        let mut keep_b = later.clone();
        keep_b.extend(&acc.labels);
        let b = b.clone().sum_except(&keep_b);
        acc = contract(acc, b, &later)?;
    }
    let mut acc = acc.sum_except(&out);
    for (&l, &n) in out.iter().zip(&out_shape) {
        acc = acc.broadcast(l, n);
    }
    let y = acc.permute(&out);
    Ok(Tensor::from_vec(y.shape, y.data.into_iter().map(T::from_f64).collect()))
}

impl Kernel for EinsumKernel {
    fn run(&self, inputs: &mut [Option<Tensor>]) -> Result<Vec<Tensor>> {
        let xs: Vec<&Tensor> = inputs.iter().flatten().collect();
        let dt = xs.first().map(|x| x.dtype()).unwrap_or(DType::F32);
        if xs.iter().any(|x| x.dtype() != dt) {
            return Err(Error::user("Einsum inputs differ in type"));
        }
        Ok(vec![with_float!(dt, "Einsum", T, einsum::<T>(&self.equation, &xs))?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64t(shape: &[usize], v: Vec<f64>) -> Tensor {
        Tensor::new(shape.to_vec(), v).unwrap()
    }
    fn iota(shape: &[usize]) -> Tensor {
        f64t(shape, (0..numel(shape)).map(|x| x as f64).collect())
    }

    #[test]
    fn parse_implicit_and_ellipsis() {
        let (ops, out) = parse("ij,jk", &[2, 2]).unwrap();
        assert_eq!((ops, out), (vec![vec![8, 9], vec![9, 10]], vec![8, 10]));
        let (ops, out) = parse("...ii->...i", &[4]).unwrap();
        assert_eq!(ops[0], vec![ELL, ELL + 1, 8, 8]);
        assert_eq!(out, vec![ELL, ELL + 1, 8]);
        assert!(parse("ij", &[3]).is_err());
        assert!(parse("ij->k", &[2]).is_err());
    }

    #[test]
    fn matmul_trace_transpose_and_outer() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        let y = einsum::<f64>("ij,jk->ik", &[&a, &b]).unwrap();
        assert_eq!(y.as_slice::<f64>().unwrap(), &[10., 13., 28., 40.]);
        let t = einsum::<f64>("ii", &[&iota(&[3, 3])]).unwrap();
        assert_eq!((t.shape(), t.as_slice::<f64>().unwrap()), (&[][..], &[12.][..]));
        let tr = einsum::<f64>("ij->ji", &[&a]).unwrap();
        assert_eq!(tr.as_slice::<f64>().unwrap(), &[0., 3., 1., 4., 2., 5.]);
        let o = einsum::<f64>("i,j->ij", &[&iota(&[2]), &iota(&[3])]).unwrap();
        assert_eq!(o.as_slice::<f64>().unwrap(), &[0., 0., 0., 0., 1., 2.]);
        // three operands, batched with broadcasting ellipsis
        let x = einsum::<f64>("...ij,...jk,k->...i", &[&iota(&[2, 2, 3]), &iota(&[1, 3, 2]), &f64t(&[2], vec![1., 1.])]).unwrap();
        assert_eq!(x.shape(), &[2, 2]);
        // batch 0: [[0,1,2],[3,4,5]] . [[0,1],[2,3],[4,5]] = [[10,13],[28,40]], row sums 23, 68
        assert_eq!(&x.as_slice::<f64>().unwrap()[..2], &[23., 68.]);
    }
}
