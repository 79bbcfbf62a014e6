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
//! 3. The calibration data against the model inputs, opened as every pass opens it
//!    ([`crate::measure::open_calib_source`]): names, static dims, and element types (an array
//!    of another dtype than the input's declared one is an error naming file, array and input).

use crate::error::{Error, Result};
use crate::ir::Model;
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

/// The calibration data against the model inputs: names, static dims, dtypes (the same
/// opening as every pass that reads the data, [`crate::measure::open_calib_source`]).
pub fn check_calib(m: &Model, data: &Path, plan: &Plan) -> Result<()> {
    if let Some(p) = plan.preprocess {
        p.parse::<crate::calib::Preprocess>().map_err(|e| Error::usage(format!("--preprocess '{p}': {e}")))?;
    }
    let ctx = crate::pass::PassContext {
        quiet: true,
        calib: crate::pass::CalibInput { source: Some(data.to_path_buf()), preprocess: plan.preprocess.map(str::to_string), limit: plan.limit, ..Default::default() },
        ..Default::default()
    };
    crate::measure::open_calib_source(m, &ctx, plan.limit, "calibration").map(|_| ())
}
