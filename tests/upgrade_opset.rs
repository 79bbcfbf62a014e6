//! upgrade-opset: each rewrite as a text-form snapshot (with the pass report), and the
//! function of the rewritten model checked against the ORIGINAL model (its old opset) in
//! onnxruntime.

use sparseqc::pass::Registry;
use sparseqc::testing::{assert_same_function, check_pipeline_with_report, parse_model, pipeline_error, run_pipeline};

fn graph(opset: i64, inputs: &str, outputs: &str, inits: &str, body: &str) -> String {
    format!("<\n  ir_version: 4,\n  opset_import: [\"\" : {opset}]\n>\ng ({inputs}) => ({outputs})\n<\n{inits}\n>\n{{\n{body}}}\n")
}

/// Snapshot of the upgraded model and report, and the same function as the original in onnxruntime.
fn upgrade(text: &str) -> String {
    let reg = Registry::with_builtins();
    let run = run_pipeline(text, "upgrade-opset", &reg).unwrap_or_else(|e| panic!("upgrade failed: {e}"));
    assert_same_function(&run.before, &run.after, 1e-6);
    assert_eq!(run.after.opset(), 13);
    check_pipeline_with_report(text, "upgrade-opset", &reg)
}

#[test]
fn softmax_family_coerced_to_2d_before_13() {
    let body = "  [sm] a = Softmax <axis = 1> (x)\n  [lsm] b = LogSoftmax <axis = 2> (x)\n  [hm] c = Hardmax (x2)\n  [smneg] d = Softmax <axis = -2> (x)\n";
    let text = graph(11, "float[2,3,4] x, float[2,5] x2", "float[2,3,4] a, float[2,3,4] b, float[2,5] c, float[2,3,4] d", "", body);
    insta::assert_snapshot!("softmax_family", upgrade(&text));
}

#[test]
fn axes_and_split_attributes_become_inputs() {
    let body = "  [unsq] u = Unsqueeze <axes = [0]> (x)\n  [sq] s = Squeeze <axes = [0]> (u)\n  [rsum] r = ReduceSum <axes = [1], keepdims = 0> (s)\n  [split] p, q = Split <axis = 1, split = [1, 2]> (s)\n  [rsall] t = ReduceSum (x)\n";
    let text = graph(11, "float[2,3,4] x", "float[2,4] r, float[2,1,4] p, float[2,2,4] q, float[1,1,1] t", "", body);
    insta::assert_snapshot!("axes_to_inputs", upgrade(&text));
}

#[test]
fn clip_pad_slice_topk_before_10() {
    let body = "  [clip] c = Clip <min = -0.5, max = 0.25> (x)\n  [clipnone] c2 = Clip (x)\n  [pad] p = Pad <pads = [0, 0, 1, 2, 0, 0, 2, 1], value = 0.75> (c)\n  [padr] pr = Pad <mode = \"reflect\", pads = [0, 0, 1, 1, 0, 0, 1, 1]> (x)\n  [slice] s = Slice <starts = [1, 0], ends = [3, -1], axes = [2, 3]> (x)\n  [slice2] s2 = Slice <starts = [0, 1], ends = [1, 100]> (x)\n  [topk] v, i = TopK <k = 2, axis = -1> (x)\n  [add] y = Add (c2, x)\n";
    let text = graph(
        9,
        "float[1,2,4,5] x",
        "float[1,2,7,8] p, float[1,2,6,7] pr, float[1,2,2,4] s, float[1,1,4,5] s2, float[1,2,4,2] v, int64[1,2,4,2] i, float[1,2,4,5] y",
        "",
        body,
    );
    insta::assert_snapshot!("clip_pad_slice_topk", upgrade(&text));
}

#[test]
fn upsample_becomes_asymmetric_resize() {
    // opset 7/8: scales attribute; opset 9: scales input
    let body7 = "  [upn] a = Upsample <mode = \"nearest\", scales = [1.0, 1.0, 2.0, 3.0]> (x)\n  [upl] b = Upsample <mode = \"linear\", scales = [1.0, 1.0, 2.0, 2.0]> (x)\n";
    let text7 = graph(7, "float[1,2,3,4] x", "float[1,2,6,12] a, float[1,2,6,8] b", "", body7);
    insta::assert_snapshot!("upsample_opset7", upgrade(&text7));
    let body9 = "  [upn] a = Upsample <mode = \"nearest\"> (x, sc)\n  [upl] b = Upsample <mode = \"linear\"> (x, sc2)\n";
    let inits = "  float[4] sc = [1.0, 1.0, 2.5, 1.5],\n  float[4] sc2 = [1.0, 1.0, 1.5, 3.0]";
    let text9 = graph(9, "float[1,2,3,4] x", "float[1,2,7,6] a, float[1,2,4,12] b", inits, body9);
    insta::assert_snapshot!("upsample_opset9", upgrade(&text9));
}

#[test]
fn resize_10_keeps_its_coordinates() {
    let body = "  [down] a = Resize <mode = \"nearest\"> (x, sd)\n  [up] b = Resize <mode = \"nearest\"> (x, su)\n  [lin] c = Resize <mode = \"linear\"> (x, su)\n";
    let inits = "  float[4] sd = [1.0, 1.0, 0.5, 0.75],\n  float[4] su = [1.0, 1.0, 2.0, 1.5]";
    let text = graph(10, "float[1,2,6,8] x", "float[1,2,3,6] a, float[1,2,12,12] b, float[1,2,12,12] c", inits, body);
    insta::assert_snapshot!("resize_10", upgrade(&text));
}

#[test]
fn batchnorm_spatial_and_dropout_ratio_before_9() {
    let inits = "  float[3] s = {random: 1},\n  float[3] b = {random: 2},\n  float[3] m = {random: 3},\n  float[3] v = {fill: 0.5}";
    let body = "  [bn] y = BatchNormalization <spatial = 1, epsilon = 0.001> (x, s, b, m, v)\n  [drop] z, mask = Dropout <ratio = 0.3> (y)\n  [relu] r = Relu (z)\n";
    let text = graph(7, "float[2,3,4,4] x", "float[2,3,4,4] r", inits, body);
    insta::assert_snapshot!("bn_dropout_opset7", upgrade(&text));
}

#[test]
fn unchanged_ops_only_get_the_new_opset() {
    let inits = "  float[4,3] w = {random: 1},\n  float[4] c = {random: 2},\n  int64[2] shp = [2, 2]";
    let body = "  [gemm] g = Gemm <transB = 1> (x, w, c)\n  [flat] f = Flatten (g)\n  [rs] r = Reshape (f, shp)\n  [sum] y = Sum (r, r)\n";
    let text = graph(9, "float[1,3] x", "float[2,2] y", inits, body);
    let out = upgrade(&text);
    assert!(out.contains("0 node(s) rewritten, 4 unchanged"), "{out}");
    // a model already at 13 is left alone
    let reg = Registry::with_builtins();
    let t13 = graph(13, "float[1,3] x", "float[2,2] y", inits, body);
    let run = run_pipeline(&t13, "upgrade-opset", &reg).unwrap();
    assert!(!run.reports[0].changed);
    assert_eq!(sparseqc::text::print(&run.before, &Default::default()).unwrap(), sparseqc::text::print(&run.after, &Default::default()).unwrap());
}

#[test]
fn every_node_that_cannot_be_upgraded_is_listed_at_once() {
    let inits = "  float[3] s = {random: 1},\n  float[3] b = {random: 2},\n  float[3] m = {random: 3},\n  float[3] v = {fill: 0.5}";
    let body = "  [bn_per_act] y = BatchNormalization <spatial = 0> (x, s, b, m, v)\n  [shrink] a = Upsample <mode = \"nearest\", scales = [1.0, 1.0, 0.5, 0.5]> (y)\n  [cubic] c = Upsample <mode = \"cubic\", scales = [1.0, 1.0, 2.0, 2.0]> (x)\n";
    let text = graph(8, "float[1,3,4,4] x", "float[1,3,2,2] a, float[1,3,8,8] c", inits, body);
    let err = pipeline_error(&text, "upgrade-opset", &Registry::with_builtins());
    insta::assert_snapshot!("refusals", err);
    let err = pipeline_error(&graph(6, "float[1] x", "float[1] y", "", "  y = Relu (x)\n"), "upgrade-opset", &Registry::with_builtins());
    assert!(err.contains("opset 6") && err.contains("7 to 12"), "{err}");
    let _ = parse_model(&text);
}
