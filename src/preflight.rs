//! Preflight: what can be known to fail is said right after loading, before any pass that
//! costs time, and all at once.
//!
//! 1. The opset path: when the pipeline runs `upgrade-opset` on an older model, the pass
//!    runs on a copy of the model (a copy shares the tensor bytes), so every node it would
//!    refuse is listed with its reason, exactly as the pass will decide.
//! 2. When the model is going to be executed (calibration data given): every node's op is
//!    one the interpreter runs ([`crate::exec::is_supported`], the interpreter's own
//!    dispatch), judged on the model as `upgrade-opset` leaves it; the unsupported ones are
//!    listed grouped by op, with their nodes.
//! 3. The calibration data against the model inputs: names, static dims
//!    ([`crate::calib::open_source`] validates them), and element types: an array of another
//!    dtype than the input's declared one is an error naming file, array and input.

use crate::calib::{CalibSource, ModelInput, Preprocess, SourceOptions};
use crate::error::{Error, Result};
use crate::ir::{Dim, Model};
use std::collections::BTreeMap;
use std::path::Path;

/// What the preflight needs to know of the run.
pub struct Plan<'a> {
    /// The pipeline runs `upgrade-opset`.
    pub upgrades_opset: bool,
    /// `--calib`: the model will run on this data.
    pub calib: Option<&'a Path>,
    /// `--preprocess`.
    pub preprocess: Option<&'a str>,
    /// `--calib-limit`.
    pub limit: Option<usize>,
}

/// The model inputs the calibration data must feed (graph inputs without a default value):
/// name and dims, `None` for a dynamic one (symbolic, unknown, or written as -1 or 0 by
/// exporters).
pub fn model_inputs(m: &Model) -> Vec<(ModelInput, i32)> {
    let g = &m.graph;
    g.inputs
        .iter()
        .filter_map(|v| g.value(*v))
        .filter(|val| val.constant.is_none())
        .map(|val| {
            let ty = val.ty.as_ref();
            let dims = ty
                .and_then(|t| t.shape.as_ref())
                .map(|s| s.iter().map(|d| if let Dim::Known(k) = d { (*k > 0).then_some(*k as usize) } else { None }).collect())
                .unwrap_or_default();
            ((val.name.clone(), dims), ty.map(|t| t.elem).unwrap_or(0))
        })
        .collect()
}

/// The numpy dtype name that feeds an ONNX element type exactly.
pub fn numpy_name(elem: i32) -> Option<&'static str> {
    Some(match elem {
        1 => "float32",
        11 => "float64",
        7 => "int64",
        6 => "int32",
        2 => "uint8",
        9 => "bool",
        10 => "float16",
        _ => return None,
    })
}

/// Runs every check; one error lists every problem of the first failing check.
pub fn check(m: &Model, plan: &Plan) -> Result<()> {
    let upgraded;
    let model = if plan.upgrades_opset && crate::passes::upgrade_opset::needs_upgrade(m) {
        let mut copy = m.clone();
        let mut pass = crate::passes::upgrade_opset::UpgradeOpset;
        let mut ctx = crate::pass::PassContext { quiet: true, ..Default::default() };
        crate::pass::Pass::run(&mut pass, &mut copy, &mut ctx)?;
        upgraded = copy;
        &upgraded
    } else {
        m
    };
    if let Some(data) = plan.calib {
        check_ops(model)?;
        check_calib(m, data, plan)?;
    }
    Ok(())
}

/// Every node's op must be one the interpreter runs.
pub fn check_ops(m: &Model) -> Result<()> {
    let opset = m.opset();
    let g = &m.graph;
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in g.node_ids() {
        let Some(n) = g.node(id) else { continue };
        if !crate::exec::is_supported(&n.op_type, &n.domain, opset) {
            let key = if n.domain.is_empty() || n.domain == "ai.onnx" { n.op_type.clone() } else { format!("{}::{}", n.domain, n.op_type) };
            let name = if n.name.is_empty() { format!("<unnamed {}>", n.op_type) } else { n.name.clone() };
            missing.entry(key).or_default().push(name);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let nodes: usize = missing.values().map(|v| v.len()).sum();
    let lines: Vec<String> = missing
        .iter()
        .map(|(op, names)| {
            let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
            let more = if names.len() > 8 { format!(", ... ({} more)", names.len() - 8) } else { String::new() };
            format!("  {op} ({} node{}): {}{more}", names.len(), if names.len() == 1 { "" } else { "s" }, shown.join(", "))
        })
        .collect();
    Err(Error::user(format!(
        "the interpreter that runs the model on the calibration data does not support {} op type{} ({nodes} node{}, opset {opset}):\n{}",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        if nodes == 1 { "" } else { "s" },
        lines.join("\n")
    )))
}

/// The calibration data against the model inputs: names, static dims, dtypes.
pub fn check_calib(m: &Model, data: &Path, plan: &Plan) -> Result<()> {
    let inputs = model_inputs(m);
    let preprocess = match plan.preprocess {
        Some(p) => Some(p.parse::<Preprocess>().map_err(|e| Error::usage(format!("--preprocess '{p}': {e}")))?),
        None => None,
    };
    let dims: Vec<ModelInput> = inputs.iter().map(|(d, _)| d.clone()).collect();
    let source = crate::calib::open_source(data, &SourceOptions { preprocess, limit: plan.limit }, &dims)
        .map_err(|e| e.context(format!("--calib {}", data.display())))?;
    check_dtypes(source.as_ref(), &inputs)
}

/// Array dtypes against the inputs' declared element types (images feed float inputs).
pub fn check_dtypes(source: &dyn CalibSource, inputs: &[(ModelInput, i32)]) -> Result<()> {
    let mut bad = Vec::new();
    for s in source.inputs() {
        let Some(((name, _), elem)) = inputs.iter().find(|((n, _), _)| n == &s.name) else { continue };
        let image = s.dtype == "uint8" && source.describe().starts_with("image folder");
        let want = numpy_name(*elem);
        let ok = match want {
            None => *elem == 0,
            Some(w) => w == s.dtype || (image && matches!(*elem, 1 | 10 | 11)),
        };
        if !ok {
            bad.push(format!(
                "array '{}' is {} but model input '{name}' is {}",
                s.name,
                s.dtype,
                want.unwrap_or(crate::ir::tensor::dtype_name(*elem))
            ));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::user(format!(
        "{}: {} (save the arrays with the input's dtype, e.g. arr.astype(np.int64))",
        source.describe(),
        bad.join("; ")
    )))
}
