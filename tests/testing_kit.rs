//! The pass author's testing kit (sparseqc::testing): text-in/text-out pipeline
//! snapshots, the function-preservation check through onnxruntime, and TensorRT's 2:4
//! and Q/DQ structural rules — each shown to pass on a good model and to fail on a bad one.

use sparseqc::ir::Model;
use sparseqc::pass::{OptionSpec, Pass, PassContext, PassInfo, PassOptions, PassReport, Registry, ReportItem};
use sparseqc::testing::*;
use sparseqc::Result;

/// A small real rewrite for the tests: removes Identity nodes whose output is not a graph
/// output (`keep=NAME` spares one).
struct DropIdentity {
    keep: String,
}

impl Pass for DropIdentity {
    fn name(&self) -> &str {
        "drop-identity"
    }
    fn run(&mut self, model: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let g = &mut model.graph;
        let mut r = PassReport::new("drop-identity");
        for id in g.node_ids() {
            let n = g.n(id)?;
            if n.op_type != "Identity" || n.name == self.keep {
                continue;
            }
            let (Some(inp), Some(out)) = (n.inputs[0], n.outputs[0]) else { continue };
            if g.is_graph_output(out) {
                r.item(ReportItem::new(&n.name, "Identity", "skipped", "its output is a graph output"));
                continue;
            }
            r.item(ReportItem::new(&n.name, "Identity", "removed", format!("'{}' now reads '{}'", g.name_of(out), g.name_of(inp))));
            g.replace_uses(out, inp)?;
            g.remove_node(id)?;
            g.remove_value(out)?;
            r.changed = true;
        }
        r.summary = format!("removed {}", r.count("removed"));
        Ok(r)
    }
}

/// A broken rewrite: swaps the inputs of every Sub (changes the function).
struct SwapSub;

impl Pass for SwapSub {
    fn name(&self) -> &str {
        "swap-sub"
    }
    fn run(&mut self, model: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
        let g = &mut model.graph;
        for id in g.node_ids() {
            if g.n(id)?.op_type == "Sub" {
                let (a, b) = (g.n(id)?.inputs[0], g.n(id)?.inputs[1]);
                g.set_input(id, 0, b)?;
                g.set_input(id, 1, a)?;
            }
        }
        Ok(PassReport::new("swap-sub"))
    }
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    const KEEP: &[OptionSpec] = &[OptionSpec::new("keep", sparseqc::pass::OptionKind::Str, "", "an Identity to keep")];
    let info = |name: &str, options: &[OptionSpec]| PassInfo {
        name: name.into(),
        summary: String::new(),
        options: options.to_vec(),
        origin: "test".into(),
    };
    reg.register(
        info("drop-identity", KEEP),
        Box::new(|o: &PassOptions| -> Result<Box<dyn Pass>> { Ok(Box::new(DropIdentity { keep: o.str("keep").unwrap_or("").into() })) }),
    )
    .unwrap();
    reg.register(info("swap-sub", &[]), Box::new(|_: &PassOptions| -> Result<Box<dyn Pass>> { Ok(Box::new(SwapSub)) })).unwrap();
    reg
}

const CHAIN: &str = r#"
<ir_version: 8, opset_import: ["" : 17]>
chain (float[2,3] x) => (float[2,3] y)
<
  float[3] b = [1.0, 2.0, 3.0]
>
{
  [id1] x1 = Identity (x)
  [sub] s = Sub (x1, b)
  [id2] s1 = Identity (s)
  [relu] r = Relu (s1)
  [id3] y = Identity (r)
}
"#;

#[test]
fn pipeline_snapshot_with_report() {
    insta::assert_snapshot!(check_pipeline_with_report(CHAIN, "drop-identity{keep=id2}", &registry()));
}

#[test]
fn pipeline_snapshot_ir_only_and_empty_pipeline() {
    let out = check_pipeline(CHAIN, "drop-identity", &registry());
    assert!(!out.contains("id1") && !out.contains("id2") && out.contains("[id3] y = Identity (r)"), "{out}");
    // `none` prints the input back in canonical form
    let same = check_pipeline(CHAIN, "none", &registry());
    assert!(same.contains("[id1] x1 = Identity (x)"), "{same}");
}

#[test]
fn pipeline_errors_are_returned() {
    let e = pipeline_error(CHAIN, "drop-identity{kep=x}", &registry());
    assert_eq!(e, "pass 'drop-identity' has no option 'kep'; its options are: keep");
    let e = pipeline_error("not a model", "none", &registry());
    assert!(e.starts_with("the input text: line 1"), "{e}");
}

#[test]
#[should_panic(expected = "pipeline 'nope' failed: unknown pass 'nope'")]
fn check_pipeline_panics_on_failure() {
    check_pipeline(CHAIN, "nope", &registry());
}

#[test]
fn a_correct_rewrite_keeps_the_function() {
    let run = run_pipeline(CHAIN, "drop-identity", &registry()).unwrap();
    assert_same_function(&run.before, &run.after, 0.0);
}

#[test]
fn a_wrong_rewrite_is_caught() {
    let run = run_pipeline(CHAIN, "swap-sub", &registry()).unwrap();
    let engine = match default_engine() {
        Ok(e) => e,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {why}");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    let inputs = random_inputs(&run.before, 7).unwrap();
    let diff = compare_function(&run.before, &run.after, &inputs, 1e-6, engine.as_ref()).unwrap();
    assert!(!diff.is_same(), "{diff}");
    assert_eq!(diff.outputs.len(), 1);
    assert_eq!(diff.outputs[0].name, "y");
    assert!(diff.outputs[0].mismatches > 0 && diff.outputs[0].max_abs > 0.1, "{diff}");
    // given inputs: x == b makes both orders give 0 after Relu
    let x = sparseqc::ir::Tensor::from_f32("x", &[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    let diff = compare_function(&run.before, &run.after, &[x], 0.0, engine.as_ref()).unwrap();
    assert!(diff.is_same(), "{diff}");
    let text = std::panic::catch_unwind(|| assert_same_function(&run.before, &run.after, 1e-6)).unwrap_err();
    let msg = text.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.starts_with("the rewrite changed the model's function; compared with onnxruntime"), "{msg}");
}

#[test]
fn random_inputs_follow_the_signature() {
    let m = parse_model(
        r#"<ir_version: 8, opset_import: ["" : 17]>
        g (float[N,3] a, double[2] b) => (float[N,3] c) <> { c = Identity (a) }"#,
    );
    let ins = random_inputs(&m, 1).unwrap();
    assert_eq!(ins.len(), 2);
    assert_eq!(ins[0].dims(), &[1, 3]);
    assert_eq!(ins[1].dtype(), 11);
    let v = ins[0].to_f32().unwrap();
    assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
    assert_eq!(random_inputs(&m, 1).unwrap(), ins, "seeded");
    let m = parse_model(r#"<ir_version: 8, opset_import: ["" : 17]> g (int64[2] i) => (int64[2] o) <> { o = Identity (i) }"#);
    assert!(random_inputs(&m, 1).unwrap_err().to_string().contains("give the inputs"));
}

// ---------------------------------------------------------------------------------
// 2:4
// ---------------------------------------------------------------------------------

/// - conv_good: K=2, C=8, 1x1; every group of 4 input channels has 2 zeros.
/// - conv_bad: the first group of output channel 0 has 3 non-zeros.
/// - gemm_t (transB=1, B is N×K = 4×8): 2:4 along axis 1 only.
/// - gemm_n (B is K×N = 8×4): 2:4 along axis 0 only.
/// - mm (MatMul, B 8×4): same data as gemm_n, 2:4 along the rows.
/// - mm_bad: B all ones.
/// - dw: a grouped conv (never sparse in TensorRT).
const SPARSE: &str = r#"
<ir_version: 8, opset_import: ["" : 17]>
sparse (float[1,8,2,2] x, float[1,8] f) => (float[1,2,2,2] y1, float[1,2,2,2] y2, float[1,4] y3, float[1,4] y4, float[1,4] y5, float[1,4] y6, float[1,8,2,2] y7)
<
  float[2,8,1,1] wgood = [1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 5.0, 0.0, 6.0, 7.0, 0.0, 0.0, 8.0],
  float[2,8,1,1] wbad = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
  float[4,8] bt = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
  float[8,4] bn = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
  float[8,4] ones = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
  float[8,1,1,1] wdw = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
>
{
  [conv_good] y1 = Conv (x, wgood)
  [conv_bad] y2 = Conv (x, wbad)
  [gemm_t] y3 = Gemm <transB = 1> (f, bt)
  [gemm_n] y4 = Gemm (f, bn)
  [mm] y5 = MatMul (f, bn)
  [mm_bad] y6 = MatMul (f, ones)
  [dw] y7 = Conv <group = 8> (x, wdw)
}
"#;

#[test]
fn two_of_four_along_input_channels() {
    let m = parse_model(SPARSE);
    let v = check_2of4(&m, "").unwrap();
    let bad: Vec<&str> = v.iter().map(|x| x.node.as_str()).collect();
    assert_eq!(bad, vec!["conv_bad", "mm_bad", "dw"], "{v:#?}");
    assert_eq!(
        v[0].to_string(),
        "'conv_bad' (Conv): weight 'wbad' [2, 8, 1, 1]: 1 of 4 groups of 4 along axis 1 have more than 2 non-zeros (first at flat index 0: 3 non-zeros)"
    );
    assert!(v[2].message.contains("grouped conv"), "{}", v[2]);
    assert_2of4(&m, "conv_good|gemm_*|mm");
    let e = std::panic::catch_unwind(|| assert_2of4(&m, "op:Conv|!dw")).unwrap_err();
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.starts_with("1 layer(s) matching 'op:Conv|!dw' break TensorRT's 2:4 rule:\n  - 'conv_bad' (Conv)"), "{msg}");
}

#[test]
fn two_of_four_sees_through_dequantize() {
    let m = parse_model(
        r#"<ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] f) => (float[1,2] y)
        <
          int8[4,2] wq = [1, 0, 0, 2, 3, 0, 0, 4],
          float[2] ws = [0.1, 0.2],
          int8[2] wz = [0, 0]
        >
        {
          [dq] w = DequantizeLinear <axis = 1> (wq, ws, wz)
          [mm] y = MatMul (f, w)
        }"#,
    );
    // B is K×N = 4×2: column 0 is [1, 0, 3, 0], column 1 [0, 2, 0, 4]; 2 non-zeros each
    assert!(check_2of4(&m, "").unwrap().is_empty());
}

// ---------------------------------------------------------------------------------
// Q/DQ placement
// ---------------------------------------------------------------------------------

const QDQ_GOOD: &str = r#"
<ir_version: 8, opset_import: ["" : 17]>
q (float[1,4,2,2] x, float[1,4] f) => (float[1,2,2,2] y, float[1,3] z, float[1,3] u)
<
  float[] xs = [0.05],
  int8[] xz = [0],
  int8[2,4,1,1] wq = [1, 0, -1, 2, 0, 0, 3, 1],
  float[2] ws = [0.1, 0.2],
  int8[2] wz = [0, 0],
  int8[3,4] gq = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  float[3] gs = [0.1, 0.2, 0.3],
  int8[3] gz = [0, 0, 0],
  int8[4,3] mq = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  float[3] ms = [0.1, 0.2, 0.3]
>
{
  [qx] xq = QuantizeLinear (x, xs, xz)
  [dqx] xd = DequantizeLinear (xq, xs, xz)
  [dqw] wd = DequantizeLinear <axis = 0> (wq, ws, wz)
  [conv] y = Conv (xd, wd)
  [qf] fq = QuantizeLinear (f, xs, xz)
  [dqf] fd = DequantizeLinear (fq, xs, xz)
  [dqg] gd = DequantizeLinear <axis = 0> (gq, gs, gz)
  [gemm] z = Gemm <transB = 1> (fd, gd)
  [dqm] md = DequantizeLinear <axis = -1> (mq, ms)
  [mm] u = MatMul (fd, md)
}
"#;

#[test]
fn qdq_placement_accepts_a_good_model() {
    let m = parse_model(QDQ_GOOD);
    assert_eq!(check_qdq(&m, "").unwrap(), vec![]);
    assert_qdq_placement(&m, "");
}

#[test]
fn qdq_placement_names_each_broken_rule() {
    // axis 1 on the Conv weight; uint8 activation (Q without zero point); a zero point of
    // 3; the Gemm's data input straight from the graph input; MatMul kept in float
    let bad = QDQ_GOOD
        .replace("[dqw] wd = DequantizeLinear <axis = 0>", "[dqw] wd = DequantizeLinear <axis = 1>")
        .replace("[qx] xq = QuantizeLinear (x, xs, xz)", "[qx] xq = QuantizeLinear (x, xs)")
        .replace("[dqx] xd = DequantizeLinear (xq, xs, xz)", "[dqx] xd = DequantizeLinear (xq, xs)")
        .replace("int8[3] gz = [0, 0, 0]", "int8[3] gz = [0, 3, 0]")
        .replace("[gemm] z = Gemm <transB = 1> (fd, gd)", "[gemm] z = Gemm <transB = 1> (f, gd)")
        .replace("[mm] u = MatMul (fd, md)", "[mm] u = MatMul (f, md) @{\"sparseqc.keep-float\" = \"true\"}");
    let m = parse_model(&bad);
    let v: Vec<String> = check_qdq(&m, "").unwrap().iter().map(|x| x.to_string()).collect();
    insta::assert_snapshot!(v.join("\n"));
    let e = std::panic::catch_unwind(|| assert_qdq_placement(&m, "gemm")).unwrap_err();
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.starts_with("2 Q/DQ placement rule(s) broken on layers matching 'gemm':"), "{msg}");
}
