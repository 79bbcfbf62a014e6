//! A testing kit for pass authors (built-in passes and plugins alike).
//!
//! - **Snapshots, text in → text out**: [`check_pipeline`] parses a model written in the
//!   text form (see [`crate::text`]), runs a pipeline string on it, and returns the
//!   printed result, ready for `insta::assert_snapshot!`. [`check_pipeline_with_report`]
//!   appends the passes' reports; [`pipeline_error`] returns the error of a pipeline that
//!   must fail.
//! - **The rewrite keeps the function**: [`assert_same_function`] runs the model before
//!   and after on the same (seeded random or given) inputs and compares every output. The
//!   engine is an [`Engine`]; the default, [`OrtPython`], writes both models to temporary
//!   ONNX files and runs them with onnxruntime in Python.
//! - **TensorRT's structural rules**: [`check_2of4`] (2:4 sparsity along the input
//!   channels) and [`check_qdq`] (Q/DQ placement for explicit quantization), each with an
//!   `assert_` form.
//!
//! The `check_*` and `assert_*` helpers are meant for tests: they panic with a readable
//! message when the model is bad or the check fails. The `run_*`/`compare_*` functions
//! return [`Result`]s instead.
//!
//! ```ignore
//! use sparseqc::testing::*;
//! let mut reg = sparseqc::pass::Registry::new();
//! my_plugin::register(&mut reg).unwrap();
//! insta::assert_snapshot!(check_pipeline(INPUT, "keep-float{first=true}", &reg));
//! let run = run_pipeline(INPUT, "keep-float{first=true}", &reg).unwrap();
//! assert_same_function(&run.before, &run.after, 1e-6);
//! ```

use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, Model, NodeId, Tensor};
use crate::pass::{parse_pipeline, PassContext, PassManager, PassReport, Pattern, Registry, RunOptions, KEEP_FLOAT};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------
// Pipelines on text
// ---------------------------------------------------------------------------------

/// The outcome of [`run_pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineRun {
    /// The model as parsed from the input text.
    pub before: Model,
    /// The model after the pipeline.
    pub after: Model,
    /// One report per pass, in order.
    pub reports: Vec<PassReport>,
}

impl PipelineRun {
    /// The result in the canonical text form.
    pub fn ir(&self) -> Result<String> {
        crate::text::print(&self.after, &Default::default())
    }
    /// The reports as `#` comment lines (see [`format_reports`]).
    pub fn report_text(&self) -> String {
        format_reports(&self.reports)
    }
}

/// Parses `input` (text form), runs `pipeline` (e.g. `"fold-bn,my-pass{x=1}"`) with
/// passes from `reg`, verifying the IR after every pass.
pub fn run_pipeline(input: &str, pipeline: &str, reg: &Registry) -> Result<PipelineRun> {
    let before = crate::text::parse(input).map_err(|e| e.context("the input text"))?;
    let mut after = before.clone();
    let entries = parse_pipeline(pipeline)?;
    let passes = entries.iter().map(|e| reg.create(e)).collect::<Result<Vec<_>>>()?;
    let mut pm = PassManager::new(passes, RunOptions { verify_each: true, ..Default::default() });
    let mut ctx = PassContext { quiet: true, ..Default::default() };
    let reports = pm.run(&mut after, &mut ctx)?;
    Ok(PipelineRun { before, after, reports })
}

/// Runs `pipeline` on the text-form model `input` and returns the result in the text
/// form, for `insta::assert_snapshot!`. Panics (with the error) if anything fails.
pub fn check_pipeline(input: &str, pipeline: &str, reg: &Registry) -> String {
    let run = run_pipeline(input, pipeline, reg).unwrap_or_else(|e| panic!("pipeline '{pipeline}' failed: {e}"));
    run.ir().unwrap_or_else(|e| panic!("cannot print the result of '{pipeline}': {e}"))
}

/// Like [`check_pipeline`], followed by the passes' reports (without timings).
pub fn check_pipeline_with_report(input: &str, pipeline: &str, reg: &Registry) -> String {
    let run = run_pipeline(input, pipeline, reg).unwrap_or_else(|e| panic!("pipeline '{pipeline}' failed: {e}"));
    let ir = run.ir().unwrap_or_else(|e| panic!("cannot print the result of '{pipeline}': {e}"));
    format!("{ir}{}", run.report_text())
}

/// The error message of a pipeline that must fail. Panics if it succeeds.
pub fn pipeline_error(input: &str, pipeline: &str, reg: &Registry) -> String {
    match run_pipeline(input, pipeline, reg) {
        Ok(_) => panic!("pipeline '{pipeline}' was expected to fail but succeeded"),
        Err(e) => e.to_string(),
    }
}

/// Parses a text-form model, panicking with the parse error (line and column).
pub fn parse_model(text: &str) -> Model {
    crate::text::parse(text).unwrap_or_else(|e| panic!("cannot parse the model text: {e}"))
}

/// Reports as deterministic `#` comment lines (no timings), one block per pass:
///
/// ```text
/// # pass keep-float: kept 1 of 3 layers in float [changed]
/// #   conv1 (Conv) kept-float: first quantizable layer {"in_channels":3}
/// #   stats {"layers":3}
/// ```
pub fn format_reports(reports: &[PassReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let _ = writeln!(s, "# pass {}: {}{}", r.pass, r.summary, if r.changed { " [changed]" } else { "" });
        for it in &r.items {
            let op = if it.op.is_empty() { String::new() } else { format!(" ({})", it.op) };
            let details = if it.details.is_empty() {
                String::new()
            } else {
                format!(" {}", serde_json::to_string(&it.details).unwrap_or_default())
            };
            let _ = writeln!(s, "#   {}{op} {}: {}{details}", it.node, it.action, it.reason);
        }
        if !r.stats.is_empty() {
            let _ = writeln!(s, "#   stats {}", serde_json::to_string(&r.stats).unwrap_or_default());
        }
    }
    s
}

// ---------------------------------------------------------------------------------
// Function preservation
// ---------------------------------------------------------------------------------

/// One output of one model run, converted to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The graph output's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The element type the engine produced (`float32`, `int64`, ...).
    pub dtype: String,
    /// The values in row-major order.
    pub values: Vec<f64>,
}

/// Something that runs models: onnxruntime through Python ([`OrtPython`]) today; the CPU
/// interpreter `sparseqc::exec` can implement it too.
pub trait Engine {
    /// A name for messages.
    fn name(&self) -> String;
    /// Runs each model on the same inputs (tensors named like the graph inputs; a model
    /// gets those of them it declares) and returns each model's outputs in order.
    fn run(&self, models: &[&Model], inputs: &[Tensor]) -> Result<Vec<Vec<Output>>>;
}

/// onnxruntime (CPU, graph optimisations off) in a Python process. The interpreter is
/// `$SPARSEQC_PYTHON`, else the first `.venv/bin/python` found from the current folder
/// upwards or in the sparseqc source folder, else `python3`.
#[derive(Debug, Clone)]
pub struct OrtPython {
    python: PathBuf,
}

const ORT_SCRIPT: &str = r#"
import json, sys
spec = json.load(open(sys.argv[1]))
import numpy as np
import onnxruntime as ort
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
so.log_severity_level = 3
arrays = {}
for i in spec["inputs"]:
    arrays[i["name"]] = np.fromfile(i["file"], dtype=np.dtype(i["dtype"])).reshape(i["shape"])
result = []
for mi, path in enumerate(spec["models"]):
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {x.name: arrays[x.name] for x in sess.get_inputs() if x.name in arrays}
    missing = [x.name for x in sess.get_inputs() if x.name not in arrays]
    if missing:
        sys.exit("model %d: no value given for input(s) %s" % (mi, ", ".join(missing)))
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, feeds)
    r = []
    for oi, (n, o) in enumerate(zip(names, outs)):
        a = np.asarray(o)
        f = "%s/out_%d_%d.bin" % (spec["out_dir"], mi, oi)
        np.ascontiguousarray(a.astype(np.float64)).tofile(f)
        r.append({"name": n, "shape": list(a.shape), "dtype": str(a.dtype), "file": f})
    result.append(r)
json.dump(result, open(spec["result"], "w"))
"#;

fn numpy_dtype(dt: i32) -> Option<&'static str> {
    Some(match dt {
        1 => "<f4",
        2 => "u1",
        3 => "i1",
        4 => "<u2",
        5 => "<i2",
        6 => "<i4",
        7 => "<i8",
        9 => "?",
        10 => "<f2",
        11 => "<f8",
        12 => "<u4",
        13 => "<u8",
        _ => return None,
    })
}

fn python_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("SPARSEQC_PYTHON") {
        c.push(PathBuf::from(p));
    }
    if let Ok(mut d) = std::env::current_dir() {
        loop {
            c.push(d.join(".venv/bin/python"));
            if !d.pop() {
                break;
            }
        }
    }
    c.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    c.push(PathBuf::from("python3"));
    c
}

impl OrtPython {
    /// Finds a Python with onnxruntime and numpy. The error says what was tried.
    pub fn find() -> std::result::Result<OrtPython, String> {
        static FOUND: OnceLock<std::result::Result<OrtPython, String>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let mut tried = Vec::new();
                for p in python_candidates() {
                    if p.components().count() > 1 && !p.exists() {
                        continue;
                    }
                    let out = std::process::Command::new(&p)
                        .args(["-c", "import onnxruntime, numpy"])
                        .stdin(std::process::Stdio::null())
                        .output();
                    match out {
                        Ok(o) if o.status.success() => return Ok(OrtPython { python: p }),
                        Ok(o) => {
                            let err = String::from_utf8_lossy(&o.stderr);
                            tried.push(format!("{}: {}", p.display(), err.trim().lines().last().unwrap_or("failed")))
                        }
                        Err(e) => tried.push(format!("{}: {e}", p.display())),
                    }
                }
                Err(format!(
                    "no Python with onnxruntime and numpy found (tried {}); create one with \
                     `python3 -m venv .venv && .venv/bin/pip install onnxruntime numpy` in the repository root, \
                     or set SPARSEQC_PYTHON",
                    tried.join("; ")
                ))
            })
            .clone()
    }
    /// Uses this interpreter (it must have onnxruntime and numpy).
    pub fn with_python(python: impl Into<PathBuf>) -> OrtPython {
        OrtPython { python: python.into() }
    }
}

fn save_for_engine(model: &Model, path: &Path) -> Result<()> {
    let proto = crate::ir::export::export(model)?;
    let opts = crate::onnx::SaveOptions { external: crate::onnx::ExternalPolicy::Never, ..Default::default() };
    crate::onnx::save(proto, path, &opts)?;
    Ok(())
}

impl Engine for OrtPython {
    fn name(&self) -> String {
        format!("onnxruntime ({})", self.python.display())
    }
    fn run(&self, models: &[&Model], inputs: &[Tensor]) -> Result<Vec<Vec<Output>>> {
        let dir = tempfile::tempdir().map_err(|e| Error::user(format!("cannot make a temporary folder: {e}")))?;
        let d = dir.path();
        let mut model_paths = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let p = d.join(format!("model_{i}.onnx"));
            save_for_engine(m, &p).map_err(|e| e.context(format!("writing model {i} for onnxruntime")))?;
            model_paths.push(p.display().to_string());
        }
        let mut ins = Vec::new();
        for (i, t) in inputs.iter().enumerate() {
            let name = t.proto.name().to_string();
            let dtype = numpy_dtype(t.dtype()).ok_or_else(|| {
                Error::user(format!(
                    "input '{name}': type {} cannot be passed to onnxruntime",
                    crate::ir::tensor::dtype_name(t.dtype())
                ))
            })?;
            let f = d.join(format!("in_{i}.bin"));
            std::fs::write(&f, t.raw_bytes()?.as_ref())?;
            ins.push(serde_json::json!({"name": name, "dtype": dtype, "shape": t.dims(), "file": f.display().to_string()}));
        }
        let result = d.join("result.json");
        let spec = serde_json::json!({
            "models": model_paths,
            "inputs": ins,
            "out_dir": d.display().to_string(),
            "result": result.display().to_string(),
        });
        let spec_path = d.join("spec.json");
        std::fs::write(&spec_path, spec.to_string())?;
        let out = std::process::Command::new(&self.python)
            .arg("-c")
            .arg(ORT_SCRIPT)
            .arg(&spec_path)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::user(format!("cannot run {}: {e}", self.python.display())))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.trim().lines().rev().take(6).collect();
            return Err(Error::user(format!(
                "onnxruntime failed: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        let text = std::fs::read_to_string(&result)?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::internal(format!("bad onnxruntime result: {e}")))?;
        let mut all = Vec::new();
        for m in doc.as_array().into_iter().flatten() {
            let mut outs = Vec::new();
            for o in m.as_array().into_iter().flatten() {
                let file = o["file"].as_str().unwrap_or_default();
                let bytes = std::fs::read(file)?;
                let values = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
                outs.push(Output {
                    name: o["name"].as_str().unwrap_or_default().to_string(),
                    shape: o["shape"].as_array().into_iter().flatten().map(|x| x.as_u64().unwrap_or(0) as usize).collect(),
                    dtype: o["dtype"].as_str().unwrap_or_default().to_string(),
                    values,
                });
            }
            all.push(outs);
        }
        if all.len() != models.len() {
            return Err(Error::internal("onnxruntime returned results for the wrong number of models"));
        }
        Ok(all)
    }
}

/// The engine [`assert_same_function`] uses, or why there is none.
pub fn default_engine() -> std::result::Result<Box<dyn Engine>, String> {
    OrtPython::find().map(|e| Box::new(e) as Box<dyn Engine>)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeded inputs for every graph input that has no default value: floats uniform in
/// [-1, 1); symbolic dimensions are 1. Inputs of other types must be given explicitly.
pub fn random_inputs(model: &Model, seed: u64) -> Result<Vec<Tensor>> {
    let g = &model.graph;
    let mut state = seed;
    let mut out = Vec::new();
    for &v in &g.inputs {
        let val = g.v(v)?;
        if val.constant.is_some() {
            continue;
        }
        let ty = val.ty.as_ref().ok_or_else(|| Error::user(format!("input '{}' has no type; give the inputs", val.name)))?;
        let shape = ty.shape.as_ref().ok_or_else(|| Error::user(format!("input '{}' has no shape; give the inputs", val.name)))?;
        let dims: Vec<i64> = shape.iter().map(|d| if let Dim::Known(k) = d { *k } else { 1 }).collect();
        let n: usize = dims.iter().map(|&d| d.max(0) as usize).product();
        let mut vals = Vec::with_capacity(n);
        for _ in 0..n {
            let r = (splitmix(&mut state) >> 40) as f32 / (1u64 << 24) as f32;
            vals.push(r * 2.0 - 1.0);
        }
        let t = match ty.elem {
            1 => Tensor::from_f32(&val.name, &dims, &vals),
            11 => {
                let mut t = Tensor::from_f32(&val.name, &dims, &[]);
                let mut raw = Vec::with_capacity(n * 8);
                vals.iter().for_each(|x| raw.extend_from_slice(&(*x as f64).to_le_bytes()));
                t.proto.data_type = Some(11);
                t.proto.raw_data = Some(raw.into());
                t
            }
            other => {
                return Err(Error::user(format!(
                    "input '{}' is {}: random inputs are made for float and double only; give the inputs",
                    val.name,
                    crate::ir::tensor::dtype_name(other)
                )))
            }
        };
        out.push(t);
    }
    Ok(out)
}

/// How one output differs between the two models.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDiff {
    /// The output's name (in the first model).
    pub name: String,
    /// Largest |a - b|.
    pub max_abs: f64,
    /// Where it is (flat index) and the two values there.
    pub worst: Option<(usize, f64, f64)>,
    /// Elements outside the tolerance.
    pub mismatches: usize,
    /// Elements compared.
    pub count: usize,
    /// A structural difference (shape, name, count), if any.
    pub problem: Option<String>,
}

/// The result of comparing two models on the same inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDiff {
    /// The engine that ran them.
    pub engine: String,
    /// The tolerance used.
    pub tol: f64,
    /// One entry per output.
    pub outputs: Vec<OutputDiff>,
}

impl FunctionDiff {
    /// Whether every output matched within the tolerance.
    pub fn is_same(&self) -> bool {
        self.outputs.iter().all(|o| o.problem.is_none() && o.mismatches == 0)
    }
}

impl fmt::Display for FunctionDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "compared with {} (tolerance {:e}, relative above 1):", self.engine, self.tol)?;
        for o in &self.outputs {
            if let Some(p) = &o.problem {
                writeln!(f, "  {}: {p}", o.name)?;
            } else {
                write!(f, "  {}: {} of {} elements differ, max |diff| {:e}", o.name, o.mismatches, o.count, o.max_abs)?;
                if let Some((i, a, b)) = o.worst {
                    write!(f, " at flat index {i} (before {a}, after {b})")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// Runs `before` and `after` on `inputs` with `engine` and compares every output:
/// elements match when equal (NaN matches NaN) or when `|a - b| <= tol * max(1, |a|)`.
pub fn compare_function(before: &Model, after: &Model, inputs: &[Tensor], tol: f64, engine: &dyn Engine) -> Result<FunctionDiff> {
    let res = engine.run(&[before, after], inputs)?;
    let (a, b) = (&res[0], &res[1]);
    let mut outputs = Vec::new();
    if a.len() != b.len() {
        outputs.push(OutputDiff {
            name: "(outputs)".into(),
            max_abs: f64::NAN,
            worst: None,
            mismatches: 0,
            count: 0,
            problem: Some(format!("before has {} outputs, after has {}", a.len(), b.len())),
        });
    }
    for (x, y) in a.iter().zip(b.iter()) {
        let mut d = OutputDiff { name: x.name.clone(), max_abs: 0.0, worst: None, mismatches: 0, count: x.values.len(), problem: None };
        if x.name != y.name {
            d.problem = Some(format!("output renamed to '{}'", y.name));
        } else if x.shape != y.shape {
            d.problem = Some(format!("shape {:?} became {:?}", x.shape, y.shape));
        } else {
            for (i, (&p, &q)) in x.values.iter().zip(y.values.iter()).enumerate() {
                if (p.is_nan() && q.is_nan()) || p == q {
                    continue;
                }
                // NaN on one side only (or inf - inf) is the largest difference there is
                let diff = (p - q).abs();
                let diff = if diff.is_nan() { f64::INFINITY } else { diff };
                // unequal values where either is infinite never match
                let ok = p.is_finite() && q.is_finite() && diff <= tol * p.abs().max(1.0);
                if !ok {
                    d.mismatches += 1;
                }
                if diff > d.max_abs || d.worst.is_none() {
                    d.max_abs = diff;
                    d.worst = Some((i, p, q));
                }
            }
        }
        outputs.push(d);
    }
    Ok(FunctionDiff { engine: engine.name(), tol, outputs })
}

/// Asserts that `after` computes what `before` computes, on seeded random inputs (see
/// [`random_inputs`]), within `tol` (see [`compare_function`]).
///
/// When no engine is available (no Python with onnxruntime), it prints why to stderr and
/// returns — except when the environment variable `CI` is set, or
/// `SPARSEQC_REQUIRE_ENGINE` is, where it panics.
pub fn assert_same_function(before: &Model, after: &Model, tol: f64) {
    let inputs = random_inputs(before, 0).unwrap_or_else(|e| panic!("cannot make inputs: {e}"));
    assert_same_function_on(before, after, &inputs, tol)
}

/// [`assert_same_function`] on given inputs (tensors named like the graph inputs).
pub fn assert_same_function_on(before: &Model, after: &Model, inputs: &[Tensor], tol: f64) {
    let engine = match default_engine() {
        Ok(e) => e,
        Err(why) => {
            let must = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
                || std::env::var_os("SPARSEQC_REQUIRE_ENGINE").is_some();
            if must {
                panic!("cannot check that the function is preserved: {why}");
            }
            eprintln!("SKIPPED function check: {why}");
            return;
        }
    };
    let diff = compare_function(before, after, inputs, tol, engine.as_ref()).unwrap_or_else(|e| panic!("cannot run the models: {e}"));
    if !diff.is_same() {
        panic!("the rewrite changed the model's function; {diff}");
    }
}

// ---------------------------------------------------------------------------------
// TensorRT structural rules
// ---------------------------------------------------------------------------------

/// One broken rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The node's name.
    pub node: String,
    /// Its op type.
    pub op: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' ({}): {}", self.node, self.op, self.message)
    }
}

fn violations_text(v: &[Violation]) -> String {
    v.iter().map(|x| format!("  - {x}\n")).collect()
}

/// The layers [`check_2of4`] and [`check_qdq`] look at: Conv, ConvTranspose, Gemm and
/// MatMul nodes (in topological order) matched by `layers` (a [`Pattern`], e.g.
/// `"conv*|op:Gemm"`; empty selects all).
fn layers(g: &Graph, layers: &str, ops: &[&str]) -> Result<Vec<NodeId>> {
    let pat = Pattern::parse(layers);
    let mut out = Vec::new();
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if n.domain.is_empty() && ops.contains(&n.op_type.as_str()) && pat.matches(&n.name, &n.op_type) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Checks TensorRT's 2:4 structured-sparsity rule on the weights of the selected layers:
/// in every group of 4 consecutive input channels (for each output channel and kernel
/// position of a K×C×R×S Conv weight; along axis 0 of a Gemm B, axis 1 with transB=1;
/// along the rows of a MatMul B) at most 2 values are non-zero (`sparsity::check_2of4`, the
/// one implementation). A weight whose axis length is not a multiple of 4 is a violation:
/// it is not eligible for TensorRT's sparse kernels (`sparsity::Ineligible`). Weights are followed through DequantizeLinear, QuantizeLinear, Cast,
/// Identity and Transpose. A selected layer without a constant weight, or a grouped
/// Conv, is a violation (TensorRT has no sparse kernel for it).
pub fn check_2of4(model: &Model, layer_pattern: &str) -> Result<Vec<Violation>> {
    let g = &model.graph;
    let mut out = Vec::new();
    for id in layers(g, layer_pattern, &["Conv", "Gemm", "MatMul"])? {
        let n = g.n(id)?;
        let viol = |m: String| Violation { node: n.name.clone(), op: n.op_type.clone(), message: m };
        let Some((w, perm)) = crate::inspect::find_weight(g, id, 1) else {
            out.push(viol("the weight (input 1) is not a constant".into()));
            continue;
        };
        let t = g.constant(w).ok_or_else(|| Error::internal("find_weight returned a non-constant"))?;
        let shape = t.shape();
        let Some(axis) = crate::inspect::sparsity_axis(g, id, 1, shape.len(), perm.as_deref()) else {
            out.push(viol(if n.op_type == "Conv" && n.attr_i("group").unwrap_or(1) != 1 {
                "grouped conv: TensorRT has no sparse kernels for it".into()
            } else {
                format!("weight '{}' of shape {:?} has no input-channel axis", g.name_of(w), shape)
            }));
            continue;
        };
        let vals = match t.to_f32() {
            Ok(v) => v,
            Err(e) => {
                out.push(viol(format!("weight '{}': {}", g.name_of(w), e.message)));
                continue;
            }
        };
        let layout = match crate::sparsity::GroupLayout::try_new(&shape, axis) {
            Ok(l) => l,
            Err(why) => {
                out.push(viol(format!("weight '{}' {:?}: {why}: not eligible for TensorRT's 2:4 kernels", g.name_of(w), shape)));
                continue;
            }
        };
        let c = crate::sparsity::check_2of4(&vals, &layout)?;
        if !c.ok {
            let at = c.first_violation.unwrap_or_default();
            let nz = layout.groups().find(|grp| grp[0] == at).map(|grp| grp.iter().filter(|&&i| vals[i] != 0.0).count()).unwrap_or(0);
            out.push(viol(format!(
                "weight '{}' {:?}: {} of {} groups of 4 along axis {axis} have more than 2 non-zeros \
                 (first at flat index {at}: {nz} non-zeros)",
                g.name_of(w),
                shape,
                c.violating_groups,
                c.groups
            )));
        }
    }
    Ok(out)
}

/// Panics listing every layer matched by `layer_pattern` whose weight breaks the 2:4 rule
/// (see [`check_2of4`]).
pub fn assert_2of4(model: &Model, layer_pattern: &str) {
    let v = check_2of4(model, layer_pattern).unwrap_or_else(|e| panic!("cannot check 2:4 sparsity: {e}"));
    if !v.is_empty() {
        panic!("{} layer(s) matching '{layer_pattern}' break TensorRT's 2:4 rule:\n{}", v.len(), violations_text(&v));
    }
}

/// Checks TensorRT's Q/DQ placement on the selected layers (Conv, ConvTranspose, Gemm,
/// MatMul; nodes annotated [`KEEP_FLOAT`] = `true` are skipped):
/// - the data input (0) and the weight (1) each come from a DequantizeLinear; a MatMul
///   whose operands are both activations (attention) may instead keep both float;
/// - every zero point on the way (that DequantizeLinear's, and the QuantizeLinear's
///   feeding it) is present where ONNX would default to uint8, is int8, and is all 0;
/// - activations are quantized per tensor (one scale);
/// - a per-channel weight scale runs along the output-channel axis of the weight layout
///   (Conv 0, ConvTranspose 1, Gemm 1 or 0 with transB=1, MatMul the last axis) and has
///   that axis's length.
pub fn check_qdq(model: &Model, layer_pattern: &str) -> Result<Vec<Violation>> {
    let g = &model.graph;
    let mut out = Vec::new();
    for id in layers(g, layer_pattern, &["Conv", "ConvTranspose", "Gemm", "MatMul"])? {
        let n = g.n(id)?;
        if n.annotation(KEEP_FLOAT) == Some("true") {
            continue;
        }
        let msgs = crate::qdq::layer_violations(g, id)?;
        for m in msgs {
            out.push(Violation { node: n.name.clone(), op: n.op_type.clone(), message: m });
        }
    }
    Ok(out)
}

/// Panics listing every Q/DQ placement rule broken on the layers matched by
/// `layer_pattern` (see [`check_qdq`]).
pub fn assert_qdq_placement(model: &Model, layer_pattern: &str) {
    let v = check_qdq(model, layer_pattern).unwrap_or_else(|e| panic!("cannot check Q/DQ placement: {e}"));
    if !v.is_empty() {
        panic!("{} Q/DQ placement rule(s) broken on layers matching '{layer_pattern}':\n{}", v.len(), violations_text(&v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_2of4_uses_the_one_rule_and_refuses_a_short_last_group() {
        let text = |w: &str, c: usize| {
            format!(
                "<\n  ir_version: 8,\n  opset_import: [\"\" : 13]\n>\ng (float[1,{c},1,1] x) => (float[1,2,1,1] y)\n<\n  float[2,{c},1,1] w = [{w}]\n>\n{{\n  [conv] y = Conv (x, w)\n}}\n"
            )
        };
        // 2 x 8: row 0 fine, row 1's second group has 3 non-zeros (flat index 12)
        let m = crate::text::parse(&text("1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0", 8)).unwrap();
        let v = check_2of4(&m, "").unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("1 of 4 groups") && v[0].message.contains("first at flat index 12: 3 non-zeros"), "{}", v[0].message);
        // 6 channels: a short last group is not eligible, whatever its zeros
        let m = crate::text::parse(&text("0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0", 6)).unwrap();
        let v = check_2of4(&m, "").unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("axis length 6 not a multiple of 4"), "{}", v[0].message);
    }

    /// Returns fixed outputs: model 0 gets `a`, model 1 gets `b`.
    struct Fixed {
        a: Vec<Output>,
        b: Vec<Output>,
    }
    impl Engine for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn run(&self, _models: &[&Model], _inputs: &[Tensor]) -> Result<Vec<Vec<Output>>> {
            Ok(vec![self.a.clone(), self.b.clone()])
        }
    }
    fn out(name: &str, shape: &[usize], values: &[f64]) -> Output {
        Output { name: name.into(), shape: shape.to_vec(), dtype: "float32".into(), values: values.to_vec() }
    }

    #[test]
    fn comparison_rules() {
        let m = crate::text::parse("<ir_version: 8, opset_import: [\"\" : 17]> g (float[1] x) => (float[1] y) <> { y = Identity (x) }")
            .unwrap();
        let cmp = |a: &[f64], b: &[f64], tol: f64| {
            let e = Fixed { a: vec![out("y", &[a.len()], a)], b: vec![out("y", &[b.len()], b)] };
            compare_function(&m, &m, &[], tol, &e).unwrap()
        };
        let inf = f64::INFINITY;
        assert!(cmp(&[1.0, f64::NAN, inf, -inf], &[1.0, f64::NAN, inf, -inf], 0.0).is_same());
        assert!(cmp(&[100.0, 0.5], &[100.0 + 5e-5, 0.5 + 1e-7], 1e-6).is_same(), "relative above 1");
        let d = cmp(&[0.5, 1.0, 2.0], &[0.5, f64::NAN, 2.5], 1e-6);
        assert!(!d.is_same());
        assert_eq!(d.outputs[0].mismatches, 2);
        assert_eq!(d.outputs[0].worst.map(|w| w.0), Some(1), "NaN on one side is the worst");
        assert!(d.to_string().contains("2 of 3 elements differ"), "{d}");
        assert!(!cmp(&[inf], &[-inf], 1.0).is_same());
        let e = Fixed { a: vec![out("y", &[2], &[0.0, 0.0])], b: vec![out("y", &[1, 2], &[0.0, 0.0])] };
        let d = compare_function(&m, &m, &[], 1.0, &e).unwrap();
        assert!(!d.is_same() && d.to_string().contains("shape [2] became [1, 2]"), "{d}");
        let e = Fixed { a: vec![out("y", &[1], &[0.0])], b: vec![] };
        assert!(!compare_function(&m, &m, &[], 1.0, &e).unwrap().is_same());
    }

    #[test]
    fn report_lines_are_stable() {
        let mut r = PassReport::new("p");
        r.summary = "did it".into();
        r.changed = true;
        r.item(crate::pass::ReportItem::new("conv1", "Conv", "kept-float", "first layer").with("in_channels", 3));
        r.stat("layers", 2);
        r.seconds = 1.5;
        assert_eq!(
            format_reports(&[r]),
            "# pass p: did it [changed]\n#   conv1 (Conv) kept-float: first layer {\"in_channels\":3}\n#   stats {\"layers\":2}\n"
        );
    }
}
