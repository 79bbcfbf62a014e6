//! Lowering of the quantized IR to a TensorRT network (src/trt/lower.rs): snapshots of
//! ResNet-20 and of a small MobileNetV2-shaped model after the default pipeline, the 2:4
//! and Q/DQ-scale invariants of the lowered networks, per-op attribute edge cases, errors,
//! and the `.plan` / `--emit network` / `print --network` command lines.
//!
//! ResNet-20's scales come from testdata/calib/resnet20_bn.calib-mini.max.json, generated
//! once with
//! `sparseqc testdata/models/resnet20_bn.onnx --passes 'fold-bn,cleanup,prune-2of4,calibrate{method=max},insert-qdq'
//!  --calib testdata/calib-mini/img --preprocess 'mean=0.485:0.456:0.406,std=0.229:0.224:0.225'
//!  -o r20.onnx --write-calib-cache testdata/calib/resnet20_bn.calib-mini.max.json`.

mod common;

use sparseqc::ir::Model;
use sparseqc::pass::{
    parse_pipeline, CalibInput, PassContext, PassManager, PassReport, Registry, RunOptions,
};
use sparseqc::trt::{
    kernel_info, lower, lower_network, network_to_text, read_network_file, DataType, LayerKind,
    LowerOptions, MatrixOperation, Network, SampleMode, Sparse24, TrtVersion, Weights,
};

const R20_SHAPES: &str = "input:1x3x32x32,8x3x32x32,32x3x32x32";

fn run_pipeline(model: &mut Model, pipeline: &str, calib: CalibInput) -> Vec<PassReport> {
    let reg = Registry::with_builtins();
    let passes = parse_pipeline(pipeline)
        .unwrap()
        .iter()
        .map(|e| reg.create(e).unwrap())
        .collect();
    let mut pm = PassManager::new(
        passes,
        RunOptions {
            verify_each: true,
            ..Default::default()
        },
    );
    let mut ctx = PassContext {
        quiet: true,
        calib,
        ..Default::default()
    };
    pm.run(model, &mut ctx).expect("pipeline runs")
}

/// ResNet-20 after the default pipeline, scales from the committed calibration table.
fn resnet20_int8() -> (Model, Vec<PassReport>) {
    let (mut m, _) = sparseqc::cli::load_model(
        &common::testdata("models/resnet20_bn.onnx"),
        &Default::default(),
    )
    .unwrap();
    let calib = CalibInput {
        cache: Some(common::testdata("calib/resnet20_bn.calib-mini.max.json")),
        ..Default::default()
    };
    let reps = run_pipeline(&mut m, sparseqc::cli::DEFAULT_PIPELINE_CACHE, calib);
    (m, reps)
}

fn opts(shapes: &str) -> LowerOptions {
    LowerOptions {
        shapes: Some(shapes.into()),
        workspace_mib: Some(1024),
        ..Default::default()
    }
}

// ---------- a MobileNetV2-shaped model in the text form ----------

fn bn(name: &str, c: usize, seed: u64) -> String {
    format!(
        "  float[{c}] {name}.s = {{random: {}}},\n  float[{c}] {name}.b = {{random: {}}},\n  float[{c}] {name}.m = {{random: {}}},\n  float[{c}] {name}.v = {{fill: 0.5}},\n",
        seed,
        seed + 1,
        seed + 2
    )
}

/// Stem conv, three inverted-residual blocks (1x1 expand + ReLU6, depthwise 3x3 + ReLU6,
/// 1x1 project; residual Add where shapes allow), a 1x1 head conv, GlobalAveragePool,
/// Flatten, Gemm; every conv followed by a BatchNormalization for fold-bn.
fn mobilenet_mini() -> String {
    let mut inits = String::from("  float[] zero = [0.0],\n  float[] six = [6.0],\n");
    let mut body = String::new();
    let mut seed = 100;
    let mut conv = |name: &str,
                    x: &str,
                    cin: usize,
                    cout: usize,
                    k: usize,
                    stride: usize,
                    group: usize,
                    relu6: bool|
     -> String {
        seed += 10;
        inits.push_str(&format!(
            "  float[{cout},{},{k},{k}] {name}.w = {{random: {seed}}},\n",
            cin / group
        ));
        inits.push_str(&bn(&format!("{name}.bn"), cout, seed + 1));
        let pad = k / 2;
        body.push_str(&format!(
            "  [{name}] {name}.c = Conv <group = {group}, kernel_shape = [{k}, {k}], pads = [{pad}, {pad}, {pad}, {pad}], strides = [{stride}, {stride}]> ({x}, {name}.w)\n"
        ));
        body.push_str(&format!(
            "  [{name}.bn] {name}.y = BatchNormalization ({name}.c, {name}.bn.s, {name}.bn.b, {name}.bn.m, {name}.bn.v)\n"
        ));
        if relu6 {
            body.push_str(&format!(
                "  [{name}.relu6] {name}.r = Clip ({name}.y, zero, six)\n"
            ));
            format!("{name}.r")
        } else {
            format!("{name}.y")
        }
    };
    let stem = conv("stem", "input", 3, 16, 3, 2, 1, true);
    // block 1: 16 -> 64 -> 16, residual
    let e1 = conv("b1.expand", &stem, 16, 64, 1, 1, 1, true);
    let d1 = conv("b1.dw", &e1, 64, 64, 3, 1, 64, true);
    let p1 = conv("b1.project", &d1, 64, 16, 1, 1, 1, false);
    // block 2: 16 -> 64 -> 32, stride 2, no residual
    let e2 = conv("b2.expand", "b1.out", 16, 64, 1, 1, 1, true);
    let d2 = conv("b2.dw", &e2, 64, 64, 3, 2, 64, true);
    let p2 = conv("b2.project", &d2, 64, 32, 1, 1, 1, false);
    // block 3: 32 -> 128 -> 32, residual
    let e3 = conv("b3.expand", &p2, 32, 128, 1, 1, 1, true);
    let d3 = conv("b3.dw", &e3, 128, 128, 3, 1, 128, true);
    let p3 = conv("b3.project", &d3, 128, 32, 1, 1, 1, false);
    let head = conv("head", "b3.out", 32, 128, 1, 1, 1, true);
    let _ = (p1, e2, p3, head);
    inits.push_str("  float[10,128] fc.w = {random: 900},\n  float[10] fc.b = {random: 901}");
    // the residual Adds and the classifier, spliced in after the blocks they close
    let body = body
        .replace(
            "  [b2.expand]",
            &format!("  [b1.add] b1.out = Add ({stem}, b1.project.y)\n  [b2.expand]"),
        )
        .replace(
            "  [head]",
            "  [b3.add] b3.out = Add (b2.project.y, b3.project.y)\n  [head]",
        );
    let body = format!(
        "{body}  [gap] pooled = GlobalAveragePool (head.r)\n  [flatten] flat = Flatten <axis = 1> (pooled)\n  [classifier] logits = Gemm <transB = 1> (flat, fc.w, fc.b)\n"
    );
    format!(
        "<\n  ir_version: 8,\n  opset_import: [\"\" : 13]\n>\nmbv2_mini (float[N,3,32,32] input) => (float[N,10] logits)\n<\n{inits}\n>\n{{\n{body}}}\n"
    )
}

fn mobilenet_int8() -> (Model, Vec<PassReport>) {
    let mut m =
        sparseqc::text::parse(&mobilenet_mini()).expect("the MobileNetV2-shaped model parses");
    let calib = CalibInput {
        source: Some(common::testdata("calib-mini/img")),
        preprocess: Some("mean=0.485:0.456:0.406,std=0.229:0.224:0.225".into()),
        ..Default::default()
    };
    // the default pipeline, with max calibration (cheap and exact to reproduce)
    let pipeline = sparseqc::cli::DEFAULT_PIPELINE_CACHE.replace("calibrate", "calibrate{method=max}");
    let reps = run_pipeline(&mut m, &pipeline, calib);
    (m, reps)
}

// ---------- snapshots ----------

#[test]
fn resnet20_network_snapshot() {
    let (m, _) = resnet20_int8();
    let (net, cfg) = lower(&m, &opts(R20_SHAPES)).unwrap();
    // the option-A shortcut: strided slices with axes (the batch is dynamic) and a channel pad
    let slice = net
        .layers()
        .iter()
        .find(|l| l.name == "/layer2/layer2.0/shortcut/Slice")
        .unwrap();
    assert_eq!(
        slice.kind,
        LayerKind::Slice {
            start: vec![0],
            size: vec![16],
            stride: vec![2],
            mode: SampleMode::StrictBounds,
            axes: Some(vec![2])
        }
    );
    let pad = net
        .layers()
        .iter()
        .find(|l| matches!(l.kind, LayerKind::Padding { .. }))
        .unwrap();
    assert_eq!(
        pad.kind,
        LayerKind::Padding {
            pre: vec![8, 0],
            post: vec![8, 0]
        }
    );
    // the Shape -> Gather -> Unsqueeze -> Concat -> Reshape sub-graph is one static reshape
    let rs = net.layers().iter().find(|l| l.name == "/Reshape").unwrap();
    assert!(
        matches!(&rs.kind, LayerKind::Shuffle(s) if s.reshape == Some(vec![0, -1]) && s.zero_is_placeholder)
    );
    insta::assert_snapshot!("resnet20_network", network_to_text(&net, Some(&cfg)));
}

#[test]
fn mobilenet_mini_network_snapshot() {
    let (m, reps) = mobilenet_int8();
    let (net, cfg) = lower(&m, &opts("input:1x3x32x32,4x3x32x32,16x3x32x32")).unwrap();
    let text = network_to_text(&net, Some(&cfg));
    // depthwise convs: grouped, kernel through DQ, never counted as 2:4
    let dw = net.layers().iter().find(|l| l.name == "b2.dw").unwrap();
    match &dw.kind {
        LayerKind::Convolution(p) => {
            assert_eq!(
                (p.nb_groups, p.stride.clone(), p.kernel.is_none()),
                (64, vec![2, 2], true)
            );
        }
        k => panic!("b2.dw lowered to {k:?}"),
    }
    let relu6 = net
        .layers()
        .iter()
        .find(|l| l.name == "b1.expand.relu6")
        .unwrap();
    assert_eq!(
        relu6.kind,
        LayerKind::Activation {
            activation: sparseqc::trt::ActivationType::Clip,
            alpha: 0.0,
            beta: 6.0
        }
    );
    let summary: Vec<String> = reps
        .iter()
        .map(|r| {
            format!(
                "{}: {}",
                r.pass,
                r.summary.split(" in ").next().unwrap_or("")
            )
        })
        .collect();
    insta::assert_snapshot!(
        "mobilenet_mini_network",
        format!("{}\n{text}", summary.join("\n"))
    );
}

// ---------- invariants of the lowered networks ----------

/// Every layer the prune pass pruned is a Convolution/MatrixMultiply whose kernel (the
/// Constant behind its Q/DQ) satisfies TensorRT's 2:4 rule in the network.
fn assert_pruned_weights_2of4(net: &Network, reps: &[PassReport]) -> usize {
    let prune = reps
        .iter()
        .find(|r| r.pass == "prune-2of4")
        .expect("prune ran");
    let pruned: Vec<&str> = prune
        .items
        .iter()
        .filter(|i| i.action.contains("pruned"))
        .map(|i| i.node.as_str())
        .collect();
    assert!(!pruned.is_empty(), "nothing was pruned: {:?}", prune.items);
    for name in &pruned {
        let id = net
            .find_layer(name)
            .unwrap_or_else(|| panic!("no layer named {name}"));
        let info = kernel_info(net, id).unwrap_or_else(|| panic!("{name} has no kernel"));
        assert!(
            matches!(info.source, sparseqc::trt::KernelSource::Constant(_)),
            "{name}: kernel not traced to a constant"
        );
        assert_eq!(
            info.sparse,
            Sparse24::Yes,
            "{name}: pruned in the IR but not 2:4 in the network"
        );
        assert_eq!(
            info.weights.map(|w| w.zero_count() * 2 >= w.count()),
            Some(true)
        );
    }
    pruned.len()
}

/// Every QuantizeLinear of the IR became a Quantize layer (same name) whose scale constant
/// holds exactly the scale the calibration annotated on the quantized tensor.
fn assert_qdq_scales_match(m: &Model, net: &Network) -> usize {
    let g = &m.graph;
    let mut checked = 0;
    for id in g.node_ids() {
        let n = g.node(id).unwrap();
        if n.op_type != "QuantizeLinear" {
            continue;
        }
        let x = n.inputs[0].unwrap();
        let Some(q) = g.value(x).unwrap().quant.as_ref() else {
            continue;
        }; // weights: per channel, no annotation
        let lid = net
            .find_layer(&n.name)
            .unwrap_or_else(|| panic!("no layer for {}", n.name));
        let layer = net.layer(lid).unwrap();
        assert!(
            matches!(
                layer.kind,
                LayerKind::Quantize {
                    axis: None,
                    to_type: DataType::Int8
                }
            ),
            "{}",
            n.name
        );
        let scale_layer = net.layer(net.producer(layer.inputs[1]).unwrap()).unwrap();
        match &scale_layer.kind {
            LayerKind::Constant {
                dims,
                weights: Weights::Float(v),
            } => {
                assert!(dims.is_empty(), "{}: per-tensor scale must be 0-D", n.name);
                assert_eq!(
                    v[0].to_bits(),
                    q.scale.to_bits(),
                    "{}: network scale {} vs annotation {}",
                    n.name,
                    v[0],
                    q.scale
                );
            }
            k => panic!("{}: scale comes from {k:?}", n.name),
        }
        // the matching Dequantize reads the same scale constant
        let dq = net
            .layers()
            .iter()
            .find(|l| l.inputs.first() == layer.outputs.first())
            .unwrap_or_else(|| panic!("{}: no consumer", n.name));
        assert!(matches!(dq.kind, LayerKind::Dequantize { axis: None, .. }));
        assert_eq!(dq.inputs[1], layer.inputs[1]);
        checked += 1;
    }
    checked
}

#[test]
fn resnet20_pruned_weights_stay_2of4_and_scales_match() {
    let (m, reps) = resnet20_int8();
    let net = lower_network(&m).unwrap();
    assert_eq!(assert_pruned_weights_2of4(&net, &reps), 18);
    // 42 QuantizeLinear: 20 per-channel weights, 22 activations (one pair per tensor,
    // shared by the conv reading it and the residual Add it skips to)
    assert_eq!(assert_qdq_scales_match(&m, &net), 22);
    // and the per-channel weight Q/DQ kept their axis 0
    let wq = net
        .layers()
        .iter()
        .filter(|l| matches!(l.kind, LayerKind::Quantize { axis: Some(0), .. }))
        .count();
    assert_eq!(wq, 20);
}

#[test]
fn mobilenet_mini_pruned_weights_stay_2of4_and_scales_match() {
    let (m, reps) = mobilenet_int8();
    let net = lower_network(&m).unwrap();
    assert!(assert_pruned_weights_2of4(&net, &reps) >= 4);
    assert!(assert_qdq_scales_match(&m, &net) >= 12);
}

#[test]
fn int8_weights_lower_to_int8_constants_through_dq() {
    let (mut m, _) = sparseqc::cli::load_model(
        &common::testdata("models/resnet20_bn.onnx"),
        &Default::default(),
    )
    .unwrap();
    let calib = CalibInput {
        cache: Some(common::testdata("calib/resnet20_bn.calib-mini.max.json")),
        ..Default::default()
    };
    let reps = run_pipeline(
        &mut m,
        "fold-bn,cleanup,prune-2of4,calibrate,insert-qdq{weights=int8}",
        calib,
    );
    let net = lower_network(&m).unwrap();
    let id = net.find_layer("/layer1/layer1.0/conv1/Conv").unwrap();
    let info = kernel_info(&net, id).unwrap();
    assert!(matches!(info.weights, Some(Weights::Int8(_))));
    assert_pruned_weights_2of4(&net, &reps);
}

// ---------- per-op lowering ----------

fn model(opset: u32, inputs: &str, outputs: &str, inits: &str, body: &str) -> Model {
    let text = format!(
        "<\n  ir_version: 8,\n  opset_import: [\"\" : {opset}]\n>\ng ({inputs}) => ({outputs})\n<\n{inits}\n>\n{{\n{body}}}\n"
    );
    sparseqc::text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn layer<'a>(net: &'a Network, name: &str) -> &'a LayerKind {
    &net.layer(
        net.find_layer(name)
            .unwrap_or_else(|| panic!("no layer {name}:\n{}", network_to_text(net, None))),
    )
    .unwrap()
    .kind
}

fn dims(net: &Network, tensor: &str) -> Vec<i64> {
    net.tensor(net.find_tensor(tensor).unwrap())
        .unwrap()
        .dims
        .clone()
        .unwrap()
}

fn conv_params(net: &Network, name: &str) -> sparseqc::trt::ConvParams {
    match layer(net, name) {
        LayerKind::Convolution(p) | LayerKind::Deconvolution(p) => p.clone(),
        k => panic!("{name}: {k:?}"),
    }
}

#[test]
fn conv_auto_pad_same_upper_and_lower() {
    // 8 wide, kernel 3, stride 2: output 4, total padding 1 -> the odd pixel goes after
    // the input for SAME_UPPER and before it for SAME_LOWER
    let m = model(
        13,
        "float[1,4,8,8] x",
        "float[1,8,4,4] u, float[1,8,4,4] l",
        "  float[8,4,3,3] w = {random: 1}",
        "  [up] u = Conv <auto_pad = \"SAME_UPPER\", strides = [2, 2]> (x, w)\n  [low] l = Conv <auto_pad = \"SAME_LOWER\", strides = [2, 2]> (x, w)\n",
    );
    let net = lower_network(&m).unwrap();
    let up = conv_params(&net, "up");
    assert_eq!(
        (up.pre_padding, up.post_padding, up.stride),
        (vec![0, 0], vec![1, 1], vec![2, 2])
    );
    let low = conv_params(&net, "low");
    assert_eq!(
        (low.pre_padding, low.post_padding),
        (vec![1, 1], vec![0, 0])
    );
    assert_eq!(dims(&net, "u"), vec![1, 8, 4, 4]);
    assert!(matches!(up.kernel, Some(Weights::Float(ref v)) if v.len() == 8 * 4 * 9));
    // VALID: no padding at all
    let m = model(
        13,
        "float[1,4,8,8] x",
        "float[1,8,3,3] y",
        "  float[8,4,3,3] w = {random: 1}",
        "  [v] y = Conv <auto_pad = \"VALID\", strides = [2, 2], pads = [1, 1, 1, 1]> (x, w)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(conv_params(&net, "v").pre_padding, vec![0, 0]);
    assert_eq!(dims(&net, "y"), vec![1, 8, 3, 3]);
}

#[test]
fn conv_same_padding_needs_known_spatial_dims() {
    let m = model(
        13,
        "float[1,4,H,W] x",
        "float[1,8,H,W] y",
        "  float[8,4,3,3] w = {random: 1}",
        "  [c] y = Conv <auto_pad = \"SAME_UPPER\"> (x, w)\n",
    );
    let e = lower_network(&m).unwrap_err().to_string();
    assert!(
        e.contains("node 'c' (Conv)")
            && e.contains("auto_pad=SAME_UPPER")
            && e.contains("[1,4,-1,-1]"),
        "{e}"
    );
}

#[test]
fn conv_asymmetric_pads_strides_dilations_groups_bias() {
    let m = model(
        13,
        "float[N,8,10,10] x",
        "float[N,8,5,4] y",
        "  float[8,2,3,3] w = {random: 1},\n  float[8] b = {random: 2}",
        "  [c] y = Conv <group = 4, pads = [0, 1, 2, 3], strides = [2, 3], dilations = [2, 1]> (x, w, b)\n",
    );
    let net = lower_network(&m).unwrap();
    let p = conv_params(&net, "c");
    assert_eq!(p.pre_padding, vec![0, 1]);
    assert_eq!(p.post_padding, vec![2, 3]);
    assert_eq!(
        (p.stride, p.dilation, p.nb_groups, p.nb_output_maps),
        (vec![2, 3], vec![2, 1], 4, 8)
    );
    assert!(matches!(p.bias, Some(Weights::Float(ref v)) if v.len() == 8));
    // (10 + 0 + 2 - 5) / 2 + 1 = 4 ; (10 + 1 + 3 - 3) / 3 + 1 = 4
    assert_eq!(dims(&net, "y"), vec![-1, 8, 4, 4]);
}

#[test]
fn conv_transpose_output_padding() {
    let m = model(
        13,
        "float[1,4,5,5] x",
        "float[1,6,10,10] y",
        "  float[4,3,3,3] w = {random: 1}",
        "  [d] y = ConvTranspose <group = 2, strides = [2, 2], pads = [1, 1, 1, 1], output_padding = [1, 1]> (x, w)\n",
    );
    let net = lower_network(&m).unwrap();
    let p = conv_params(&net, "d");
    assert!(matches!(layer(&net, "d"), LayerKind::Deconvolution(_)));
    assert_eq!(
        (p.nb_output_maps, p.nb_groups, p.pre_padding, p.post_padding),
        (6, 2, vec![1, 1], vec![0, 0])
    );
    // 2 * 4 + 1 + 3 - 2 = 10
    assert_eq!(dims(&net, "y"), vec![1, 6, 10, 10]);
}

#[test]
fn gemm_alpha_beta_and_transposes() {
    let m = model(
        13,
        "float[6,N] a",
        "float[N,5] y",
        "  float[5,6] b = {random: 1},\n  float[5] c = {random: 2}",
        "  [fc] y = Gemm <alpha = 0.5, beta = 2.0, transA = 1, transB = 1> (a, b, c)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(
        layer(&net, "fc"),
        &LayerKind::MatrixMultiply {
            op0: MatrixOperation::Transpose,
            op1: MatrixOperation::Transpose
        }
    );
    let konst = |n: &str| match layer(&net, n) {
        LayerKind::Constant {
            dims,
            weights: Weights::Float(v),
        } => (dims.clone(), v.clone()),
        k => panic!("{k:?}"),
    };
    assert_eq!(konst("fc/alpha"), (vec![1, 1], vec![0.5]));
    assert_eq!(konst("fc/beta"), (vec![1, 1], vec![2.0]));
    assert_eq!(konst("c").0, vec![1, 5]); // C raised to rank 2 for the broadcast
    assert!(matches!(
        layer(&net, "fc/scale_alpha"),
        LayerKind::ElementWise(sparseqc::trt::ElementWiseOperation::Prod)
    ));
    assert!(matches!(
        layer(&net, "fc/scale_beta"),
        LayerKind::ElementWise(sparseqc::trt::ElementWiseOperation::Prod)
    ));
    let bias = net.find_layer("fc/bias").unwrap();
    assert!(matches!(
        net.layer(bias).unwrap().kind,
        LayerKind::ElementWise(sparseqc::trt::ElementWiseOperation::Sum)
    ));
    assert_eq!(
        net.tensor(net.layer(bias).unwrap().outputs[0])
            .unwrap()
            .name,
        "y"
    );
    assert_eq!(dims(&net, "y"), vec![-1, 5]);
    // alpha = beta = 1 and no C: one MatrixMultiply writing y
    let m = model(
        13,
        "float[N,6] a",
        "float[N,5] y",
        "  float[6,5] b = {random: 1}",
        "  [fc] y = Gemm (a, b)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(
        net.layers()
            .iter()
            .filter(|l| !matches!(l.kind, LayerKind::Constant { .. }))
            .count(),
        1
    );
    assert_eq!(
        layer(&net, "fc"),
        &LayerKind::MatrixMultiply {
            op0: MatrixOperation::None,
            op1: MatrixOperation::None
        }
    );
}

#[test]
fn flatten_axes() {
    let m = model(
        13,
        "float[N,3,4,5] x",
        "float[1,M] a, float[N,60] b, float[M,20] c, float[M,5] d",
        "",
        "  [f0] a = Flatten <axis = 0> (x)\n  [f1] b = Flatten (x)\n  [f2] c = Flatten <axis = 2> (x)\n  [fm] d = Flatten <axis = -1> (x)\n",
    );
    let net = lower_network(&m).unwrap();
    let spec = |n: &str| match layer(&net, n) {
        LayerKind::Shuffle(s) => s.reshape.clone().unwrap(),
        k => panic!("{k:?}"),
    };
    assert_eq!(spec("f0"), vec![1, -1]);
    assert_eq!(spec("f1"), vec![0, 60]);
    assert_eq!(spec("f2"), vec![-1, 20]);
    assert_eq!(spec("fm"), vec![-1, 5]);
    assert_eq!(dims(&net, "b"), vec![-1, 60]);
    assert_eq!(dims(&net, "a"), vec![1, -1]);
}

#[test]
fn clip_bounds_from_inputs_and_attributes() {
    // opset 13: min/max are inputs, either may be absent
    let m = model(
        13,
        "float[1,4] x",
        "float[1,4] a, float[1,4] b",
        "  float[] lo = [-1.5],\n  float[] six = [6.0]",
        "  [c6] a = Clip (x, \"\", six)\n  [c2] b = Clip (x, lo)\n",
    );
    let net = lower_network(&m).unwrap();
    let act = |n: &str| match layer(&net, n) {
        LayerKind::Activation {
            activation,
            alpha,
            beta,
        } => (*activation, *alpha, *beta),
        k => panic!("{k:?}"),
    };
    assert_eq!(
        act("c6"),
        (sparseqc::trt::ActivationType::Clip, f32::MIN, 6.0)
    );
    assert_eq!(
        act("c2"),
        (sparseqc::trt::ActivationType::Clip, -1.5, f32::MAX)
    );
    // opset 6: min/max are attributes; ReLU6 = kCLIP alpha 0 beta 6
    let m = model(
        6,
        "float[1,4] x",
        "float[1,4] a",
        "",
        "  [r6] a = Clip <min = 0.0, max = 6.0> (x)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(
        layer(&net, "r6"),
        &LayerKind::Activation {
            activation: sparseqc::trt::ActivationType::Clip,
            alpha: 0.0,
            beta: 6.0
        }
    );
    // non-constant bounds and min > max are refused
    let m = model(
        13,
        "float[1,4] x, float[] lo",
        "float[1,4] a",
        "",
        "  [c] a = Clip (x, lo)\n",
    );
    let e = lower_network(&m).unwrap_err().to_string();
    assert!(
        e.contains("node 'c' (Clip)") && e.contains("must be a constant"),
        "{e}"
    );
    let m = model(
        6,
        "float[1,4] x",
        "float[1,4] a",
        "",
        "  [c] a = Clip <min = 2.0, max = 1.0> (x)\n",
    );
    assert!(lower_network(&m)
        .unwrap_err()
        .to_string()
        .contains("min <= max"));
}

#[test]
fn reshape_with_zero_and_minus_one() {
    let m = model(
        13,
        "float[N,4,6] x",
        "float[N,12,2] y, float[N,24] z, float[0,24] e",
        "  int64[3] s1 = [0, -1, 2],\n  int64[2] s2 = [0, -1],\n  int64[2] s0 = [0, 24],\n  float[0,4,6] empty = []",
        "  [r1] y = Reshape (x, s1)\n  [r2] z = Reshape (x, s2)\n  [r0] e = Reshape <allowzero = 1> (empty, s0)\n",
    );
    let net = lower_network(&m).unwrap();
    let sh = |n: &str| match layer(&net, n) {
        LayerKind::Shuffle(s) => (s.reshape.clone().unwrap(), s.zero_is_placeholder),
        k => panic!("{k:?}"),
    };
    assert_eq!(sh("r1"), (vec![0, -1, 2], true));
    assert_eq!(dims(&net, "y"), vec![-1, 12, 2]); // N cancels: -1 = 4*6/2
    assert_eq!(sh("r2"), (vec![0, -1], true));
    assert_eq!(dims(&net, "z"), vec![-1, 24]);
    // allowzero=1: a literal 0 is a size, not a copy
    assert_eq!(sh("r0"), (vec![0, 24], false));
    assert_eq!(dims(&net, "e"), vec![0, 24]);
}

#[test]
fn shape_subgraph_becomes_a_static_reshape() {
    let m = model(
        13,
        "float[N,8,1,1] x",
        "float[N,8] y",
        "  int64[] zero = [0],\n  int64[1] axes = [0],\n  int64[1] rest = [-1]",
        "  [shape] s = Shape (x)\n  [gather] n = Gather <axis = 0> (s, zero)\n  [unsq] n1 = Unsqueeze (n, axes)\n  [cat] target = Concat <axis = 0> (n1, rest)\n  [r] y = Reshape (x, target)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(net.layers().len(), 1, "{}", network_to_text(&net, None));
    assert!(matches!(layer(&net, "r"), LayerKind::Shuffle(s) if s.reshape == Some(vec![0, -1])));
    assert_eq!(dims(&net, "y"), vec![-1, 8]);
}

#[test]
fn pad_and_slice() {
    // spatial padding: one Padding layer; channel padding: moved to the last dims and back
    let m = model(
        13,
        "float[N,4,6,6] x, float[2,4,6,6] x2",
        "float[N,4,9,6] a, float[N,8,6,6] b, float[N,4,3,2] c, float[2,4,3,2] d",
        "  int64[8] sp = [0, 0, 1, 0, 0, 0, 2, 0],\n  int64[8] cp = [0, 2, 0, 0, 0, 2, 0, 0],\n  int64[2] st = [1, -1],\n  int64[2] en = [9223372036854775807, 0],\n  int64[2] ax = [2, -1],\n  int64[2] steps = [2, -3]",
        "  [ps] a = Pad (x, sp)\n  [pc] b = Pad (x, cp)\n  [sl] c = Slice (x, st, en, ax, steps)\n  [sf] d = Slice (x2, st, en, ax, steps)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(
        layer(&net, "ps"),
        &LayerKind::Padding {
            pre: vec![1, 0],
            post: vec![2, 0]
        }
    );
    assert_eq!(dims(&net, "a"), vec![-1, 4, 9, 6]);
    assert!(
        matches!(layer(&net, "pc/to_last"), LayerKind::Shuffle(s) if s.first_transpose == Some(vec![0, 2, 1, 3]))
    );
    assert_eq!(
        layer(&net, "pc/pad"),
        &LayerKind::Padding {
            pre: vec![2, 0],
            post: vec![2, 0]
        }
    );
    assert!(
        matches!(layer(&net, "pc"), LayerKind::Shuffle(s) if s.first_transpose == Some(vec![0, 2, 1, 3]))
    );
    assert_eq!(dims(&net, "b"), vec![-1, 8, 6, 6]);
    // H: 1..6 step 2 -> 1, 3, 5 ; W: from 5 down to (exclusive) 0 step -3 -> 5, 2
    assert_eq!(
        layer(&net, "sl"),
        &LayerKind::Slice {
            start: vec![1, 5],
            size: vec![3, 2],
            stride: vec![2, -3],
            mode: SampleMode::StrictBounds,
            axes: Some(vec![2, 3])
        }
    );
    assert_eq!(dims(&net, "c"), vec![-1, 4, 3, 2]);
    // all dims known: a full-rank slice, no axes
    assert_eq!(
        layer(&net, "sf"),
        &LayerKind::Slice {
            start: vec![0, 0, 1, 5],
            size: vec![2, 4, 3, 2],
            stride: vec![1, 1, 2, -3],
            mode: SampleMode::StrictBounds,
            axes: None
        }
    );
    // non-zero padding values and other modes are refused
    let m = model(
        13,
        "float[1,4,6,6] x",
        "float[1,4,9,6] a",
        "  int64[8] sp = [0, 0, 1, 0, 0, 0, 2, 0],\n  float[] v = [1.0]",
        "  [p] a = Pad (x, sp, v)\n",
    );
    let e = lower_network(&m).unwrap_err().to_string();
    assert!(
        e.contains("node 'p' (Pad)") && e.contains("padding value 1"),
        "{e}"
    );
    let m = model(
        13,
        "float[1,4,6,6] x",
        "float[1,4,9,6] a",
        "  int64[8] sp = [0, 0, 1, 0, 0, 0, 2, 0]",
        "  [p] a = Pad <mode = \"reflect\"> (x, sp)\n",
    );
    assert!(lower_network(&m)
        .unwrap_err()
        .to_string()
        .contains("mode='reflect'"));
}

#[test]
fn pooling_and_global_pooling() {
    let m = model(
        13,
        "float[N,4,7,7] x",
        "float[N,4,4,4] a, float[N,4,3,3] b, float[N,4,1,1] g",
        "",
        "  [avg] a = AveragePool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], count_include_pad = 1> (x)\n  [max] b = MaxPool <kernel_shape = [3, 3], strides = [2, 2]> (x)\n  [gap] g = GlobalAveragePool (x)\n",
    );
    let net = lower_network(&m).unwrap();
    match layer(&net, "avg") {
        LayerKind::Pooling(p) => {
            assert_eq!(
                (p.window.clone(), p.stride.clone(), p.pre_padding.clone()),
                (vec![3, 3], vec![2, 2], vec![1, 1])
            );
            assert!(!p.average_count_excludes_padding);
        }
        k => panic!("{k:?}"),
    }
    match layer(&net, "max") {
        LayerKind::Pooling(p) => assert_eq!(
            (p.stride.clone(), p.pre_padding.clone()),
            (vec![2, 2], vec![0, 0])
        ),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        layer(&net, "gap"),
        &LayerKind::Reduce {
            op: sparseqc::trt::ReduceOperation::Avg,
            axes: 0b1100,
            keep_dims: true
        }
    );
    assert_eq!(dims(&net, "a"), vec![-1, 4, 4, 4]);
    assert_eq!(dims(&net, "b"), vec![-1, 4, 3, 3]);
    // default strides of ONNX pooling are 1 (TensorRT's default would be the window)
    let m = model(
        13,
        "float[1,4,7,7] x",
        "float[1,4,5,5] a",
        "",
        "  [m] a = MaxPool <kernel_shape = [3, 3]> (x)\n",
    );
    let net = lower_network(&m).unwrap();
    assert!(matches!(layer(&net, "m"), LayerKind::Pooling(p) if p.stride == vec![1, 1]));
    // ceil_mode that changes the output size is refused
    let m = model(
        13,
        "float[1,4,6,6] x",
        "float[1,4,3,3] a",
        "",
        "  [m] a = MaxPool <kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1> (x)\n",
    );
    assert!(lower_network(&m)
        .unwrap_err()
        .to_string()
        .contains("ceil_mode=1"));
}

#[test]
fn qdq_per_tensor_and_per_channel() {
    let m = model(
        13,
        "float[N,4,4,4] x",
        "float[N,4,4,4] y",
        "  float[] xs = [0.05],\n  int8[] xz = [0],\n  int8[4,4,1,1] wq = [1, 0, -1, 0, 0, 2, 0, -2, 3, 3, 0, 0, 0, 0, 4, 4],\n  float[4] ws = [0.1, 0.2, 0.3, 0.4],\n  int8[4] wz = [0, 0, 0, 0]",
        "  [xq] q = QuantizeLinear (x, xs, xz)\n  [xdq] d = DequantizeLinear (q, xs, xz)\n  [wdq] w = DequantizeLinear <axis = 0> (wq, ws, wz)\n  [conv] y = Conv (d, w)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(
        layer(&net, "xq"),
        &LayerKind::Quantize {
            axis: None,
            to_type: DataType::Int8
        }
    );
    assert_eq!(
        layer(&net, "xdq"),
        &LayerKind::Dequantize {
            axis: None,
            to_type: DataType::Float
        }
    );
    assert_eq!(
        layer(&net, "wdq"),
        &LayerKind::Dequantize {
            axis: Some(0),
            to_type: DataType::Float
        }
    );
    assert_eq!(dims(&net, "q"), vec![-1, 4, 4, 4]);
    assert_eq!(
        net.tensor(net.find_tensor("q").unwrap()).unwrap().dtype,
        Some(DataType::Int8)
    );
    // the kernel is the DQ output, as input 1
    let conv = net.layer(net.find_layer("conv").unwrap()).unwrap();
    assert_eq!(net.tensor(conv.inputs[1]).unwrap().name, "w");
    assert!(conv_params(&net, "conv").kernel.is_none());
    // the shared scale is one Constant layer
    let xq = net.layer(net.find_layer("xq").unwrap()).unwrap();
    let xdq = net.layer(net.find_layer("xdq").unwrap()).unwrap();
    assert_eq!(xq.inputs[1], xdq.inputs[1]);
    // a non-zero zero point is refused
    let m = model(
        13,
        "float[4] x",
        "float[4] y",
        "  float[] s = [0.1],\n  int8[] z = [3]",
        "  [q] a = QuantizeLinear (x, s, z)\n  [dq] y = DequantizeLinear (a, s, z)\n",
    );
    let e = lower_network(&m).unwrap_err().to_string();
    assert!(
        e.contains("node 'q' (QuantizeLinear)") && e.contains("zero point 3"),
        "{e}"
    );
    // so is a missing one (ONNX then quantizes to UINT8)
    let m = model(
        13,
        "float[4] x",
        "float[4] y",
        "  float[] s = [0.1]",
        "  [q] a = QuantizeLinear (x, s)\n  [dq] y = DequantizeLinear (a, s)\n",
    );
    assert!(lower_network(&m).unwrap_err().to_string().contains("UINT8"));
}

#[test]
fn elementwise_broadcast_and_other_ops() {
    let m = model(
        13,
        "float[N,4,3,3] x, float[4,1,1] v",
        "float[N,4,3,3] a, float[N,4,3,3] s, float[N,4,3,3] p, float[N,4,3,3] d, float[N,3,3,4] t, float[N,8,3,3] c, float[N,4,3,3] sm, float[N,4,3,3] sg, float[N,4,3,3] h",
        "  float[4,1,1] k = {random: 1}",
        "  [add] a = Add (x, k)\n  [sub] s = Sub (x, v)\n  [mul] p = Mul (x, k)\n  [div] d = Div (x, k)\n  [tr] t = Transpose <perm = [0, 2, 3, 1]> (x)\n  [cat] c = Concat <axis = 1> (x, a)\n  [soft] sm = Softmax <axis = 1> (x)\n  [sig] sg = Sigmoid (x)\n  [cast] h = Cast <to = 10> (x)\n",
    );
    let net = lower_network(&m).unwrap();
    use sparseqc::trt::ElementWiseOperation as E;
    for (n, op) in [
        ("add", E::Sum),
        ("sub", E::Sub),
        ("mul", E::Prod),
        ("div", E::Div),
    ] {
        assert_eq!(layer(&net, n), &LayerKind::ElementWise(op));
    }
    // the constant gets a leading 1; the rank-3 input is reshaped to rank 4
    match layer(&net, "k") {
        LayerKind::Constant { dims, .. } => assert_eq!(dims, &vec![1, 4, 1, 1]),
        k => panic!("{k:?}"),
    }
    assert!(
        matches!(layer(&net, "sub/rank4"), LayerKind::Shuffle(s) if s.reshape == Some(vec![1, 4, 1, 1]))
    );
    assert!(
        matches!(layer(&net, "tr"), LayerKind::Shuffle(s) if s.first_transpose == Some(vec![0, 2, 3, 1]))
    );
    assert_eq!(dims(&net, "t"), vec![-1, 3, 3, 4]);
    assert_eq!(layer(&net, "cat"), &LayerKind::Concatenation { axis: 1 });
    assert_eq!(dims(&net, "c"), vec![-1, 8, 3, 3]);
    assert_eq!(layer(&net, "soft"), &LayerKind::SoftMax { axes: 0b10 });
    assert!(matches!(
        layer(&net, "sig"),
        LayerKind::Activation {
            activation: sparseqc::trt::ActivationType::Sigmoid,
            ..
        }
    ));
    assert_eq!(
        layer(&net, "cast"),
        &LayerKind::Cast {
            to_type: DataType::Half
        }
    );
}

#[test]
fn identity_outputs_and_names() {
    // an output that is an input (through Identity) gets its own Identity layer
    let m = model(
        13,
        "float[2] x",
        "float[2] y",
        "",
        "  [id] y = Identity (x)\n",
    );
    let net = lower_network(&m).unwrap();
    assert_eq!(net.layers().len(), 1);
    assert_eq!(net.tensor(net.outputs()[0]).unwrap().name, "y");
    assert_eq!(net.layers()[0].kind, LayerKind::Identity);
}

#[test]
fn unsupported_op_or_attribute_stops_before_tensorrt() {
    let m = model(
        13,
        "float[1,4,8,8] x",
        "float[1,4,8,8] y",
        "",
        "  [norm1] y = LRN <size = 3> (x)\n",
    );
    let e = lower(&m, &LowerOptions::default()).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("node 'norm1' (LRN)")
            && s.contains("op 'LRN' is not supported")
            && s.contains("supported: Add"),
        "{s}"
    );
    assert_eq!(e.kind, sparseqc::ErrorKind::User);
    // an attribute the lowering does not know
    let m = model(
        13,
        "float[1,4,8,8] x",
        "float[1,4,8,8] y",
        "",
        "  [mp] y = MaxPool <kernel_shape = [1, 1], dilations = [2, 2]> (x)\n",
    );
    let s = lower_network(&m).unwrap_err().to_string();
    assert!(
        s.contains("node 'mp' (MaxPool)") && s.contains("dilations"),
        "{s}"
    );
    let m = model(
        13,
        "float[1,4,8,8] x",
        "float[1,4,8,8] y",
        "",
        "  [sm] y = Softmax <axis = 1, bogus = 2> (x)\n",
    );
    let s = lower_network(&m).unwrap_err().to_string();
    assert!(s.contains("attribute 'bogus' is not supported"), "{s}");
    // ops the pipeline removes get a hint
    let m = model(
        13,
        "float[1,4,8,8] x",
        "float[1,4,8,8] y",
        "  float[4] s = {random: 1},\n  float[4] b = {random: 2},\n  float[4] mu = {random: 3},\n  float[4] v = {fill: 0.5}",
        "  [bn] y = BatchNormalization (x, s, b, mu, v)\n",
    );
    let s = lower_network(&m).unwrap_err().to_string();
    assert!(
        s.contains("node 'bn' (BatchNormalization)") && s.contains("fold-bn pass"),
        "{s}"
    );
    // other domains
    let m = model(
        13,
        "float[1,4] x",
        "float[1,4] y",
        "",
        "  [c] y = com.microsoft.Gelu (x)\n",
    );
    assert!(lower_network(&m).is_err());
}

#[test]
fn dynamic_inputs_need_shapes() {
    let m = model(
        13,
        "float[N,4] x",
        "float[N,4] y",
        "",
        "  [r] y = Relu (x)\n",
    );
    let e = lower(&m, &LowerOptions::default()).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("input 'x' has dynamic dimensions [-1,4]") && s.contains("--shapes x:1x4"),
        "{s}"
    );
    let (net, cfg) = lower(&m, &opts("x:1x4,8x4,16x4")).unwrap();
    assert_eq!(net.tensor(net.inputs()[0]).unwrap().dims, Some(vec![-1, 4]));
    assert_eq!(cfg.profiles[0].inputs[0].max, vec![16, 4]);
    // wrong names and fixed dims are checked against the network
    assert!(lower(&m, &opts("y:1x4")).is_err());
    assert!(lower(&m, &opts("x:1x5")).is_err());
}

#[test]
fn build_config_per_version() {
    let m = model(
        13,
        "float[1,4] x",
        "float[1,4] y",
        "",
        "  [r] y = Relu (x)\n",
    );
    let (_, c11) = lower(
        &m,
        &LowerOptions {
            workspace_mib: Some(256),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(c11.is_strongly_typed());
    assert_eq!(
        c11.effective_flags().unwrap(),
        vec![(sparseqc::trt::BuilderFlag::kSPARSE_WEIGHTS, 7)]
    );
    assert_eq!(c11.workspace_bytes, Some(256 << 20));
    let (_, c10) = lower(
        &m,
        &LowerOptions {
            target: TrtVersion::V10,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!c10.is_strongly_typed());
    assert_eq!(
        c10.effective_flags().unwrap(),
        vec![
            (sparseqc::trt::BuilderFlag::kSPARSE_WEIGHTS, 7),
            (sparseqc::trt::BuilderFlag::kINT8, 1)
        ]
    );
}

// ---------- command line ----------

const PREPROCESS: &str = "mean=0.485:0.456:0.406,std=0.229:0.224:0.225";

#[test]
fn plan_without_tensorrt_fails_cleanly_and_writes_nothing() {
    if sparseqc::trt::check_available().is_ok() {
        return; // this machine can build engines: nothing to refuse
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.plan");
    let report = dir.path().join("report.json");
    let model = common::testdata("models/resnet20_bn.onnx");
    let calib = common::testdata("calib-mini/img");
    let o = common::sparseqc(&[
        model.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--preprocess",
        PREPROCESS,
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one message:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    for needle in [
        "TensorRT",
        "libnvinfer",
        "-o model.onnx",
        "trtexec --onnx=model.onnx --sparsity=enable",
    ] {
        assert!(err.contains(needle), "'{needle}' missing from: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "something was written"
    );
}

#[test]
fn emit_network_and_print_network() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r20.int8.onnx");
    let netf = dir.path().join("r20.network");
    let model = common::testdata("models/resnet20_bn.onnx");
    let cache = common::testdata("calib/resnet20_bn.calib-mini.max.json");
    let args = [
        model.to_str().unwrap(),
        "--calib-cache",
        cache.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--emit",
        "network",
        netf.to_str().unwrap(),
        // a cache alone prunes nothing by default; this asks for the pipeline of
        // resnet20_int8() (DEFAULT_PIPELINE_CACHE), so the network carries 2:4 weights
        "--sparsity",
        "magnitude",
        "-q",
    ];
    // without --shapes the dynamic batch is refused before any pass runs
    let o = common::sparseqc(&args);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--shapes input:1x3x32x32"), "{err}");
    assert!(!out.exists() && !netf.exists());
    let mut with_shapes = args.to_vec();
    with_shapes.extend(["--shapes", R20_SHAPES]);
    let o = common::sparseqc(&with_shapes);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let (net, cfg) = read_network_file(&netf).unwrap();
    assert_eq!(cfg.profiles[0].to_string(), R20_SHAPES);
    // the network printed from the written INT8 model is the one in the file
    let p = common::sparseqc(&["print", "--network", out.to_str().unwrap()]);
    assert!(p.status.success(), "{}", common::stderr(&p));
    assert_eq!(
        String::from_utf8_lossy(&p.stdout),
        network_to_text(&net, None)
    );
    // and the in-process lowering gives the same network
    let (m, _) = resnet20_int8();
    assert_eq!(lower_network(&m).unwrap(), net);
}

#[test]
fn absurd_attributes_are_errors_or_sizes_not_panics() {
    let big = i64::MAX;
    let cases = [
        format!("  [c] y = Conv <dilations = [{big}, {big}], strides = [{big}, 1]> (x, w)\n"),
        format!("  [c] y = Conv <auto_pad = \"SAME_LOWER\", dilations = [{big}, 2], strides = [{big}, {big}]> (x, w)\n"),
        format!("  [c] y = ConvTranspose <strides = [{big}, {big}], output_padding = [{big}, 0]> (x, w)\n"),
        format!("  [c] y = MaxPool <kernel_shape = [{big}, 1], strides = [{big}, {big}], pads = [{big}, 0, {big}, 0]> (x)\n"),
        "  [c] y = Slice (x, st, en, ax, stepmin)\n".to_string(),
        "  [c] y = Slice (e, st, en, ax, stepmin)\n".to_string(),
        "  [c] y = Unsqueeze (x, nine)\n".to_string(),
        "  [c] y = Softmax <axis = 40> (x)\n".to_string(),
        "  [c] y = Flatten <axis = 9> (x)\n".to_string(),
    ];
    for body in &cases {
        let m = model(
            13,
            "float[1,4,6,6] x, float[1,4,0,6] e",
            "float[1,4,6,6] y",
            &format!(
                "  float[4,4,3,3] w = {{random: 1}},\n  int64[1] st = [{}],\n  int64[1] en = [{}],\n  int64[1] ax = [2],\n  int64[1] stepmin = [{}],\n  int64[5] nine = [0, 1, 2, 3, 4]",
                i64::MAX,
                i64::MIN,
                i64::MIN
            ),
            body,
        );
        // either a network or an error naming the node; never a panic
        if let Err(e) = lower_network(&m) {
            assert!(e.to_string().contains("node 'c'"), "{body}: {e}");
        }
    }
}

// ---------- numerics: the network (numpy reference of TensorRT's layers) vs onnxruntime ----------

fn weights_json(w: &Weights) -> serde_json::Value {
    use serde_json::json;
    let (dtype, values) = match w {
        Weights::Float(v) => ("FLOAT", json!(v)),
        Weights::Int8(v) => ("INT8", json!(v)),
        Weights::Int32(v) => ("INT32", json!(v)),
        Weights::Int64(v) => ("INT64", json!(v)),
        Weights::UInt8(v) => ("UINT8", json!(v)),
        Weights::Bool(v) => ("BOOL", json!(v)),
        Weights::Half(_) | Weights::BF16(_) => panic!("16-bit weights are not used here"),
    };
    json!({ "dtype": dtype, "values": values })
}

fn kind_json(k: &LayerKind) -> serde_json::Value {
    use serde_json::json;
    match k {
        LayerKind::Convolution(p) => json!({
            "type": "conv", "k": p.nb_output_maps, "kernel_size": p.kernel_size,
            "kernel": p.kernel.as_ref().map(weights_json), "bias": p.bias.as_ref().map(weights_json),
            "pre": p.pre_padding, "post": p.post_padding, "stride": p.stride, "dilation": p.dilation,
            "groups": p.nb_groups,
        }),
        LayerKind::MatrixMultiply { op0, op1 } => {
            json!({ "type": "matmul", "op0": op0.trt_name(), "op1": op1.trt_name() })
        }
        LayerKind::Quantize { axis, .. } => json!({ "type": "q", "axis": axis }),
        LayerKind::Dequantize { axis, .. } => json!({ "type": "dq", "axis": axis }),
        LayerKind::Constant { dims, weights } => {
            json!({ "type": "const", "dims": dims, "weights": weights_json(weights) })
        }
        LayerKind::ElementWise(op) => json!({ "type": "ew", "op": op.trt_name() }),
        LayerKind::Activation {
            activation,
            alpha,
            beta,
        } => {
            json!({ "type": "act", "act": activation.trt_name(), "alpha": alpha, "beta": beta })
        }
        LayerKind::Pooling(p) => json!({
            "type": "pool", "ptype": p.pooling_type.trt_name(), "window": p.window, "stride": p.stride,
            "pre": p.pre_padding, "post": p.post_padding, "excludes": p.average_count_excludes_padding,
        }),
        LayerKind::Shuffle(s) => json!({
            "type": "shuffle", "first": s.first_transpose, "reshape": s.reshape,
            "second": s.second_transpose, "zero_is_placeholder": s.zero_is_placeholder,
        }),
        LayerKind::Concatenation { axis } => json!({ "type": "concat", "axis": axis }),
        LayerKind::Reduce {
            op,
            axes,
            keep_dims,
        } => {
            json!({ "type": "reduce", "op": op.trt_name(), "axes": axes, "keep_dims": keep_dims })
        }
        LayerKind::SoftMax { axes } => json!({ "type": "softmax", "axes": axes }),
        LayerKind::Slice {
            start,
            size,
            stride,
            mode,
            axes,
        } => {
            assert_eq!(*mode, SampleMode::StrictBounds);
            json!({ "type": "slice", "start": start, "size": size, "stride": stride, "axes": axes })
        }
        LayerKind::Padding { pre, post } => json!({ "type": "padding", "pre": pre, "post": post }),
        LayerKind::Identity => json!({ "type": "identity" }),
        LayerKind::Cast { to_type } => json!({ "type": "cast", "to": to_type.name() }),
        LayerKind::Deconvolution(_) => json!({ "type": "deconv" }),
    }
}

fn network_json(net: &Network) -> serde_json::Value {
    let tname = |t| net.tensor(t).unwrap().name.clone();
    let inputs: Vec<_> = net
        .inputs()
        .iter()
        .map(|&t| serde_json::json!({ "name": tname(t), "dims": net.tensor(t).unwrap().dims }))
        .collect();
    let layers: Vec<_> = net
        .layers()
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "inputs": l.inputs.iter().map(|&t| tname(t)).collect::<Vec<_>>(),
                "output": tname(l.outputs[0]),
                "kind": kind_json(&l.kind),
            })
        })
        .collect();
    let outputs: Vec<_> = net.outputs().iter().map(|&t| tname(t)).collect();
    serde_json::json!({ "inputs": inputs, "layers": layers, "outputs": outputs })
}

/// Runs the lowered network (numpy reference, tests/trt_ref.py) and the model (onnxruntime)
/// on the same random input; returns the worst relative L2 difference over the outputs.
fn network_vs_onnxruntime(m: &Model, batch: usize) -> f64 {
    let net = lower_network(m).unwrap();
    let d = common::tmpdir();
    let j = d.path().join("net.json");
    let o = d.path().join("model.onnx");
    std::fs::write(&j, serde_json::to_vec(&network_json(&net)).unwrap()).unwrap();
    let proto = sparseqc::ir::export::export(m).unwrap();
    sparseqc::onnx::save(proto, &o, &Default::default()).unwrap();
    let out = std::process::Command::new(common::python())
        .arg(common::root().join("tests/trt_ref.py"))
        .args([
            common::path_str(&j),
            common::path_str(&o),
            &batch.to_string(),
        ])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut worst = 0f64;
    for line in stdout.lines() {
        let rel: f64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
        worst = worst.max(rel);
    }
    assert!(!stdout.trim().is_empty());
    eprintln!("network vs onnxruntime:\n{stdout}");
    worst
}

#[test]
fn float_resnet20_network_computes_the_model() {
    let (mut m, _) = sparseqc::cli::load_model(
        &common::testdata("models/resnet20_bn.onnx"),
        &Default::default(),
    )
    .unwrap();
    run_pipeline(&mut m, "fold-bn,cleanup", CalibInput::default());
    let rel = network_vs_onnxruntime(&m, 2);
    assert!(rel < 1e-5, "relative L2 {rel}");
}

#[test]
fn int8_networks_compute_the_models() {
    let (m, _) = resnet20_int8();
    let rel = network_vs_onnxruntime(&m, 2);
    assert!(rel < 1e-4, "ResNet-20: relative L2 {rel}");
    let (m, _) = mobilenet_int8();
    let rel = network_vs_onnxruntime(&m, 2);
    assert!(rel < 1e-4, "MobileNetV2-shaped: relative L2 {rel}");
}

#[test]
fn op_zoo_network_computes_the_model() {
    let m = model(
        13,
        "float[N,4,9,9] x",
        "float[N,10] y, float[N,8,5,4] c2, float[N,8,4,7] sl, float[N,8,9,9] pc, float[N,3] g2",
        "  float[8,2,3,3] w = {random: 1},\n  float[8] b = {random: 2},\n  float[4,4,3,3] w2 = {random: 3},\n  float[] lo = [-0.25],\n  float[] hi = [0.5],\n  int64[8] cp = [0, 2, 0, 0, 0, 2, 0, 0],\n  int64[2] st = [1, -1],\n  int64[2] en = [9223372036854775807, -8],\n  int64[2] ax = [2, 3],\n  int64[2] steps = [2, -1],\n  float[1,8,1,1] k = {random: 4},\n  int64[3] shp = [0, -1, 2],\n  float[10,36] gw = {random: 5},\n  float[10] gc = {random: 6},\n  float[3,10] g2w = {random: 7}",
        "  [conv] c = Conv <group = 2, pads = [0, 1, 2, 1], strides = [2, 2], dilations = [1, 2]> (x, w, b)\n  [c2] c2 = Mul (c, k)\n  [same] s = Conv <auto_pad = \"SAME_LOWER\", strides = [2, 2]> (x, w2)\n  [clip] cl = Clip (s, lo, hi)\n  [avg] a = AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1], count_include_pad = 1> (cl)\n  [max] mp = MaxPool <kernel_shape = [2, 2], pads = [0, 0, 1, 1], strides = [2, 2]> (a)\n  [sub] d = Sub (mp, lo)\n  [div] q = Div (d, hi)\n  [tr] t = Transpose <perm = [0, 2, 3, 1]> (q)\n  [rs] r = Reshape (t, shp)\n  [fl] f = Flatten (r)\n  [gemm] y0 = Gemm <alpha = 0.5, beta = 2.0, transB = 1> (f, gw, gc)\n  [sm] y = Softmax (y0)\n  [sig] g = Sigmoid (y0)\n  [gemm2] g2 = Gemm <transA = 0, transB = 1> (g, g2w)\n  [slice] sl0 = Slice (x, st, en, ax, steps)\n  [gap] gp = GlobalAveragePool (sl0)\n  [cat] sl = Concat <axis = 1> (sl0, gp2)\n  [pc] pc = Pad (x, cp)\n  [relu] gp2 = Relu (sl0)\n",
    );
    let rel = network_vs_onnxruntime(&m, 3);
    assert!(rel < 1e-5, "relative L2 {rel}");
}
