//! NVIDIA's own workflow: models that come in quantized (QAT) or 2:4-sparse (ASP), made by
//! scripts/make_qat_asp_models.py with torch, go through unchanged; the options TensorRT users
//! type; progress lines for logs; strictness of --print-ir-after and --require-2of4.

mod common;
use sparseqc::inspect::find_weight;
use sparseqc::ir::{Graph, Model, NodeId};
use sparseqc::pass::Registry;
use std::collections::BTreeMap;
use std::path::Path;

fn load(p: &Path) -> Model {
    sparseqc::cli::load_model(p, &Default::default()).unwrap().0
}

fn raw(g: &Graph, v: Option<sparseqc::ir::ValueId>) -> Vec<u8> {
    let v = v.expect("an input");
    let t = g.constant_value(v).unwrap_or_else(|| panic!("'{}' is not constant", g.name_of(v)));
    let mut out = format!("{:?}{:?}", t.dtype(), t.dims()).into_bytes();
    out.extend_from_slice(&t.raw_bytes().unwrap());
    out
}

/// Per weighted layer (by node name): the bytes of its weight constant, and of the scale
/// and zero point of the DequantizeLinear on its data input and on its weight, if any.
fn numbers(m: &Model) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let g = &m.graph;
    let mut out = BTreeMap::new();
    for id in g.topo_order().unwrap() {
        let n = g.node(id).unwrap();
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul") {
            continue;
        }
        let mut v = Vec::new();
        let (w, _) = find_weight(g, id, 1).expect("constant weight");
        v.push(("weight".to_string(), raw(g, Some(w))));
        for (slot, role) in [(0, "input"), (1, "weight")] {
            if let Some((_, dq)) = g.producer_node(n.inputs[slot].unwrap()).filter(|(_, p)| p.op_type == "DequantizeLinear") {
                v.push((format!("{role} scale"), raw(g, dq.inputs[1])));
                v.push((format!("{role} zero point"), raw(g, dq.inputs[2])));
                v.push((format!("{role} axis"), format!("{:?}", dq.attr_i("axis")).into_bytes()));
            }
        }
        out.insert(n.name.clone(), v);
    }
    out
}

fn report(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn pass_report<'a>(r: &'a serde_json::Value, pass: &str) -> &'a serde_json::Value {
    r["passes"].as_array().unwrap().iter().find(|p| p["pass"] == pass).unwrap_or_else(|| panic!("no {pass} in {r}"))
}

/// Compiles without calibration data to ONNX and to a network definition; returns the
/// output model, the report and stderr.
fn compile_plain(model: &str, extra: &[&str]) -> (Model, serde_json::Value, String, tempfile::TempDir) {
    let d = common::tmpdir();
    let out = d.path().join("out.onnx");
    let net = d.path().join("out.network");
    let rep = d.path().join("r.json");
    let input = common::testdata(model);
    let mut args = vec![common::path_str(&input), "-o", common::path_str(&out), "--emit", "network", common::path_str(&net), "--report", common::path_str(&rep)];
    args.extend_from_slice(extra);
    let o = common::sparseqc(&args);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    let (network, _) = sparseqc::trt::read_network_file(&net).unwrap();
    assert!(!network.layers().is_empty());
    (load(&out), report(&rep), err, d)
}

#[test]
fn qat_model_compiles_without_calibration_with_weights_and_scales_bit_for_bit() {
    let input = load(&common::testdata("models/qat_cnn.onnx"));
    let (out, rep, _, _d) = compile_plain("models/qat_cnn.onnx", &[]);
    let before = numbers(&input);
    assert_eq!(before.len(), 5);
    assert!(before.values().all(|v| v.len() == 7), "every layer comes in with input and weight Q/DQ");
    assert_eq!(before, numbers(&out));
    let names: Vec<&str> = rep["passes"].as_array().unwrap().iter().map(|p| p["pass"].as_str().unwrap()).collect();
    assert_eq!(names, ["upgrade-opset", "fold-bn", "cleanup", "check-qdq"]);
    let c = pass_report(&rep, "check-qdq");
    assert_eq!(c["stats"]["violations"], 0, "{c}");
    assert_eq!(c["stats"]["came_in_quantized"].as_array().unwrap().len(), 5);
    // the RGB stem conv cannot be 2:4; the other four came in 2:4 from the ASP step
    assert_eq!(c["stats"]["came_in_sparse"], serde_json::json!(["/Conv_1", "/Conv_2", "/Conv_3", "/Gemm"]));
    // stamp: producer and command line
    let p = sparseqc::ir::export::export(&out).unwrap();
    assert_eq!(p.producer_name.as_deref(), Some("sparseqc"));
    assert_eq!(p.producer_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let cmd = p.metadata_props.iter().find(|e| e.key.as_deref() == Some("sparseqc.command")).and_then(|e| e.value.clone()).unwrap();
    assert!(cmd.contains("qat_cnn.onnx") && cmd.contains("--emit network"), "{cmd}");
}

#[test]
fn asp_model_keeps_its_2of4_weights_without_and_with_calibration() {
    let input = load(&common::testdata("models/asp_cnn.onnx"));
    let (out, _, err, _d) = compile_plain("models/asp_cnn.onnx", &[]);
    assert!(err.contains("the output stays float"), "{err}");
    assert_eq!(numbers(&input), numbers(&out));
    // with calibration data, both pruning methods leave the 2:4 layers alone (and say so)
    for method in ["obs", "magnitude"] {
        let d = common::tmpdir();
        let o = d.path().join("o.onnx");
        let r = d.path().join("r.json");
        let calib = common::testdata("cifar10-mini.input.npy");
        let passes = format!("fold-bn,cleanup,prune-2of4{{method={method},min-channels=4,min-params=0}},calibrate{{method=max}},insert-qdq");
        let args = [common::testdata("models/asp_cnn.onnx").to_str().unwrap().to_string(), "-o".into(), o.to_str().unwrap().into(), "--calib".into(), calib.to_str().unwrap().into(), "--passes".into(), passes, "--report".into(), r.to_str().unwrap().into(), "-q".into(), "--no-fidelity-check".into()];
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let res = common::sparseqc(&args);
        assert!(res.status.success(), "{}", common::stderr(&res));
        let out = load(&o);
        let (b, a) = (numbers(&input), numbers(&out));
        for (layer, v) in &b {
            assert_eq!(v[0], a[layer][0], "{method}: weight of {layer} changed");
        }
        let rep = report(&r);
        let kept: Vec<&str> = pass_report(&rep, "prune-2of4")["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["reason"].as_str().unwrap().contains("already 2:4"))
            .map(|i| i["node"].as_str().unwrap())
            .collect();
        assert_eq!(kept, ["/Conv_1", "/Conv_2", "/Conv_3", "/Gemm"], "{method}");
    }
}

#[test]
fn placement_violation_is_reported_by_node_and_fixed_with_insert() {
    let (_, rep, err, _d) = compile_plain("models/qat_cnn_noskipq.onnx", &[]);
    let c = pass_report(&rep, "check-qdq");
    assert_eq!(c["stats"]["violations"], 1, "{c}");
    assert!(err.contains("warning: check-qdq '/Add' (Add): skip input '/Relu_1_output_0'"), "{err}");
    // --fix-qdq insert reuses the Q/DQ the block's first conv has on that tensor
    let (out, rep, _, _d) = compile_plain("models/qat_cnn_noskipq.onnx", &["--fix-qdq", "insert"]);
    let c = pass_report(&rep, "check-qdq");
    assert_eq!((c["stats"]["violations"].as_u64(), c["stats"]["fixed"].as_u64()), (Some(0), Some(1)), "{c}");
    let g = &out.graph;
    let add = g.node_ids().into_iter().find(|id| g.node(*id).unwrap().name == "/Add").unwrap();
    let from: Vec<String> = g.node(add).unwrap().inputs.iter().map(|v| g.producer_node(v.unwrap()).unwrap().1.name.clone()).collect();
    assert_eq!(from, ["/Conv_3", "/DequantizeLinear_4"]);
    // and the fixed model has the numbers of the one exported with the skip quantizer
    assert_eq!(numbers(&out), numbers(&load(&common::testdata("models/qat_cnn.onnx"))));
}

const SMALL_QAT: &str = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,8,4,4] x) => (float[1,8,4,4] y, float[1,8,4,4] c3, float[1,8,4,4] c4)
<
  float[] sx = [0.02],
  int8[] zx = [0],
  float[8,8,3,3] w1 = {random: 1},
  float[8] sw1 = [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01],
  int8[8] zw1 = [0, 0, 0, 0, 0, 0, 0, 0],
  float[8,8,1,1] w2 = {random: 2},
  float[8] sw2 = [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02],
  float[8,8,1,1] w3 = {random: 3},
  float[8,8,1,1] w4 = {random: 4}
>
{
  [qx] xq = QuantizeLinear (x, sx, zx)
  [dqx] xd = DequantizeLinear (xq, sx, zx)
  [qw1] w1q = QuantizeLinear <axis = 0> (w1, sw1, zw1)
  [dqw1] w1d = DequantizeLinear <axis = 0> (w1q, sw1, zw1)
  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (xd, w1d)
  [relu1] r1 = Relu (c1)
  [qw2] w2q = QuantizeLinear <axis = 0> (w2, sw2, zw1)
  [dqw2] w2d = DequantizeLinear <axis = 0> (w2q, sw2, zw1)
  [conv2] c2 = Conv (r1, w2d)
  [pool] p = MaxPool <kernel_shape = [1, 1]> (xd)
  [qw3] w3q = QuantizeLinear <axis = 0> (w3, sw2, zw1)
  [dqw3] w3d = DequantizeLinear <axis = 0> (w3q, sw2, zw1)
  [conv3] c3 = Conv (p, w3d)
  [conv4] c4 = Conv (xd, w4)
  [add] s = Add (c2, x)
  [relu2] y = Relu (s)
}
"#;

/// conv1 follows the rules; conv2's data input has no Q/DQ and no scale can be derived for
/// it (it is a conv output); conv3's data input comes from a DequantizeLinear through a
/// MaxPool (the scale carries over); conv4's weight is float; the residual Add's skip input
/// `x` has a Q/DQ pair for another consumer.
#[test]
fn check_qdq_reports_fixes_and_removes() {
    let reg = Registry::with_builtins();
    let mut out = String::new();
    for p in ["check-qdq", "check-qdq{fix=insert}", "check-qdq{fix=remove}", "check-qdq{weights=int8}"] {
        out.push_str(&format!("### {p}\n{}\n", sparseqc::testing::check_pipeline_with_report(SMALL_QAT, p, &reg)));
    }
    insta::assert_snapshot!("check_qdq_small", out);
    // strict: a remaining violation fails the pass, naming the node
    let e = sparseqc::testing::pipeline_error(SMALL_QAT, "check-qdq{strict=true}", &reg);
    assert!(e.contains("'conv2' (Conv): data input 'r1' does not come from a DequantizeLinear"), "{e}");
}

/// ONNX Runtime's outputs of two models on the same random input: the largest absolute difference.
fn ort_max_abs_diff(a: &Path, b: &Path) -> f64 {
    let code = r#"
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
s = [ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]) for p in sys.argv[1:3]]
i = s[0].get_inputs()[0]
x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 2 for d in i.shape]).astype(np.float32)
ya, yb = (t.run(None, {i.name: x})[0] for t in s)
print(float(np.abs(ya - yb).max()))
"#;
    common::run_python(code, &[common::path_str(a), common::path_str(b)]).trim().parse().unwrap()
}

#[test]
fn weights_int8_shrinks_the_file_and_keeps_the_outputs() {
    let d = common::tmpdir();
    let model = common::testdata("models/resnet20_bn.onnx");
    let cache = common::testdata("calib/resnet20_bn.calib-mini.max.json");
    let (qdq, int8) = (d.path().join("qdq.onnx"), d.path().join("int8.onnx"));
    for (out, extra) in [(&qdq, None), (&int8, Some("int8"))] {
        let mut args = vec![model.to_str().unwrap(), "--calib-cache", cache.to_str().unwrap(), "-o", out.to_str().unwrap(), "-q"];
        if let Some(w) = extra {
            args.extend(["--weights", w]);
        }
        let o = common::sparseqc(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    let (a, b) = (std::fs::metadata(&qdq).unwrap().len(), std::fs::metadata(&int8).unwrap().len());
    assert!(b * 3 < a, "INT8 weights: {b} bytes vs {a}");
    assert_eq!(ort_max_abs_diff(&qdq, &int8), 0.0);
    // the same on a model that came in quantized (check-qdq stores what its Q computes)
    let q8 = d.path().join("qat8.onnx");
    let qat = common::testdata("models/qat_cnn.onnx");
    let o = common::sparseqc(&[qat.to_str().unwrap(), "-o", q8.to_str().unwrap(), "--weights", "int8", "-q"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(std::fs::metadata(&q8).unwrap().len() * 3 < std::fs::metadata(&qat).unwrap().len());
    assert_eq!(ort_max_abs_diff(&qat, &q8), 0.0);
}

#[test]
fn help_shows_every_tensorrt_alias_with_an_example() {
    let o = common::sparseqc(&["--help"]);
    // clap wraps lines: compare with whitespace runs as single spaces
    let help = String::from_utf8_lossy(&o.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "--calibration-method entropy",
        "--exclude-nodes '",
        "--exclude-op-types Gemm,MatMul",
        "--per-channel",
        "--per-tensor",
        "--minShapes input:1x3x224x224",
        "--optShapes input:8x3x224x224",
        "--maxShapes input:32x3x224x224",
        "'a:1x3x32x32,b:1x3'",
        "--int8",
        "-v, --verbose",
        "-q, --quiet",
        "--log-file build.log",
        "--weights int8",
        "4x smaller",
        "--fix-qdq insert",
    ] {
        assert!(help.contains(needle), "'{needle}' not in --help:\n{help}");
    }
}

/// Runs the compile command on ResNet-20 (with its calibration cache unless `extra` gives
/// --calib); returns the output model and report when it succeeded.
fn r20(extra: &[&str]) -> (Option<Model>, serde_json::Value, std::process::Output, tempfile::TempDir) {
    let d = common::tmpdir();
    let out = d.path().join("o.onnx");
    let rep = d.path().join("r.json");
    let model = common::testdata("models/resnet20_bn.onnx");
    let cache = common::testdata("calib/resnet20_bn.calib-mini.max.json");
    let mut args = vec![model.to_str().unwrap(), "-o", out.to_str().unwrap(), "--report", rep.to_str().unwrap()];
    if !extra.contains(&"--calib") {
        // a cache alone prunes nothing unless asked: these tests want the pruned pipeline
        // (upgrade-opset, fold-bn, cleanup, prune-2of4, calibrate, insert-qdq)
        args.extend(["--calib-cache", cache.to_str().unwrap(), "--sparsity", "magnitude"]);
    }
    args.extend_from_slice(extra);
    let o = common::sparseqc(&args);
    if !o.status.success() {
        return (None, serde_json::Value::Null, o, d);
    }
    (Some(load(&out)), report(&rep), o, d)
}

fn node<'a>(m: &'a Model, name: &str) -> (NodeId, &'a sparseqc::ir::Node) {
    let g = &m.graph;
    let id = g.node_ids().into_iter().find(|id| g.node(*id).unwrap().name == name).unwrap_or_else(|| panic!("no node {name}"));
    (id, g.node(id).unwrap())
}

#[test]
fn tensorrt_vocabulary_options_act_on_the_pipeline() {
    let input = load(&common::testdata("models/resnet20_bn.onnx"));
    let layers: Vec<String> = {
        let g = &input.graph;
        g.topo_order().unwrap().into_iter().map(|i| g.node(i).unwrap()).filter(|n| n.op_type == "Conv").map(|n| n.name.clone()).collect()
    };
    let second = layers[2].clone();
    // --exclude-nodes and --exclude-op-types: float and dense
    let (m, _, o, _d) = r20(&["--exclude-nodes", &second, "--exclude-op-types", "Gemm", "-q"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let m = m.unwrap();
    let g = &m.graph;
    for id in g.node_ids() {
        let n = g.node(id).unwrap();
        let excluded = n.name == second || n.op_type == "Gemm";
        if matches!(n.op_type.as_str(), "Conv" | "Gemm") {
            assert_eq!(!sparseqc::qdq::is_quantized_layer(g, id), excluded, "{}", n.name);
        }
    }
    assert_eq!(sparseqc::inspect::weight_is_2of4(g, node(&m, &second).0).unwrap(), Some(false));
    // --per-tensor: one scale per weight; --per-channel: one per output channel
    for (flag, per_channel) in [("--per-tensor", false), ("--per-channel", true)] {
        let (m, _, o, _d) = r20(&[flag, "-q"]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let m = m.unwrap();
        let g = &m.graph;
        let (_, n) = node(&m, &second);
        let (_, dq) = g.producer_node(n.inputs[1].unwrap()).unwrap();
        let scales = g.constant_value(dq.inputs[1].unwrap()).unwrap().numel().unwrap();
        assert_eq!(scales > 1, per_channel, "{flag}: {scales} scales");
    }
    // --int8: accepted, one note
    let (_, _, o, _d) = r20(&["--int8", "--per-tensor", "--per-channel"]);
    assert_eq!(o.status.code(), Some(2), "--per-tensor with --per-channel is a usage error");
    let (_, _, o, _d) = r20(&["--int8"]);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("--int8 changes nothing").count(), 1, "{err}");
    // --calibration-method (with data): entropy, and TensorRT's minmax = max
    let calib = common::testdata("cifar10-mini.input.npy");
    for (given, used) in [("entropy", "(entropy)"), ("minmax", "(max)")] {
        let (_, rep, o, _d) = r20(&["--calib", calib.to_str().unwrap(), "--passes", "fold-bn,cleanup,calibrate,insert-qdq", "--calibration-method", given, "-q"]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let s = pass_report(&rep, "calibrate")["summary"].as_str().unwrap().to_string();
        assert!(s.contains(used), "{given}: {s}");
    }
    let (_, _, o, _d) = r20(&["--calibration-method", "kmeans"]);
    assert_eq!(o.status.code(), Some(2));
    // -v: per-layer decisions; -qq: nothing but errors; --log-file: a copy of stderr
    let (_, _, o, _d) = r20(&["-v"]);
    assert!(o.status.success());
    let err = common::stderr(&o);
    assert!(err.contains("prune-2of4") && err.contains(" pruned ") && err.contains("wrote "), "{err}");
    let (_, _, o, _d) = r20(&["-qq"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", common::stderr(&o));
}

#[test]
fn log_file_gets_everything_stderr_gets() {
    let d = common::tmpdir();
    let log = d.path().join("build.log");
    let (_, _, o, _d) = r20(&["--log-file", log.to_str().unwrap()]);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text, err);
    assert!(text.contains("wrote ") && text.contains("pass 1/6 upgrade-opset started"), "{text}");
}

#[test]
fn trtexec_shape_flags_become_the_optimization_profile() {
    let d = common::tmpdir();
    let net = d.path().join("n.network");
    let model = common::testdata("models/resnet20_bn.onnx");
    let cache = common::testdata("calib/resnet20_bn.calib-mini.max.json");
    let out = d.path().join("o.onnx");
    let base = [model.to_str().unwrap(), "--calib-cache", cache.to_str().unwrap(), "-o", out.to_str().unwrap(), "--emit", "network", net.to_str().unwrap(), "-q"];
    let cases: [(&[&str], &str); 4] = [
        (&["--shapes", "input:1x3x32x32"], "input:1x3x32x32"),
        (&["--shapes", "input:1x3x32x32,4x3x32x32,8x3x32x32"], "input:1x3x32x32,4x3x32x32,8x3x32x32"),
        (&["--minShapes", "input:1x3x32x32", "--optShapes", "input:4x3x32x32", "--maxShapes", "input:8x3x32x32"], "input:1x3x32x32,4x3x32x32,8x3x32x32"),
        (&["--optShapes", "input:2x3x32x32"], "input:2x3x32x32"),
    ];
    for (flags, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(flags);
        let o = common::sparseqc(&args);
        assert!(o.status.success(), "{flags:?}: {}", common::stderr(&o));
        let (_, cfg) = sparseqc::trt::read_network_file(&net).unwrap();
        assert_eq!(cfg.profiles[0].to_string(), want, "{flags:?}");
    }
    // trtexec's comma between inputs names an input the model lacks: refused by name
    let mut args = base.to_vec();
    args.extend(["--shapes", "input:1x3x32x32,mask:1x3"]);
    let o = common::sparseqc(&args);
    assert_ne!(o.status.code(), Some(0));
    assert!(common::stderr(&o).contains("mask"), "{}", common::stderr(&o));
    let mut args = base.to_vec();
    args.extend(["--shapes", "input:1x3x32x32", "--optShapes", "input:1x3x32x32"]);
    assert_eq!(common::sparseqc(&args).status.code(), Some(2));
}

#[test]
fn print_ir_after_unknown_pass_is_a_usage_error() {
    let (_, _, o, _d) = r20(&["--print-ir-after", "foldbn"]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("'foldbn'") && err.contains("upgrade-opset, fold-bn, cleanup, prune-2of4, calibrate, insert-qdq"), "{err}");
}

#[test]
fn require_2of4_skips_layers_that_cannot_be_and_refuses_empty_patterns() {
    let m = common::testdata("models/asp_cnn.onnx");
    let o = common::sparseqc(&["inspect", m.to_str().unwrap(), "--require-2of4", "op:Conv|op:Gemm"]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("skips '/Conv': it can never be 2:4 (axis 1 length 3 is not a multiple of 4)"), "{err}");
    let o = common::sparseqc(&["inspect", m.to_str().unwrap(), "--require-2of4", "layer*"]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("matches no layer"), "{err}");
    // a dense layer that could be 2:4 still fails
    let r = common::testdata("models/resnet20_bn.onnx");
    let o = common::sparseqc(&["inspect", r.to_str().unwrap(), "--require-2of4", "op:Conv"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
}

#[test]
fn progress_lines_reach_a_redirected_stderr_while_the_run_goes_on() {
    let d = common::tmpdir();
    let log = d.path().join("stderr.txt");
    let out = d.path().join("o.onnx");
    let model = common::testdata("models/resnet20_bn.onnx");
    let calib = common::testdata("cifar10-mini.input.npy");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sparseqc"))
        .args([model.to_str().unwrap(), "-o", out.to_str().unwrap(), "--calib", calib.to_str().unwrap(), "--no-fidelity-check"])
        .args(["--passes", "fold-bn,cleanup,prune-2of4{method=obs,samples=32},calibrate{method=entropy},insert-qdq"])
        .env("SPARSEQC_HEARTBEAT_SECS", "0.2")
        .stderr(std::process::Stdio::from(file))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the first start line is in the file while the process still runs
    let mut seen_running = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::fs::read_to_string(&log).unwrap_or_default().contains("pass 1/5 fold-bn started") {
            seen_running = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(seen_running, "no start line before the run ended:\n{text}");
    let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("'{s}' missing:\n{text}"));
    let mut last = 0;
    for (i, p) in ["fold-bn", "cleanup", "prune-2of4", "calibrate", "insert-qdq"].iter().enumerate() {
        let start = pos(&format!("pass {}/5 {p} started", i + 1));
        let end = pos(&format!("pass {}/5 {p} done in ", i + 1));
        assert!(last <= start && start < end, "{p} out of order:\n{text}");
        last = end;
    }
    assert!(text.contains("running,"), "no heartbeat:\n{text}");
    assert!(!text.contains('\r'), "no bar redraws in a log:\n{text}");
}
