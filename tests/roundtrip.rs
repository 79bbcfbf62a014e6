//! `--passes none` gives back the model: byte-identical, or proto-equal where the input
//! was not canonically serialised. Covers every model in testdata/ and every model of
//! the ONNX backend node tests shipped in the `onnx` wheel of the repo's venv.

mod common;
use common::*;
use prost::Message;
use sparseqc::onnx::{load, LoadOptions};
use std::path::{Path, PathBuf};

#[derive(Default, Debug)]
struct Tally {
    identical: usize,
    proto_equal: usize,
    failed: Vec<String>,
}

/// load → IR → export → encode, compared with the file.
fn roundtrip(path: &Path, t: &mut Tally) {
    let bytes = std::fs::read(path).unwrap();
    let res = (|| -> sparseqc::Result<Vec<u8>> {
        let mut l = load(path, &LoadOptions::default())?;
        let proto = std::mem::take(&mut l.proto);
        let model = sparseqc::ir::import::import(proto)?;
        sparseqc::ir::verify::verify(&model.graph)?;
        Ok(sparseqc::ir::export::export(&model)?.encode_to_vec())
    })();
    match res {
        Ok(out) if out == bytes => t.identical += 1,
        Ok(out) => {
            let a = sparseqc::proto::ModelProto::decode(bytes.as_slice()).unwrap();
            let b = sparseqc::proto::ModelProto::decode(out.as_slice()).unwrap();
            if a == b {
                t.proto_equal += 1
            } else {
                t.failed.push(format!("{}: differs after round trip", path.display()))
            }
        }
        Err(e) => t.failed.push(format!("{}: {e}", path.display())),
    }
}

fn onnx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            // hostile inputs the fuzzer found: replayed by fuzz_regressions.rs, not models
            if p.file_name().is_some_and(|n| n == "fuzz-regressions") {
                continue;
            }
            onnx_files(&p, out);
        } else if p.extension().map(|e| e == "onnx").unwrap_or(false) {
            out.push(p);
        }
    }
}

#[test]
fn testdata_models_roundtrip_byte_identical() {
    let mut files = Vec::new();
    onnx_files(&root().join("testdata"), &mut files);
    assert!(!files.is_empty(), "testdata has models");
    let mut t = Tally::default();
    for f in &files {
        roundtrip(f, &mut t);
    }
    assert!(t.failed.is_empty(), "{:#?}", t.failed);
    eprintln!("testdata: {} identical, {} proto-equal", t.identical, t.proto_equal);
    // the CLI path too, on the real ResNet-20
    let d = tmpdir();
    let out = d.path().join("r.onnx");
    let model = testdata("models/resnet20_bn.onnx");
    let o = sparseqc(&[path_str(&model), "-o", path_str(&out), "--passes", "none", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&model).unwrap());
}

#[test]
fn onnx_backend_node_tests_roundtrip() {
    // onnx >= 1.22 stopped shipping them; the script unpacks them from the 1.21.0 wheel
    let out = std::process::Command::new(root().join("scripts/onnx-node-tests.sh")).output().expect("script runs");
    assert!(out.status.success(), "scripts/onnx-node-tests.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut files = Vec::new();
    onnx_files(&dir, &mut files);
    files.retain(|f| f.file_name().map(|n| n == "model.onnx").unwrap_or(false));
    assert!(files.len() > 1000, "expected the ~1,500 node test models under {}, found {}", dir.display(), files.len());
    let mut t = Tally::default();
    for f in &files {
        roundtrip(f, &mut t);
    }
    eprintln!("onnx node tests: {} models, {} byte-identical, {} proto-equal", files.len(), t.identical, t.proto_equal);
    assert!(t.failed.is_empty(), "{} failed: {:#?}", t.failed.len(), &t.failed[..t.failed.len().min(20)]);
}

#[test]
fn external_data_roundtrip() {
    let d = tmpdir();
    let text = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,64] x) => (float[1,32] y)
<
  float[32,64] w = {random: 3},
  float[32] b = {random: 4}
>
{
  [fc] y = Gemm <transB = 1> (x, w, b)
}
"#;
    let model = sparseqc::text::parse(text).unwrap();
    let proto = sparseqc::ir::export::export(&model).unwrap();
    let src = d.path().join("ext.onnx");
    let opts = sparseqc::onnx::SaveOptions { external: sparseqc::onnx::ExternalPolicy::Always, threshold: 100, ..Default::default() };
    let s = sparseqc::onnx::save(proto.clone(), &src, &opts).unwrap();
    assert_eq!(s.external_tensors, 2);
    assert!(d.path().join("ext.onnx.data").exists());
    // through the CLI: external stays external, in the output's own data file
    let out_dir = tmpdir();
    let out = out_dir.path().join("copy.onnx");
    let o = sparseqc(&[path_str(&src), "-o", path_str(&out), "--passes", "none", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out_dir.path().join("copy.onnx.data").exists());
    let back = load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(back.external.len(), 2);
    // proto-equal to the original once data is inlined
    let mut a = proto;
    let mut b = back.proto;
    for m in [&mut a, &mut b] {
        sparseqc::onnx::for_each_tensor_mut(m, &mut |t| {
            t.raw_data = Some(bytes::Bytes::copy_from_slice(t.raw_data.as_deref().unwrap_or(&[])));
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(a, b);
}
