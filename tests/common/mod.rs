//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn testdata(p: &str) -> PathBuf {
    root().join("testdata").join(p)
}

/// Runs the sparseqc binary.
pub fn sparseqc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseqc")).args(args).output().expect("the sparseqc binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The Python interpreter of the repo's venv (created by scripts/setup-venv.sh).
pub fn python() -> PathBuf {
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs a Python snippet with the venv's interpreter; panics with its output on failure.
pub fn run_python(code: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(code).args(args).output().expect("python runs");
    assert!(
        out.status.success(),
        "python failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A fresh temporary folder named `sparseqc-test-*`: not `.tmp*`, the prefix of the
/// compiler's own temporary files, so tests can check that no message names one of those.
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("sparseqc-test-").tempdir().expect("temp dir")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `before` and `after` in onnxruntime on the same seeded random inputs (dynamic
/// dims set to 1) and returns the worst relative L2 difference over all outputs.
pub fn ort_rel_diff(before: &sparseqc::ir::Model, after: &sparseqc::ir::Model) -> f64 {
    let d = tmpdir();
    let a = d.path().join("a.onnx");
    let b = d.path().join("b.onnx");
    for (m, p) in [(before, &a), (after, &b)] {
        let proto = sparseqc::ir::export::export(m).unwrap();
        sparseqc::onnx::save(proto, p, &Default::default()).unwrap();
    }
    let code = r#"
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
sa = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
sb = ort.InferenceSession(sys.argv[2], so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feeds = {}
for i in sa.get_inputs():
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
worst = 0.0
for x, y in zip(sa.run(None, feeds), sb.run(None, feeds)):
    worst = max(worst, float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)))
print(worst)
"#;
    let out = run_python(code, &[path_str(&a), path_str(&b)]);
    out.trim().parse().expect("a number")
}
