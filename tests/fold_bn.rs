//! fold-bn rewrites, text form in → text form out, with every edge case of issue 3.

mod common;
use sparseqc::pass::{parse_pipeline, PassContext, PassManager, Registry, RunOptions};

const HEAD: &str = "<\n  ir_version: 8,\n  opset_import: [\"\" : 13]\n>\n";

fn bn_params(name: &str, c: usize, seed: u64) -> String {
    format!(
        "  float[{c}] {name}.s = {{random: {s1}}},\n  float[{c}] {name}.b = {{random: {s2}}},\n  float[{c}] {name}.m = {{random: {s3}}},\n  float[{c}] {name}.v = {{fill: 0.5}}",
        s1 = seed,
        s2 = seed + 1,
        s3 = seed + 2
    )
}

/// Runs a pipeline on a text-form graph; returns the printed result and the report
/// summary, after checking with onnxruntime that the function is unchanged.
fn run(text: &str, pipeline: &str) -> (String, String) {
    run_opt(text, pipeline, true)
}

fn run_opt(text: &str, pipeline: &str, check_numerics: bool) -> (String, String) {
    let original = sparseqc::text::parse(text).expect("input parses");
    let mut model = original.clone();
    let reg = Registry::with_builtins();
    let passes = parse_pipeline(pipeline).unwrap().iter().map(|e| reg.create(e).unwrap()).collect();
    let mut pm = PassManager::new(passes, RunOptions { verify_each: true, ..Default::default() });
    let reports = pm.run(&mut model, &mut PassContext::default()).expect("pipeline runs");
    let out = sparseqc::text::print(&model, &Default::default()).unwrap();
    if check_numerics {
        let diff = common::ort_rel_diff(&original, &model);
        assert!(diff < 1e-5, "{pipeline} changed the function: relative L2 {diff}");
    }
    let mut rep = String::new();
    for r in &reports {
        rep.push_str(&format!("{}: {}\n", r.pass, r.summary));
        for i in &r.items {
            rep.push_str(&format!("  {} [{}] {}: {}\n", i.node, i.op, i.action, i.reason));
        }
    }
    (out, rep)
}

fn graph(inputs: &str, outputs: &str, inits: &str, body: &str) -> String {
    format!("{HEAD}g ({inputs}) => ({outputs})\n<\n{inits}\n>\n{{\n{body}}}\n")
}

#[test]
fn conv_with_and_without_bias_grouped_depthwise() {
    let inits = format!(
        "  float[8,4,3,3] w1 = {{random: 1}},\n  float[8] b1 = {{random: 2}},\n{},\n  float[8,2,3,3] w2 = {{random: 3}},\n{},\n  float[8,1,3,3] w3 = {{random: 4}},\n{}",
        bn_params("bn1", 8, 10),
        bn_params("bn2", 8, 20),
        bn_params("bn3", 8, 30)
    );
    let body = "  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)\n  [bn1] y1 = BatchNormalization (c1, bn1.s, bn1.b, bn1.m, bn1.v)\n  [conv2] c2 = Conv <group = 4, pads = [1, 1, 1, 1]> (y1, w2)\n  [bn2] y2 = BatchNormalization (c2, bn2.s, bn2.b, bn2.m, bn2.v)\n  [dw] c3 = Conv <group = 8, pads = [1, 1, 1, 1]> (y2, w3)\n  [bn3] y = BatchNormalization <epsilon = 0.001> (c3, bn3.s, bn3.b, bn3.m, bn3.v)\n";
    let (out, rep) = run(&graph("float[1,4,6,6] x", "float[1,8,6,6] y", &inits, body), "fold-bn");
    insta::assert_snapshot!("conv_grouped_depthwise", format!("{out}\n{rep}"));
}

#[test]
fn conv_transpose_with_groups_and_gemm_trans_b() {
    let inits = format!(
        "  float[4,3,2,2] wt = {{random: 1}},\n{},\n  float[5,6] wg = {{random: 2}},\n  float[5] cg = {{random: 3}},\n{}",
        bn_params("bnt", 6, 10),
        bn_params("bng", 5, 20)
    );
    let body = "  [deconv] t = ConvTranspose <group = 2, strides = [2, 2]> (x, wt)\n  [bnt] ty = BatchNormalization (t, bnt.s, bnt.b, bnt.m, bnt.v)\n  [gap] p = GlobalAveragePool (ty)\n  [flat] f = Flatten (p)\n  [fc] gm = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (f, wg, cg)\n  [bng] y = BatchNormalization (gm, bng.s, bng.b, bng.m, bng.v)\n";
    let (out, rep) = run(&graph("float[1,4,3,3] x", "float[1,5] y", &inits, body), "fold-bn");
    insta::assert_snapshot!("convtranspose_groups_gemm_transb", format!("{out}\n{rep}"));
}

#[test]
fn shared_producer_and_non_foldable_op_stay() {
    let inits = format!("  float[4,4,1,1] w = {{random: 1}},\n{},\n{}", bn_params("bna", 4, 10), bn_params("bnb", 4, 20));
    // c feeds both the BN and a Relu: folding would change the Relu's input
    let body = "  [conv] c = Conv (x, w)\n  [bna] a = BatchNormalization (c, bna.s, bna.b, bna.m, bna.v)\n  [relu] r = Relu (c)\n  [add] s = Add (a, r)\n  [bnb] y = BatchNormalization (s, bnb.s, bnb.b, bnb.m, bnb.v)\n";
    let text = graph("float[1,4,2,2] x", "float[1,4,2,2] y", &inits, body);
    let (out, rep) = run(&text, "fold-bn");
    insta::assert_snapshot!("shared_producer_kept", format!("{out}\n{rep}"));
    let (out, rep) = run(&text, "fold-bn{standalone=mul-add}");
    insta::assert_snapshot!("shared_producer_mul_add", format!("{out}\n{rep}"));
}

#[test]
fn training_mode_and_non_constant_params_are_left_alone() {
    let inits = format!("  float[4,4,1,1] w = {{random: 1}},\n{}", bn_params("bn", 4, 10));
    let body = "  [conv] c = Conv (x, w)\n  [bn] y = BatchNormalization <training_mode = 1> (c, bn.s, bn.b, bn.m, bn.v)\n";
    let head14 = "<\n  ir_version: 8,\n  opset_import: [\"\" : 15]\n>\n";
    let text = format!("{head14}g (float[1,4,2,2] x) => (float[1,4,2,2] y)\n<\n{inits}\n>\n{{\n{body}}}\n");
    // onnxruntime cannot run a training-mode BN; the model is unchanged anyway
    let (out, rep) = run_opt(&text, "fold-bn", false);
    assert_eq!(out, sparseqc::text::print(&sparseqc::text::parse(&text).unwrap(), &Default::default()).unwrap());
    assert!(rep.contains("training_mode=1"), "{rep}");
    let body = "  [conv] c = Conv (x, w)\n  [bn] y = BatchNormalization (c, scale, bn.b, bn.m, bn.v)\n";
    let text = graph("float[1,4,2,2] x, float[4] scale", "float[1,4,2,2] y", &inits, body);
    let (_, rep) = run(&text, "fold-bn");
    assert!(rep.contains("scale input is not a constant"), "{rep}");
}

#[test]
fn matmul_fold_adds_bias_and_output_name_is_kept() {
    let inits = format!("  float[6,4] w = {{random: 1}},\n{}", bn_params("bn", 4, 10));
    let body = "  [mm] c = MatMul (x, w)\n  [bn] y = BatchNormalization (c, bn.s, bn.b, bn.m, bn.v)\n";
    let (out, rep) = run(&graph("float[3,6] x", "float[3,4] y", &inits, body), "fold-bn");
    assert!(rep.contains("folded"), "{rep}");
    assert!(out.contains("=> (float[3,4] y)"), "graph output name kept: {out}");
    insta::assert_snapshot!("matmul_bias_add", format!("{out}\n{rep}"));
}
