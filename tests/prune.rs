//! prune-2of4: rewrites and reports as snapshots, the 2:4 rule checked independently
//! along C per (k, r, s), and permutation preserving the function.

mod common;
use sparseqc::pass::{parse_pipeline, PassContext, PassManager, PassReport, Registry, RunOptions};

const HEAD: &str = "<\n  ir_version: 8,\n  opset_import: [\"\" : 13]\n>\n";

fn run(model: &mut sparseqc::ir::Model, pipeline: &str) -> Vec<PassReport> {
    let reg = Registry::with_builtins();
    let passes = parse_pipeline(pipeline).unwrap().iter().map(|e| reg.create(e).unwrap()).collect();
    let mut pm = PassManager::new(passes, RunOptions { verify_each: true, ..Default::default() });
    pm.run(model, &mut PassContext::default()).expect("pipeline runs")
}

fn report_text(reps: &[PassReport]) -> String {
    let mut s = String::new();
    for r in reps {
        s.push_str(&format!("{}: {}\n", r.pass, r.summary));
        for i in &r.items {
            let keys: Vec<String> = i
                .details
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "axis" | "zeroed" | "speed_class" | "permutation_refused" | "permuted_with"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("  {} [{}] {}: {} {}\n", i.node, i.op, i.action, i.reason, keys.join(" ")));
        }
    }
    s
}

/// Independent check of TensorRT's rule for a K×C×R×S weight: for each (k, r, s), every
/// 4 consecutive input channels hold at least two zeros.
fn follows_trt_rule(w: &[f32], k: usize, c: usize, rs: usize) -> bool {
    (0..k).all(|kk| {
        (0..rs).all(|p| (0..c / 4).all(|g| (0..4).filter(|j| w[(kk * c + g * 4 + j) * rs + p] == 0.0).count() >= 2))
    })
}

/// The flattened C·R·S grouping some pruners use: 4 consecutive elements of each row.
fn follows_flattened_rule(w: &[f32], k: usize, crs: usize) -> bool {
    (0..k).all(|kk| (0..crs / 4).all(|g| (0..4).filter(|j| w[kk * crs + g * 4 + j] == 0.0).count() >= 2))
}

const CHAIN: &str = r#"g (float[1,8,6,6] x) => (float[1,16,6,6] y)
<
  float[16,8,3,3] w1 = {random: 1},
  float[16] b1 = {random: 2},
  float[16,1,1] s1 = {random: 5},
  float[16,16,3,3] w2 = {random: 3},
  float[16] b2 = {random: 4}
>
{
  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
  [relu1] r1 = Relu (c1)
  [mul1] m1 = Mul (r1, s1)
  [conv2] y = Conv <pads = [1, 1, 1, 1]> (m1, w2, b2)
}
"#;

#[test]
fn conv_chain_pruned_along_input_channels_not_flattened() {
    let mut m = sparseqc::text::parse(&format!("{HEAD}{CHAIN}")).unwrap();
    let reps = run(&mut m, "prune-2of4{min-channels=4,min-params=0}");
    let g = &m.graph;
    let w2 = g.constant(g.value_by_name("w2").unwrap()).unwrap().to_f32().unwrap();
    assert!(follows_trt_rule(&w2, 16, 16, 9), "conv2 follows TensorRT's rule along C");
    // a 3x3 kernel pruned along C is (almost surely) not 2:4 along flattened C·R·S
    assert!(!follows_flattened_rule(&w2, 16, 144), "grouping along C differs from flattened grouping");
    let w1 = g.constant(g.value_by_name("w1").unwrap()).unwrap().to_f32().unwrap();
    assert!(follows_trt_rule(&w1, 16, 8, 9));
    insta::assert_snapshot!("chain_report", report_text(&reps));
}

#[test]
fn permutation_across_conv_chain_preserves_function() {
    let original = sparseqc::text::parse(&format!("{HEAD}{CHAIN}")).unwrap();
    let mut m = original.clone();
    let reps = run(&mut m, "prune-2of4{min-channels=4,min-params=0,permute=true,prune=false}");
    let text = report_text(&reps);
    assert!(text.contains("permuted_with=\"conv1\""), "{text}");
    let diff = common::ort_rel_diff(&original, &m);
    assert!(diff < 1e-5, "permutation changed the function: {diff}");
    // with pruning on, permutation never keeps less magnitude
    let mut a = original.clone();
    let mut b = original.clone();
    let ra = run(&mut a, "prune-2of4{min-channels=4,min-params=0}");
    let rb = run(&mut b, "prune-2of4{min-channels=4,min-params=0,permute=true}");
    let ka = ra[0].stats["retained"].as_f64().unwrap();
    let kb = rb[0].stats["retained"].as_f64().unwrap();
    assert!(kb >= ka, "permuted {kb} < plain {ka}");
    insta::assert_snapshot!("chain_permuted_report", text);
}

#[test]
fn permutation_refused_across_residual_add() {
    let text = format!(
        "{HEAD}{}",
        r#"g (float[1,8,4,4] x) => (float[1,8,4,4] y)
<
  float[8,8,3,3] w1 = {random: 1},
  float[8,8,3,3] w2 = {random: 2}
>
{
  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (x, w1)
  [add] s = Add (c1, x)
  [conv2] y = Conv <pads = [1, 1, 1, 1]> (s, w2)
}
"#
    );
    let mut m = sparseqc::text::parse(&text).unwrap();
    let reps = run(&mut m, "prune-2of4{min-channels=4,min-params=0,permute=true}");
    let t = report_text(&reps);
    assert!(t.contains("residual connection"), "{t}");
    insta::assert_snapshot!("residual_refusal", t);
}

#[test]
fn eligibility_rules() {
    let text = format!(
        "{HEAD}{}",
        r#"g (float[1,3,8,8] x) => (float[1,10] y)
<
  float[16,3,3,3] w0 = {random: 1},
  float[16,4,3,3] wg = {random: 2},
  float[16,1,3,3] wd = {random: 3},
  float[10,16] wf = {random: 4}
>
{
  [first] a = Conv <pads = [1, 1, 1, 1]> (x, w0)
  [grouped] b = Conv <group = 4, pads = [1, 1, 1, 1]> (a, wg)
  [dw] c = Conv <group = 16, pads = [1, 1, 1, 1]> (b, wd)
  [gap] p = GlobalAveragePool (c)
  [flat] f = Flatten (p)
  [fc] y = Gemm <transB = 1> (f, wf)
}
"#
    );
    let mut m = sparseqc::text::parse(&text).unwrap();
    let before = m.clone();
    let reps = run(&mut m, "prune-2of4");
    // nothing eligible with the defaults: untouched layers are byte-identical
    for name in ["w0", "wg", "wd", "wf"] {
        let a = before.graph.constant(before.graph.value_by_name(name).unwrap()).unwrap();
        let b = m.graph.constant(m.graph.value_by_name(name).unwrap()).unwrap();
        assert_eq!(a, b, "{name} untouched");
    }
    insta::assert_snapshot!("eligibility", report_text(&reps));
    // Gemm with transB=1 groups along axis 1 (K) of its N×K weight
    let reps = run(&mut m, "prune-2of4{min-channels=4,min-params=0,include=fc}");
    let wf = m.graph.constant(m.graph.value_by_name("wf").unwrap()).unwrap().to_f32().unwrap();
    assert!((0..10).all(|n| (0..4).all(|g| (0..4).filter(|j| wf[n * 16 + g * 4 + j] == 0.0).count() >= 2)));
    assert!(report_text(&reps).contains("axis=1"));
}

/// The speed-class reason names the dimension that is actually small (issue 21: it said
/// "K=64, C·R·S=576 < 256" when K was the small one).
#[test]
fn speed_class_reason_names_the_small_dimension() {
    use sparseqc::passes::prune::speed_class;
    let (class, why) = speed_class(64, 64, 9);
    assert_eq!(class, "likely-dense");
    assert_eq!(why, "K=64 < 128 (C·R·S=576): TensorRT will likely keep the dense kernel");
    let (class, why) = speed_class(512, 8, 9);
    assert_eq!(class, "likely-dense");
    assert_eq!(why, "C·R·S=72 < 128 (K=512): TensorRT will likely keep the dense kernel");
    let (_, why) = speed_class(16, 8, 9);
    assert_eq!(why, "K=16 and C·R·S=72 < 128: TensorRT will likely keep the dense kernel");
    let (class, why) = speed_class(256, 64, 9);
    assert_eq!(class, "likely-sparse");
    assert!(why.starts_with("K=256, C·R·S=576 ≥ 256"), "{why}");
    assert_eq!(speed_class(128, 128, 1).0, "maybe-sparse");
}
