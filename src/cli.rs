//! The `sparseqc` command line.

use crate::error::{Error, ErrorKind, Result};
use crate::ir::Model;
use crate::pass::{parse_pipeline, CalibInput, PassContext, PassReport, Registry, RunOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The pipeline run when `--passes` is not given and calibration data is (pruning
/// reconstructs each layer from that data; `bias-correct` checks itself on held-out
/// calibration samples and undoes itself when it does not help).
/// `gpu=` is set from `--gpu` (hopper unless given): only layers expected to run faster with
/// 2:4 on that GPU are pruned.
pub const DEFAULT_PIPELINE: &str = "upgrade-opset,fold-bn,cleanup,prune-2of4{method=obs,gpu=hopper},calibrate,insert-qdq,bias-correct";
/// `--sparsity all`: every eligible layer, reconstructed from the data.
pub const ALL_PIPELINE: &str = "upgrade-opset,fold-bn,cleanup,prune-2of4{method=obs},calibrate,insert-qdq,bias-correct";
/// `--sparsity magnitude`: every eligible layer by magnitude, with only a calibration cache
/// (asked for explicitly: magnitude pruning without data loses much accuracy).
pub const DEFAULT_PIPELINE_CACHE: &str = "upgrade-opset,fold-bn,cleanup,prune-2of4,calibrate,insert-qdq";
/// `--sparsity magnitude` with calibration data.
pub const MAGNITUDE_PIPELINE: &str = "upgrade-opset,fold-bn,cleanup,prune-2of4,calibrate,insert-qdq,bias-correct";
/// The default accuracy budget with `--calib`: the final model's top-1 agreement with the
/// input model, proved by the one-sided 95 % lower bound on held-out samples, where the output
/// is class scores; other outputs (hidden states, sequences, maps) must keep an output SQNR of
/// `measure::fidelity::DEFAULT_SQNR_DB` instead. Missed, the
/// default backs off: fewer sparse layers, then dense INT8, then mixed precision (up to a
/// quarter of the quantized layers float); it writes the last of these when none proves it.
pub const DEFAULT_BUDGET: &str = "0.95";
/// [`DEFAULT_BUDGET`] as a number.
pub const DEFAULT_AGREEMENT: f64 = 0.95;
/// The default pipeline with `--dense` (and calibration data).
pub const DENSE_PIPELINE: &str = "upgrade-opset,fold-bn,cleanup,calibrate,insert-qdq,bias-correct";
/// `--dense` with only a calibration cache.
pub const DENSE_PIPELINE_CACHE: &str = "upgrade-opset,fold-bn,cleanup,calibrate,insert-qdq";

const ABOUT: &str = "Compile a trained ONNX model into a sparse (2:4) INT8 model for NVIDIA TensorRT.";

const LONG_ABOUT: &str = "\
Compile a trained ONNX model into a sparse (2:4) INT8 model for NVIDIA TensorRT.

sparseqc imports the model into an IR and runs a pipeline of passes over it:
  upgrade-opset  rewrite an opset 7-12 model to opset 13 (same function)
  fold-bn      fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm/MatMul
  cleanup      Constant nodes to initializers, constant folding, dead code, Identity removal
  prune-2of4   zero 2 of every 4 weights along the input channels (TensorRT's sparse rule),
               reconstructing each layer from the calibration data (method=obs)
  calibrate    run the float model on your data once and annotate activation scales
               (method=auto: entropy, mse or percentile, whichever Q/DQ model best
               reproduces the float outputs on your data)
  insert-qdq   insert Q/DQ nodes by TensorRT's explicit-quantization placement rules
  bias-correct fold each quantized layer's output shift (median over samples) into its
               bias; undone when it does not help on held-out calibration samples
Then it writes the result as ONNX (-o model.onnx), for trtexec/onnxruntime/Netron, or as a
TensorRT engine (-o model.plan, needs TensorRT 10/11 installed).";

const EXAMPLES: &str = "\
Examples:
  # Sparse INT8 for TensorRT from a folder of calibration images
  # ('imagenet' = resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225)
  sparseqc resnet.onnx -o resnet.int8.onnx --calib images/ --preprocess imagenet
  trtexec --onnx=resnet.int8.onnx --sparsity=enable

  # Sparsify only the layers that keep >= 97 % of top-1 answers (held-out calib samples)
  sparseqc mobilenet.onnx -o mbv2.int8.onnx --calib images/ --preprocess '...' \
      --accuracy-budget 0.97 --report report.json

  # Dense INT8, calibration from a TensorRT calibration cache
  sparseqc model.onnx -o model.int8.onnx --dense --calib-cache model.cache

  # Only fold BatchNorm and clean up, printing the IR after each pass
  sparseqc model.onnx -o folded.onnx --passes 'fold-bn,cleanup' --print-ir-after-all

  # The pure round trip: no pass at all
  sparseqc model.onnx -o same.onnx --passes none

  # Read a model as text; check its 2:4 sparsity like TensorRT does
  sparseqc print model.onnx
  sparseqc inspect --sparsity model.onnx --require-2of4 'op:Conv'

  # List passes and their options
  sparseqc passes

  # A QAT model (Q/DQ from pytorch-quantization/ModelOpt, 2:4 from ASP): no calibration data;
  # scales and weights kept, Q/DQ placement checked against TensorRT's rules
  sparseqc qat.onnx -o qat.trt.onnx --fix-qdq insert --emit network qat.network

  # trtexec/ModelOpt vocabulary
  sparseqc model.onnx -o m.int8.onnx --calib images/ --preprocess imagenet --int8 \
      --calibration-method entropy --exclude-nodes '/stem/Conv' --exclude-op-types Gemm \
      --per-channel --weights int8 --shapes 'input:1x3x224x224' -v --log-file build.log
  sparseqc model.onnx -o m.plan --calib images/ --preprocess imagenet \
      --minShapes input:1x3x224x224 --optShapes input:8x3x224x224 --maxShapes input:32x3x224x224

Exit status: 0 success, 1 bad input (the message names file, node and tensor), 2 bad usage.";

#[derive(Parser, Debug)]
#[command(name = "sparseqc", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES,
          args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub compile: CompileArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a model in sparseqc's canonical text form.
    Print(PrintArgs),
    /// Summarise a model: ops, parameters, and per weight its dtype, shape, zeros and 2:4 status.
    Inspect(InspectArgs),
    /// List the available passes and their options.
    Passes(PassesArgs),
}

#[derive(Args, Debug)]
pub struct PassesArgs {
    /// Load passes from this plugin library too (repeatable).
    #[arg(long = "plugin", value_name = "LIB")]
    pub plugins: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PrintArgs {
    /// The ONNX model (or a .txt/.sqc file in the text form).
    pub model: PathBuf,
    /// Print tensors with at most N elements inline (others as hash and zero fraction).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub inline_limit: usize,
    /// Print the TensorRT network definition the model lowers to instead (run it on the
    /// pipeline's output, e.g. model.int8.onnx).
    #[arg(long)]
    pub network: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// Check every weight against TensorRT's 2:4 rule along the right axis.
    #[arg(long)]
    pub sparsity: bool,
    /// Exit 1 if a layer matching PATTERN (e.g. 'layer*|op:Gemm') is not 2:4. Layers that can never be
    /// 2:4 (grouped/depthwise conv, input channels not a multiple of 4) are skipped with a note;
    /// a pattern that matches no layer is an error (exit 2).
    #[arg(long, value_name = "PATTERN")]
    pub require_2of4: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct LoadArgs {
    /// Accept (and drop) fields unknown to sparseqc's ONNX schema instead of refusing.
    #[arg(long)]
    pub allow_unknown_fields: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum, Default, PartialEq, Eq)]
pub enum ExternalArg {
    /// Keep tensors that were external external; externalize all above 2 GB.
    #[default]
    Auto,
    /// Write every tensor of 1 KiB or more to OUT.data.
    Always,
    /// Write everything inline (fails above 2 GB).
    Never,
}

/// `--sparsity`: which layers the default pipeline makes 2:4.
#[derive(Copy, Clone, Debug, ValueEnum, Default, PartialEq, Eq)]
pub enum SparsityArg {
    /// Layers expected to run faster with 2:4 on --gpu, within the accuracy budget.
    #[default]
    Auto,
    /// Every eligible layer (reconstructed from --calib).
    All,
    /// Every eligible layer by weight magnitude (no data needed; loses accuracy).
    Magnitude,
    /// No 2:4 (= --dense).
    None,
}

#[derive(Args, Debug, Default)]
pub struct CompileArgs {
    /// The input ONNX model.
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Output: `.onnx` writes the transformed model; `.plan`/`.engine` builds a TensorRT engine.
    #[arg(short = 'o', long = "output", required = true, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// The pass pipeline, e.g. 'fold-bn,prune-2of4{min-channels=64},calibrate{method=entropy},insert-qdq'.
    /// `none` runs no pass. Default: upgrade-opset,fold-bn,cleanup,prune-2of4{method=obs,gpu=hopper},calibrate,insert-qdq,bias-correct
    /// (only layers expected to gain on --gpu; no pruning with --dense, or with only --calib-cache unless --sparsity magnitude).
    #[arg(long, value_name = "PIPELINE")]
    pub passes: Option<String>,
    /// Dense INT8: the default pipeline without prune-2of4.
    #[arg(long)]
    pub dense: bool,
    /// Skip the final fidelity check (the output model against the input model on held-out
    /// calibration samples no pass saw: top-1 agreement with its 95 % interval and output
    /// SQNR, in the summary and the report). A budget is still judged.
    #[arg(long)]
    pub no_fidelity_check: bool,
    /// After calibrating, search each activation scale for the best output fidelity
    /// (calibrate{refine=true}: one Q/DQ forward of 16 samples per candidate; seconds on
    /// CIFAR ResNets, minutes on MobileNetV2). Needs --calib.
    #[arg(long)]
    pub refine_scales: bool,
    /// Sparsify only as many layers as keep the output this close to the input model: a top-1
    /// agreement (0.97 = at most 3 % of samples change class) or an output SQNR (25dB).
    /// Layers are ranked by expected speed-up per output noise, each measured alone
    /// (prune-2of4{budget=X}); the final INT8 model is then judged on held-out samples, an
    /// agreement by its 95 % lower confidence bound, and the pipeline backs off (half the
    /// sparse layers, none, then the layers whose INT8 input costs the output most kept
    /// float: 1/16 of them, twice as many, up to a quarter; finally no INT8) until the
    /// budget is proved.
    #[arg(long, value_name = "X")]
    pub accuracy_budget: Option<String>,
    /// Which layers become 2:4: auto (those expected to run faster on --gpu, kept within an
    /// accuracy budget of the input model on held-out samples: agreement >= 0.95 for class
    /// scores, else output SQNR >= 20 dB, unless --accuracy-budget), all (every eligible layer), magnitude (every eligible layer by
    /// magnitude, no data needed), none (= --dense).
    #[arg(long, value_enum, default_value_t = SparsityArg::Auto)]
    pub sparsity: SparsityArg,
    /// The GPU the engine is built for, which decides where 2:4 pays: hopper (H100/H200: the
    /// measured H200 GEMM table, default) or ampere (A100/A40/A10: TensorRT's guidance).
    /// The batch for the decision comes from --shapes (the optimum profile), else 1.
    #[arg(long, value_name = "GPU")]
    pub gpu: Option<String>,
    /// Calibration data: a folder of images (jpg/png, recursive), .npy/.npz files, or a folder of them.
    #[arg(long, value_name = "DIR|FILE")]
    pub calib: Option<PathBuf>,
    /// Image preprocessing, e.g. 'resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225'.
    /// Keys: resize, crop, scale (default 1/255), mean, std, order=RGB|BGR, layout=NCHW|NHWC.
    /// Presets, first in the list, later keys override them: 'imagenet' (the spec above,
    /// torchvision's evaluation transform), 'imagenet-norm' (its mean/std only), e.g. 'imagenet,crop=256'.
    #[arg(long, value_name = "SPEC")]
    pub preprocess: Option<String>,
    /// Use at most N calibration samples, spread over the set (a sorted folder is visited by
    /// golden-ratio steps, so the first N cover every class).
    #[arg(long, value_name = "N")]
    pub calib_limit: Option<usize>,
    /// Read activation scales from a TensorRT calibration cache (or its JSON form) instead of running the model.
    #[arg(long, value_name = "FILE")]
    pub calib_cache: Option<PathBuf>,
    /// Write the activation scales as a TensorRT calibration cache (.json: JSON form).
    #[arg(long, value_name = "FILE")]
    pub write_calib_cache: Option<PathBuf>,
    /// Write the merged per-pass report as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the IR (text form) after every pass, to stderr.
    #[arg(long)]
    pub print_ir_after_all: bool,
    /// Print the IR after the named pass (repeatable).
    #[arg(long, value_name = "PASS")]
    pub print_ir_after: Vec<String>,
    /// Print how long each pass took.
    #[arg(long)]
    pub time_passes: bool,
    /// Run the IR verifier after every pass.
    #[arg(long)]
    pub verify_each: bool,
    /// Load passes from a plugin library (repeatable).
    #[arg(long = "plugin", value_name = "LIB")]
    pub plugins: Vec<PathBuf>,
    /// External data for the output model.
    #[arg(long, value_enum, default_value_t = ExternalArg::Auto)]
    pub external_data: ExternalArg,
    /// Keep calibration annotations in the output ONNX (as graph metadata).
    #[arg(long)]
    pub keep_annotations: bool,
    /// Less output, repeatable: -q no progress or summary (warnings stay), -qq errors only.
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    pub quiet_level: u8,
    /// Set from -q (no progress bars or summary).
    #[arg(skip)]
    pub quiet: bool,
    /// More output, repeatable: -v every pass's per-layer decisions, -vv also the pass timing table.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also write everything printed to stderr to FILE (progress then goes as lines), e.g. --log-file build.log.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// trtexec's/ModelOpt's name for calibrate's method: max (= minmax), entropy, percentile, mse, auto;
    /// e.g. --calibration-method entropy (= --passes '...,calibrate{method=entropy},...').
    #[arg(long, value_name = "METHOD")]
    pub calibration_method: Option<String>,
    /// Layers kept float and dense (name globs, comma-separated, repeatable), e.g. --exclude-nodes '/stem/Conv,head*'.
    #[arg(long, value_name = "NAMES")]
    pub exclude_nodes: Vec<String>,
    /// Op types kept float and dense (comma-separated, repeatable), e.g. --exclude-op-types Gemm,MatMul.
    #[arg(long, value_name = "OPS")]
    pub exclude_op_types: Vec<String>,
    /// Weights quantized per output channel (the default; TensorRT's recommendation), e.g. --per-channel.
    #[arg(long)]
    pub per_channel: bool,
    /// Weights quantized with one scale per tensor (coarser, usually less accurate), e.g. --per-tensor.
    #[arg(long)]
    pub per_tensor: bool,
    /// How weights are stored: qdq (default) keeps FP32 weights behind Q->DQ (what TensorRT and
    /// onnxruntime read everywhere; 2:4 zeros visible as float); int8 stores INT8 initializers
    /// feeding DequantizeLinear: the same dequantized values and outputs, a file about 4x smaller,
    /// but the float weights are gone (no re-calibration or re-pruning from that file). E.g. --weights int8.
    #[arg(long, value_name = "qdq|int8")]
    pub weights: Option<String>,
    /// For models that come with Q/DQ (QAT): fix TensorRT placement violations. insert: add only
    /// Q/DQ whose scale the model already determines; remove: make offending layers float. E.g. --fix-qdq insert.
    #[arg(long, value_name = "insert|remove")]
    pub fix_qdq: Option<String>,
    /// Accepted for trtexec habits; changes nothing (the output is INT8 through its Q/DQ nodes). E.g. --int8.
    #[arg(long)]
    pub int8: bool,
    /// trtexec's minimum shapes of the optimization profile, e.g. --minShapes input:1x3x224x224.
    #[arg(long = "minShapes", value_name = "SPEC")]
    pub min_shapes: Option<String>,
    /// trtexec's optimum shapes, e.g. --optShapes input:8x3x224x224 (min and max default to it).
    #[arg(long = "optShapes", value_name = "SPEC")]
    pub opt_shapes: Option<String>,
    /// trtexec's maximum shapes, e.g. --maxShapes input:32x3x224x224.
    #[arg(long = "maxShapes", value_name = "SPEC")]
    pub max_shapes: Option<String>,
    /// TensorRT input shapes for `.plan`: 'input:1x3x224x224' or 'input:1x3x224x224,8x3x224x224,32x3x224x224' (min,opt,max);
    /// several inputs with ';' or, as trtexec, with ',': 'a:1x3x32x32,b:1x3'.
    #[arg(long, value_name = "SPEC")]
    pub shapes: Option<String>,
    /// TensorRT major version the plan targets (10 or 11).
    #[arg(long, default_value_t = 11, value_name = "N")]
    pub trt_version: u32,
    /// TensorRT builder workspace limit in MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub workspace: u64,
    /// Also write the TensorRT network definition: `--emit network FILE`.
    #[arg(long, num_args = 2, value_names = ["WHAT", "FILE"])]
    pub emit: Vec<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Reads a model from an ONNX file or a text-form file (`.txt`, `.sqc`).
pub fn load_model(path: &Path, load: &LoadArgs) -> Result<(Model, Option<crate::onnx::LoadedModel>)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "txt" || ext == "sqc" {
        let text = std::fs::read_to_string(path).map_err(|e| Error::user(format!("cannot read: {e}")).context(path.display().to_string()))?;
        let model = crate::text::parse(&text).map_err(|e| e.context(path.display().to_string()))?;
        return Ok((model, None));
    }
    let opts = crate::onnx::LoadOptions { allow_unknown_fields: load.allow_unknown_fields };
    let mut loaded = crate::onnx::load(path, &opts)?;
    let proto = std::mem::take(&mut loaded.proto);
    let model = crate::ir::import::import(proto).map_err(|e| e.context(path.display().to_string()))?;
    Ok((model, Some(loaded)))
}

fn registry_with_plugins(plugins: &[PathBuf]) -> Result<Registry> {
    let mut reg = Registry::with_builtins();
    for p in plugins {
        crate::plugin::load_into(&mut reg, p)?;
    }
    Ok(reg)
}

/// Writes to stdout, ignoring a closed pipe (`sparseqc print m.onnx | head` must not panic).
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Entry point: returns the process exit status.
pub fn main() -> i32 {
    crate::util::tune_allocator();
    let mut cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let res = match cli.command {
        Some(Command::Print(a)) => cmd_print(&a),
        Some(Command::Inspect(a)) => cmd_inspect(&a),
        Some(Command::Passes(a)) => cmd_passes(&a),
        None => crate::vocab::prepare(&mut cli.compile).and_then(|_| cmd_compile(&cli.compile)),
    };
    let code = match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e.kind {
                ErrorKind::Usage => 2,
                _ => 1,
            }
        }
    };
    crate::vocab::finish();
    code
}

fn cmd_print(a: &PrintArgs) -> Result<i32> {
    let (model, _) = load_model(&a.model, &a.load)?;
    if a.network {
        let text = crate::backend::network_text(&model).map_err(|e| e.context(a.model.display().to_string()))?;
        out(&text);
        return Ok(0);
    }
    let text = crate::text::print(&model, &crate::text::PrintOptions { inline_limit: a.inline_limit })?;
    out(&text);
    Ok(0)
}

fn cmd_passes(a: &PassesArgs) -> Result<i32> {
    let reg = registry_with_plugins(&a.plugins)?;
    // the options the default pipeline (--calib, --gpu hopper) sets, next to each pass's own defaults
    let pipeline = parse_pipeline(DEFAULT_PIPELINE)?;
    for info in reg.list() {
        out(&format!("{:<14} {}{}\n", info.name, info.summary, if info.origin == "built-in" { String::new() } else { format!(" [{}]", info.origin) }));
        if let Some(e) = pipeline.iter().find(|e| e.name == info.name && !e.options.values.is_empty()) {
            let set: Vec<String> = e.options.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out(&format!("    in the default pipeline: {}\n", set.join(", ")));
        }
        for o in &info.options {
            out(&format!("    {:<18} {:<6} default {:<10} {}\n", o.name, format!("{:?}", o.kind).to_lowercase(), if o.default.is_empty() { "-" } else { o.default }, o.help));
        }
    }
    out(&format!(
        "\ndefault pipeline (--calib): {DEFAULT_PIPELINE}\n  (gpu= from --gpu; --sparsity all: {ALL_PIPELINE}; the final model is judged on held-out samples against --accuracy-budget, else top-1 agreement {DEFAULT_BUDGET} (class scores) or 20 dB output SQNR (other outputs), backing off to fewer sparse layers, dense INT8, then sensitive layers float)\n\
         --dense: {DENSE_PIPELINE}\n--calib-cache only: {DENSE_PIPELINE_CACHE} (no pruning; --sparsity magnitude: {DEFAULT_PIPELINE_CACHE})\n"
    ));
    Ok(0)
}

fn cmd_inspect(a: &InspectArgs) -> Result<i32> {
    let (model, _) = load_model(&a.model, &a.load)?;
    let report = crate::inspect::inspect(&model)?;
    if a.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&report).map_err(|e| Error::internal(e.to_string()))?));
    } else {
        out(&crate::inspect::format_report(&report, a.sparsity || a.require_2of4.is_some()));
    }
    if let Some(pat) = &a.require_2of4 {
        let req = crate::inspect::require_2of4(&report, &crate::pass::Pattern::parse(pat)).map_err(|e| e.context(format!("'{pat}'")))?;
        for (layer, why) in &req.skipped {
            eprintln!("note: --require-2of4 skips '{layer}': it can never be 2:4 ({why})");
        }
        let failing = req.failing;
        if !failing.is_empty() {
            eprintln!("error: {} layer(s) matching '{pat}' do not follow the 2:4 pattern: {}", failing.len(), failing.join(", "));
            return Ok(1);
        }
    }
    Ok(0)
}

fn cmd_compile(a: &CompileArgs) -> Result<i32> {
    let t0 = Instant::now();
    let model_path = a.model.clone().ok_or_else(|| Error::usage("missing MODEL"))?;
    let out = a.output.clone().ok_or_else(|| Error::usage("missing -o OUT"))?;
    let out_ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let plan = matches!(out_ext.as_str(), "plan" | "engine" | "trt");
    if !plan && out_ext != "onnx" {
        return Err(Error::usage(format!("output '{}': use a .onnx (model) or .plan (TensorRT engine) file name", out.display())));
    }
    // refuse before any work
    let outputs = crate::outputs::OutputPlan::of_compile(a, &model_path, &out, plan);
    outputs.check()?;
    if a.emit.len() == 2 && a.emit[0] != "network" {
        return Err(Error::usage(format!("--emit: unknown artefact '{}' (supported: network)", a.emit[0])));
    }
    let preprocess = a.preprocess.clone().filter(|p| !p.eq_ignore_ascii_case("none"));
    if let Some(spec) = &preprocess {
        // a typo here should not surface after minutes of pruning
        spec.parse::<crate::calib::Preprocess>().map_err(|e| Error::usage(format!("--preprocess '{spec}': {e}")))?;
    }
    if let Some(c) = &a.calib {
        if a.preprocess.is_none() && crate::calib::is_image_folder(c).unwrap_or(false) {
            return Err(Error::usage(format!(
                "--calib {} is a folder of images: give --preprocess (the transform the model was trained with), e.g. one of the presets\n{}\n\
                 or key=value pairs (resize, crop, scale, mean, std, order, layout); --preprocess none reads pixels as x/255 only",
                c.display(),
                crate::calib::presets_text()
            )));
        }
    }
    let gpu: crate::sparsity::speed::Gpu = a.gpu.as_deref().unwrap_or("hopper").parse()?;
    let sparsity = if a.dense { SparsityArg::None } else { a.sparsity };
    if plan {
        // no TensorRT here: say so before any work, and write nothing
        crate::backend::check_plan_possible(a)?;
    }

    let pipeline_text = match &a.passes {
        Some(p) => p.clone(),
        None => match crate::vocab::pipeline_for_input(&model_path, a)? {
            Some(p) => p,
            None => {
            if a.calib.is_none() && a.calib_cache.is_none() {
                return Err(Error::usage(
                    "INT8 needs calibration data: give --calib DIR (images, .npy or .npz; with --preprocess for images) \
                     or --calib-cache FILE (a TensorRT calibration cache). To run only some passes, use --passes, \
                     e.g. --passes fold-bn,cleanup,prune-2of4",
                ));
            }
            match (sparsity, a.calib.is_some()) {
                (SparsityArg::None, true) => DENSE_PIPELINE.to_string(),
                (SparsityArg::Auto, true) => DEFAULT_PIPELINE.replace("gpu=hopper", &format!("gpu={gpu},batch={}", build_batch(a.shapes.as_deref()))),
                (SparsityArg::All, true) => ALL_PIPELINE.to_string(),
                (SparsityArg::Magnitude, true) => MAGNITUDE_PIPELINE.to_string(),
                (SparsityArg::Magnitude, false) => DEFAULT_PIPELINE_CACHE.to_string(),
                (SparsityArg::All, false) => {
                    return Err(Error::usage("--sparsity all reconstructs each layer from data: give --calib (or --sparsity magnitude to prune by magnitude)"))
                }
                (SparsityArg::Auto, false) => {
                    if !a.quiet {
                        eprintln!(
                            "note: --calib-cache without --calib: no pruning (without data no layer can be reconstructed or checked; \
                             magnitude pruning loses much accuracy). --sparsity magnitude prunes anyway."
                        );
                    }
                    DENSE_PIPELINE_CACHE.to_string()
                }
                (SparsityArg::None, false) => DENSE_PIPELINE_CACHE.to_string(),
            }
            }
        },
    };
    let reg = registry_with_plugins(&a.plugins)?;
    let mut entries = parse_pipeline(&pipeline_text)?;
    if a.refine_scales {
        if a.calib.is_none() {
            return Err(Error::usage("--refine-scales needs calibration data (--calib)"));
        }
        let mut found = false;
        for e in entries.iter_mut().filter(|e| e.name == "calibrate") {
            e.options.values.entry("refine".into()).or_insert_with(|| "true".to_string());
            found = true;
        }
        if !found {
            return Err(Error::usage("--refine-scales applies to calibrate, which the pipeline does not run"));
        }
    }
    if let Some(b) = &a.accuracy_budget {
        crate::measure::Budget::parse(b)?;
        let mut found = false;
        for e in entries.iter_mut().filter(|e| e.name == "prune-2of4") {
            e.options.values.entry("budget".into()).or_insert_with(|| b.to_string());
            found = true;
        }
        if !found {
            return Err(Error::usage("--accuracy-budget applies to prune-2of4, which the pipeline does not run"));
        }
    }
    crate::vocab::apply_to_pipeline(&mut entries, a)?;
    let passes = entries.iter().map(|e| reg.create(e)).collect::<Result<Vec<_>>>()?;
    crate::vocab::check_print_ir_after(&a.print_ir_after, &passes.iter().map(|p| p.name().to_string()).collect::<Vec<_>>())?;
    if let Some(c) = &a.calib {
        if !c.exists() {
            return Err(Error::user(format!("calibration data '{}' does not exist", c.display())));
        }
    }
    if let Some(c) = &a.calib_cache {
        if !c.exists() {
            return Err(Error::user(format!("calibration cache '{}' does not exist", c.display())));
        }
    }

    let (mut model, loaded) = load_model(&model_path, &a.load)?;
    let mut protected = vec![model_path.clone()];
    let mut was_external = std::collections::HashSet::new();
    if let Some(l) = &loaded {
        for (name, r) in &l.external {
            was_external.insert(name.clone());
            protected.push(l.base_dir.join(&r.location));
        }
        outputs.check_inputs("the model's external data", &protected[1..])?;
        if !l.dropped_fields.is_empty() && !a.quiet {
            eprintln!("warning: dropped {} unknown field(s) (--allow-unknown-fields)", l.dropped_fields.len());
        }
    }
    // an output aimed at the external data is refused above, before the calibration data is read;
    // what can be known to fail, before any pass that costs time, all at once
    let preflight = crate::preflight::Plan {
        upgrades_opset: entries.iter().any(|e| e.name == crate::passes::upgrade_opset::NAME),
        calib: a.calib.as_deref(),
        preprocess: a.preprocess.as_deref(),
        limit: a.calib_limit,
    };
    crate::preflight::check(&model, &preflight).map_err(|e| e.context(model_path.display().to_string()))?;
    if plan || a.emit.len() == 2 {
        crate::backend::check_input_shapes(&model, a)?;
    }

    let mut ctx = PassContext {
        quiet: a.quiet,
        calib: CalibInput {
            source: a.calib.clone(),
            preprocess: preprocess.clone(),
            limit: a.calib_limit,
            cache: a.calib_cache.clone(),
            write_cache: a.write_calib_cache.clone(),
        },
        ..Default::default()
    };
    drop(passes);
    let run_opts = RunOptions {
        verify_each: a.verify_each,
        print_ir_after_all: a.print_ir_after_all,
        print_ir_after: a.print_ir_after.clone(),
        time_passes: a.time_passes || a.verbose >= 2,
    };
    // the budget judged on the final model: the user's, else the default one for the
    // default pipeline's automatic choice of layers
    let budget = match (&a.accuracy_budget, a.passes.is_none() && sparsity == SparsityArg::Auto && a.calib.is_some()) {
        (Some(b), _) => {
            let b = crate::measure::Budget::parse(b)?;
            if matches!(b, crate::measure::Budget::Agreement(_)) && !crate::measure::fidelity::outputs_class_scores(&model) {
                return Err(Error::usage(format!(
                    "--accuracy-budget {}: a top-1 agreement needs one output of class scores per sample ([N, C]), and {} has {}; give an output SQNR instead, e.g. --accuracy-budget 25dB",
                    a.accuracy_budget.as_deref().unwrap_or(""),
                    a.model.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                    describe_outputs(&model)
                )));
            }
            Some((b, true))
        }
        (None, true) => Some((crate::measure::Budget::default_for(&model, DEFAULT_AGREEMENT), false)),
        (None, false) => None,
    };
    // held-out samples: the last ones of the data, which no pass sees
    let held_out = if a.calib.is_some() && (!a.no_fidelity_check || budget.is_some()) {
        let judge_ctx = ctx.clone();
        let n = crate::measure::count_samples(&model, &ctx)?;
        let mut h = crate::measure::split::held_out_count_for(
            n,
            crate::measure::fidelity::outputs_class_scores(&model),
            crate::measure::fidelity::output_values_per_sample(&model),
        );
        if let Some((crate::measure::Budget::Agreement(x), _)) = budget {
            h = h.max(crate::measure::split::samples_to_prove(x).min(n / 2));
        }
        if h == 0 {
            None
        } else {
            ctx.calib.limit = Some(n - h);
            Some(((n - h, h), judge_ctx))
        }
    } else {
        None
    };
    let guard = crate::guard::Guard { reg: &reg, run: run_opts, budget, held_out };
    // `--passes none` stays the byte-identical round trip: no stamp on it
    let stamp_output = !entries.is_empty();
    let outcome = crate::guard::compile(&guard, &model, entries, &ctx)?;
    model = outcome.model;
    let reports = outcome.reports;
    let fidelity = outcome.held_out;
    let (guard_lines, guard_steps) = (outcome.lines, outcome.steps);
    let speed = speed_summary(&model, &reports, &outcome.first_pruned, if a.passes.is_none() && sparsity == SparsityArg::Auto { Some(gpu) } else { None })?;

    let mut written = String::new();
    let mut trt_summary = None;
    if plan {
        let s = crate::backend::build_plan(&model, &out, a)?;
        written = format!("{} ({} bytes, {} network layers)", out.display(), s.bytes, s.layers);
        trt_summary = Some(s.to_json());
    } else {
        let mut proto = if a.keep_annotations { crate::ir::export::export_with_annotations(&model)? } else { crate::ir::export::export(&model)? };
        if stamp_output {
            crate::vocab::stamp(&mut proto, &crate::vocab::command_line());
        }
        let opts = crate::onnx::SaveOptions {
            external: match a.external_data {
                ExternalArg::Auto => crate::onnx::ExternalPolicy::Auto,
                ExternalArg::Always => crate::onnx::ExternalPolicy::Always,
                ExternalArg::Never => crate::onnx::ExternalPolicy::Never,
            },
            threshold: 1024,
            was_external,
            protected,
        };
        let s = crate::onnx::save(proto, &out, &opts)?;
        written.push_str(&format!("{} ({} bytes", out.display(), s.model_bytes));
        if let Some(f) = &s.external_file {
            written.push_str(&format!(", {} tensors in {}", s.external_tensors, f.display()));
        }
        written.push(')');
    }
    if a.emit.len() == 2 {
        crate::backend::emit_network(&model, Path::new(&a.emit[1]), a)?;
    }
    if let Some(r) = &a.report {
        let mut extra = trt_summary.map(|t| vec![("tensorrt", t)]).unwrap_or_default();
        if let Some(f) = &fidelity {
            extra.push(("fidelity", f.to_json()));
        }
        if !guard_steps.is_empty() {
            extra.push(("budget", serde_json::json!(guard_steps)));
        }
        extra.push(("sparsity", speed.json.clone()));
        write_report(r, &model_path, &out, &reports, extra, t0.elapsed().as_secs_f64())?;
    }
    crate::vocab::print_report_details(&reports, 1 + a.verbose as i32 - a.quiet_level as i32);
    if !a.quiet {
        print_summary(&reports, &written, a.report.as_deref(), t0.elapsed().as_secs_f64());
        if let Ok(line) = layer_summary(&model) {
            eprintln!("{line}");
        }
        for l in &guard_lines {
            eprintln!("{l}");
        }
        if let Some(f) = &fidelity {
            eprintln!("{}", f.line());
            if f.is_poor() {
                eprintln!(
                    "warning: the compiled model departs far from the input model on your data; \
                     try --dense, --accuracy-budget, or prune-2of4{{include=...}} to prune fewer layers"
                );
            }
        }
        for l in &speed.lines {
            eprintln!("{l}");
        }
    }
    Ok(0)
}

/// `layers: 18 sparse 2:4, 20 INT8, 1 float (of 21 Conv/Gemm/MatMul)`
fn layer_summary(model: &Model) -> Result<String> {
    let g = &model.graph;
    let (mut total, mut int8, mut sparse) = (0, 0, 0);
    for id in g.node_ids() {
        let n = g.n(id)?;
        if !matches!(n.op_type.as_str(), "Conv" | "ConvTranspose" | "Gemm" | "MatMul") {
            continue;
        }
        total += 1;
        let q = n.inputs.get(1).copied().flatten().and_then(|w| g.producer_node(w)).map(|(_, p)| p.op_type == "DequantizeLinear").unwrap_or(false);
        if q {
            int8 += 1;
        }
    }
    let rep = crate::inspect::inspect(model)?;
    for w in &rep.weights {
        if !w.layer.is_empty() && w.sparse_2of4 == Some(true) {
            sparse += 1;
        }
    }
    Ok(format!("layers: {sparse} sparse 2:4, {int8} INT8, {} float (of {total} Conv/ConvTranspose/Gemm/MatMul)", total - int8))
}

fn write_report(
    path: &Path,
    input: &Path,
    output: &Path,
    reports: &[PassReport],
    extra: Vec<(&str, serde_json::Value)>,
    secs: f64,
) -> Result<()> {
    let mut doc = serde_json::json!({
        "tool": format!("sparseqc {}", env!("CARGO_PKG_VERSION")),
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "seconds": secs,
        "passes": reports,
    });
    if let Some(obj) = doc.as_object_mut() {
        for (k, v) in extra {
            obj.insert(k.into(), v);
        }
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?;
    crate::util::write_atomic(path, text.as_bytes())
}

fn print_summary(reports: &[PassReport], written: &str, report: Option<&Path>, secs: f64) {
    for r in reports {
        eprintln!("  {:<12} {}", r.pass, r.summary);
    }
    eprintln!("wrote {written} in {secs:.2} s{}", report.map(|r| format!("; report: {}", r.display())).unwrap_or_default());
}

/// The batch the engine is built for, from `--shapes` (the optimum of a min,opt,max profile),
/// for the 2:4 speed decision; 1 when not given.
fn build_batch(shapes: Option<&str>) -> usize {
    let Some(spec) = shapes else { return 1 };
    let first = spec.split(';').next().unwrap_or("");
    let dims = first.rsplit_once(':').map(|x| x.1).unwrap_or(first);
    let profiles: Vec<&str> = dims.split(',').collect();
    let pick = if profiles.len() == 3 { profiles[1] } else { profiles[0] };
    pick.split('x').next().and_then(|b| b.trim().parse::<usize>().ok()).filter(|b| *b > 0).unwrap_or(1)
}

/// What the summary and the report say about 2:4: the layers made sparse, those left dense
/// and why, and the expected speed-up class of the whole model.
struct SpeedSummary {
    lines: Vec<String>,
    json: serde_json::Value,
}

/// Multiply-adds of every Conv/Gemm/MatMul of `m` (weight elements x output pixels per sample).
fn layer_macs(m: &Model) -> Result<Vec<(String, f64)>> {
    let g = &m.graph;
    let mut out = Vec::new();
    for id in g.topo_order()? {
        let n = g.n(id)?;
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul") {
            continue;
        }
        let Some((w, _)) = crate::inspect::find_weight(g, id, 1) else { continue };
        let numel = g.constant(w).map(|t| t.shape().iter().product::<usize>()).unwrap_or(0) as f64;
        let dims = n.outputs.first().copied().flatten().and_then(|o| g.value(o)).and_then(|v| v.ty.as_ref()).and_then(|t| t.shape.clone()).unwrap_or_default();
        let pixels: f64 = if n.op_type == "Conv" { dims.iter().skip(2).map(|d| if let crate::ir::Dim::Known(k) = d { *k as f64 } else { 1.0 }).product() } else { 1.0 };
        out.push((crate::ir::edit::node_label(g, id), numel * pixels));
    }
    Ok(out)
}

fn speed_summary(final_model: &Model, reports: &[PassReport], first_pruned: &[String], gpu: Option<crate::sparsity::speed::Gpu>) -> Result<SpeedSummary> {
    let inspect = crate::inspect::inspect(final_model)?;
    let sparse: std::collections::HashSet<String> = inspect.weights.iter().filter(|w| !w.layer.is_empty() && w.sparse_2of4 == Some(true)).map(|w| w.layer.clone()).collect();
    let macs = layer_macs(final_model)?;
    let total: f64 = macs.iter().map(|x| x.1).sum();
    let sparse_macs: f64 = macs.iter().filter(|x| sparse.contains(&x.0)).map(|x| x.1).sum();
    // (a sum of no f64 is -0.0)
    let frac = if total > 0.0 && sparse_macs > 0.0 { sparse_macs / total } else { 0.0 };
    let items = reports.iter().filter(|r| r.pass == "prune-2of4").flat_map(|r| r.items.iter());
    let no_gain: Vec<&str> = items.clone().filter(|i| i.action == "skipped" && i.reason.starts_with("no expected gain")).map(|i| i.node.as_str()).collect();
    let mut accuracy: Vec<&str> = items.filter(|i| i.action == "kept-dense").map(|i| i.node.as_str()).collect();
    accuracy.extend(first_pruned.iter().filter(|l| !sparse.contains(*l)).map(|l| l.as_str()));
    accuracy.sort();
    accuracy.dedup();
    let names = |v: &[&str]| if v.len() <= 6 { v.join(", ") } else { format!("{}, ... ({} more)", v[..6].join(", "), v.len() - 6) };
    let mut lines = Vec::new();
    let on = gpu.map(|g| format!(" on {g}")).unwrap_or_default();
    if sparse.is_empty() && accuracy.is_empty() && !no_gain.is_empty() {
        lines.push(format!(
            "2:4: no layer is expected to run faster{on} ({} eligible layers checked, evidence per layer in the report); wrote dense INT8. --sparsity all forces 2:4 on every eligible layer.",
            no_gain.len()
        ));
    } else {
        let mut l = format!("2:4: {} layers sparse ({:.1} % of Conv/Gemm/MatMul multiply-adds)", sparse.len(), 100.0 * frac);
        if !no_gain.is_empty() {
            l.push_str(&format!("; dense for no expected gain{on}: {} ({})", no_gain.len(), names(&no_gain)));
        }
        if !accuracy.is_empty() {
            l.push_str(&format!("; dense for accuracy: {} ({})", accuracy.len(), names(&accuracy)));
        }
        lines.push(l);
    }
    let class = if sparse.is_empty() {
        "none"
    } else if frac < 0.25 {
        "small"
    } else if frac < 0.6 {
        "moderate"
    } else {
        "large"
    };
    // chosen by expected gain: the default pipeline, or a prune-2of4{gpu=...} that skipped some
    let chosen = gpu.is_some() || !no_gain.is_empty();
    let how = match (chosen, sparse.is_empty()) {
        (true, false) => "; only layers the evidence expects to gain are sparse",
        (false, false) => "; layers not chosen by expected gain (--sparsity all/magnitude or --passes): TensorRT keeps the dense kernel where it is faster",
        (_, true) => "",
    };
    lines.push(format!("expected speed-up from 2:4{on}: {class} ({:.1} % of multiply-adds sparse{how})", 100.0 * frac));
    let json = serde_json::json!({
        "gpu": gpu.map(|g| g.to_string()),
        "sparse_layers": sparse.len(),
        "sparse_mac_fraction": frac,
        "dense_no_expected_gain": no_gain,
        "dense_for_accuracy": accuracy,
        "expected_speedup_class": class,
    });
    Ok(SpeedSummary { lines, json })
}

/// The model's outputs with their declared shapes, for messages: `'y' [N, 128, 768]`.
fn describe_outputs(m: &crate::ir::Model) -> String {
    let g = &m.graph;
    let parts: Vec<String> = g
        .outputs
        .iter()
        .map(|&o| {
            let v = g.value(o);
            let name = v.map(|v| v.name.as_str()).unwrap_or("?");
            let shape = v.and_then(|v| v.ty.as_ref()).and_then(|t| t.shape.as_ref()).map(|d| {
                let ds: Vec<String> = d
                    .iter()
                    .map(|x| match x {
                        crate::ir::Dim::Known(k) => k.to_string(),
                        crate::ir::Dim::Param(p) => p.clone(),
                        crate::ir::Dim::Unknown => "?".into(),
                    })
                    .collect();
                format!("[{}]", ds.join(", "))
            });
            format!("'{name}' {}", shape.unwrap_or_else(|| "(shape unknown)".into()))
        })
        .collect();
    format!("output{} {}", if parts.len() == 1 { "" } else { "s" }, parts.join(", "))
}
