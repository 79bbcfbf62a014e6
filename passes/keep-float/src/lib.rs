//! `keep-float`: a sparseqc plugin that keeps chosen layers in float.
//!
//! INT8 costs accuracy most in a few places: the first layer (it sees the raw input and
//! has few input channels, so it gains little speed), the last classifier layer, and
//! layers the user found sensitive. This pass marks such layers with the node annotation
//! [`sparseqc::pass::KEEP_FLOAT`] = `"true"`; `insert-qdq` then leaves them in float.
//! Run it before `insert-qdq`:
//!
//! ```text
//! sparseqc model.onnx -o out.onnx --plugin libkeep_float.so \
//!     --passes 'fold-bn,keep-float{first=true,last=true},calibrate,insert-qdq' --calib images/
//! ```
//!
//! Options (see `sparseqc passes --plugin libkeep_float.so`):
//! - `layers`: a pattern of layers to keep (`conv1|layer4.*|op:Gemm`);
//! - `first`, `last`: keep the first / last quantizable layer (in topological order);
//! - `min-channels=N`: keep layers with fewer than N input channels.
//!
//! Quantizable layers are Conv, ConvTranspose, Gemm and MatMul. The report has one item
//! per layer kept, with the reason.

use sparseqc::ir::{Graph, NodeId};
use sparseqc::pass::{
    OptionKind, OptionSpec, Pass, PassContext, PassInfo, PassOptions, PassReport, Pattern, Registry, ReportItem, KEEP_FLOAT,
};
use sparseqc::{ir::Model, Error, Result};

const QUANTIZABLE: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul"];

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("layers", OptionKind::Str, "", "pattern of layers to keep in float ('conv1|layer4.*|op:Gemm')"),
    OptionSpec::new("first", OptionKind::Bool, "false", "keep the first quantizable layer in float"),
    OptionSpec::new("last", OptionKind::Bool, "false", "keep the last quantizable layer in float"),
    OptionSpec::new("min-channels", OptionKind::Int, "0", "keep layers with fewer input channels than this in float"),
];

/// The `keep-float` pass.
#[derive(Debug, Clone)]
pub struct KeepFloat {
    layers: Option<(String, Pattern)>,
    first: bool,
    last: bool,
    min_channels: i64,
}

impl KeepFloat {
    /// Builds the pass from its pipeline options.
    pub fn from_options(o: &PassOptions) -> Result<KeepFloat> {
        let layers = o.str("layers").filter(|s| !s.trim().is_empty()).map(|s| (s.to_string(), Pattern::parse(s)));
        let min_channels = o.int("min-channels", 0)?;
        if min_channels < 0 {
            return Err(Error::usage(format!("pass 'keep-float': min-channels must be 0 or more, got {min_channels}")));
        }
        let first = o.bool("first", false)?;
        let last = o.bool("last", false)?;
        if layers.is_none() && !first && !last && min_channels == 0 {
            return Err(Error::usage(
                "pass 'keep-float' has nothing to do: give layers=PATTERN, first, last or min-channels=N",
            ));
        }
        Ok(KeepFloat { layers, first, last, min_channels })
    }
}

/// The number of input channels of a quantizable layer, from its constant weight.
fn input_channels(g: &Graph, id: NodeId) -> Option<i64> {
    let n = g.node(id)?;
    let (w, perm) = sparseqc::inspect::find_weight(g, id, 1)?;
    if perm.is_some() {
        return None;
    }
    let dims = g.constant(w)?.dims().to_vec();
    match n.op_type.as_str() {
        // K x C/group x R x S
        "Conv" if dims.len() >= 3 => Some(dims[1] * n.attr_i("group").unwrap_or(1)),
        // C x K/group x R x S
        "ConvTranspose" if dims.len() >= 3 => Some(dims[0]),
        "Gemm" if dims.len() == 2 => Some(if n.attr_i("transB").unwrap_or(0) != 0 { dims[1] } else { dims[0] }),
        "MatMul" if dims.len() >= 2 => Some(dims[dims.len() - 2]),
        _ => None,
    }
}

impl Pass for KeepFloat {
    fn name(&self) -> &str {
        "keep-float"
    }

    fn run(&mut self, model: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let g = &mut model.graph;
        let mut report = PassReport::new("keep-float");
        let layers: Vec<NodeId> = g
            .topo_order()?
            .into_iter()
            .filter(|id| g.node(*id).is_some_and(|n| n.domain.is_empty() && QUANTIZABLE.contains(&n.op_type.as_str())))
            .collect();
        let mut kept = 0usize;
        for (i, &id) in layers.iter().enumerate() {
            let n = g.n(id)?;
            let channels = input_channels(g, id);
            let mut reasons = Vec::new();
            if let Some((text, pat)) = &self.layers {
                if pat.matches_any(&n.name, &n.op_type) {
                    reasons.push(format!("matches '{text}'"));
                }
            }
            if self.first && i == 0 {
                reasons.push("first quantizable layer".to_string());
            }
            if self.last && i + 1 == layers.len() {
                reasons.push("last quantizable layer".to_string());
            }
            if let Some(c) = channels {
                if c < self.min_channels {
                    reasons.push(format!("{c} input channels < min-channels={}", self.min_channels));
                }
            }
            if reasons.is_empty() {
                continue;
            }
            let (name, op) = (n.name.clone(), n.op_type.clone());
            let already = n.annotation(KEEP_FLOAT) == Some("true");
            let mut item = ReportItem::new(&name, &op, if already { "unchanged" } else { "kept-float" }, reasons.join("; "));
            if let Some(c) = channels {
                item = item.with("in_channels", c);
            }
            report.item(item);
            kept += 1;
            if !already {
                g.node_mut(id).ok_or_else(|| Error::internal("keep-float: node vanished"))?.set_annotation(KEEP_FLOAT, "true");
                report.changed = true;
            }
        }
        report.summary = format!("{kept} of {} quantizable layers kept in float", layers.len());
        report.stat("quantizable", layers.len());
        report.stat("kept", kept);
        Ok(report)
    }
}

/// Test-only passes (feature `test-passes`): they change the model, then fail.
#[cfg(feature = "test-passes")]
mod failing {
    use super::*;

    /// `test-fail` returns an error, `test-panic` panics; both after marking every node.
    pub struct Failing {
        pub panic: bool,
    }

    impl Pass for Failing {
        fn name(&self) -> &str {
            if self.panic {
                "test-panic"
            } else {
                "test-fail"
            }
        }
        fn run(&mut self, model: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
            for id in model.graph.node_ids() {
                if let Some(n) = model.graph.node_mut(id) {
                    n.set_annotation(KEEP_FLOAT, "true");
                }
            }
            if self.panic {
                panic!("deliberate panic in the middle of the rewrite");
            }
            Err(Error::user("deliberate failure in the middle of the rewrite"))
        }
    }
}

/// Registers the plugin's passes; sparseqc calls it through `export_plugin!`, and tests
/// call it directly.
pub fn register(reg: &mut Registry) -> Result<()> {
    reg.register(
        PassInfo {
            name: "keep-float".into(),
            summary: "keep chosen layers in float: mark them so insert-qdq leaves them unquantized".into(),
            options: OPTIONS.to_vec(),
            origin: String::new(), // filled in by sparseqc with the library's path
        },
        Box::new(|o: &PassOptions| -> Result<Box<dyn Pass>> { Ok(Box::new(KeepFloat::from_options(o)?)) }),
    )?;
    #[cfg(feature = "test-passes")]
    for (name, panic) in [("test-fail", false), ("test-panic", true)] {
        reg.register(
            PassInfo {
                name: name.into(),
                summary: "fails on purpose after changing the model (tests only)".into(),
                options: vec![],
                origin: String::new(),
            },
            Box::new(move |_: &PassOptions| -> Result<Box<dyn Pass>> { Ok(Box::new(failing::Failing { panic })) }),
        )?;
    }
    Ok(())
}

#[cfg(not(feature = "wrong-abi"))]
sparseqc::export_plugin!(name: "keep-float", register: register);

// For sparseqc's tests only: the same plugin, stamped with another ABI version.
#[cfg(feature = "wrong-abi")]
sparseqc::export_plugin!(
    @with_stamp sparseqc::plugin::AbiStamp {
        abi_version: sparseqc::plugin::ABI_VERSION + 1,
        ..sparseqc::plugin::ABI_STAMP
    },
    name: "keep-float",
    register: register
);
