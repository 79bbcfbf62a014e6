//! Calibration from the command line: bad inputs get clear errors before any work, and
//! calibration caches round-trip.

mod common;
use common::*;

const PRE: &str = "mean=0.485:0.456:0.406,std=0.229:0.224:0.225";

fn calibrate(model: &str, calib: &str, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let d = tmpdir();
    let out = d.path().join("o.onnx");
    let m = testdata(model);
    let mut args = vec![path_str(&m), "-o", path_str(&out), "--passes", "fold-bn,cleanup,calibrate", "-q"];
    let mut owned: Vec<String> = vec!["--calib".into(), calib.into()];
    if !calib.ends_with(".npy") && !calib.ends_with(".npz") {
        owned.extend(["--preprocess".to_string(), PRE.to_string()]);
    }
    let owned_refs: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
    args.extend(owned_refs);
    args.extend(extra);
    let o = sparseqc(&args);
    (o, d)
}

fn fails_with(o: &std::process::Output, what: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains(what), "expected '{what}' in: {e}");
}

#[test]
fn bad_calibration_inputs() {
    let empty = tmpdir();
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(empty.path()), &[]);
    fails_with(&o, path_str(empty.path()));

    let corrupt = tmpdir();
    std::fs::write(corrupt.path().join("broken.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(corrupt.path()), &[]);
    fails_with(&o, "broken.jpg");

    // a 48x40 image for a 32x32 model, without resize/crop
    let odd = testdata("calib-mini/odd");
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&odd), &[]);
    fails_with(&o, "odd.");

    // an npz whose arrays do not name the model's input
    let npz = testdata("calib-mini/arrays.npz");
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&npz), &[]);
    fails_with(&o, "input");

    let missing = tmpdir();
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&missing.path().join("nope")), &[]);
    fails_with(&o, "does not exist");
}

#[test]
fn cache_roundtrip_and_unknown_names_warn() {
    let d = tmpdir();
    let a = d.path().join("a.cache");
    let npy = testdata("cifar10-mini.input.npy");
    let rep = d.path().join("r.json");
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&npy), &["--write-calib-cache", path_str(&a), "--report", path_str(&rep)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&a).unwrap();
    // method=auto: the header names the method chosen
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let chosen = r["passes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["items"].as_array().cloned().unwrap_or_default())
        .find(|i| i["action"] == "chosen")
        .map(|i| i["node"].as_str().unwrap_or("").to_string())
        .expect("auto reports the chosen method");
    assert_eq!(text.lines().next().unwrap(), header_for(&chosen), "chosen {chosen}: {text}");
    // read it back instead of calibrating, and write it again: identical file
    let b = d.path().join("b.cache");
    let out = d.path().join("o.onnx");
    let m = testdata("models/resnet20_bn.onnx");
    let o = sparseqc(&[
        path_str(&m), "-o", path_str(&out), "--passes", "fold-bn,cleanup,calibrate,insert-qdq", "--calib-cache", path_str(&a),
        "--write-calib-cache", path_str(&b), "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&b).unwrap(), text, "write -> read -> write changed the cache");
    // and a cache with a tensor the graph does not have: a warning, not a failure
    let c = d.path().join("c.cache");
    std::fs::write(&c, format!("{text}no_such_tensor: 3c000000\n")).unwrap();
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--passes", "fold-bn,cleanup,calibrate,insert-qdq", "--calib-cache", path_str(&c)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning") && stderr(&o).contains("1 tensor(s) unknown"), "{}", stderr(&o));
    // JSON form: write then read gives the same TensorRT cache
    let j = d.path().join("t.json");
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&npy), &["--write-calib-cache", path_str(&j)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sparseqc(&[
        path_str(&m), "-o", path_str(&out), "--passes", "fold-bn,cleanup,calibrate", "--calib-cache", path_str(&j), "--write-calib-cache", path_str(&b), "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json_text = std::fs::read_to_string(&j).unwrap();
    let back = std::fs::read_to_string(&b).unwrap();
    assert!(back.starts_with("TRT-") && back.lines().count() > 10, "{back}");
    assert!(json_text.contains("\"amax\""));
}

/// The TensorRT cache header a method's scales are written under.
fn header_for(method: &str) -> &'static str {
    match method.split([':', '=']).next().unwrap() {
        "entropy" => "TRT-8601-EntropyCalibration2",
        "max" => "TRT-8601-MinMaxCalibration",
        "percentile" => "TRT-8601-PercentileCalibration",
        "mse" => "TRT-8601-MseCalibration",
        m => panic!("unknown method {m}"),
    }
}

/// The cache header matches the calibration method (issue 21: it said MinMaxCalibration
/// whatever the method).
#[test]
fn cache_header_names_the_method() {
    let npy = testdata("cifar10-mini.input.npy");
    let m = testdata("models/resnet20_bn.onnx");
    for method in ["max", "entropy", "percentile", "mse"] {
        let d = tmpdir();
        let (out, cache) = (d.path().join("o.onnx"), d.path().join("c.cache"));
        let passes = format!("fold-bn,cleanup,calibrate{{method={method}}}");
        let o = sparseqc(&[
            path_str(&m), "-o", path_str(&out), "--passes", &passes, "--calib", path_str(&npy), "--calib-limit", "4",
            "--write-calib-cache", path_str(&cache), "-q",
        ]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let text = std::fs::read_to_string(&cache).unwrap();
        assert_eq!(text.lines().next().unwrap(), header_for(method), "{method}");
    }
}

#[test]
fn refine_scales_flag() {
    let d = tmpdir();
    let rep = d.path().join("r.json");
    let npy = testdata("cifar10-mini.input.npy");
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&npy), &["--refine-scales", "--report", path_str(&rep)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let cal = r["passes"].as_array().unwrap().iter().find(|p| p["summary"].as_str().unwrap_or("").contains("calibrated")).unwrap();
    let (b, a) = (cal["stats"]["refine_sqnr_db_before"].as_f64().unwrap(), cal["stats"]["refine_sqnr_db_after"].as_f64().unwrap());
    assert!(a >= b);
    // the final fidelity check: the compiled model against the input model, on the 16 of
    // the 32 samples held out from every pass
    let f = &r["fidelity"];
    assert_eq!(f["samples"].as_u64(), Some(16));
    assert_eq!(f["held_out"].as_bool(), Some(true));
    let (lo, hi) = (f["top1_agreement_95"][0].as_f64().unwrap(), f["top1_agreement_95"][1].as_f64().unwrap());
    let ag = f["top1_agreement"].as_f64().unwrap();
    assert!(lo <= ag && ag <= hi && f["top1_agreement_lower_bound_95"].as_f64().unwrap() >= lo, "{f}");
    assert!(f["output_sqnr_db"].as_f64().unwrap() > 10.0, "{f}");
    assert!(f["top1_agreement"].as_f64().unwrap() >= 0.75, "{f}");
    // without calibration data: a usage error, nothing written
    let m = testdata("models/resnet20_bn.onnx");
    let out = d.path().join("x.onnx");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--dense", "--refine-scales", "--calib-cache", path_str(&npy)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--refine-scales needs calibration data"));
    assert!(!out.exists());
}

#[test]
fn accuracy_budget_flag() {
    let d = tmpdir();
    let m = testdata("models/resnet20_bn.onnx");
    let npy = testdata("cifar10-mini.input.npy");
    let out = d.path().join("b.onnx");
    // usage errors before any work: a value that is neither an agreement nor dB, a pipeline
    // without prune-2of4
    for (extra, msg) in [
        (vec!["--accuracy-budget", "1.5"], "give a top-1 agreement between 0 and 1"),
        (vec!["--accuracy-budget", "lots"], "or an output SQNR in dB"),
        (vec!["--dense", "--accuracy-budget", "0.9"], "--accuracy-budget applies to prune-2of4"),
    ] {
        let mut args = vec![path_str(&m), "-o", path_str(&out), "--calib", path_str(&npy), "-q"];
        args.extend(extra);
        let o = sparseqc(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{}", stderr(&o));
        assert!(!out.exists());
    }
    // an SQNR budget over every eligible layer: the report says what was chosen and why, and
    // what the held-out samples showed for the final model
    let rep = d.path().join("r.json");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib", path_str(&npy), "-q", "--sparsity", "all", "--accuracy-budget", "18dB", "--report", path_str(&rep)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let p = r["passes"].as_array().unwrap().iter().find(|p| p["pass"] == "prune-2of4").unwrap();
    assert!(p["summary"].as_str().unwrap().starts_with("budget output SQNR >= 18.0 dB"), "{}", p["summary"]);
    assert!(p["stats"]["sqnr_db"].as_f64().unwrap() >= 18.0);
    for it in p["items"].as_array().unwrap().iter().filter(|i| i["action"] == "pruned" || i["action"] == "kept-dense") {
        assert!(it["details"]["rank"].as_u64().is_some() && !it["reason"].as_str().unwrap().is_empty(), "{it}");
    }
    let steps = r["budget"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.last().unwrap()["verdict"].as_str().unwrap().contains("held-out samples"), "{steps:?}");
}

#[test]
fn a_missed_budget_backs_off_through_mixed_precision() {
    // 60 dB cannot be met in INT8 (about 26 dB): dense INT8, then the most sensitive 2, 4 and 5
    // of the 20 quantized layers kept float (1/16, twice as many, a quarter), then no INT8
    let d = tmpdir();
    let m = testdata("models/resnet20_bn.onnx");
    let npy = testdata("cifar10-mini.input.npy");
    let out = d.path().join("b.onnx");
    let rep = d.path().join("r.json");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib", path_str(&npy), "--accuracy-budget", "60dB", "--report", path_str(&rep)]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("backing off to mixed precision: the 2 of 20 quantized layers whose INT8 input costs the output most kept float"), "{e}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let steps = r["budget"].as_array().unwrap();
    let floats: Vec<Vec<String>> = steps
        .iter()
        .map(|s| s["float_layers"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect())
        .collect();
    let models: Vec<&str> = steps.iter().map(|s| s["model"].as_str().unwrap()).collect();
    assert_eq!(
        models,
        ["dense INT8", "dense INT8 with 2 layers float", "dense INT8 with 4 layers float", "dense INT8 with 5 layers float", "float (no INT8)"],
        "{steps:?}"
    );
    assert_eq!(floats.iter().map(Vec::len).collect::<Vec<_>>(), [0, 2, 4, 5, 0]);
    // one ranking: each step keeps the previous step's layers float and adds the next ones
    assert!(floats[2].starts_with(&floats[1]) && floats[3].starts_with(&floats[2]), "{floats:?}");
    // only the float model (exact to about 120 dB) meets 60 dB
    let proved: Vec<bool> = steps.iter().map(|s| s["proved"].as_bool().unwrap()).collect();
    assert_eq!(proved, [false, false, false, false, true], "{steps:?}");
    let text = String::from_utf8_lossy(&sparseqc(&["print", path_str(&out)]).stdout).to_string();
    assert!(!text.contains("QuantizeLinear"), "the last resort is the float model");
}

#[test]
fn preprocess_typos_fail_before_any_work_and_presets_name_the_same_spec() {
    let img = testdata("cifar10-mini");
    // a typo: usage error (exit 2) naming the item, before pruning, and no output written
    let d = tmpdir();
    let out = d.path().join("o.onnx");
    let m = testdata("models/resnet20_bn.onnx");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib", path_str(&img), "--preprocess", "imagenet-nrom", "-q"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("'imagenet-nrom'") && e.contains("imagenet-norm") && !e.contains("panicked"), "{e}");
    assert!(!out.exists());
    // the preset gives the same model as the spec it stands for
    let (a, da) = calibrate("models/resnet20_bn.onnx", path_str(&img), &[]);
    assert!(a.status.success(), "{}", stderr(&a));
    let b_out = d.path().join("b.onnx");
    let o = sparseqc(&[
        path_str(&m), "-o", path_str(&b_out), "--passes", "fold-bn,cleanup,calibrate", "-q",
        "--calib", path_str(&img), "--preprocess", "imagenet-norm",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // the same model; only the command line stored in the metadata differs
    let without_command = |p: &std::path::Path| {
        use prost::Message;
        let mut m = sparseqc::proto::ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap();
        m.metadata_props.retain(|e| e.key.as_deref() != Some(sparseqc::vocab::COMMAND_KEY));
        m.encode_to_vec()
    };
    assert_eq!(without_command(&da.path().join("o.onnx")), without_command(&b_out));
}

#[test]
fn an_image_folder_needs_preprocess_and_a_cache_alone_prunes_nothing() {
    let d = tmpdir();
    let m = testdata("models/resnet20_bn.onnx");
    let out = d.path().join("o.onnx");
    // images without --preprocess: a usage error listing the presets, before any work
    let img = testdata("cifar10-mini");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib", path_str(&img), "-q"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("--preprocess") && e.contains("imagenet-norm") && e.contains("--preprocess none"), "{e}");
    assert!(!out.exists());
    // --preprocess none reads them as x/255
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--passes", "fold-bn,cleanup,calibrate", "--calib", path_str(&img), "--preprocess", "none", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a calibration cache alone: the default pipeline prunes nothing and says so
    let cache = d.path().join("c.json");
    let npy = testdata("cifar10-mini.input.npy");
    let (o, _) = calibrate("models/resnet20_bn.onnx", path_str(&npy), &["--write-calib-cache", path_str(&cache)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rep = d.path().join("r.json");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib-cache", path_str(&cache), "--report", path_str(&rep)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--calib-cache without --calib: no pruning") && stderr(&o).contains("--sparsity magnitude"), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    assert!(r["passes"].as_array().unwrap().iter().all(|p| p["pass"] != "prune-2of4"), "{r}");
    // asked for explicitly, it prunes by magnitude
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib-cache", path_str(&cache), "--sparsity", "magnitude", "--report", path_str(&rep), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let p = r["passes"].as_array().unwrap().iter().find(|p| p["pass"] == "prune-2of4").unwrap();
    assert!(p["stats"]["pruned_layers"].as_u64().unwrap() > 0, "{p}");
}

#[test]
fn the_default_prunes_only_layers_expected_to_gain_and_judges_on_held_out_samples() {
    let d = tmpdir();
    let m = testdata("models/resnet20_bn.onnx");
    let npy = testdata("cifar10-mini.input.npy");
    let out = d.path().join("o.onnx");
    let rep = d.path().join("r.json");
    // Hopper (default): the H200 table expects no gain for ResNet-20's layers: dense INT8,
    // said in one line naming --sparsity all
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib", path_str(&npy), "--report", path_str(&rep)]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("no layer is expected to run faster on hopper") && e.contains("--sparsity all"), "{e}");
    assert!(e.contains("held-out") && e.contains("95 % interval"), "{e}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let p = r["passes"].as_array().unwrap().iter().find(|p| p["pass"] == "prune-2of4").unwrap();
    let skipped: Vec<&serde_json::Value> = p["items"].as_array().unwrap().iter().filter(|i| i["reason"].as_str().unwrap_or("").starts_with("no expected gain")).collect();
    assert_eq!(skipped.len(), 18, "{p}");
    assert!(skipped.iter().all(|i| i["reason"].as_str().unwrap().contains("H200 table")));
    assert_eq!(r["sparsity"]["sparse_layers"].as_u64(), Some(0));
    // the 32 samples split: 16 held out, judged on the final model only
    assert_eq!(r["fidelity"]["samples"].as_u64(), Some(16));
    assert_eq!(r["fidelity"]["held_out"].as_bool(), Some(true));
    // --sparsity all prunes every eligible layer as before
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--calib", path_str(&npy), "--sparsity", "all", "--report", path_str(&rep), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    assert_eq!(r["sparsity"]["sparse_layers"].as_u64(), Some(18), "{}", r["sparsity"]);
}
