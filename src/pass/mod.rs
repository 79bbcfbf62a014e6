//! The pass API: what every pass, built-in or plugin, implements and receives.
//!
//! This module (with `crate::ir`, `crate::text` and `crate::error`) is the API boundary
//! plugin authors rely on; see docs/architecture.md. A pass is a [`Pass`]: a name, typed
//! options parsed from the pipeline string (`prune-2of4{min-channels=64}`), and a `run`
//! over the IR that returns a [`PassReport`] saying, per node, what it changed and why.

pub mod manager;
pub mod options;
pub mod pattern;
pub mod pipeline;
pub mod registry;

pub use manager::{PassManager, RunOptions};
pub use options::{OptionKind, OptionSpec, PassOptions};
pub use pattern::Pattern;
pub use pipeline::{parse_pipeline, PipelineEntry};
pub use registry::{PassFactory, PassInfo, Registry};

use crate::error::Result;
use crate::ir::Model;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Node annotation (see [`crate::ir::Node::set_annotation`]) asking `insert-qdq` to keep
/// the node in float: value `"true"`. Set by the `keep-float` example plugin
/// (passes/keep-float) or by any pass that decides a layer must not be quantized.
pub const KEEP_FLOAT: &str = "sparseqc.keep-float";

/// A graph transformation.
pub trait Pass: Send {
    /// The name used in pipelines (`fold-bn`).
    fn name(&self) -> &str;
    /// Runs the pass. On error the model may be half-changed; the manager then stops
    /// and nothing is written.
    fn run(&mut self, model: &mut Model, ctx: &mut PassContext) -> Result<PassReport>;
}

/// What a pass did to one node or tensor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportItem {
    /// Node name (or tensor name for tensor-level items).
    pub node: String,
    /// Op type (empty for tensors).
    pub op: String,
    /// A short verb: `folded`, `pruned`, `skipped`, `quantized`, `kept-float`, ...
    pub action: String,
    /// Why, in words a user understands.
    pub reason: String,
    /// Figures (weights zeroed, retained magnitude, amax, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl ReportItem {
    pub fn new(node: &str, op: &str, action: &str, reason: impl Into<String>) -> Self {
        ReportItem { node: node.into(), op: op.into(), action: action.into(), reason: reason.into(), details: BTreeMap::new() }
    }
    pub fn with(mut self, key: &str, v: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.into(), v.into());
        self
    }
}

/// A pass's structured report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PassReport {
    pub pass: String,
    /// One line for the console.
    pub summary: String,
    /// Whether the pass changed the model.
    pub changed: bool,
    pub items: Vec<ReportItem>,
    /// Pass-wide figures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, serde_json::Value>,
    /// Wall time in seconds (filled by the manager).
    #[serde(default)]
    pub seconds: f64,
}

impl PassReport {
    pub fn new(pass: &str) -> Self {
        PassReport { pass: pass.into(), ..Default::default() }
    }
    pub fn item(&mut self, it: ReportItem) {
        self.items.push(it);
    }
    pub fn stat(&mut self, key: &str, v: impl Into<serde_json::Value>) {
        self.stats.insert(key.into(), v.into());
    }
    /// Number of items with this action.
    pub fn count(&self, action: &str) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }
}

/// Calibration input chosen on the command line.
#[derive(Debug, Clone, Default)]
pub struct CalibInput {
    /// `--calib DIR|FILE`: images, .npy or .npz.
    pub source: Option<PathBuf>,
    /// `--preprocess`.
    pub preprocess: Option<String>,
    /// `--calib-limit`.
    pub limit: Option<usize>,
    /// `--calib-cache FILE` (TensorRT cache or JSON) used instead of running the model.
    pub cache: Option<PathBuf>,
    /// `--write-calib-cache FILE`.
    pub write_cache: Option<PathBuf>,
}

/// Shared state handed to every pass.
#[derive(Debug, Clone, Default)]
pub struct PassContext {
    /// No progress bars or console chatter.
    pub quiet: bool,
    /// Calibration data settings.
    pub calib: CalibInput,
    /// Free-form values passes leave for later passes (e.g. which layers were pruned).
    pub notes: BTreeMap<String, serde_json::Value>,
    /// Results built-in passes share within one pipeline run to avoid recomputing them
    /// (opaque; plugins pass it along untouched).
    pub cache: RunCache,
}

/// Results that built-in passes leave for later passes of the same pipeline run, so that
/// they are not computed twice. Opaque outside sparseqc. Today: the first calibration
/// samples, decoded, and the float model's observations on them, both recorded by
/// `calibrate` during its run over the data; `bias-correct` reuses the observations after
/// checking on one sample that its float model computes bit-identical values (else it runs
/// the float model itself), which saves it 96 of its 224 model runs on the default pipelines.
#[derive(Clone, Default)]
pub struct RunCache {
    pub(crate) float_obs: Option<std::sync::Arc<crate::measure::FloatObs>>,
    /// The first calibration samples as decoded and preprocessed by `calibrate`, for the
    /// passes after it that take samples from the front (auto scoring, bias-correct, the
    /// fidelity check): JPEG decoding and resizing are not done twice.
    pub(crate) samples: Option<std::sync::Arc<crate::measure::SampleCache>>,
}

impl std::fmt::Debug for RunCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCache")
            .field("float_obs_samples", &self.float_obs.as_ref().map(|o| o.len()))
            .field("decoded_samples", &self.samples.as_ref().map(|c| c.samples.len()))
            .finish()
    }
}

impl PassContext {
    /// Whether progress bars may be drawn (stderr is a terminal and not quiet).
    pub fn show_progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.quiet && std::io::stderr().is_terminal()
    }
}
