//! Replays the inputs the fuzzing campaign found crashes with (testdata/fuzz-regressions/
//! <target>/<file>, see docs/reliability.md) through the same entry points as the fuzz targets
//! (`sparseqc::fuzzing`): each must give `Ok` or a user error, never a panic or an internal
//! error. CI does not run the fuzzer; it runs these.

use sparseqc::ErrorKind;

#[test]
fn fuzz_crash_inputs_give_errors_not_panics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz-regressions");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for (target, f) in sparseqc::fuzzing::TARGETS {
        let dir = root.join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for p in files {
            let bytes = std::fs::read(&p).unwrap();
            let res = std::panic::catch_unwind(|| f(&bytes));
            match res {
                Err(_) => failures.push(format!("{target}/{}: panicked", p.display())),
                Ok(Err(e)) if e.kind == ErrorKind::Internal => failures.push(format!("{target}/{}: {e}", p.display())),
                Ok(_) => {}
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{replayed} fuzz regression inputs replayed");
}

/// The targets accept their seed inputs (the test data), so the fuzzer starts from inputs
/// that reach deep into each parser rather than from its first error.
#[test]
fn fuzz_targets_accept_valid_inputs() {
    let td = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let onnx = std::fs::read(td.join("exec/resnet_block/model.onnx")).unwrap();
    sparseqc::fuzzing::onnx_roundtrip(&onnx).unwrap();
    sparseqc::fuzzing::pass_pipeline(&onnx).unwrap();
    let model = sparseqc::onnx::load(&td.join("exec/resnet_block/model.onnx"), &Default::default()).unwrap();
    let m = sparseqc::ir::import::import(model.proto).unwrap();
    let text = sparseqc::text::print(&m, &Default::default()).unwrap();
    sparseqc::fuzzing::text_roundtrip(text.as_bytes()).unwrap();
    sparseqc::fuzzing::npy_read(&std::fs::read(td.join("calib-mini/f64.npy")).unwrap()).unwrap();
    sparseqc::fuzzing::npy_read(&std::fs::read(td.join("calib-mini/arrays_z.npz")).unwrap()).unwrap();
    for img in ["calib-mini/img/a.jpg", "calib-mini/img/d.png", "calib-mini/odd/odd.png"] {
        sparseqc::fuzzing::image_preprocess(&std::fs::read(td.join(img)).unwrap()).unwrap();
    }
}
