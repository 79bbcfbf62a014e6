//! The passes on the real ResNet-20 (testdata/), checked against onnxruntime's results
//! recorded in testdata/cifar10-mini.expected.json (logits of 32 real CIFAR-10 test images,
//! MinMax amax of every tensor) and against PyTorch's own BN-folded export.

mod common;
use common::*;
use sparseqc::ir::Model;
use sparseqc::pass::{parse_pipeline, CalibInput, PassContext, PassManager, PassReport, Registry, RunOptions};

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(testdata("cifar10-mini.expected.json")).unwrap()).unwrap()
}

fn load(name: &str) -> Model {
    sparseqc::cli::load_model(&testdata(name), &Default::default()).unwrap().0
}

fn run(m: &mut Model, pipeline: &str, calib: CalibInput) -> Vec<PassReport> {
    let reg = Registry::with_builtins();
    let passes = parse_pipeline(pipeline).unwrap().iter().map(|e| reg.create(e).unwrap()).collect();
    let mut pm = PassManager::new(passes, RunOptions { verify_each: true, ..Default::default() });
    let mut ctx = PassContext { quiet: true, calib, ..Default::default() };
    pm.run(m, &mut ctx).expect("pipeline runs")
}

/// Runs the model with our interpreter on the 32 images; returns logits per image.
fn logits_exec(m: &Model) -> Vec<Vec<f32>> {
    let ms = sparseqc::engine::ModelSession::new(m).unwrap();
    let arr = sparseqc::calib::npy::NpyArray::open(&testdata("cifar10-mini.input.npy")).unwrap();
    let x = arr.read_all().unwrap();
    let out = ms.session.run_outputs(vec![sparseqc::exec::Tensor::new(vec![32, 3, 32, 32], x).unwrap()]).unwrap();
    out[0].as_f32().unwrap().chunks(10).map(|c| c.to_vec()).collect()
}

fn rel_l2(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        num += ((x - y) as f64).powi(2);
        den += (*x as f64).powi(2);
    }
    (num / den).sqrt()
}

fn expected_logits(model: &str) -> Vec<Vec<f32>> {
    expected()["logits"][model]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect()
}

#[test]
fn fold_bn_cleanup_on_resnet20_matches_onnxruntime_and_pytorch() {
    let mut m = load("models/resnet20_bn.onnx");
    let reports = run(&mut m, "fold-bn,cleanup", CalibInput::default());
    let ops: Vec<String> = m.graph.node_ids().iter().map(|id| m.graph.node(*id).unwrap().op_type.clone()).collect();
    assert!(!ops.iter().any(|o| o == "BatchNormalization"), "no BN left");
    assert_eq!(reports[0].stats["folded"], 19);
    // same logits as onnxruntime on the original, on 32 real images
    let d = rel_l2(&expected_logits("resnet20_bn.onnx"), &logits_exec(&m));
    assert!(d < 1e-4, "relative L2 {d}");
    // onnxruntime on our output too
    let orig = load("models/resnet20_bn.onnx");
    assert!(ort_rel_diff(&orig, &m) < 1e-4);
    // the folded weights match PyTorch's own folded export, conv by conv
    let reference = load("models/resnet20_folded.onnx");
    let convs = |m: &Model| -> Vec<(Vec<f32>, Vec<f32>)> {
        let g = &m.graph;
        g.topo_order()
            .unwrap()
            .into_iter()
            .filter(|id| g.node(*id).unwrap().op_type == "Conv")
            .map(|id| {
                let n = g.node(id).unwrap();
                let w = g.constant_value(n.inputs[1].unwrap()).unwrap().to_f32().unwrap();
                let b = g.constant_value(n.inputs[2].unwrap()).unwrap().to_f32().unwrap();
                (w, b)
            })
            .collect()
    };
    let (ours, theirs) = (convs(&m), convs(&reference));
    assert_eq!(ours.len(), 19);
    assert_eq!(ours.len(), theirs.len());
    let rel = |a: &[f32], b: &[f32]| -> f64 {
        let n: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
        n / b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt()
    };
    for (i, ((wa, ba), (wb, bb))) in ours.iter().zip(&theirs).enumerate() {
        assert!(rel(wa, wb) < 1e-5, "conv {i} weights differ: {}", rel(wa, wb));
        assert!(rel(ba, bb) < 1e-5, "conv {i} bias differs: {}", rel(ba, bb));
    }
}

#[test]
fn fold_bn_cleanup_is_idempotent_and_snapshotted() {
    let mut m = load("models/resnet20_bn.onnx");
    run(&mut m, "fold-bn,cleanup", CalibInput::default());
    let once = sparseqc::text::print(&m, &Default::default()).unwrap();
    let reports = run(&mut m, "fold-bn,cleanup", CalibInput::default());
    let twice = sparseqc::text::print(&m, &Default::default()).unwrap();
    assert_eq!(once, twice, "second run changed the model");
    assert!(reports.iter().all(|r| !r.changed), "second run reports changes");
    insta::assert_snapshot!("resnet20_folded_clean", once);
    // PyTorch's folded export: after one run, running again changes nothing
    let mut r = load("models/resnet20_folded.onnx");
    run(&mut r, "fold-bn,cleanup", CalibInput::default());
    let a = sparseqc::text::print(&r, &Default::default()).unwrap();
    run(&mut r, "fold-bn,cleanup", CalibInput::default());
    assert_eq!(a, sparseqc::text::print(&r, &Default::default()).unwrap());
}

#[test]
fn print_is_deterministic_and_a_parse_fixed_point() {
    for name in ["models/resnet20_bn.onnx", "models/resnet20_folded.onnx"] {
        let m = load(name);
        let a = sparseqc::text::print(&m, &Default::default()).unwrap();
        let b = sparseqc::text::print(&load(name), &Default::default()).unwrap();
        assert_eq!(a, b, "printing twice");
        let back = sparseqc::text::parse(&a).unwrap();
        assert_eq!(a, sparseqc::text::print(&back, &Default::default()).unwrap(), "print -> parse -> print");
    }
    insta::assert_snapshot!("resnet20_bn_text", sparseqc::text::print(&load("models/resnet20_bn.onnx"), &Default::default()).unwrap());
}

#[test]
fn max_calibration_equals_onnxruntime_minmax() {
    // the same input tensors onnxruntime saw (no JPEG decoder in between)
    let mut m = load("models/resnet20_folded.onnx");
    let calib = CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    run(&mut m, "cleanup,calibrate{method=max,tensors=all}", calib);
    let exp = expected();
    let amax = exp["amax"]["resnet20_folded.onnx"]["amax"].as_object().unwrap();
    let mut compared = 0;
    for (name, v) in amax {
        let Some(id) = m.graph.value_by_name(name) else { continue };
        let Some(q) = &m.graph.value(id).unwrap().quant else { continue };
        let want = v.as_f64().unwrap();
        let rel = ((q.amax as f64) - want).abs() / want.max(1e-12);
        assert!(rel < 1e-4, "{name}: ours {} onnxruntime {want} (rel {rel})", q.amax);
        compared += 1;
    }
    assert!(compared >= 40, "compared only {compared} tensors");
}

#[test]
fn calibration_is_thread_count_independent_and_entropy_clips() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let scales = |threads: usize, method: &str| -> Vec<(String, f32)> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut m = load("models/resnet20_bn.onnx");
            run(&mut m, &format!("fold-bn,cleanup,calibrate{{method={method}}}"), calib());
            let mut v: Vec<(String, f32)> =
                m.graph.value_ids().filter_map(|id| m.graph.value(id).unwrap().quant.as_ref().map(|q| (m.graph.name_of(id).to_string(), q.amax))).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        })
    };
    let e1 = scales(1, "entropy");
    let e2 = scales(2, "entropy");
    assert_eq!(e1, e2, "entropy scales depend on the thread count");
    let mx = scales(2, "max");
    for ((n, e), (_, x)) in e1.iter().zip(&mx) {
        assert!(e <= x, "{n}: entropy amax {e} > max amax {x}");
    }
}

#[test]
fn obs_components_switch_off_independently() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let params = |m: &Model, slot: usize| -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<(String, Vec<f32>)> = m
            .graph
            .node_ids()
            .iter()
            .filter_map(|id| {
                let n = m.graph.node(*id).unwrap();
                if n.op_type != "Conv" && n.op_type != "Gemm" {
                    return None;
                }
                let t = m.graph.constant_value(n.inputs.get(slot).copied().flatten()?)?;
                Some((n.name.clone(), t.to_f32().unwrap()))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let e = "min-channels=4,min-params=0";
    let mut mag = load("models/resnet20_bn.onnx");
    run(&mut mag, &format!("fold-bn,cleanup,prune-2of4{{{e}}}"), CalibInput::default());
    // reconstruct=false, correct-target=false, bias-correct=false: exactly magnitude pruning
    let mut off = load("models/resnet20_bn.onnx");
    let reps = run(&mut off, &format!("fold-bn,cleanup,prune-2of4{{{e},method=obs,samples=8,reconstruct=false,correct-target=false,bias-correct=false}}"), calib());
    assert_eq!(params(&mag, 1), params(&off, 1));
    assert_eq!(params(&mag, 2), params(&off, 2));
    assert!((reps[2].stats["error_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    // the OBS update alone lowers the layers' output error below magnitude's (same data)
    let mut obs = load("models/resnet20_bn.onnx");
    let reps = run(&mut obs, &format!("fold-bn,cleanup,prune-2of4{{{e},method=obs,samples=8,correct-target=false,bias-correct=false}}"), calib());
    let ratio = reps[2].stats["error_ratio"].as_f64().unwrap();
    assert!(ratio < 1.0, "OBS error ratio {ratio}");
    assert_ne!(params(&mag, 1), params(&obs, 1));
    // the Gemm sees one row per sample: 8 rows for 64 inputs is too few to reconstruct, so it
    // gets magnitude masks (and says why) while the convs (8·32·32 rows) are reconstructed
    let gemm = |v: &[(String, Vec<f32>)]| v.iter().find(|x| x.0 == "/linear/Gemm").unwrap().1.clone();
    assert_eq!(gemm(&params(&mag, 1)), gemm(&params(&obs, 1)));
    let it = reps[2].items.iter().find(|i| i.node == "/linear/Gemm").unwrap();
    assert_eq!(it.details["underdetermined"], true);
    assert!(it.reason.contains("too few to reconstruct"), "{}", it.reason);
    let layer1: Vec<_> = reps[2].items.iter().filter(|i| i.node.starts_with("/layer1/") && i.action == "pruned").collect();
    assert_eq!(layer1.len(), 6);
    assert!(layer1.iter().all(|i| i.details["underdetermined"] == false));
    // bias correction alone: magnitude's weights, other biases
    let mut bc = load("models/resnet20_bn.onnx");
    run(&mut bc, &format!("fold-bn,cleanup,prune-2of4{{{e},method=obs,samples=8,reconstruct=false,correct-target=false}}"), calib());
    assert_eq!(params(&mag, 1), params(&bc, 1));
    assert_ne!(params(&mag, 2), params(&bc, 2));
    // target correction alone: the first pruned layer sees the dense network's input, so the
    // correction must be the identity there (the ridge pulls toward W, not toward zero) and
    // its weights are magnitude pruning's; later layers see pruned inputs and change
    let mut tc = load("models/resnet20_bn.onnx");
    run(&mut tc, &format!("fold-bn,cleanup,prune-2of4{{{e},method=obs,samples=8,reconstruct=false,bias-correct=false}}"), calib());
    let (pm, pt) = (params(&mag, 1), params(&tc, 1));
    let first = "/layer1/layer1.0/conv1/Conv";
    let (a, b) = (&pm.iter().find(|x| x.0 == first).unwrap().1, &pt.iter().find(|x| x.0 == first).unwrap().1);
    let num: f32 = a.iter().zip(b.iter()).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f32 = a.iter().map(|x| x * x).sum();
    assert!((num / den).sqrt() < 1e-4, "first layer changed by target correction: rel {}", (num / den).sqrt());
    assert!(pm.iter().zip(&pt).filter(|(x, y)| x.1 != y.1).count() > 10, "later layers corrected");
}

#[test]
fn auto_method_picks_the_best_output_sqnr_and_bias_correction_never_lowers_it() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let scales = |m: &Model| -> Vec<(String, f32)> {
        let mut v: Vec<(String, f32)> =
            m.graph.value_ids().filter_map(|id| m.graph.value(id).unwrap().quant.as_ref().map(|q| (m.graph.name_of(id).to_string(), q.amax))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut auto = load("models/resnet20_bn.onnx");
    let reps = run(&mut auto, "fold-bn,cleanup,calibrate{method=auto,auto-samples=16}", calib());
    let items: Vec<_> = reps[2].items.iter().filter(|i| i.action == "chosen" || i.action == "candidate").collect();
    assert_eq!(items.len(), 3, "three candidates scored");
    let best = items.iter().map(|i| i.details["sqnr_db"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    let chosen: Vec<_> = items.iter().filter(|i| i.action == "chosen").collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].details["sqnr_db"].as_f64().unwrap(), best);
    // the scales are those of the chosen method run directly
    let mut direct = load("models/resnet20_bn.onnx");
    let method = format!("method={}", chosen[0].node.replace("percentile:", "percentile,percentile="));
    run(&mut direct, &format!("fold-bn,cleanup,calibrate{{{method}}}"), calib());
    assert_eq!(scales(&auto), scales(&direct));

    // bias correction: kept only when it raises the held-out output SQNR, else undone exactly
    let mut q = load("models/resnet20_bn.onnx");
    run(&mut q, "fold-bn,cleanup,calibrate{method=max},insert-qdq", calib());
    let before = sparseqc::text::print(&q, &Default::default()).unwrap();
    let reps = run(&mut q, "bias-correct{samples=16,validate=16}", calib());
    let st = &reps[0].stats;
    let (b, a) = (st["sqnr_db_before"].as_f64().unwrap(), st["sqnr_db_after"].as_f64().unwrap());
    if a < b {
        assert_eq!(st["undone"], serde_json::Value::Bool(true));
        assert_eq!(sparseqc::text::print(&q, &Default::default()).unwrap(), before);
    } else {
        assert!(reps[0].changed);
        assert_ne!(sparseqc::text::print(&q, &Default::default()).unwrap(), before);
    }
}

#[test]
fn refine_never_lowers_the_output_sqnr() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let mut m = load("models/resnet20_bn.onnx");
    let reps = run(&mut m, "fold-bn,cleanup,calibrate{method=max,refine=true,auto-samples=8}", calib());
    let st = &reps[2].stats;
    let (b, a) = (st["refine_sqnr_db_before"].as_f64().unwrap(), st["refine_sqnr_db_after"].as_f64().unwrap());
    assert!(a >= b, "refine lowered the SQNR: {b} -> {a}");
    // every refined tensor carries its new amax, a step of the old one
    for it in reps[2].items.iter().filter(|i| i.action == "refined") {
        let (old, new) = (it.details["amax_before"].as_f64().unwrap(), it.details["amax"].as_f64().unwrap());
        let v = m.graph.value_by_name(&it.node).unwrap();
        assert!((m.graph.value(v).unwrap().quant.as_ref().unwrap().amax as f64 - new).abs() < 1e-6);
        assert!([0.35, 0.5, 0.7, 1.4].iter().any(|f| ((new / old) - f).abs() < 1e-4), "{old} -> {new}");
    }
}

#[test]
fn budget_selection_meets_its_budget_and_leaves_the_rest_alone_with_a_reason() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let weights = |m: &Model| -> std::collections::BTreeMap<String, Vec<f32>> {
        m.graph
            .node_ids()
            .iter()
            .filter_map(|id| {
                let n = m.graph.node(*id).unwrap();
                (n.op_type == "Conv" || n.op_type == "Gemm").then(|| (n.name.clone(), m.graph.constant_value(n.inputs[1].unwrap()).unwrap().to_f32().unwrap()))
            })
            .collect()
    };
    let sqnr = |a: &[Vec<f32>], b: &[Vec<f32>]| -20.0 * rel_l2(a, b).log10();
    let mut dense = load("models/resnet20_bn.onnx");
    run(&mut dense, "fold-bn,cleanup", CalibInput::default());
    // logits_exec gives the rows as stored; the passes take samples in spread order
    let order = sparseqc::calib::data::spread_order(32);
    let held = |v: Vec<Vec<f32>>| order[24..].iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
    let untouched = |v: Vec<Vec<f32>>| order[16..24].iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
    let (w_dense, y_dense, u_dense) = (weights(&dense), held(logits_exec(&dense)), untouched(logits_exec(&dense)));
    // 32 samples: the first 16 reconstruct, the last 8 score, the 8 between are untouched
    let opts = "min-channels=4,min-params=0,method=obs,samples=16,budget-samples=8";
    let mut m = load("models/resnet20_bn.onnx");
    let reps = run(&mut m, &format!("fold-bn,cleanup,prune-2of4{{{opts},budget=20dB}}"), calib());
    let rep = &reps[2];
    // the budget holds on the scoring samples, measured here independently of the pass
    assert_eq!((rep.stats["reconstruction_samples"].as_u64(), rep.stats["scoring_samples"].as_u64()), (Some(16), Some(8)));
    // the untouched samples are measured too, and the budget holds there as well
    let u = &rep.stats["untouched"];
    assert!(u["sqnr_db"].as_f64().unwrap() >= 20.0, "{u}");
    assert_eq!(u["samples"].as_u64(), Some(8));
    let got_u = sqnr(&u_dense, &untouched(logits_exec(&m)));
    assert!((got_u - u["sqnr_db"].as_f64().unwrap()).abs() < 0.05, "untouched: report {} dB, measured {got_u}", u["sqnr_db"]);
    let got = sqnr(&y_dense, &held(logits_exec(&m)));
    assert!(got >= 20.0, "output SQNR {got} dB under the 20 dB budget");
    assert!((got - rep.stats["sqnr_db"].as_f64().unwrap()).abs() < 0.05, "report says {} dB, measured {got}", rep.stats["sqnr_db"]);
    // every eligible layer is ranked, and each one left dense says why
    let items: Vec<_> = rep.items.iter().filter(|i| i.action == "pruned" || i.action == "kept-dense").collect();
    assert_eq!(items.len(), 19);
    let mut ranks: Vec<u64> = items.iter().map(|i| i.details["rank"].as_u64().unwrap()).collect();
    ranks.sort();
    assert_eq!(ranks, (1..=19).collect::<Vec<u64>>());
    let k = rep.stats["pruned_layers"].as_u64().unwrap();
    assert!(k > 0 && k < 19, "a real choice: {k} layers");
    let w = weights(&m);
    for it in &items {
        let name = it.node.clone();
        let alone = it.details["alone_sqnr_db"].as_f64().unwrap();
        assert!(alone.is_finite());
        if it.action == "pruned" {
            assert!(alone >= 20.0, "{name}: chosen although alone it misses the budget ({alone} dB)");
            // 2:4 along the input channels at every (k, r, s)
            let wt = &w[&name];
            let shape = m.graph.constant_value(m.graph.node_ids().iter().map(|id| m.graph.node(*id).unwrap()).find(|n| n.name == name).unwrap().inputs[1].unwrap()).unwrap().shape();
            let layout = sparseqc::sparsity::GroupLayout::new(&shape, 1).unwrap();
            assert!(sparseqc::sparsity::check_2of4(wt, &layout).unwrap().ok, "{name} not 2:4");
        } else {
            assert!(
                ["alone it already misses the budget", "the output would fall to", "missed the budget on"].iter().any(|w| it.reason.contains(w)),
                "{name}: {}",
                it.reason
            );
            if alone < 20.0 {
                assert!(it.reason.contains("alone it already misses the budget"), "{name}: {}", it.reason);
            }
            assert_eq!(w[&name], w_dense[&name], "{name} left dense must keep its weights");
        }
    }
    // an unreachable budget leaves every layer dense (and says so), never misses the budget
    let mut none = load("models/resnet20_bn.onnx");
    let reps = run(&mut none, &format!("fold-bn,cleanup,prune-2of4{{{opts},budget=200dB}}"), calib());
    assert_eq!(reps[2].stats["pruned_layers"], 0);
    assert!(!reps[2].changed);
    assert_eq!(weights(&none), w_dense);
    // an agreement budget of 1.0 also holds exactly
    let mut full = load("models/resnet20_bn.onnx");
    run(&mut full, &format!("fold-bn,cleanup,prune-2of4{{{opts},budget=1.0}}"), calib());
    let (a, b) = (held(logits_exec(&full)), y_dense.clone());
    let argmax = |v: &Vec<f32>| v.iter().enumerate().fold((0, f32::MIN), |x, (i, y)| if *y > x.1 { (i, *y) } else { x }).0;
    assert!(a.iter().zip(&b).all(|(x, y)| argmax(x) == argmax(y)));
}

#[test]
fn damp_auto_keeps_the_dampening_with_the_least_held_out_error() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let opts = "min-channels=4,min-params=0,method=obs,samples=32,include=/layer1/*";
    let mut m = load("models/resnet20_bn.onnx");
    let reps = run(&mut m, &format!("fold-bn,cleanup,prune-2of4{{{opts},damp=auto}}"), calib());
    let pruned: Vec<_> = reps[2].items.iter().filter(|i| i.action == "pruned").collect();
    assert_eq!(pruned.len(), 6);
    for it in &pruned {
        let scores: Vec<(f64, f64)> = it.details["damp_heldout_error"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        assert_eq!(scores.iter().map(|s| s.0).collect::<Vec<_>>(), sparseqc::passes::prune::obs::DAMP_GRID.to_vec());
        let best = scores.iter().min_by(|a, b| a.1.partial_cmp(&b.1).unwrap()).unwrap().0;
        assert_eq!(it.details["damp"].as_f64().unwrap(), best, "{}", it.node);
    }
    // a fixed dampening is used as given, without a search
    let mut f = load("models/resnet20_bn.onnx");
    let reps = run(&mut f, &format!("fold-bn,cleanup,prune-2of4{{{opts},damp=0.05}}"), calib());
    for it in reps[2].items.iter().filter(|i| i.action == "pruned") {
        assert_eq!(it.details["damp"].as_f64().unwrap(), 0.05);
        assert!(it.details["damp_heldout_error"].as_array().unwrap().is_empty());
    }
    // a bad value is a usage error naming the option
    let reg = Registry::with_builtins();
    for bad in ["damp=-1", "damp=lots"] {
        let e = reg.create(&parse_pipeline(&format!("prune-2of4{{{bad}}}")).unwrap()[0]).err().expect("rejected").to_string();
        assert!(e.contains("damp must be auto or a non-negative number"), "{e}");
    }
}

/// The output names of every Conv and Gemm, in topological order.
fn weighted_outputs(m: &Model) -> Vec<String> {
    m.graph
        .topo_order()
        .unwrap()
        .iter()
        .filter_map(|id| {
            let nd = m.graph.node(*id).unwrap();
            matches!(nd.op_type.as_str(), "Conv" | "Gemm").then(|| m.graph.name_of(nd.outputs[0].unwrap()).to_string())
        })
        .collect()
}

/// Per-channel mean of every Conv/Gemm output, per sample (samples in spread order, the
/// first `n`), by name of the output.
fn layer_channel_means(m: &Model, n: usize) -> std::collections::BTreeMap<String, Vec<Vec<f64>>> {
    let ms = sparseqc::engine::ModelSession::new(m).unwrap();
    let arr = sparseqc::calib::npy::NpyArray::open(&testdata("cifar10-mini.input.npy")).unwrap();
    let outs = weighted_outputs(m);
    let capture: Vec<&str> = outs.iter().map(|s| s.as_str()).collect();
    let input = m.graph.name_of(m.graph.inputs[0]).to_string();
    let mut res: std::collections::BTreeMap<String, Vec<Vec<f64>>> = Default::default();
    for &row in &sparseqc::calib::data::spread_order(32)[..n] {
        let x = sparseqc::exec::Tensor::new(vec![1, 3, 32, 32], arr.read_rows(row, 1).unwrap()).unwrap();
        let got = ms.session.run(&[(input.as_str(), x)], &capture).unwrap();
        for name in &outs {
            let t = &got[name];
            let (k, v) = (t.shape()[1], t.as_f32().unwrap());
            let inner = v.len() / k;
            res.entry(name.clone()).or_default().push(v.chunks(inner).map(|c| c.iter().map(|x| *x as f64).sum::<f64>() / inner as f64).collect());
        }
    }
    res
}

#[test]
fn bias_correct_leaves_every_layer_with_zero_median_shift() {
    // float model and its Q/DQ form with the same weights; then bias-correct on 16 samples
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let mut f = load("models/resnet20_bn.onnx");
    run(&mut f, "fold-bn,cleanup,calibrate{method=max}", calib());
    let mut q = f.clone();
    run(&mut q, "insert-qdq", calib());
    let mut bc = q.clone();
    let reps = run(&mut bc, "bias-correct{samples=16,validate=0}", calib());
    assert_eq!(reps[0].count("bias-corrected"), 20);
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        0.5 * (v[(v.len() - 1) / 2] + v[v.len() / 2])
    };
    let (mf, mq, mb) = (layer_channel_means(&f, 16), layer_channel_means(&q, 16), layer_channel_means(&bc, 16));
    let worst = |m: &std::collections::BTreeMap<String, Vec<Vec<f64>>>, name: &str| {
        let k = mf[name][0].len();
        (0..k).map(|j| median((0..16).map(|i| mf[name][i][j] - m[name][i][j]).collect()).abs()).fold(0f64, f64::max)
    };
    let mut before_total = 0f64;
    // mf is keyed by name; visit the layers in network order
    for (i, name) in weighted_outputs(&bc).iter().enumerate() {
        let (before, after) = (worst(&mq, name), worst(&mb, name));
        before_total += before;
        if i < 5 {
            // each layer's median shift, measured on the corrected network, is gone
            assert!(after < 1e-6, "{name}: median shift {before:.2e} -> {after:.2e}");
        } else {
            // deeper, the sweep's outputs (shift added after the conv) and the corrected
            // conv (shift inside the bias) differ by an ulp, which Q/DQ rounding flips
            // amplify layer after layer; the shift is still mostly removed
            assert!(after <= 0.5 * before, "{name}: median shift {before:.2e} -> {after:.2e}");
        }
    }
    assert!(before_total > 1e-2, "quantization moved the layer means: {before_total}");
}

#[test]
fn bias_correct_reuses_the_float_runs_of_calibrate_with_identical_results() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let print = |m: &Model| sparseqc::text::print(m, &Default::default()).unwrap();
    // one pipeline: bias-correct takes the float model's layer means and outputs that
    // calibrate recorded (all 32 samples) after checking them on the first sample
    let mut one = load("models/resnet20_bn.onnx");
    let reps = run(&mut one, "fold-bn,cleanup,calibrate,insert-qdq,bias-correct{samples=16,validate=16}", calib());
    assert_eq!(reps[4].stats["float_runs_reused"], 32);
    // two runs: nothing recorded, bias-correct runs the float model itself; same model
    let mut two = load("models/resnet20_bn.onnx");
    run(&mut two, "fold-bn,cleanup,calibrate,insert-qdq", calib());
    let reps2 = run(&mut two, "bias-correct{samples=16,validate=16}", calib());
    assert!(!reps2[0].stats.contains_key("float_runs_reused"));
    for k in ["sqnr_db_before", "sqnr_db_after"] {
        assert_eq!(reps[4].stats[k], reps2[0].stats[k], "{k}");
    }
    assert_eq!(print(&one), print(&two));
    // the float model changed after calibrate (pruned): the records no longer match
    let mut three = load("models/resnet20_bn.onnx");
    let reps3 = run(&mut three, "fold-bn,cleanup,calibrate,prune-2of4,insert-qdq,bias-correct{samples=16,validate=16}", calib());
    assert!(!reps3[5].stats.contains_key("float_runs_reused"));
    // other calibration data (a limit changes the samples): not used either
    let mut four = load("models/resnet20_bn.onnx");
    run(&mut four, "fold-bn,cleanup,calibrate,insert-qdq", calib());
    let reg = Registry::with_builtins();
    let mut ctx = PassContext { quiet: true, calib: calib(), ..Default::default() };
    let passes = parse_pipeline("calibrate").unwrap().iter().map(|e| reg.create(e).unwrap()).collect();
    let mut f = load("models/resnet20_bn.onnx");
    run(&mut f, "fold-bn,cleanup", calib());
    PassManager::new(passes, RunOptions::default()).run(&mut f, &mut ctx).unwrap();
    ctx.calib.limit = Some(20);
    let passes = parse_pipeline("bias-correct{samples=10,validate=10}").unwrap().iter().map(|e| reg.create(e).unwrap()).collect();
    let reps4 = PassManager::new(passes, RunOptions::default()).run(&mut four, &mut ctx).unwrap();
    assert!(!reps4[0].stats.contains_key("float_runs_reused"));
}

#[test]
fn bias_correct_options_are_checked() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let reg = Registry::with_builtins();
    let e = parse_pipeline("bias-correct{estimator=mode}").unwrap();
    let err = reg.create(&e[0]).err().expect("bad estimator is refused").to_string();
    assert!(err.contains("median or mean"), "{err}");
    // the mean estimator still runs
    let mut q = load("models/resnet20_bn.onnx");
    run(&mut q, "fold-bn,cleanup,calibrate{method=max},insert-qdq", calib());
    let reps = run(&mut q, "bias-correct{samples=16,validate=0,estimator=mean}", calib());
    assert!(reps[0].changed);
}

#[test]
fn sessions_fold_constant_weight_qdq_without_changing_results() {
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let mut q = load("models/resnet20_bn.onnx");
    run(&mut q, "fold-bn,cleanup,calibrate{method=max},insert-qdq", calib());
    let folded = sparseqc::engine::ModelSession::new(&q).unwrap();
    let plain = sparseqc::engine::ModelSession::new_unfolded(&q).unwrap();
    // every weight's QuantizeLinear and DequantizeLinear output (19 convs and the Gemm: 20 × 2)
    assert_eq!(folded.folded.len(), 40);
    assert!(plain.folded.is_empty());
    let arr = sparseqc::calib::npy::NpyArray::open(&testdata("cifar10-mini.input.npy")).unwrap();
    let x = sparseqc::exec::Tensor::new(vec![32, 3, 32, 32], arr.read_all().unwrap()).unwrap();
    let a = folded.session.run_outputs(vec![x.clone()]).unwrap();
    let b = plain.session.run_outputs(vec![x]).unwrap();
    assert_eq!(a[0].as_f32().unwrap(), b[0].as_f32().unwrap());
}

#[test]
fn obs_resumes_each_layer_from_kept_activations_with_the_same_result_as_rerunning_the_network() {
    // prune-2of4{method=obs} keeps, between layers, the activations later layers read, so each
    // layer's run starts where the previous stopped; over the budget (keep-mb) it reruns the
    // network from its inputs. The pruned model must not depend on which happened.
    let calib = || CalibInput { source: Some(testdata("cifar10-mini.input.npy")), ..Default::default() };
    let print = |m: &Model| sparseqc::text::print(m, &Default::default()).unwrap();
    let mut runs = Vec::new();
    for keep in ["", ",keep-mb=3", ",keep-mb=0"] {
        let mut m = load("models/resnet20_bn.onnx");
        let reps = run(&mut m, &format!("fold-bn,cleanup,prune-2of4{{method=obs,min-channels=4,min-params=0,samples=32{keep}}}"), calib());
        let st = &reps[2].stats;
        let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{k}: {st:?}"));
        runs.push((print(&m), n("resume_restarts"), n("resume_peak_bytes"), n("pruned_layers")));
    }
    let layers = runs[0].3;
    assert!(layers >= 18, "{layers}");
    // everything kept (32 CIFAR samples need a few MiB), some steps over 3 MiB, none kept
    assert_eq!(runs[0].1, 0);
    assert!(runs[1].1 > 0 && runs[1].1 < runs[2].1, "restarts {} vs {}", runs[1].1, runs[2].1);
    assert!(runs[2].1 >= layers - 2, "{} of {layers}", runs[2].1);
    assert!(runs[1].2 <= 3 << 20 && runs[0].2 > 3 << 20, "peaks {} {}", runs[1].2, runs[0].2);
    for r in &runs[1..] {
        assert_eq!(r.0, runs[0].0, "the pruned model depends on keep-mb");
    }
}
