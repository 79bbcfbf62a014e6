//! Transformer graphs: Q/DQ placement by TensorRT's explicit-quantization rules (see
//! docs/quantization-rules.md) on a small BERT encoder block and a small ViT (pruning of
//! their MatMul weights: tests/transformer_prune.rs).

use sparseqc::ir::Model;
use sparseqc::pass::Registry;

/// A post-LN BERT encoder block as PyTorch exports it at opset 17: Q/K/V projections
/// (MatMul + bias Add), 2 heads of 8, an additive attention mask, softmax, the output
/// projection, residual Adds, LayerNormalization, and an FFN with the exact (Erf) GELU.
pub const BERT_BLOCK: &str = r#"<
  ir_version: 8,
  opset_import: ["" : 17]
>
bert (float[2,8,16] x, float[2,1,1,8] mask) => (float[2,8,16] y)
<
  float[16,16] wq = {random: 1},
  float[16] bq = {random: 2},
  float[16,16] wk = {random: 3},
  float[16] bk = {random: 4},
  float[16,16] wv = {random: 5},
  float[16] bv = {random: 6},
  float[16,16] wo = {random: 7},
  float[16] bo = {random: 8},
  float[16] ln1_g = {random: 9},
  float[16] ln1_b = {random: 10},
  float[16,64] w1 = {random: 11},
  float[64] b1 = {random: 12},
  float[64,16] w2 = {random: 13},
  float[16] b2 = {random: 14},
  float[16] ln2_g = {random: 15},
  float[16] ln2_b = {random: 16},
  int64[4] heads = [2, 8, 2, 8],
  int64[3] merged = [2, 8, 16],
  float[] sqrt_d = [2.828427],
  float[] sqrt2 = [1.4142135],
  float[] one = [1.0],
  float[] half = [0.5]
>
{
  [q_proj] q0 = MatMul (x, wq)
  [q_bias] q1 = Add (q0, bq)
  [q_heads] q2 = Reshape (q1, heads)
  [q_t] q = Transpose <perm = [0, 2, 1, 3]> (q2)
  [k_proj] k0 = MatMul (x, wk)
  [k_bias] k1 = Add (k0, bk)
  [k_heads] k2 = Reshape (k1, heads)
  [k_t] kt = Transpose <perm = [0, 2, 3, 1]> (k2)
  [v_proj] v0 = MatMul (x, wv)
  [v_bias] v1 = Add (v0, bv)
  [v_heads] v2 = Reshape (v1, heads)
  [v_t] v = Transpose <perm = [0, 2, 1, 3]> (v2)
  [qk] s0 = MatMul (q, kt)
  [scale] s1 = Div (s0, sqrt_d)
  [mask_add] s2 = Add (s1, mask)
  [softmax] p = Softmax <axis = -1> (s2)
  [pv] c0 = MatMul (p, v)
  [ctx_t] c1 = Transpose <perm = [0, 2, 1, 3]> (c0)
  [ctx_merge] c = Reshape (c1, merged)
  [o_proj] o0 = MatMul (c, wo)
  [o_bias] o1 = Add (o0, bo)
  [res1] r1 = Add (o1, x)
  [ln1] h = LayerNormalization <axis = -1, epsilon = 1e-05> (r1, ln1_g, ln1_b)
  [fc1] f0 = MatMul (h, w1)
  [fc1_bias] f1 = Add (f0, b1)
  [gelu_div] g0 = Div (f1, sqrt2)
  [gelu_erf] g1 = Erf (g0)
  [gelu_add] g2 = Add (g1, one)
  [gelu_mul] g3 = Mul (f1, g2)
  [gelu_half] g = Mul (g3, half)
  [fc2] f2 = MatMul (g, w2)
  [fc2_bias] f3 = Add (f2, b2)
  [res2] r2 = Add (f3, h)
  [ln2] y = LayerNormalization <axis = -1, epsilon = 1e-05> (r2, ln2_g, ln2_b)
}
"#;

/// Calibration scales for the BERT block (every tensor insert-qdq may quantize).
const BERT_QUANT: &str = r#"quant {
  x: amax = 4.0, scale = 0.031496063, method = "max", clipped = 0.0
  q: amax = 6.0, scale = 0.047244094, method = "max", clipped = 0.0
  kt: amax = 6.0, scale = 0.047244094, method = "max", clipped = 0.0
  p: amax = 1.0, scale = 0.007874016, method = "max", clipped = 0.0
  v: amax = 5.0, scale = 0.039370079, method = "max", clipped = 0.0
  c: amax = 5.0, scale = 0.039370079, method = "max", clipped = 0.0
  h: amax = 3.0, scale = 0.023622047, method = "max", clipped = 0.0
  g: amax = 8.0, scale = 0.062992126, method = "max", clipped = 0.0
}
"#;

/// A small pre-LN ViT as timm/PyTorch export it at opset 17: patch embedding (Conv 4×4
/// stride 4 on an 8×8 image: 4 tokens of width 16), one encoder block with a fused QKV
/// projection split into Q, K, V, the exact GELU, the final LayerNorm, mean pooling over
/// the tokens and a Gemm classifier head (transB=1).
pub const VIT_BLOCK: &str = r#"<
  ir_version: 8,
  opset_import: ["" : 17]
>
vit (float[2,3,8,8] image) => (float[2,10] logits)
<
  float[16,3,4,4] patch_w = {random: 21},
  float[16] patch_b = {random: 22},
  float[1,4,16] pos = {random: 23},
  float[16] ln1_g = {random: 24},
  float[16] ln1_b = {random: 25},
  float[16,48] w_qkv = {random: 26},
  float[48] b_qkv = {random: 27},
  float[16,16] w_proj = {random: 28},
  float[16] b_proj = {random: 29},
  float[16] ln2_g = {random: 30},
  float[16] ln2_b = {random: 31},
  float[16,64] w_fc1 = {random: 32},
  float[64] b_fc1 = {random: 33},
  float[64,16] w_fc2 = {random: 34},
  float[16] b_fc2 = {random: 35},
  float[16] lnf_g = {random: 36},
  float[16] lnf_b = {random: 37},
  float[10,16] head_w = {random: 38},
  float[10] head_b = {random: 39},
  int64[3] tokens = [2, 16, 4],
  int64[3] split = [16, 16, 16],
  int64[4] heads = [2, 4, 2, 8],
  int64[3] merged = [2, 4, 16],
  float[] scale = [0.35355338],
  float[] sqrt2 = [1.4142135],
  float[] one = [1.0],
  float[] half = [0.5],
  int64[1] token_axis = [1]
>
{
  [patch_embed] e0 = Conv <kernel_shape = [4, 4], strides = [4, 4]> (image, patch_w, patch_b)
  [flatten] e1 = Reshape (e0, tokens)
  [to_tokens] e2 = Transpose <perm = [0, 2, 1]> (e1)
  [pos_add] x = Add (e2, pos)
  [ln1] a = LayerNormalization <axis = -1, epsilon = 1e-06> (x, ln1_g, ln1_b)
  [qkv] t0 = MatMul (a, w_qkv)
  [qkv_bias] t1 = Add (t0, b_qkv)
  [qkv_split] qs, ks, vs = Split <axis = 2> (t1, split)
  [q_heads] q1 = Reshape (qs, heads)
  [q_t] q2 = Transpose <perm = [0, 2, 1, 3]> (q1)
  [q_scale] q = Mul (q2, scale)
  [k_heads] k1 = Reshape (ks, heads)
  [k_t] kt = Transpose <perm = [0, 2, 3, 1]> (k1)
  [v_heads] v1 = Reshape (vs, heads)
  [v_t] v = Transpose <perm = [0, 2, 1, 3]> (v1)
  [qk] s = MatMul (q, kt)
  [softmax] p = Softmax <axis = -1> (s)
  [pv] c0 = MatMul (p, v)
  [ctx_t] c1 = Transpose <perm = [0, 2, 1, 3]> (c0)
  [ctx_merge] c = Reshape (c1, merged)
  [proj] o0 = MatMul (c, w_proj)
  [proj_bias] o1 = Add (o0, b_proj)
  [res1] r1 = Add (x, o1)
  [ln2] m = LayerNormalization <axis = -1, epsilon = 1e-06> (r1, ln2_g, ln2_b)
  [fc1] f0 = MatMul (m, w_fc1)
  [fc1_bias] f1 = Add (f0, b_fc1)
  [gelu_div] g0 = Div (f1, sqrt2)
  [gelu_erf] g1 = Erf (g0)
  [gelu_add] g2 = Add (g1, one)
  [gelu_mul] g3 = Mul (f1, g2)
  [gelu_half] g = Mul (g3, half)
  [fc2] f2 = MatMul (g, w_fc2)
  [fc2_bias] f3 = Add (f2, b_fc2)
  [res2] r2 = Add (r1, f3)
  [ln_final] z = LayerNormalization <axis = -1, epsilon = 1e-06> (r2, lnf_g, lnf_b)
  [pool] pooled = ReduceMean <keepdims = 0> (z, token_axis)
  [head] logits = Gemm <transB = 1> (pooled, head_w, head_b)
}
"#;

const VIT_QUANT: &str = r#"quant {
  image: amax = 2.6, scale = 0.020472441, method = "max", clipped = 0.0
  a: amax = 3.0, scale = 0.023622047, method = "max", clipped = 0.0
  q: amax = 4.0, scale = 0.031496063, method = "max", clipped = 0.0
  kt: amax = 6.0, scale = 0.047244094, method = "max", clipped = 0.0
  p: amax = 1.0, scale = 0.007874016, method = "max", clipped = 0.0
  v: amax = 5.0, scale = 0.039370079, method = "max", clipped = 0.0
  c: amax = 5.0, scale = 0.039370079, method = "max", clipped = 0.0
  m: amax = 3.0, scale = 0.023622047, method = "max", clipped = 0.0
  g: amax = 8.0, scale = 0.062992126, method = "max", clipped = 0.0
  pooled: amax = 2.0, scale = 0.015748031, method = "max", clipped = 0.0
}
"#;

fn with_quant(model: &str, quant: &str) -> String {
    format!("{model}{quant}")
}

fn run_text(text: &str, pipeline: &str) -> Model {
    sparseqc::testing::run_pipeline(text, pipeline, &Registry::with_builtins()).expect("pipeline runs").after
}

/// TensorRT's placement on a transformer: every weighted op's inputs come from Q/DQ (the
/// testing kit's rule check, which lets a both-activation MatMul stay float as a whole);
/// every DequantizeLinear feeds only weighted ops (so LayerNorm, Softmax, GELU and the
/// residual Adds read float); `attention` says whether the batched MatMuls are INT8.
fn check_transformer_rules(m: &Model, attention: bool) {
    let v = sparseqc::testing::check_qdq(m, "").unwrap();
    assert!(v.is_empty(), "{v:#?}");
    let g = &m.graph;
    for id in g.node_ids() {
        let n = g.node(id).unwrap();
        if n.op_type == "DequantizeLinear" {
            let out = n.outputs[0].unwrap();
            for u in &g.value(out).unwrap().uses {
                let c = g.node(u.node).unwrap();
                assert!(matches!(c.op_type.as_str(), "MatMul" | "Gemm" | "Conv"), "{} feeds {} '{}', which must read float", n.name, c.op_type, c.name);
            }
        }
        if n.op_type == "MatMul" && sparseqc::inspect::find_weight(g, id, 1).is_none() {
            let dq = n.inputs.iter().filter(|i| g.producer_node(i.unwrap()).is_some_and(|(_, p)| p.op_type == "DequantizeLinear")).count();
            assert_eq!(dq, if attention { 2 } else { 0 }, "attention MatMul {}", n.name);
        }
    }
}

#[test]
fn bert_block_placement_snapshot() {
    let text = with_quant(BERT_BLOCK, BERT_QUANT);
    let reg = Registry::with_builtins();
    for (pipeline, attention, snap) in [("insert-qdq", false, "bert_block_qdq"), ("insert-qdq{attention=true}", true, "bert_block_qdq_attention")] {
        check_transformer_rules(&run_text(&text, pipeline), attention);
        insta::assert_snapshot!(snap, sparseqc::testing::check_pipeline_with_report(&text, pipeline, &reg));
    }
}

#[test]
fn vit_block_placement_snapshot() {
    let text = with_quant(VIT_BLOCK, VIT_QUANT);
    let reg = Registry::with_builtins();
    for (pipeline, attention, snap) in [("insert-qdq", false, "vit_block_qdq"), ("insert-qdq{attention=true}", true, "vit_block_qdq_attention")] {
        check_transformer_rules(&run_text(&text, pipeline), attention);
        insta::assert_snapshot!(snap, sparseqc::testing::check_pipeline_with_report(&text, pipeline, &reg));
    }
}

/// A session restricted to one stretch of the graph (what `measure::Resume` builds per
/// layer) loads only that stretch's nodes and weights, and computes its targets
/// bit-identically to the whole-model session from the same fed values.
#[test]
fn restricted_session_runs_one_stretch_bit_identically() {
    use sparseqc::engine::ModelSession;
    use sparseqc::exec::Tensor;
    let m = sparseqc::testing::parse_model(BERT_BLOCK);
    let g = &m.graph;
    let val = |n: &str| g.value_by_name(n).unwrap_or_else(|| panic!("{n}"));
    let pseudo = |n: usize, seed: u32| -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0).collect()
    };
    let x = Tensor::new(vec![2, 8, 16], pseudo(256, 7)).unwrap();
    let mask = Tensor::new(vec![2, 1, 1, 8], vec![0.0f32; 16]).unwrap();
    let full = ModelSession::new(&m).unwrap();
    let fid = |v| full.id(v).unwrap();
    let feed = vec![(full.inputs[0].1, x.clone()), (full.inputs[1].1, mask.clone())];
    let got = full.session.run_batch(vec![feed], &[fid(val("h")), fid(val("f1")), fid(val("y"))]).unwrap().remove(0);
    // the FFN stretch: from h to y
    let part = ModelSession::for_values(&m, &[val("h")], &[val("f1"), val("y")]).unwrap();
    let names: Vec<&str> = part.session.program().nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["fc1", "fc1_bias", "gelu_div", "gelu_erf", "gelu_add", "gelu_mul", "gelu_half", "fc2", "fc2_bias", "res2", "ln2"]);
    let consts: Vec<&str> = part.session.constants().into_iter().map(|v| part.session.value_name(v)).collect();
    assert!(!consts.contains(&"wq") && consts.contains(&"w1") && consts.contains(&"w2"), "{consts:?}");
    let pid = |v| part.id(v).unwrap();
    let out = part.session.run_batch(vec![vec![(pid(val("h")), got[0].clone())]], &[pid(val("f1")), pid(val("y"))]).unwrap().remove(0);
    assert!(out[0].bit_eq(&got[1]) && out[1].bit_eq(&got[2]));
    // a target that needs a value neither fed nor computable in the stretch is an error
    let part = ModelSession::for_values(&m, &[val("h")], &[val("y"), val("q")]).unwrap();
    let pid = |v| part.id(v).unwrap();
    assert!(part.session.run_batch(vec![vec![(pid(val("h")), got[0].clone())]], &[pid(val("q"))]).is_err());
}
