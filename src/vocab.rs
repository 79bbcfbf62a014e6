//! The compile command's options in the words TensorRT users type (trtexec, Polygraphy,
//! ModelOpt), mapped onto sparseqc's pipeline; the choice of pipeline for models that come
//! in quantized (QAT) or already 2:4-sparse (ASP); the stamp every ONNX output carries;
//! verbosity and `--log-file`.
//!
//! Everything here runs in `cli::cmd_compile` before or after the pipeline; the passes do
//! not know about it.

use crate::cli::{CompileArgs, LoadArgs};
use crate::error::{Error, Result};
use crate::pass::{PassReport, PipelineEntry};
use std::path::Path;

/// The default pipeline for a model that comes with its own Q/DQ nodes: no pruning,
/// calibration or Q/DQ insertion; its placement is checked against TensorRT's rules.
pub const PREQUANT_PIPELINE: &str = "upgrade-opset,fold-bn,cleanup,check-qdq";
/// The pipeline for a float model whose prunable layers are all 2:4 already (ASP) when no
/// calibration data is given: the output stays float and sparse.
pub const PRESPARSE_FLOAT_PIPELINE: &str = "upgrade-opset,fold-bn,cleanup";

/// Called when `--passes` is not given: the pipeline the input model itself asks for, if
/// any. A model with Q/DQ gets [`PREQUANT_PIPELINE`] (with or without calibration data); a
/// float model whose weighted layers that can be 2:4 all are, without calibration data,
/// gets [`PRESPARSE_FLOAT_PIPELINE`]. None: the usual defaults apply.
pub fn pipeline_for_input(model_path: &Path, a: &CompileArgs) -> Result<Option<String>> {
    let (model, _) = crate::cli::load_model(model_path, &LoadArgs { allow_unknown_fields: a.load.allow_unknown_fields })?;
    if crate::qdq::has_qdq(&model) {
        if !a.quiet && (a.calib.is_some() || a.calib_cache.is_some()) {
            eprintln!(
                "note: the model comes with Q/DQ nodes (quantization-aware training): its scales are kept, \
                 the calibration data is used only for the fidelity check"
            );
        }
        return Ok(Some(PREQUANT_PIPELINE.to_string()));
    }
    if a.calib.is_some() || a.calib_cache.is_some() {
        return Ok(None);
    }
    let g = &model.graph;
    let (mut sparse, mut dense) = (0usize, 0usize);
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if !crate::qdq::is_weighted(&n.op_type) {
            continue;
        }
        match crate::inspect::weight_is_2of4(g, id)? {
            Some(true) => sparse += 1,
            Some(false) => dense += 1,
            None => {}
        }
    }
    if sparse > 0 && dense == 0 {
        if !a.quiet {
            eprintln!(
                "note: every layer that can be 2:4 already is ({sparse} layers, e.g. from ASP) and no calibration data \
                 was given: the output stays float (FP32/FP16 in TensorRT) with its weights as they are; \
                 give --calib DIR for INT8"
            );
        }
        return Ok(Some(PRESPARSE_FLOAT_PIPELINE.to_string()));
    }
    Ok(None)
}

/// `--calibration-method`: TensorRT's and ModelOpt's names for calibrate's methods.
pub fn calibration_method(m: &str) -> Result<&'static str> {
    Ok(match m.to_ascii_lowercase().as_str() {
        "max" | "minmax" | "min-max" => "max",
        "entropy" | "entropy2" | "kl" => "entropy",
        "percentile" => "percentile",
        "mse" => "mse",
        "auto" => "auto",
        _ => return Err(Error::usage(format!("--calibration-method '{m}': use max (minmax), entropy, percentile, mse or auto"))),
    })
}

/// The layer pattern (`a|b|op:Gemm`) of `--exclude-nodes` and `--exclude-op-types` (each
/// repeatable and comma-separated, as Polygraphy and ModelOpt take lists).
pub fn exclude_pattern(nodes: &[String], op_types: &[String]) -> String {
    let mut parts: Vec<String> = nodes.iter().flat_map(|s| s.split([',', '|'])).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    parts.extend(
        op_types
            .iter()
            .flat_map(|s| s.split([',', '|']))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| if s.starts_with("op:") { s.to_string() } else { format!("op:{s}") }),
    );
    parts.join("|")
}

fn set_option(entries: &mut [PipelineEntry], pass: &str, key: &str, value: &str, merge: bool) -> bool {
    let mut found = false;
    for e in entries.iter_mut().filter(|e| e.name == pass) {
        found = true;
        let slot = e.options.values.entry(key.to_string()).or_default();
        if slot.is_empty() {
            *slot = value.to_string();
        } else if merge {
            *slot = format!("{slot}|{value}");
        }
    }
    found
}

/// Writes the TensorRT-vocabulary options into the pipeline's pass options (an option the
/// pipeline string sets itself wins, except exclusions, which add up). Errors when an option
/// has no pass in the pipeline to act on.
pub fn apply_to_pipeline(entries: &mut [PipelineEntry], a: &CompileArgs) -> Result<()> {
    let has = |entries: &[PipelineEntry], n: &str| entries.iter().any(|e| e.name == n);
    if let Some(m) = &a.calibration_method {
        let m = calibration_method(m)?;
        if !set_option(entries, "calibrate", "method", m, false) {
            if has(entries, "check-qdq") {
                eprintln!("note: --calibration-method is not used: the model comes with its own Q/DQ scales");
            } else {
                return Err(Error::usage("--calibration-method applies to calibrate, which the pipeline does not run"));
            }
        }
    }
    let ex = exclude_pattern(&a.exclude_nodes, &a.exclude_op_types);
    if !ex.is_empty() {
        let mut any = false;
        for p in ["prune-2of4", "insert-qdq", "bias-correct", "check-qdq"] {
            any |= set_option(entries, p, "exclude", &ex, true);
        }
        if !any {
            return Err(Error::usage("--exclude-nodes/--exclude-op-types apply to prune-2of4, insert-qdq or check-qdq, none of which the pipeline runs"));
        }
    }
    if a.per_channel && a.per_tensor {
        return Err(Error::usage("--per-channel and --per-tensor exclude each other"));
    }
    if a.per_tensor || a.per_channel {
        let v = if a.per_tensor { "false" } else { "true" };
        if !set_option(entries, "insert-qdq", "per-channel", v, false) && !has(entries, "check-qdq") {
            return Err(Error::usage("--per-channel/--per-tensor apply to insert-qdq, which the pipeline does not run"));
        }
    }
    if let Some(w) = &a.weights {
        if w != "int8" && w != "qdq" {
            return Err(Error::usage(format!("--weights '{w}': use int8 (stored INT8 weights) or qdq (float weights through Q/DQ)")));
        }
        let mut any = set_option(entries, "insert-qdq", "weights", w, false);
        any |= set_option(entries, "check-qdq", "weights", w, false);
        if !any {
            return Err(Error::usage("--weights applies to insert-qdq or check-qdq, neither of which the pipeline runs"));
        }
    }
    if let Some(f) = &a.fix_qdq {
        if !set_option(entries, "check-qdq", "fix", f, false) {
            return Err(Error::usage("--fix-qdq applies to check-qdq, which runs on models that come with Q/DQ nodes"));
        }
    }
    Ok(())
}

/// `--print-ir-after NAME`: every name must be a pass of the pipeline.
pub fn check_print_ir_after(names: &[String], pipeline: &[String]) -> Result<()> {
    for n in names {
        if !pipeline.iter().any(|p| p == n) {
            return Err(Error::usage(format!(
                "--print-ir-after '{n}': no such pass in the pipeline (its passes: {})",
                if pipeline.is_empty() { "none".to_string() } else { pipeline.join(", ") }
            )));
        }
    }
    Ok(())
}

/// Rewrites `--shapes`, `--minShapes/--optShapes/--maxShapes` into the one form the back end
/// parses (`NAME:MIN[,OPT,MAX]` per input, inputs separated by `;`). Accepts trtexec's
/// comma between inputs (`a:1x3x32x32,b:1x3`) next to sparseqc's `;`, and the
/// `NAME:MIN,OPT,MAX` form (a comma followed by a shape without a name continues the input
/// before it).
pub fn normalize_shapes(a: &mut CompileArgs) -> Result<()> {
    let any_mom = a.min_shapes.is_some() || a.opt_shapes.is_some() || a.max_shapes.is_some();
    if let Some(s) = a.shapes.clone() {
        if any_mom {
            return Err(Error::usage("--shapes sets min = opt = max; give either --shapes or --minShapes/--optShapes/--maxShapes"));
        }
        let mut inputs: Vec<(String, Vec<String>)> = Vec::new();
        for tok in s.split([';', ',']).map(str::trim).filter(|t| !t.is_empty()) {
            match tok.rsplit_once(':') {
                Some((name, shape)) => inputs.push((name.trim().to_string(), vec![shape.trim().to_string()])),
                None => match inputs.last_mut() {
                    Some((_, v)) => v.push(tok.to_string()),
                    None => return Err(Error::usage(format!("--shapes '{s}': expected NAME:SHAPE, e.g. input:1x3x224x224"))),
                },
            }
        }
        a.shapes = Some(inputs.iter().map(|(n, v)| format!("{n}:{}", v.join(","))).collect::<Vec<_>>().join(";"));
    } else if any_mom {
        let parse = |flag: &str, s: &Option<String>| -> Result<Vec<(String, String)>> {
            let Some(s) = s else { return Ok(Vec::new()) };
            s.split([';', ','])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.rsplit_once(':')
                        .map(|(n, sh)| (n.trim().to_string(), sh.trim().to_string()))
                        .ok_or_else(|| Error::usage(format!("--{flag} '{s}': expected NAME:SHAPE[,NAME:SHAPE...], e.g. input:1x3x224x224")))
                })
                .collect()
        };
        let (min, opt, max) = (parse("minShapes", &a.min_shapes)?, parse("optShapes", &a.opt_shapes)?, parse("maxShapes", &a.max_shapes)?);
        if opt.is_empty() {
            return Err(Error::usage("--minShapes/--maxShapes need --optShapes (trtexec: min and max default to opt)"));
        }
        let find = |l: &[(String, String)], n: &str| l.iter().find(|(m, _)| m == n).map(|(_, s)| s.clone());
        for (flag, l) in [("minShapes", &min), ("maxShapes", &max)] {
            if let Some((n, _)) = l.iter().find(|(n, _)| find(&opt, n).is_none()) {
                return Err(Error::usage(format!("--{flag}: input '{n}' has no --optShapes entry")));
            }
        }
        let spec: Vec<String> = opt
            .iter()
            .map(|(n, o)| format!("{n}:{},{o},{}", find(&min, n).unwrap_or_else(|| o.clone()), find(&max, n).unwrap_or_else(|| o.clone())))
            .collect();
        a.shapes = Some(spec.join(";"));
    }
    Ok(())
}

/// The command line as one shell-quoted string (stored in the output's metadata).
pub fn command_line() -> String {
    std::env::args()
        .map(|s| {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c)) {
                s
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Metadata key holding the command line that produced a model.
pub const COMMAND_KEY: &str = "sparseqc.command";

/// Marks an output model as sparseqc's: producer name and version, and the command line in
/// `metadata_props` (replacing an earlier `sparseqc.command`).
pub fn stamp(proto: &mut crate::proto::ModelProto, command: &str) {
    proto.producer_name = Some("sparseqc".to_string());
    proto.producer_version = Some(env!("CARGO_PKG_VERSION").to_string());
    proto.metadata_props.retain(|e| e.key.as_deref() != Some(COMMAND_KEY));
    proto.metadata_props.push(crate::proto::StringStringEntryProto { key: Some(COMMAND_KEY.to_string()), value: Some(command.to_string()) });
}

/// `-v`: every report item of every pass, one line each; for check-qdq violations (which
/// matter to a user of a pre-quantized model) a warning line even without `-v`.
pub fn print_report_details(reports: &[PassReport], verbosity: i32) {
    for r in reports {
        for it in &r.items {
            if verbosity >= 2 {
                eprintln!("  {:<12} {:<28} {:<14} {:<12} {}", r.pass, it.node, it.op, it.action, it.reason);
            } else if it.action == "violation" && verbosity >= 0 {
                eprintln!("warning: {} '{}' ({}): {}", r.pass, it.node, it.op, it.reason);
            }
        }
    }
}

/// `--int8`: trtexec's precision flag. sparseqc's output is INT8 through its Q/DQ (explicit
/// quantization), so the flag changes nothing; said once.
pub fn int8_note(a: &CompileArgs) {
    if a.int8 && !a.quiet {
        eprintln!(
            "note: --int8 changes nothing: the output is INT8 through its Q/DQ nodes (explicit quantization), \
             which TensorRT follows without --int8 (and TensorRT 11 has no INT8 builder flag)"
        );
    }
}

static LOG: std::sync::Mutex<Option<LogTee>> = std::sync::Mutex::new(None);

/// Before the compile command runs: `-q` levels, `--log-file`, the shape flags, `--int8`.
pub fn prepare(a: &mut CompileArgs) -> Result<()> {
    a.quiet = a.quiet_level > 0;
    if let Some(f) = &a.log_file {
        // the log starts before the compile command: check every output path first
        crate::outputs::OutputPlan::check_compile_args(a)?;
        let tee = LogTee::start(f)?;
        if let Ok(mut l) = LOG.lock() {
            *l = Some(tee);
        }
    }
    normalize_shapes(a)?;
    int8_note(a);
    Ok(())
}

/// At exit: stops copying stderr to the `--log-file` (everything printed so far is in it).
pub fn finish() {
    if let Ok(mut l) = LOG.lock() {
        l.take();
    }
}

/// `--log-file FILE`: everything written to stderr (sparseqc's lines, warnings, messages of
/// TensorRT and plugins) also goes to FILE, until the guard drops. stderr becomes a pipe,
/// so progress is printed as lines instead of bars.
pub struct LogTee {
    #[cfg(unix)]
    inner: Option<(i32, std::thread::JoinHandle<()>)>,
}

#[cfg(unix)]
mod sys {
    extern "C" {
        pub fn pipe(fds: *mut i32) -> i32;
        pub fn dup(fd: i32) -> i32;
        pub fn dup2(fd: i32, fd2: i32) -> i32;
        pub fn close(fd: i32) -> i32;
    }
}

impl LogTee {
    #[cfg(unix)]
    pub fn start(path: &Path) -> Result<LogTee> {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        let mut file = std::fs::File::create(path).map_err(|e| Error::user(format!("--log-file '{}': {e}", path.display())))?;
        let mut fds = [0i32; 2];
        // SAFETY: pipe writes two descriptors into the array we own.
        if unsafe { sys::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(Error::user(format!("--log-file '{}': cannot create a pipe", path.display())));
        }
        // SAFETY: dup/dup2/close on descriptors this process owns; fd 2 is stderr.
        let saved = unsafe { sys::dup(2) };
        if saved < 0 || unsafe { sys::dup2(fds[1], 2) } < 0 {
            unsafe {
                sys::close(fds[0]);
                sys::close(fds[1]);
            }
            return Err(Error::user(format!("--log-file '{}': cannot redirect stderr", path.display())));
        }
        unsafe { sys::close(fds[1]) };
        // SAFETY: fds[0] is the read end we own; the saved descriptor gets its own duplicate.
        let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        let mut term = unsafe { std::fs::File::from_raw_fd(sys::dup(saved)) };
        let handle = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = term.write_all(&buf[..n]);
                let _ = file.write_all(&buf[..n]);
            }
            let _ = file.flush();
        });
        Ok(LogTee { inner: Some((saved, handle)) })
    }
    #[cfg(not(unix))]
    pub fn start(path: &Path) -> Result<LogTee> {
        Err(Error::usage(format!("--log-file '{}': not supported on this platform", path.display())))
    }
}

impl Drop for LogTee {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some((saved, handle)) = self.inner.take() {
            // put stderr back: the pipe's last write end closes and the copier sees its end
            // SAFETY: saved is our duplicate of the original stderr.
            unsafe {
                sys::dup2(saved, 2);
                sys::close(saved);
            }
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(s: Option<&str>, min: Option<&str>, opt: Option<&str>, max: Option<&str>) -> Result<Option<String>> {
        let mut a = CompileArgs {
            shapes: s.map(String::from),
            min_shapes: min.map(String::from),
            opt_shapes: opt.map(String::from),
            max_shapes: max.map(String::from),
            ..Default::default()
        };
        normalize_shapes(&mut a)?;
        Ok(a.shapes)
    }

    #[test]
    fn shape_flags_in_trtexec_and_sparseqc_forms() {
        let one = |s: &str| shapes(Some(s), None, None, None).unwrap().unwrap();
        assert_eq!(one("input:1x3x224x224"), "input:1x3x224x224");
        assert_eq!(one("input:1x3x224x224,8x3x224x224,32x3x224x224"), "input:1x3x224x224,8x3x224x224,32x3x224x224");
        // trtexec: a comma between inputs
        assert_eq!(one("a:1x3x32x32,b:1x3"), "a:1x3x32x32;b:1x3");
        assert_eq!(one("a:1x3x32x32;b:1x3,2x3,4x3"), "a:1x3x32x32;b:1x3,2x3,4x3");
        assert!(shapes(Some("1x3x32x32"), None, None, None).is_err());
        let mom = shapes(None, Some("a:1x3,b:1x8"), Some("a:4x3,b:4x8"), Some("a:8x3")).unwrap().unwrap();
        assert_eq!(mom, "a:1x3,4x3,8x3;b:1x8,4x8,4x8");
        assert!(shapes(None, Some("a:1x3"), None, Some("a:8x3")).is_err(), "opt is needed");
        assert!(shapes(None, Some("c:1x3"), Some("a:4x3"), None).is_err(), "min of an input without opt");
        assert!(shapes(Some("a:1x3"), None, Some("a:1x3"), None).is_err(), "both forms");
        // every normalized form parses in the back end
        for s in ["a:1x3x32x32;b:1x3", "a:1x3,4x3,8x3;b:1x8,4x8,4x8"] {
            crate::trt::OptimizationProfile::parse(s).unwrap();
        }
    }

    #[test]
    fn exclusions_and_method_names() {
        assert_eq!(exclude_pattern(&["/stem/Conv,head*".into(), "fc".into()], &["Gemm, op:MatMul".into()]), "/stem/Conv|head*|fc|op:Gemm|op:MatMul");
        assert_eq!(exclude_pattern(&[], &[]), "");
        assert_eq!(calibration_method("MinMax").unwrap(), "max");
        assert_eq!(calibration_method("entropy").unwrap(), "entropy");
        assert!(calibration_method("kmeans").is_err());
    }
}
