//! `prune-2of4`: 2:4 structured pruning in the pattern TensorRT's sparse kernels need.
//!
//! For a Conv with group 1 and weights K×C×R×S the groups of four run along the input
//! channels C, separately for each (k, r, s); for Gemm along the reduction axis of B
//! (axis 0, or 1 with transB=1); for MatMul with a constant B along its rows. In each
//! group the two weights of largest magnitude are kept. The weight is found through
//! DequantizeLinear, QuantizeLinear, Transpose, Cast and Identity, as Polygraphy does.
//!
//! Eligibility (each decision is in the report): group 1 only (TensorRT has no sparse
//! grouped/depthwise kernels), grouped axis a multiple of 4, float weights, at least
//! `min-channels` input and output channels and `min-params` weights. Defaults:
//! `min-channels=16` (Apex ASP and ModelOpt skip weights whose dims are not multiples of
//! 8/16: the sparse tensor-core tiles need them; this also skips a first conv on 3 RGB
//! channels) and `min-params=2048`. TensorRT keeps the dense kernel unless channels are
//! large (maintainers: both > 256, a 3×3 kernel counting 9× C); the report gives that
//! expected speed class per layer, and `min-channels=256` prunes only such layers.
//!
//! `permute=true` permutes the input channels of a pruned layer, and the output channels
//! of the layer producing them (weights, bias, per-channel constants in between), so that
//! the network computes the same function but the 2:4 groups keep more magnitude. It is
//! refused, with the reason, when the producer's channels cannot be permuted consistently
//! (a residual Add, a grouped producer, a tensor with other consumers, a graph input).
//! `prune=false` applies only the permutation (for checking it preserves the function).
//!
//! Layers that came in quantized (Q/DQ on their inputs) or whose weights are already 2:4
//! along TensorRT's axis (an ASP model) are not candidates, for either method: their
//! weights are kept bit for bit and the report says why.

use crate::ir::edit::node_label;
use crate::error::{Error, Result};
use crate::inspect::{find_weight, sparsity_axis};
use crate::ir::{Graph, Model, NodeId, Tensor, ValueId};
use crate::pass::{OptionKind, OptionSpec, Pass, PassContext, PassOptions, PassReport, Pattern, ReportItem};
use crate::sparsity::{permute_axis, prune_2of4_magnitude, retained_fraction_2of4, search_permutation, GroupLayout, PermuteOptions};

pub mod budget;
pub mod obs;

pub const NAME: &str = "prune-2of4";
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("min-channels", OptionKind::Int, "16", "skip layers with fewer input or output channels"),
    OptionSpec::new("min-params", OptionKind::Int, "2048", "skip layers with fewer weights"),
    OptionSpec::new("include", OptionKind::Str, "", "only these layers: name globs or op:Type, separated by |"),
    OptionSpec::new("exclude", OptionKind::Str, "", "never these layers: name globs or op:Type, separated by |"),
    OptionSpec::new("permute", OptionKind::Bool, "false", "permute input channels to keep more magnitude"),
    OptionSpec::new("prune", OptionKind::Bool, "true", "zero the weights (false: only permute)"),
    OptionSpec::new("method", OptionKind::Str, "magnitude", "magnitude | obs (reconstruction from calibration data)"),
    OptionSpec::new("samples", OptionKind::Int, "256", "obs: calibration samples used for the Hessians"),
    OptionSpec::new("damp", OptionKind::Str, "0.01", "obs: dampening relative to the mean Hessian diagonal, or auto: per layer, the value of 0.003..0.3 with the least output error on held-out samples"),
    OptionSpec::new("bias-correct", OptionKind::Bool, "true", "obs: fold each layer's output mean shift into its bias"),
    OptionSpec::new("correct-target", OptionKind::Bool, "true", "obs: reconstruct the original network's output from the pruned input"),
    OptionSpec::new("reconstruct", OptionKind::Bool, "true", "obs: OBS weight update (false: magnitude masks, e.g. to measure bias correction alone)"),
    OptionSpec::new("budget", OptionKind::Str, "", "choose the layers so the output stays this close to the float model: a top-1 agreement (0.97) or an output SQNR (25dB) on calibration samples"),
    OptionSpec::new("budget-samples", OptionKind::Int, "256", "budget: calibration samples on which the fidelity is measured"),
    OptionSpec::new("gpu", OptionKind::Str, "", "prune only layers expected to run faster with 2:4 on this GPU: hopper (the measured H200 table) or ampere (TensorRT's guidance); empty: every eligible layer"),
    OptionSpec::new("batch", OptionKind::Int, "1", "gpu: the batch the engine is built for (GEMM rows = batch x output pixels)"),
    OptionSpec::new("keep-mb", OptionKind::Int, "512", "obs: MiB of activations kept between layers so each layer's run resumes where the last stopped; 0 reruns the network from its inputs for every layer (same result, less memory)"),
];

pub struct Prune {
    pub min_channels: usize,
    pub min_params: usize,
    pub include: Pattern,
    pub exclude: Pattern,
    pub permute: bool,
    pub prune: bool,
    pub method: String,
    pub obs_samples: usize,
    pub obs_damp: f64,
    /// `damp=auto`: choose each layer's dampening by held-out error (obs_damp is then the
    /// value used where no choice is made: sensitivity runs, too few samples).
    pub damp_auto: bool,
    pub bias_correct: bool,
    pub obs_correct: bool,
    pub obs_reconstruct: bool,
    pub budget: Option<budget::Budget>,
    pub budget_samples: usize,
    /// `method=obs`: calibration samples `(start, count)` for the Hessians instead of the
    /// first `obs_samples` (set by the budget search to keep its scoring samples held out).
    pub sample_window: Option<(usize, usize)>,
    /// `method=obs`: bytes of activations kept between layers (`keep-mb`).
    pub keep_bytes: usize,
    /// `gpu`: prune only layers with an expected speed-up on this GPU.
    pub gpu: Option<crate::sparsity::speed::Gpu>,
    /// `batch`: the build batch for the speed decision.
    pub batch: usize,
}

impl Prune {
    /// A copy of the configuration (patterns included).
    pub fn clone_config(&self) -> Prune {
        Prune {
            min_channels: self.min_channels,
            min_params: self.min_params,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            permute: self.permute,
            prune: self.prune,
            method: self.method.clone(),
            obs_samples: self.obs_samples,
            obs_damp: self.obs_damp,
            damp_auto: self.damp_auto,
            bias_correct: self.bias_correct,
            obs_correct: self.obs_correct,
            obs_reconstruct: self.obs_reconstruct,
            budget: self.budget,
            budget_samples: self.budget_samples,
            sample_window: self.sample_window,
            keep_bytes: self.keep_bytes,
            gpu: self.gpu,
            batch: self.batch,
        }
    }
}

impl Prune {
    pub fn from_options(o: &PassOptions) -> Result<Self> {
        let method = o.str("method").unwrap_or("magnitude").to_string();
        if method != "magnitude" && method != "obs" {
            return Err(Error::usage(format!("prune-2of4: method must be magnitude or obs, not '{method}'")));
        }
        Ok(Prune {
            min_channels: o.int("min-channels", 16)?.max(0) as usize,
            min_params: o.int("min-params", 2048)?.max(0) as usize,
            include: Pattern::parse(o.str("include").unwrap_or("")),
            exclude: Pattern::parse(o.str("exclude").unwrap_or("")),
            permute: o.bool("permute", false)?,
            prune: o.bool("prune", true)?,
            method,
            obs_samples: o.int("samples", 256)?.max(1) as usize,
            obs_damp: match o.str("damp") {
                None | Some("auto") | Some("") => 0.01,
                Some(v) => v.parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).ok_or_else(|| {
                    Error::usage(format!("prune-2of4: damp must be auto or a non-negative number, not '{v}'"))
                })?,
            },
            damp_auto: o.str("damp") == Some("auto"),
            bias_correct: o.bool("bias-correct", true)?,
            obs_correct: o.bool("correct-target", true)?,
            obs_reconstruct: o.bool("reconstruct", true)?,
            budget: o.str("budget").filter(|s| !s.is_empty()).map(budget::Budget::parse).transpose()?,
            budget_samples: o.int("budget-samples", 256)?.max(1) as usize,
            sample_window: None,
            keep_bytes: (o.int("keep-mb", 512)?.max(0) as usize) << 20,
            gpu: o.str("gpu").filter(|s| !s.is_empty()).map(str::parse).transpose()?,
            batch: o.int("batch", 1)?.max(1) as usize,
        })
    }
}

/// One layer that may be pruned.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeId,
    pub label: String,
    pub op: String,
    /// The constant holding the weights.
    pub weight: ValueId,
    pub shape: Vec<usize>,
    /// Axis of the constant the 2:4 groups run along.
    pub axis: usize,
    /// Output channels, input channels (along `axis`), kernel positions.
    pub k: usize,
    pub c: usize,
    pub rs: usize,
    /// With `gpu`: the evidence that a gain is expected.
    pub evidence: Option<String>,
}

/// TensorRT's expected speed class for a layer (maintainers' guidance, issues #3849, #4065).
pub fn speed_class(k: usize, c: usize, rs: usize) -> (&'static str, String) {
    let eff = c * rs;
    if k >= 256 && eff >= 256 {
        ("likely-sparse", format!("K={k}, C·R·S={eff} ≥ 256: TensorRT's sparse kernels are likely faster"))
    } else if k >= 128 && eff >= 128 {
        ("maybe-sparse", format!("K={k}, C·R·S={eff}: TensorRT may pick a sparse kernel; it times both"))
    } else {
        // name the dimension(s) that are actually small (below 128 here)
        let small = match (k < 128, eff < 128) {
            (true, true) => format!("K={k} and C·R·S={eff} < 128"),
            (true, false) => format!("K={k} < 128 (C·R·S={eff})"),
            _ => format!("C·R·S={eff} < 128 (K={k})"),
        };
        ("likely-dense", format!("{small}: TensorRT will likely keep the dense kernel"))
    }
}

/// Classifies every Conv/Gemm/MatMul: a candidate or the reason it is not one.
pub fn candidates(g: &Graph, p: &Prune) -> Result<Vec<std::result::Result<Candidate, (NodeId, String, String, String)>>> {
    let mut out = Vec::new();
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul" | "ConvTranspose") || !n.domain.is_empty() {
            continue;
        }
        let label = node_label(g, id);
        let op = n.op_type.clone();
        let skip = |why: String| Err((id, label.clone(), op.clone(), why));
        if !p.include.is_empty() && !p.include.matches_any(&label, &op) && !p.include.matches(&label, &op) {
            out.push(skip("not selected by the include pattern".into()));
            continue;
        }
        if p.exclude.matches_any(&label, &op) {
            out.push(skip("excluded by pattern".into()));
            continue;
        }
        if op == "ConvTranspose" {
            out.push(skip("ConvTranspose: TensorRT's 2:4 kernels cover convolution and GEMM layers".into()));
            continue;
        }
        if op == "Conv" && n.attr_i("group").unwrap_or(1) != 1 {
            out.push(skip(format!("grouped/depthwise conv (group={}): TensorRT has no sparse kernels for it", n.attr_i("group").unwrap_or(1))));
            continue;
        }
        let Some((w, perm)) = find_weight(g, id, 1) else {
            out.push(skip("weight is not a constant".into()));
            continue;
        };
        let t = g.constant(w).expect("find_weight returns constants");
        if crate::qdq::is_quantized_layer(g, id) {
            out.push(skip("came in quantized (Q/DQ in the input model): its trained weights and scales are kept".into()));
            continue;
        }
        if crate::inspect::weight_is_2of4(g, id)? == Some(true) {
            out.push(skip("already 2:4 along TensorRT's axis (e.g. ASP): kept bit for bit".into()));
            continue;
        }
        if t.dtype() != 1 {
            out.push(skip(format!("weight is {}, not float", crate::ir::tensor::dtype_name(t.dtype()))));
            continue;
        }
        let shape = t.shape();
        let Some(axis) = sparsity_axis(g, id, 1, shape.len(), perm.as_deref()) else {
            out.push(skip("no 2:4 axis for this weight layout".into()));
            continue;
        };
        let c = shape[axis];
        let numel: usize = shape.iter().product();
        let (k, rs) = match op.as_str() {
            "Conv" => (shape[0], shape[2..].iter().product()),
            _ => (numel / c.max(1), 1),
        };
        if !c.is_multiple_of(4) {
            out.push(skip(format!("{c} input channels is not a multiple of 4")));
            continue;
        }
        if c < p.min_channels || k < p.min_channels {
            out.push(skip(format!("{k} output × {c} input channels: below min-channels={}", p.min_channels)));
            continue;
        }
        if numel < p.min_params {
            out.push(skip(format!("{numel} weights: below min-params={}", p.min_params)));
            continue;
        }
        let uses = g.v(w)?.uses.len();
        if uses != 1 {
            out.push(skip(format!("weight '{}' is shared by {uses} nodes", g.name_of(w))));
            continue;
        }
        let mut evidence = None;
        if let Some(gpu) = p.gpu {
            // the GEMM TensorRT runs: m = K, k = C·R·S, n = batch × output pixels (or rows)
            let dims = n.outputs.first().copied().flatten().and_then(|o| g.value(o)).and_then(|v| v.ty.as_ref()).and_then(|t| t.shape.clone()).unwrap_or_default();
            let known = |d: &crate::ir::Dim| if let crate::ir::Dim::Known(x) = d { (*x).max(1) as usize } else { 1 };
            let per_sample: usize = if op == "Conv" { dims.iter().skip(2).map(known).product() } else { dims.iter().skip(1).take(dims.len().saturating_sub(2)).map(known).product() };
            let e = crate::sparsity::speed::expected(gpu, k, c * rs, p.batch * per_sample)?;
            if !e.gain {
                out.push(skip(format!("no expected gain: {}", e.evidence)));
                continue;
            }
            evidence = Some(e.evidence);
        }
        out.push(Ok(Candidate { node: id, label, op, weight: w, shape, axis, k, c, rs, evidence }));
    }
    Ok(out)
}

/// A channel-wise op between a producer and the pruned layer, and how to permute it.
enum PathStep {
    /// Relu, Clip, ... : nothing to permute.
    Elementwise,
    /// Mul/Add/Sub/Div with a constant per-channel operand at this input slot.
    PerChannel(NodeId, usize),
}

/// Walks from the pruned layer's input back to a producer whose output channels can be
/// permuted. Returns the producer and the steps, or the reason it cannot.
fn permutable_producer(g: &Graph, layer: NodeId, channels: usize) -> std::result::Result<(NodeId, Vec<PathStep>), String> {
    let mut v = g.node(layer).and_then(|n| n.inputs.first().copied().flatten()).ok_or("no input")?;
    let mut steps = Vec::new();
    for _ in 0..16 {
        let val = g.value(v).ok_or("stale value")?;
        if val.uses.len() != 1 || g.is_graph_output(v) {
            return Err(format!("tensor '{}' has other consumers; its channel order is shared", val.name));
        }
        let Some((pid, p)) = g.producer_node(v) else {
            return Err(format!("tensor '{}' is a graph input: its channel order is fixed", val.name));
        };
        match p.op_type.as_str() {
            "Conv" | "Gemm" => {
                if p.op_type == "Conv" && p.attr_i("group").unwrap_or(1) != 1 {
                    return Err(format!("producer '{}' is a grouped conv: permuting its outputs would permute its inputs too", node_label(g, pid)));
                }
                if p.op_type == "Gemm" && p.attr_i("transB").unwrap_or(0) == 0 {
                    return Err(format!("producer '{}' is a Gemm without transB", node_label(g, pid)));
                }
                let w = p.inputs.get(1).copied().flatten().ok_or("producer without weight")?;
                if g.constant(w).is_none() || g.v(w).map(|x| x.uses.len()).unwrap_or(0) != 1 {
                    return Err(format!("producer '{}' weight is not a constant of its own", node_label(g, pid)));
                }
                if let Some(b) = p.inputs.get(2).copied().flatten() {
                    if g.constant(b).is_none() || g.v(b).map(|x| x.uses.len()).unwrap_or(0) != 1 {
                        return Err(format!("producer '{}' bias is not a constant of its own", node_label(g, pid)));
                    }
                }
                return Ok((pid, steps));
            }
            "Relu" | "Clip" | "LeakyRelu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Identity" => {
                for extra in p.inputs.iter().skip(1).flatten() {
                    if g.constant(*extra).map(|t| t.numel().unwrap_or(0) > 1).unwrap_or(true) {
                        return Err(format!("'{}' has a non-scalar parameter", node_label(g, pid)));
                    }
                }
                steps.push(PathStep::Elementwise);
                v = p.inputs[0].ok_or("no input")?;
            }
            "Mul" | "Add" | "Sub" | "Div" => {
                let (a, b) = (p.inputs.first().copied().flatten(), p.inputs.get(1).copied().flatten());
                let (act, cslot) = match (a.map(|x| g.constant(x).is_some()), b.map(|x| g.constant(x).is_some())) {
                    (Some(false), Some(true)) => (a.expect("some"), 1),
                    (Some(true), Some(false)) if p.op_type != "Sub" && p.op_type != "Div" => (b.expect("some"), 0),
                    _ => {
                        return Err(format!(
                            "'{}' ({}) combines two activations (a residual connection): its inputs cannot be permuted consistently",
                            node_label(g, pid),
                            p.op_type
                        ))
                    }
                };
                let cv = p.inputs[cslot].expect("some");
                let t = g.constant(cv).expect("constant");
                let n = t.numel().unwrap_or(0);
                if n != 1 {
                    let dims = t.shape();
                    let per_channel = dims.iter().product::<usize>() == channels && dims.iter().filter(|d| **d != 1).count() <= 1;
                    if !per_channel || g.v(cv).map(|x| x.uses.len()).unwrap_or(0) != 1 {
                        return Err(format!("'{}' has a constant that is not per-channel or is shared", node_label(g, pid)));
                    }
                    steps.push(PathStep::PerChannel(pid, cslot));
                } else {
                    steps.push(PathStep::Elementwise);
                }
                v = act;
            }
            other => return Err(format!("channels come from {other} '{}', which cannot be permuted", node_label(g, pid))),
        }
    }
    Err("path to the producer is too long".into())
}

fn permute_const(g: &mut Graph, v: ValueId, axis: usize, perm: &[usize]) -> Result<()> {
    let t = g.constant(v).ok_or_else(|| Error::internal("permute_const on a non-constant"))?.clone();
    let shape = t.shape();
    let data = t.to_f32()?;
    let nd = permute_axis(&data, &shape, axis, perm)?;
    g.set_constant(v, Tensor::from_f32("", t.dims(), &nd))
}

impl Prune {
    fn apply_permutation(&self, g: &mut Graph, cand: &Candidate, producer: NodeId, steps: &[PathStep], perm: &[usize]) -> Result<()> {
        // the layer: its input-channel axis
        permute_const(g, cand.weight, cand.axis, perm)?;
        // the producer: its output-channel axis (Conv: 0; Gemm with transB: 0) and bias
        let p = g.n(producer)?.clone();
        permute_const(g, p.inputs[1].expect("checked"), 0, perm)?;
        if let Some(b) = p.inputs.get(2).copied().flatten() {
            let t = g.constant(b).expect("checked");
            if t.numel()? == perm.len() {
                permute_const(g, b, t.dims().len().saturating_sub(1), perm)?;
            }
        }
        for s in steps {
            if let PathStep::PerChannel(n, slot) = s {
                let v = g.n(*n)?.inputs[*slot].expect("checked");
                let t = g.constant(v).expect("checked").clone();
                let shape = t.shape();
                let ax = shape.iter().position(|d| *d == perm.len()).unwrap_or(0);
                permute_const(g, v, ax, perm)?;
            }
        }
        Ok(())
    }
}

impl Pass for Prune {
    fn name(&self) -> &str {
        NAME
    }
    fn run(&mut self, m: &mut Model, ctx: &mut PassContext) -> Result<PassReport> {
        // with a target GPU: the output sizes decide the GEMM shapes; when no layer is
        // expected to gain, nothing needs data (the magnitude path only reports the skips)
        let nothing_gains = self.gpu.is_some() && {
            crate::ir::shape::infer(&mut m.graph)?;
            candidates(&m.graph, self)?.iter().all(|c| c.is_err())
        };
        if let (Some(b), false) = (self.budget, nothing_gains) {
            return budget::run_budget(self, m, ctx, b);
        }
        if self.method == "obs" && !nothing_gains {
            return obs::run_obs(self, m, ctx);
        }
        let mut rep = PassReport::new(NAME);
        let cands = candidates(&m.graph, self)?;
        let (mut pruned, mut skipped, mut zeroed, mut total_w) = (0usize, 0usize, 0usize, 0usize);
        let (mut kept_abs, mut total_abs) = (0f64, 0f64);
        let mut pruned_layers = Vec::new();
        for c in cands {
            let cand = match c {
                Ok(c) => c,
                Err((_, label, op, why)) => {
                    rep.item(ReportItem::new(&label, &op, "skipped", why));
                    skipped += 1;
                    continue;
                }
            };
            let g = &mut m.graph;
            let layout = GroupLayout::new(&cand.shape, cand.axis)?;
            let data = g.constant(cand.weight).expect("candidate").to_f32()?;
            let retained_identity = retained_fraction_2of4(&data, &layout)?;
            let (class, class_why) = speed_class(cand.k, cand.c, cand.rs);
            let mut item = ReportItem::new(&cand.label, &cand.op, if self.prune { "pruned" } else { "permuted-only" }, class_why)
                .with("weight", g.name_of(cand.weight).to_string())
                .with("shape", cand.shape.clone())
                .with("axis", cand.axis)
                .with("speed_class", class)
                .with("retained_identity", retained_identity);
            if let Some(e) = &cand.evidence {
                item = item.with("evidence", e.clone());
            }
            if self.permute {
                match permutable_producer(g, cand.node, cand.c) {
                    Ok((producer, steps)) => {
                        let res = search_permutation(&data, &layout, &PermuteOptions::default())?;
                        item = item.with("retained_permuted", res.retained_permuted);
                        if res.retained_permuted > res.retained_identity && res.perm.iter().enumerate().any(|(i, p)| i != *p) {
                            self.apply_permutation(g, &cand, producer, &steps, &res.perm)?;
                            item = item.with("permuted_with", node_label(g, producer));
                        } else {
                            item = item.with("permutation", "identity is best");
                        }
                    }
                    Err(why) => {
                        item = item.with("permutation_refused", why);
                    }
                }
            }
            if self.prune {
                let mut w = g.constant(cand.weight).expect("candidate").to_f32()?;
                let sum_abs: f64 = w.iter().map(|x| x.abs() as f64).sum();
                let st = prune_2of4_magnitude(&mut w, &layout)?;
                let t = g.constant(cand.weight).expect("candidate").clone();
                g.set_constant(cand.weight, Tensor::from_f32("", t.dims(), &w))?;
                zeroed += st.zeroed;
                total_w += w.len();
                kept_abs += st.retained_abs_fraction * sum_abs;
                total_abs += sum_abs;
                item = item.with("zeroed", st.zeroed).with("retained", st.retained_abs_fraction);
                pruned_layers.push(cand.label.clone());
            }
            rep.item(item);
            pruned += 1;
        }
        rep.changed = pruned > 0;
        let retained = if total_abs > 0.0 { kept_abs / total_abs } else { 1.0 };
        rep.summary = if self.prune {
            format!("{pruned} layers 2:4-pruned ({zeroed} of {total_w} weights zeroed, {:.1}% of |w| kept), {skipped} skipped", 100.0 * retained)
        } else {
            format!("{pruned} layers permuted (pruning off), {skipped} skipped")
        };
        rep.stat("pruned_layers", pruned);
        rep.stat("skipped_layers", skipped);
        rep.stat("zeroed", zeroed);
        rep.stat("retained", retained);
        ctx.notes.insert("pruned_layers".into(), serde_json::json!(pruned_layers));
        Ok(rep)
    }
}
