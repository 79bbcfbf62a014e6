//! insert-qdq checked against TensorRT's rules rather than our own output: every
//! Conv/Gemm has Q/DQ on its data input and weight, every residual Add has Q/DQ on its
//! skip branch, no redundant DQ → Q pair with equal scales, zero points 0, per-channel axes
//! matching the weight layout.

mod common;
use sparseqc::ir::Model;
use sparseqc::pass::{parse_pipeline, CalibInput, PassContext, PassManager, Registry, RunOptions};

fn run(m: &mut Model, pipeline: &str, calib: CalibInput) {
    let reg = Registry::with_builtins();
    let passes = parse_pipeline(pipeline).unwrap().iter().map(|e| reg.create(e).unwrap()).collect();
    let mut pm = PassManager::new(passes, RunOptions { verify_each: true, ..Default::default() });
    pm.run(m, &mut PassContext { quiet: true, calib, ..Default::default() }).expect("pipeline runs");
}

fn check_rules(m: &Model) {
    // rule 1 + zero points + axes, by the testing kit
    let v = sparseqc::testing::check_qdq(m, "").unwrap();
    assert!(v.is_empty(), "{v:#?}");
    let g = &m.graph;
    for id in g.node_ids() {
        let n = g.node(id).unwrap();
        // residual Adds: at least the skip input comes through a DequantizeLinear
        if n.op_type == "Add" && n.inputs.iter().all(|i| i.map(|v| g.constant(v).is_none()).unwrap_or(false)) {
            let dq = n.inputs.iter().filter(|i| g.producer_node(i.unwrap()).map(|(_, p)| p.op_type == "DequantizeLinear").unwrap_or(false)).count();
            assert!(dq >= 1, "residual Add {} has no quantized skip input", n.name);
        }
        // no DQ -> Q with equal scales
        if n.op_type == "QuantizeLinear" {
            if let Some((_, p)) = g.producer_node(n.inputs[0].unwrap()) {
                if p.op_type == "DequantizeLinear" {
                    let a = g.constant_value(p.inputs[1].unwrap()).unwrap().to_f32().unwrap();
                    let b = g.constant_value(n.inputs[1].unwrap()).unwrap().to_f32().unwrap();
                    assert_ne!(a, b, "redundant DQ -> Q pair at {}", n.name);
                }
            }
        }
    }
}

#[test]
fn resnet20_default_pipeline_follows_tensorrt_rules() {
    let mut m = sparseqc::cli::load_model(&common::testdata("models/resnet20_bn.onnx"), &Default::default()).unwrap().0;
    let calib = CalibInput { cache: Some(common::testdata("calib/resnet20_bn.calib-mini.max.json")), ..Default::default() };
    run(&mut m, sparseqc::cli::DEFAULT_PIPELINE_CACHE, calib);
    check_rules(&m);
    // the same with INT8-out GEMMs: still no redundant pairs
    let mut m = sparseqc::cli::load_model(&common::testdata("models/resnet20_bn.onnx"), &Default::default()).unwrap().0;
    let calib = CalibInput { source: Some(common::testdata("cifar10-mini.input.npy")), ..Default::default() };
    run(&mut m, "fold-bn,cleanup,prune-2of4,calibrate{method=max},insert-qdq{int8-outputs=true}", calib);
    check_rules(&m);
}

#[test]
fn residual_block_placement_snapshot() {
    let text = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,8,4,4] x) => (float[1,8,4,4] y)
<
  float[8,8,3,3] w1 = {random: 1},
  float[8] b1 = {random: 2},
  float[8,8,1,1] w2 = {random: 3}
>
{
  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
  [relu1] r1 = Relu (c1)
  [pool] p = MaxPool <kernel_shape = [1, 1]> (r1)
  [conv2] c2 = Conv (p, w2)
  [add] s = Add (c2, x)
  [relu2] y = Relu (s)
}
quant {
  x: amax = 2.0, scale = 0.015748031, method = "max", clipped = 0.0
  p: amax = 4.0, scale = 0.031496063, method = "max", clipped = 0.0
}
"#;
    let out = sparseqc::testing::check_pipeline_with_report(text, "insert-qdq", &Registry::with_builtins());
    let m = sparseqc::text::parse(&sparseqc::text::print(&{
        let mut m = sparseqc::text::parse(text).unwrap();
        run(&mut m, "insert-qdq", CalibInput::default());
        m
    }, &Default::default()).unwrap()).unwrap();
    check_rules(&m);
    insta::assert_snapshot!("residual_block_qdq", out);
}
