//! Network model, text form and protobuf round trip of the TensorRT back end.

use sparseqc::trt::*;

/// A small explicitly quantized network: Q/DQ input, conv with a DQ-fed 2:4-sparse INT8
/// kernel, ReLU6, residual add, a dense inline-kernel conv, a sparse inline 1x1 conv,
/// pooling, global average (reduce), FC via MatrixMultiply, reshape, softmax, a
/// deconvolution, and the rest of the supported layer kinds.
fn sample() -> (Network, BuildConfig) {
    let mut n = Network::new("sample");
    let x = n
        .add_input("input", DataType::Float, &[-1, 8, 8, 8])
        .unwrap();
    let s = n
        .add_layer(
            "act_scale",
            LayerKind::Constant {
                dims: vec![],
                weights: Weights::Float(vec![0.025]),
            },
            &[],
        )
        .unwrap();
    let xq = n
        .add_layer(
            "input_q",
            LayerKind::Quantize {
                axis: None,
                to_type: DataType::Int8,
            },
            &[x, s],
        )
        .unwrap();
    let xdq = n
        .add_layer(
            "input_dq",
            LayerKind::Dequantize {
                axis: None,
                to_type: DataType::Float,
            },
            &[xq, s],
        )
        .unwrap();

    // K=8, C=8, 3x3; zeros at c % 4 in {0, 1} for every (k, r, s): 2:4 along C.
    let mut q = Vec::new();
    for k in 0..8 {
        for c in 0..8 {
            for rs in 0..9 {
                q.push(if c % 4 < 2 {
                    0i8
                } else {
                    ((k + c + rs) % 9) as i8 - 4
                });
            }
        }
    }
    let wq = n
        .add_layer(
            "conv1.w_q",
            LayerKind::Constant {
                dims: vec![8, 8, 3, 3],
                weights: Weights::Int8(q),
            },
            &[],
        )
        .unwrap();
    let ws = n
        .add_layer(
            "conv1.w_scale",
            LayerKind::Constant {
                dims: vec![8],
                weights: Weights::Float(vec![0.002; 8]),
            },
            &[],
        )
        .unwrap();
    let wdq = n
        .add_layer(
            "conv1.w_dq",
            LayerKind::Dequantize {
                axis: Some(0),
                to_type: DataType::Float,
            },
            &[wq, ws],
        )
        .unwrap();
    let mut p = ConvParams::new(8, &[3, 3]);
    p.pre_padding = vec![1, 1];
    p.post_padding = vec![1, 1];
    p.bias = Some(Weights::Float((0..8).map(|i| i as f32 / 8.0).collect()));
    let c1 = n
        .add_layer("conv1", LayerKind::Convolution(p), &[xdq, wdq])
        .unwrap();
    n.set_tensor_info(c1, Some(DataType::Float), Some(vec![-1, 8, 8, 8]))
        .unwrap();
    let r6 = n
        .add_layer(
            "conv1.relu6",
            LayerKind::Activation {
                activation: ActivationType::Clip,
                alpha: 0.0,
                beta: 6.0,
            },
            &[c1],
        )
        .unwrap();
    let add = n
        .add_layer(
            "res_add",
            LayerKind::ElementWise(ElementWiseOperation::Sum),
            &[r6, xdq],
        )
        .unwrap();

    // dense inline kernel, 1x1, stride 2: K=4, C=8
    let mut p2 = ConvParams::new(4, &[1, 1]);
    p2.stride = vec![2, 2];
    p2.kernel = Some(Weights::Float((0..32).map(|i| i as f32 - 10.0).collect()));
    let c2 = n
        .add_layer("conv2_dense", LayerKind::Convolution(p2), &[add])
        .unwrap();
    // sparse inline kernel, 1x1: K=4, C=4
    let mut p3 = ConvParams::new(4, &[1, 1]);
    p3.kernel = Some(Weights::Float(vec![
        0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0,
    ]));
    let c3 = n
        .add_layer("conv3", LayerKind::Convolution(p3), &[c2])
        .unwrap();
    let mut pp = PoolingParams::new(PoolingType::Average, &[2, 2]);
    pp.average_count_excludes_padding = false;
    let pool = n.add_layer("pool", LayerKind::Pooling(pp), &[c3]).unwrap();
    let gap = n
        .add_layer(
            "gap",
            LayerKind::Reduce {
                op: ReduceOperation::Avg,
                axes: 0b1100,
                keep_dims: false,
            },
            &[pool],
        )
        .unwrap();
    let fcw = n
        .add_layer(
            "fc.w",
            LayerKind::Constant {
                dims: vec![4, 10],
                weights: Weights::Float(vec![0.1; 40]),
            },
            &[],
        )
        .unwrap();
    let fc = n
        .add_layer(
            "fc",
            LayerKind::MatrixMultiply {
                op0: MatrixOperation::None,
                op1: MatrixOperation::None,
            },
            &[gap, fcw],
        )
        .unwrap();
    let sh = n
        .add_layer(
            "reshape",
            LayerKind::Shuffle(ShuffleParams {
                first_transpose: None,
                reshape: Some(vec![0, -1]),
                second_transpose: Some(vec![0, 1]),
                zero_is_placeholder: true,
            }),
            &[fc],
        )
        .unwrap();
    let sl = n
        .add_layer(
            "slice",
            LayerKind::Slice {
                start: vec![0, 0],
                size: vec![1, 10],
                stride: vec![1, 1],
                mode: SampleMode::Clamp,
                axes: None,
            },
            &[sh],
        )
        .unwrap();
    let pad = n
        .add_layer(
            "pad",
            LayerKind::Padding {
                pre: vec![0, 0],
                post: vec![0, 0],
            },
            &[sl],
        )
        .unwrap();
    let cat = n
        .add_layer("cat", LayerKind::Concatenation { axis: 1 }, &[pad, sh])
        .unwrap();
    let cast = n
        .add_layer(
            "cast",
            LayerKind::Cast {
                to_type: DataType::Float,
            },
            &[cat],
        )
        .unwrap();
    let id = n.add_layer("ident", LayerKind::Identity, &[cast]).unwrap();
    let sm = n
        .add_layer_with_output("softmax", LayerKind::SoftMax { axes: 0b10 }, &[id], "probs")
        .unwrap();
    let mut dp = ConvParams::new(2, &[2, 2]);
    dp.stride = vec![2, 2];
    dp.kernel = Some(Weights::Half(vec![0x3c00; 4 * 2 * 4]));
    let up = n
        .add_layer("up", LayerKind::Deconvolution(dp), &[c3])
        .unwrap();
    n.mark_output(sm).unwrap();
    n.mark_output(up).unwrap();

    let mut cfg = BuildConfig::new(TrtVersion::V11);
    cfg.workspace_bytes = Some(1 << 30);
    cfg.profiles
        .push(OptimizationProfile::parse("input:1x8x8x8,8x8x8x8,32x8x8x8").unwrap());
    (n, cfg)
}

#[test]
fn text_form_snapshot() {
    let (n, cfg) = sample();
    n.validate().unwrap();
    cfg.validate(&n).unwrap();
    insta::assert_snapshot!(network_to_text(&n, Some(&cfg)));
}

#[test]
fn text_form_is_deterministic() {
    let (a, ca) = sample();
    let (b, cb) = sample();
    assert_eq!(
        network_to_text(&a, Some(&ca)),
        network_to_text(&b, Some(&cb))
    );
}

#[test]
fn sparsity_verdicts_in_text() {
    let (n, _) = sample();
    let t = network_to_text(&n, None);
    let line = |name: &str| {
        t.lines()
            .find(|l| l.contains(&format!("\"{name}\" (")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("conv1").contains("input1<-\"conv1.w_q\" INT8[8,8,3,3]")
            && line("conv1").contains("2:4=yes"),
        "{t}"
    );
    assert!(line("conv2_dense").contains("2:4=no"), "{t}");
    assert!(
        line("conv3").contains("FLOAT[4,4,1,1]") && line("conv3").contains("2:4=yes"),
        "{t}"
    );
    assert!(line("up").contains("2:4=n/a(deconvolution)"), "{t}");
    assert!(line("fc").contains("2:4=no"), "{t}");
    assert!(
        t.contains("sparsity: kernels=5 sparse24=[conv1, conv3] dense=[conv2_dense, fc] n/a=[up]"),
        "{t}"
    );
}

#[test]
fn protobuf_round_trip() {
    let (n, cfg) = sample();
    let bytes = encode(&n, &cfg);
    let (n2, cfg2) = decode(&bytes).unwrap();
    assert_eq!(n, n2);
    assert_eq!(cfg, cfg2);
    assert_eq!(
        network_to_text(&n, Some(&cfg)),
        network_to_text(&n2, Some(&cfg2))
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.pb");
    write_network_file(&path, &n, &cfg).unwrap();
    let (n3, cfg3) = read_network_file(&path).unwrap();
    assert_eq!((n3, cfg3), (n, cfg));
}

#[test]
fn protobuf_rejects_garbage_and_inconsistent_files() {
    assert!(decode(b"\xff\xff\xff").is_err());
    let (n, cfg) = sample();
    let mut f = sparseqc::trt::serial::to_proto(&n, &cfg);
    f.network.as_mut().unwrap().layers[0].inputs.push(999);
    let e = sparseqc::trt::serial::from_proto(&f).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let mut f = sparseqc::trt::serial::to_proto(&n, &cfg);
    f.format_version = 7;
    assert!(sparseqc::trt::serial::from_proto(&f).is_err());
    let mut f = sparseqc::trt::serial::to_proto(&n, &cfg);
    f.config.as_mut().unwrap().flags.push("kNOPE".into());
    assert!(sparseqc::trt::serial::from_proto(&f)
        .unwrap_err()
        .to_string()
        .contains("kNOPE"));
}
