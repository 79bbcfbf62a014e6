//! The example plugin (passes/keep-float) built with cargo and loaded by the sparseqc
//! binary through `--plugin`: its pass runs in the pipeline, reports per node, shows in
//! `--time-passes` and `--report`; a plugin with another ABI stamp is refused; a plugin
//! pass that fails or panics gives an error naming plugin and pass, and nothing is
//! written.
//!
//! The pipelines here use only the plugin's pass. Once the built-in passes are merged,
//! `fold-bn,keep-float{...},insert-qdq` belongs here too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sparseqc")
}

fn small_model() -> PathBuf {
    root().join("passes/keep-float/tests/small.sqc")
}

static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// Builds passes/keep-float with `features` (once per test process) and returns a copy of
/// the library private to that feature set. Builds are serialised: they share one
/// target folder, and the cdylib's file name does not depend on the features.
fn plugin(features: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(features) {
        return p.clone();
    }
    let target = root().join("target/plugin-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(root().join("passes/keep-float/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    let out = cmd.output().expect("cannot run cargo");
    assert!(
        out.status.success(),
        "building the example plugin (features '{features}') failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = format!("{}keep_float{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let dir = root().join("target/plugin-test").join(if features.is_empty() { "default" } else { features });
    std::fs::create_dir_all(&dir).unwrap();
    let dest = dir.join(&name);
    // replace, never overwrite in place: a loaded copy may still be mapped by a process
    let _ = std::fs::remove_file(&dest);
    std::fs::copy(target.join("debug").join(&name), &dest).unwrap();
    map.insert(features.to_string(), dest.clone());
    dest
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("cannot run sparseqc")
}

/// The printed model with the value of its `sparseqc.command` stamp (the command line,
/// with this run's temporary paths) replaced by `<command>`, for stable snapshots.
fn without_command(t: &str) -> String {
    let key = "\"sparseqc.command\" : \"";
    let Some(at) = t.find(key) else { return t.to_string() };
    let start = at + key.len();
    let mut end = start;
    let b = t.as_bytes();
    while end < b.len() && b[end] != b'"' {
        end += if b[end] == b'\\' { 2 } else { 1 };
    }
    format!("{}<command>{}", &t[..start], &t[end.min(b.len())..])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn plugin_pass_runs_in_the_cli_pipeline() {
    let lib = plugin("");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let report = dir.path().join("report.json");
    let o = run(&[
        s(&small_model()),
        "-o",
        s(&out),
        "--plugin",
        s(&lib),
        "--passes",
        "keep-float{layers=conv2,last=true}",
        "--time-passes",
        "--report",
        s(&report),
    ]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // --time-passes lists the plugin's pass
    assert!(stderr.contains("pass timing"), "{stderr}");
    assert!(stderr.lines().any(|l| l.contains('%') && l.trim_end().ends_with("keep-float")), "{stderr}");
    // --report has its per-node items
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let p = &doc["passes"][0];
    assert_eq!(p["pass"], "keep-float");
    assert_eq!(p["changed"], true);
    let items: Vec<(String, String, String)> = p["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["node"].as_str().unwrap().into(), i["action"].as_str().unwrap().into(), i["reason"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        items,
        vec![
            ("conv2".into(), "kept-float".into(), "matches 'conv2'".into()),
            ("fc".into(), "kept-float".into(), "last quantizable layer".into()),
        ]
    );
    // the effect, as `sparseqc print` shows it
    let printed = run(&["print", s(&out)]);
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    insta::assert_snapshot!(without_command(&text(&printed.stdout)));

    // marking layers changes no number the model computes
    let before = sparseqc::testing::parse_model(&std::fs::read_to_string(small_model()).unwrap());
    let loaded = sparseqc::onnx::load(&out, &Default::default()).unwrap();
    let after = sparseqc::ir::import::import(loaded.proto.clone()).unwrap();
    sparseqc::testing::assert_same_function(&before, &after, 1e-6);
}

#[test]
fn passes_lists_plugin_passes_with_their_origin() {
    let lib = plugin("");
    let o = run(&["passes", "--plugin", s(&lib)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("keep-float")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.ends_with(&format!("[{}]", lib.display())), "{line}");
    assert!(out.contains("min-channels"), "{out}");
}

#[test]
fn plugin_options_are_checked() {
    let lib = plugin("");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let o = run(&[s(&small_model()), "-o", s(&out), "--plugin", s(&lib), "--passes", "keep-float{treshold=1}"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("pass 'keep-float' has no option 'treshold'; its options are: layers, first, last, min-channels"), "{e}");
    // the plugin's own validation, reported as coming from the plugin
    let o = run(&[s(&small_model()), "-o", s(&out), "--plugin", s(&lib), "--passes", "keep-float"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains(&format!("plugin 'keep-float' ({}): creating the pass: pass 'keep-float' has nothing to do", lib.display())), "{e}");
    assert!(!out.exists());
}

#[test]
fn plugin_with_another_abi_version_is_refused() {
    let lib = plugin("wrong-abi");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let o = run(&[s(&small_model()), "-o", s(&out), "--plugin", s(&lib), "--passes", "keep-float{first=true}"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    let abi = sparseqc::plugin::ABI_VERSION;
    assert!(e.starts_with(&format!("error: refusing to load plugin {}: it was not built against this sparseqc", lib.display())), "{e}");
    assert!(e.contains(&format!("plugin ABI version {}, this sparseqc's is {abi}", abi + 1)), "{e}");
    assert!(e.contains("Rebuild the plugin against this sparseqc"), "{e}");
    assert!(!out.exists());
    // `sparseqc passes` refuses it the same way
    let o = run(&["passes", "--plugin", s(&lib)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("refusing to load plugin"));
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    // a file that is not a library at all, and a missing path
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"\x7fELF but not really").unwrap();
    let out = dir.path().join("out.onnx");
    let o = run(&[s(&small_model()), "-o", s(&out), "--plugin", s(&fake), "--passes", "none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).starts_with(&format!("error: cannot load plugin {}", fake.display())), "{}", text(&o.stderr));
    let o = run(&[s(&small_model()), "-o", s(&out), "--plugin", "/nonexistent/libx.so", "--passes", "none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("plugin /nonexistent/libx.so does not exist"));
    assert!(!out.exists());
    // a real shared library without the entry point (the C math library, where it is)
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(libm) = libm {
        let o = run(&["passes", "--plugin", libm]);
        assert_eq!(o.status.code(), Some(1));
        let e = text(&o.stderr);
        assert!(e.contains(&format!("cannot load plugin {libm}: it is not a sparseqc plugin (no 'sparseqc_plugin_v1' symbol")), "{e}");
    }
}

/// Runs a pipeline whose last pass fails; returns stderr after checking that the
/// existing output file was left alone and no new one appeared.
fn failing_run(pipeline: &str) -> String {
    let lib = plugin("test-passes");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let fresh = dir.path().join("fresh.onnx");
    std::fs::write(&out, b"the previous output").unwrap();
    let o = run(&[s(&small_model()), "-o", s(&out), "--plugin", s(&lib), "--passes", pipeline]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous output", "a half-transformed model was written");
    let o2 = run(&[s(&small_model()), "-o", s(&fresh), "--plugin", s(&lib), "--passes", pipeline]);
    assert_eq!(o2.status.code(), Some(1));
    assert!(!fresh.exists(), "a half-transformed model was written");
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["out.onnx".to_string()], "stray files: {names:?}");
    text(&o.stderr)
}

#[test]
fn plugin_pass_error_names_plugin_and_pass_and_writes_nothing() {
    let lib = plugin("test-passes");
    let e = failing_run("keep-float{first=true},test-fail");
    let want = format!(
        "error: pass 'test-fail': plugin 'keep-float' ({}): deliberate failure in the middle of the rewrite",
        lib.display()
    );
    assert!(e.lines().any(|l| l == want), "{e}");
}

#[test]
fn plugin_pass_panic_names_plugin_and_pass_and_writes_nothing() {
    let lib = plugin("test-passes");
    let e = failing_run("keep-float{first=true},test-panic");
    let want = format!(
        "error: internal error: pass 'test-panic': plugin 'keep-float' ({}) panicked: \
         deliberate panic in the middle of the rewrite (a bug in the plugin)",
        lib.display()
    );
    assert!(e.lines().any(|l| l == want), "{e}");
}

#[test]
fn loading_the_same_plugin_twice_is_a_clash_not_a_crash() {
    let lib = plugin("");
    let o = run(&["passes", "--plugin", s(&lib), "--plugin", s(&lib)]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("pass 'keep-float' from") && e.contains("clashes with the pass of the same name"), "{e}");
}

#[test]
fn example_plugin_own_tests_pass() {
    // what docs/writing-a-pass.md tells a plugin author to run
    let _ = plugin(""); // serialises with the other builds in this target folder
    let _g = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let o = Command::new(cargo)
        .arg("test")
        .arg("--manifest-path")
        .arg(root().join("passes/keep-float/Cargo.toml"))
        .arg("--target-dir")
        .arg(root().join("target/plugin-build"))
        .env("INSTA_UPDATE", "no")
        .output()
        .expect("cannot run cargo");
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn plugin_pass_runs_between_built_in_passes() {
    let lib = plugin("");
    let dir = tempfile::tempdir().unwrap();
    // calibration data for the small model: 8 seeded random samples as .npy
    let npy = dir.path().join("calib.npy");
    let mut f = std::fs::File::create(&npy).unwrap();
    let data: Vec<f32> = (0..8 * 3 * 8 * 8).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    sparseqc::calib::npy::write_npy_f32(&mut f, &[8, 3, 8, 8], &data).unwrap();
    drop(f);
    let out = dir.path().join("out.onnx");
    let o = run(&[
        s(&small_model()),
        "-o",
        s(&out),
        "--plugin",
        s(&lib),
        "--passes",
        "fold-bn,cleanup,keep-float{layers=conv2},calibrate{method=max},insert-qdq",
        "--calib",
        s(&npy),
        "-q",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let printed = run(&["print", s(&out)]);
    let t = text(&printed.stdout);
    // conv2 stayed float (its weight reaches it directly), the others got Q/DQ
    assert!(t.contains("c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2)"), "{t}");
    assert!(t.contains("w1_dequantized"), "{t}");
    insta::assert_snapshot!("keep_float_between_builtins", without_command(&t));
}
