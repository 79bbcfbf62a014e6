//! Bad input never panics: each case gives a one-line error naming the problem and a
//! non-zero exit, and no output file.

mod common;
use common::*;
use prost::Message;
use sparseqc::proto::*;
use std::path::Path;

fn tiny_model() -> ModelProto {
    let text = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,4] x) => (float[1,4] y)
<
  float[4] b = [1.0, 2.0, 3.0, 4.0]
>
{
  [add] y = Add (x, b)
}
"#;
    sparseqc::text::parse_model_proto(text).expect("valid text")
}

fn check_fails(dir: &Path, name: &str, bytes: &[u8], expect: &str) {
    let inp = dir.join(format!("{name}.onnx"));
    std::fs::write(&inp, bytes).unwrap();
    let out = dir.join(format!("{name}.out.onnx"));
    let o = sparseqc(&[path_str(&inp), "-o", path_str(&out), "--passes", "none"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{name}: expected exit 1, stderr: {err}");
    assert!(!err.contains("panicked"), "{name}: panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{name}: expected one line, got: {err}");
    assert!(err.contains(expect), "{name}: expected '{expect}' in: {err}");
    assert!(!out.exists(), "{name}: an output was written");
}

#[test]
fn hostile_inputs_get_clear_errors() {
    let d = tmpdir();
    let dir = d.path();
    let good = tiny_model().encode_to_vec();

    check_fails(dir, "empty", b"", "empty file");
    let mut rng = 0x1234_5678u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    check_fails(dir, "random", &random, "not a valid ONNX model");
    check_fails(dir, "truncated", &good[..good.len() - 7], "not a valid ONNX model");
    // field 7 (graph) declared as a varint instead of a length-delimited message
    let mut wrong = vec![(7 << 3) as u8, 0x01];
    wrong.extend_from_slice(&good);
    check_fails(dir, "wire_type", &wrong, "not a valid ONNX model");

    // a cycle: y = Add(x, z), z = Relu(y), output y
    let mut m = tiny_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[1] = "z".into();
    g.node.push(NodeProto { input: vec!["y".into()], output: vec!["z".into()], op_type: Some("Relu".into()), name: Some("relu".into()), ..Default::default() });
    check_fails(dir, "cycle", &m.encode_to_vec(), "cycle");

    // two producers of y
    let mut m = tiny_model();
    let g = m.graph.as_mut().unwrap();
    g.node.push(NodeProto { input: vec!["x".into()], output: vec!["y".into()], op_type: Some("Relu".into()), name: Some("relu".into()), ..Default::default() });
    check_fails(dir, "two_producers", &m.encode_to_vec(), "two producers");

    // a dangling input
    let mut m = tiny_model();
    m.graph.as_mut().unwrap().node[0].input[1] = "nowhere".into();
    check_fails(dir, "dangling", &m.encode_to_vec(), "'nowhere'");

    // absurd dims on an initializer
    let mut m = tiny_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![i64::MAX, 4];
    let o_dir = dir.join("absurd");
    std::fs::create_dir_all(&o_dir).unwrap();
    check_fails(dir, "absurd_dims", &m.encode_to_vec(), "absurd");

    // external data: missing file, and a location escaping the folder
    let mut m = tiny_model();
    {
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.raw_data = None;
        t.float_data.clear();
        t.data_location = Some(1);
        t.external_data = vec![StringStringEntryProto { key: Some("location".into()), value: Some("missing.bin".into()) }];
    }
    check_fails(dir, "missing_external", &m.encode_to_vec(), "missing.bin");
    m.graph.as_mut().unwrap().initializer[0].external_data[0].value = Some("../etc/passwd".into());
    check_fails(dir, "escape_dotdot", &m.encode_to_vec(), "leaves the model's folder");
    m.graph.as_mut().unwrap().initializer[0].external_data[0].value = Some("/etc/passwd".into());
    check_fails(dir, "escape_absolute", &m.encode_to_vec(), "absolute path");
    #[cfg(unix)]
    {
        let outside = tmpdir();
        std::fs::write(outside.path().join("secret.bin"), [0u8; 16]).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.bin"), dir.join("link.bin")).unwrap();
        m.graph.as_mut().unwrap().initializer[0].external_data[0].value = Some("link.bin".into());
        check_fails(dir, "escape_symlink", &m.encode_to_vec(), "outside the model's folder");
    }

    // unknown fields are refused by default
    let mut unknown = good.clone();
    unknown.extend_from_slice(&[(99 << 3) as u8 | 0x80, 0x06, 5]);
    check_fails(dir, "unknown_field", &unknown, "unknown to this ONNX schema");
}

#[test]
fn output_equal_to_input_is_refused() {
    let d = tmpdir();
    let p = d.path().join("m.onnx");
    let bytes = tiny_model().encode_to_vec();
    std::fs::write(&p, &bytes).unwrap();
    let o = sparseqc(&[path_str(&p), "-o", path_str(&p), "--passes", "none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing to overwrite the input"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "input untouched");
    // the same file through another spelling of the path
    let alias = d.path().join(".").join("m.onnx");
    let o = sparseqc(&[path_str(&p), "-o", path_str(&alias), "--passes", "none"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn unknown_fields_can_be_dropped_explicitly() {
    let d = tmpdir();
    let mut bytes = tiny_model().encode_to_vec();
    bytes.extend_from_slice(&[(99 << 3) as u8 | 0x80, 0x06, 5]);
    let p = d.path().join("m.onnx");
    std::fs::write(&p, &bytes).unwrap();
    let out = d.path().join("o.onnx");
    let o = sparseqc(&[path_str(&p), "-o", path_str(&out), "--passes", "none", "--allow-unknown-fields"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), tiny_model().encode_to_vec());
}

#[test]
fn usage_errors_exit_2() {
    let o = sparseqc(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let d = tmpdir();
    let p = d.path().join("m.onnx");
    std::fs::write(&p, tiny_model().encode_to_vec()).unwrap();
    let out = d.path().join("o.onnx");
    let o = sparseqc(&[path_str(&p), "-o", path_str(&out), "--passes", "no-such-pass"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown pass 'no-such-pass'"));
    // the default pipeline without calibration data explains what to give
    let o = sparseqc(&[path_str(&p), "-o", path_str(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("INT8 needs calibration data"), "{}", stderr(&o));
}
