//! The TensorRT back end entry points used by the CLI: `-o model.plan`, `--emit network FILE`
//! and `sparseqc print --network`. The lowering itself is [`crate::trt::lower`].

use crate::cli::CompileArgs;
use crate::error::{Error, Result};
use crate::ir::{Dim, Model};
use crate::trt::{
    build_engine, check_available, lower, lower_network, network_to_text, write_network_file,
    LowerOptions, OptimizationProfile, Severity, SparsityReport, TrtVersion,
};
use std::path::Path;

/// What `build_plan` built.
#[derive(Debug, Clone)]
pub struct PlanSummary {
    /// Size of the `.plan` in bytes.
    pub bytes: usize,
    /// Layers of the network definition.
    pub layers: usize,
    /// The sparsity lines of TensorRT's build log.
    pub sparsity: SparsityReport,
}

impl PlanSummary {
    /// The summary as JSON, for `--report`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "plan_bytes": self.bytes,
            "network_layers": self.layers,
            "sparsity": {
                "reported": self.sparsity.seen,
                "eligible": self.sparsity.eligible,
                "picked": self.sparsity.picked,
                "eligible_not_picked": self.sparsity.not_picked(),
            }
        })
    }
}

/// The lowering options the command line asks for.
pub fn lower_options(a: &CompileArgs) -> Result<LowerOptions> {
    let target = TrtVersion::parse(&a.trt_version.to_string())
        .map_err(|_| Error::usage(format!("--trt-version {}: use 10 or 11", a.trt_version)))?;
    if let Some(s) = &a.shapes {
        OptimizationProfile::parse(s)?;
    }
    Ok(LowerOptions {
        target,
        strongly_typed: None,
        workspace_mib: Some(a.workspace),
        shapes: a.shapes.clone(),
    })
}

/// Refuses a `.plan` output up front (before any pass runs or anything is written) when no
/// TensorRT engine can be built on this machine: one error that says what to install and
/// how to get an engine meanwhile.
pub fn check_plan_possible(a: &CompileArgs) -> Result<()> {
    lower_options(a)?;
    check_available()
}

/// Checks, before the pipeline runs, that every input with a dynamic dimension has shapes
/// in `--shapes` (the network needs an optimization profile for it).
pub fn check_input_shapes(model: &Model, a: &CompileArgs) -> Result<()> {
    if a.shapes.is_some() {
        return Ok(());
    }
    let g = &model.graph;
    for &v in &g.inputs {
        let val = g.v(v)?;
        if val.constant.is_some() {
            continue;
        }
        let dynamic = match val.ty.as_ref().and_then(|t| t.shape.as_ref()) {
            Some(s) => s.iter().any(|d| !matches!(d, Dim::Known(_))),
            None => false,
        };
        if dynamic {
            let dims: Vec<String> = val
                .ty
                .iter()
                .flat_map(|t| t.shape.iter().flatten())
                .map(|d| match d {
                    Dim::Known(k) => k.to_string(),
                    _ => "1".into(),
                })
                .collect();
            return Err(Error::usage(format!(
                "input '{}' has dynamic dimensions: a TensorRT engine needs its shapes, e.g. --shapes {}:{}",
                val.name,
                val.name,
                dims.join("x")
            )));
        }
    }
    Ok(())
}

/// Lowers the model, builds the engine through TensorRT and writes `out` (atomically: on
/// any error nothing is written). TensorRT's warnings, errors and sparsity lines go to
/// stderr unless `--quiet`.
pub fn build_plan(model: &Model, out: &Path, a: &CompileArgs) -> Result<PlanSummary> {
    let opts = lower_options(a)?;
    let (net, config) = lower(model, &opts)?;
    let quiet = a.quiet;
    let build = build_engine(&net, &config, &mut |sev, msg| {
        if !quiet && (sev <= Severity::Warning || msg.contains("(Sparsity)")) {
            eprintln!("[TensorRT {}] {msg}", sev.tag());
        }
    })?;
    crate::util::write_atomic(out, &build.plan)?;
    if !quiet {
        eprint!("{}", build.sparsity);
    }
    Ok(PlanSummary {
        bytes: build.plan.len(),
        layers: net.layers().len(),
        sparsity: build.sparsity,
    })
}

/// Writes the lowered network and its build configuration (`--emit network FILE`).
pub fn emit_network(model: &Model, out: &Path, a: &CompileArgs) -> Result<()> {
    let opts = lower_options(a)?;
    let (net, config) = lower(model, &opts)?;
    write_network_file(out, &net, &config)
}

/// The text form of the network the model lowers to (`sparseqc print --network`).
pub fn network_text(model: &Model) -> Result<String> {
    let net = lower_network(model)?;
    Ok(network_to_text(&net, None))
}
