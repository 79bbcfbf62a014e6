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

// ---------------------------------------------------------------------------------------------
// The hostile-input catalogue of docs/reliability.md (issue 21): each case gets its error
// quickly, without allocating what the input declares.

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A valid PNG header declaring `w` x `h` RGB pixels, followed by a tiny IDAT.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut v, b"IHDR", &ihdr);
    png_chunk(&mut v, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    png_chunk(&mut v, b"IEND", &[]);
    v
}

/// A real JPEG of the test data with its frame header patched to declare `w` x `h`.
fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
    let mut j = std::fs::read(testdata("calib-mini/img/a.jpg")).unwrap();
    let sof = (0..j.len() - 1).find(|&i| j[i] == 0xFF && matches!(j[i + 1], 0xC0..=0xC2)).expect("a frame header");
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

#[test]
fn image_decompression_bombs_are_refused_from_the_header() {
    let pre: sparseqc::calib::Preprocess = "resize=32,crop=32".parse().unwrap();
    for (name, bytes) in [("bomb.png", png_header(20000, 20000)), ("bomb.jpg", jpeg_declaring(20000, 20000))] {
        let t0 = std::time::Instant::now();
        let e = sparseqc::calib::data::load_image_bytes(&pre, &bytes, name, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("20000x20000") && e.contains("exceeds the limit"), "{name}: {e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(1), "{name}: {:?}", t0.elapsed());
    }
    // a sane header passes the same check
    let e = sparseqc::calib::data::load_image_bytes(&pre, &png_header(64, 64), "ok.png", |_, _| Ok(())).unwrap_err().to_string();
    assert!(!e.contains("exceeds the limit"), "{e}");
    // and from the command line: the header check before calibration names the file
    let d = tmpdir();
    let imgs = d.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    std::fs::write(imgs.join("bomb.png"), png_header(20000, 20000)).unwrap();
    let m = testdata("models/resnet20_bn.onnx");
    let out = d.path().join("o.onnx");
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--passes", "calibrate", "--calib", path_str(&imgs), "--preprocess", "resize=32,crop=32"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("bomb.png") && e.contains("exceeds the limit"), "{e}");
    assert!(!out.exists());
}

fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(data);
    v
}

fn npy_fails(bytes: &[u8], file: &str, expect: &str) {
    let d = tmpdir();
    let p = d.path().join(file);
    std::fs::write(&p, bytes).unwrap();
    let out = d.path().join("o.onnx");
    let m = testdata("models/resnet20_bn.onnx");
    let t0 = std::time::Instant::now();
    let o = sparseqc(&[path_str(&m), "-o", path_str(&out), "--passes", "calibrate", "--calib", path_str(&p)]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{file}: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.contains(expect), "{file}: expected '{expect}' in: {e}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(2), "{file}: {:?}", t0.elapsed());
    assert!(!out.exists());
}

#[test]
fn npy_headers_declaring_huge_tensors_are_refused() {
    // 2^40 elements and no data
    npy_fails(&npy_bytes("<f4", "(1048576, 1048576)", &[0; 16]), "huge.npy", "truncated");
    // an element count that overflows 64 bits
    npy_fails(&npy_bytes("<f4", "(4294967296, 4294967296, 4294967296)", &[]), "overflow.npy", "declares more data than can exist");
    // 2^40 samples of nothing: no data needed, and no per-sample bookkeeping either
    npy_fails(&npy_bytes("<f4", "(1099511627776, 0)", &[]), "empty_rows.npy", "hold no values");
}

#[test]
fn npz_zip_bomb_is_refused_by_the_inflation_cap() {
    use std::io::Write;
    // a compressed member whose header declares 2^40 f32 (4 TiB) behind 4 KiB of zeros
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("input.npy", opts).unwrap();
        z.write_all(&npy_bytes("<f4", "(1048576, 3, 32, 32)", &[0; 4096])).unwrap();
        z.finish().unwrap();
    }
    npy_fails(buf.get_ref(), "bomb.npz", "over the cap");
    // a member whose stream inflates far past what its header declares: only the declared
    // bytes are inflated (the reader stops there), the rest is never read
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("input.npy", opts).unwrap();
        let mut data = npy_bytes("<f4", "(2, 3, 32, 32)", &[0; 2 * 3 * 32 * 32 * 4]);
        data.resize(data.len() + (64 << 20), 0);
        z.write_all(&data).unwrap();
        z.finish().unwrap();
    }
    assert!(buf.get_ref().len() < 1 << 20, "{}", buf.get_ref().len());
    let d = tmpdir();
    let p = d.path().join("long.npz");
    std::fs::write(&p, buf.get_ref()).unwrap();
    let t0 = std::time::Instant::now();
    let src = sparseqc::calib::NpySource::open_npz(&p).unwrap();
    use sparseqc::calib::CalibSource;
    assert_eq!(src.len(), 2);
    assert_eq!(src.sample(1).unwrap()[0].data.len(), 3 * 32 * 32);
    assert!(t0.elapsed() < std::time::Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[test]
fn onnx_tensors_declaring_2_pow_40_elements_are_refused() {
    let d = tmpdir();
    let dir = d.path();
    // an initializer of 2^40 floats holding 16 bytes
    let mut m = tiny_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 20, 1 << 20];
    check_fails(dir, "init_2p40", &m.encode_to_vec(), "dims [1048576, 1048576]");
    // an initializer of 2^40 floats stored as external data of 16 bytes
    std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
    let mut m = tiny_model();
    {
        let t = &mut m.graph.as_mut().unwrap().initializer[0];
        t.dims = vec![1 << 20, 1 << 20];
        t.raw_data = None;
        t.float_data.clear();
        t.data_location = Some(1);
        t.external_data = vec![StringStringEntryProto { key: Some("location".into()), value: Some("w.bin".into()) }];
    }
    check_fails(dir, "external_2p40", &m.encode_to_vec(), "dims [1048576, 1048576]");
    // a ConstantOfShape of 2^40 elements is not folded by cleanup (it would allocate 4 TiB):
    // the run succeeds quickly and the node stays
    let text = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,4] x) => (float[1,4] y)
<
  int64[2] s = [1048576, 1048576]
>
{
  [big] c = ConstantOfShape (s)
  [r] r = ReduceSum <keepdims = 0> (c)
  [add] y = Add (x, r)
}
"#;
    let p = dir.join("cos.onnx");
    std::fs::write(&p, sparseqc::text::parse_model_proto(text).unwrap().encode_to_vec()).unwrap();
    let out = dir.join("cos.out.onnx");
    let t0 = std::time::Instant::now();
    let o = sparseqc(&[path_str(&p), "-o", path_str(&out), "--passes", "cleanup"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t0.elapsed() < std::time::Duration::from_secs(2), "{:?}", t0.elapsed());
    let o = sparseqc(&["print", path_str(&out)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("ConstantOfShape"));
    // the text form's generators refuse to make 2^40 values
    let e = sparseqc::text::parse(&text.replace("int64[2] s = [1048576, 1048576]", "float[1048576,1048576] s = {random: 1}")).unwrap_err().to_string();
    assert!(e.contains("over the limit"), "{e}");
}

#[test]
fn cyclic_graphs_and_external_data_past_the_end_are_refused() {
    let d = tmpdir();
    let dir = d.path();
    // a three-node cycle through a residual Add
    let text = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,4] x) => (float[1,4] y)
{
  [a] a = Add (x, c)
  [b] b = Relu (a)
  [c] c = Neg (b)
  [y] y = Identity (b)
}
"#;
    check_fails(dir, "cycle3", &sparseqc::text::parse_model_proto(text).map(|m| m.encode_to_vec()).unwrap_or_default(), "cycle");
    // external data: offset past the end, length past the end, offset + length overflowing
    std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
    for (case, offset, length) in [("offset_past_end", "1000", "16"), ("length_past_end", "8", "16"), ("offset_overflow", "18446744073709551610", "16")] {
        let mut m = tiny_model();
        {
            let t = &mut m.graph.as_mut().unwrap().initializer[0];
            t.raw_data = None;
            t.float_data.clear();
            t.data_location = Some(1);
            t.external_data = vec![
                StringStringEntryProto { key: Some("location".into()), value: Some("w.bin".into()) },
                StringStringEntryProto { key: Some("offset".into()), value: Some(offset.into()) },
                StringStringEntryProto { key: Some("length".into()), value: Some(length.into()) },
            ];
        }
        check_fails(dir, case, &m.encode_to_vec(), "is outside 'w.bin' (16 bytes)");
    }
}
