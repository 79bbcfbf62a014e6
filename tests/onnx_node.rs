//! A committed slice of the ONNX backend node tests (testdata/onnx-node, copied from the
//! onnx 1.22.0 wheel): each model goes through the importer and the interpreter and must
//! reproduce the expected outputs (`sparseqc::conformance::run_case`: rtol 1e-3 / atol 1e-7
//! for floats, exact otherwise). The whole suite runs with scripts/node-tests.sh.

use std::path::Path;

#[test]
fn committed_node_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/onnx-node");
    let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 20, "expected the node test slice in {root:?}");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| sparseqc::conformance::run_case(c).err().map(|e| format!("{}: {e}", c.display())))
        .collect();
    assert!(failures.is_empty(), "{} of {} node tests failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn a_wrong_expected_output_fails() {
    // the comparison can fail: a changed expected value is reported with its position
    let t = |v: Vec<f32>| sparseqc::exec::Tensor::new(vec![v.len()], v).unwrap();
    assert!(sparseqc::conformance::compare("y", &t(vec![1.0, 2.0]), &t(vec![1.0, 2.0005])).is_ok());
    let e = sparseqc::conformance::compare("y", &t(vec![1.0, 2.0]), &t(vec![1.0, 2.01])).unwrap_err();
    assert!(e.contains("[1]"), "{e}");
    let i = sparseqc::exec::Tensor::new(vec![1], vec![3i64]).unwrap();
    assert!(sparseqc::conformance::compare("y", &i, &t(vec![3.0])).is_err());
}
