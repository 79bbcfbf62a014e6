//! Every path the CLI writes is checked before any work (src/outputs.rs): an output that is an
//! input (the model, its external data, the calibration data or a file in its folder, the
//! calibration cache) directly, through a symlink or through a hard link is refused in under a
//! second with a message naming the flag, and the inputs survive byte-identical; outputs into
//! a missing folder fail before any pass.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A model with a 4 KiB initializer, written with external data: m.onnx + m.onnx.data.
const MODEL: &str = r#"<
  ir_version: 8,
  opset_import: ["" : 13]
>
g (float[1,1024] x) => (float[1,1024] y)
<
  float[1024] b = {random: 3}
>
{
  [add] y = Add (x, b)
}
"#;

/// A version 1.0 .npy file of little-endian float32 values.
fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    b
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    data: PathBuf,
    calib_file: PathBuf,
    calib_dir: PathBuf,
    cache: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let d = tmpdir();
        let root = d.path().to_path_buf();
        let txt = root.join("m.txt");
        std::fs::write(&txt, MODEL).unwrap();
        let model = root.join("m.onnx");
        let o = sparseqc(&[path_str(&txt), "-o", path_str(&model), "--passes", "none", "--external-data", "always", "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let data = root.join("m.onnx.data");
        assert!(data.exists());
        let calib_file = root.join("calib.npy");
        std::fs::write(&calib_file, npy_f32(&[2, 1024], &vec![0.5; 2048])).unwrap();
        let calib_dir = root.join("images");
        std::fs::create_dir(&calib_dir).unwrap();
        std::fs::write(calib_dir.join("a.png"), b"an image").unwrap();
        let cache = root.join("scales.cache");
        std::fs::write(&cache, "TRT-8601-EntropyCalibration2\ny: 3c000000\n").unwrap();
        Setup { _dir: d, root, model, data, calib_file, calib_dir, cache }
    }

    fn inputs(&self) -> Vec<(PathBuf, Vec<u8>)> {
        [&self.model, &self.data, &self.calib_file, &self.calib_dir.join("a.png"), &self.cache]
            .iter()
            .map(|p| (p.to_path_buf(), std::fs::read(p).unwrap()))
            .collect()
    }

    /// `sparseqc m.onnx -o OUT --passes none --calib CALIB --calib-cache scales.cache EXTRA`.
    fn run(&self, out: &Path, calib: &Path, extra: &[&str]) -> (std::process::Output, Duration) {
        let mut args = vec![path_str(&self.model), "-o", path_str(out), "--passes", "none", "--calib", path_str(calib)];
        args.extend(["--calib-cache", path_str(&self.cache)]);
        args.extend(extra);
        let t0 = Instant::now();
        let o = sparseqc(&args);
        (o, t0.elapsed())
    }
}

/// The ways of naming an existing file: itself, a symlink to it, a hard link to it.
fn aliases(root: &Path, target: &Path, tag: &str) -> Vec<(String, PathBuf)> {
    let mut v = vec![("direct".to_string(), target.to_path_buf())];
    #[cfg(unix)]
    {
        let ext = target.extension().and_then(|e| e.to_str()).unwrap_or("bin");
        let s = root.join(format!("sym-{tag}.{ext}"));
        let _ = std::fs::remove_file(&s);
        std::os::unix::fs::symlink(target, &s).unwrap();
        v.push(("symlink".to_string(), s));
        let h = root.join(format!("hard-{tag}.{ext}"));
        let _ = std::fs::remove_file(&h);
        std::fs::hard_link(target, &h).unwrap();
        v.push(("hard link".to_string(), h));
    }
    v
}

fn refused(s: &Setup, o: &std::process::Output, took: Duration, flag: &str, case: &str, before: &[(PathBuf, Vec<u8>)]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{case}: expected exit 1, got {:?}: {e}", o.status.code());
    assert!(e.contains(flag), "{case}: the message does not name {flag}: {e}");
    assert!(e.contains("refusing to"), "{case}: {e}");
    assert!(!e.contains(".tmp"), "{case}: names a temporary file: {e}");
    assert!(took < Duration::from_secs(1), "{case}: took {took:?}");
    for (p, bytes) in before {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "{case}: {} changed", p.display());
    }
    assert!(!s.root.join("out.onnx").exists(), "{case}: the model was written");
}

#[test]
fn outputs_pointed_at_inputs_are_refused_and_inputs_survive() {
    let s = Setup::new();
    let before = s.inputs();
    let out = s.root.join("out.onnx");
    let targets: Vec<(&str, PathBuf)> = vec![
        ("model", s.model.clone()),
        ("data", s.data.clone()),
        ("calib", s.calib_file.clone()),
        ("calibimg", s.calib_dir.join("a.png")),
        ("cache", s.cache.clone()),
    ];
    let mut cases = 0;
    for flag in ["--report", "--emit", "--write-calib-cache"] {
        for (tag, target) in &targets {
            for (how, alias) in aliases(&s.root, target, tag) {
                // the image lives in the calibration folder: run with --calib on the folder
                let calib = if *tag == "calibimg" { &s.calib_dir } else { &s.calib_file };
                let extra: Vec<&str> = if flag == "--emit" { vec!["--emit", "network", path_str(&alias)] } else { vec![flag, path_str(&alias)] };
                let (o, took) = s.run(&out, calib, &extra);
                refused(&s, &o, took, flag, &format!("{flag} -> {tag} ({how})"), &before);
                cases += 1;
            }
        }
    }
    // -o: the model itself (through each alias), and a name whose .data file is the model's data
    for (how, alias) in aliases(&s.root, &s.model, "o-model") {
        let (o, took) = s.run(&alias, &s.calib_file, &[]);
        refused(&s, &o, took, "-o", &format!("-o -> model ({how})"), &before);
        cases += 1;
    }
    let other = s.root.join("other");
    std::fs::create_dir(&other).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&s.data, other.join("x.onnx.data")).unwrap();
        let (o, took) = s.run(&other.join("x.onnx"), &s.calib_file, &[]);
        refused(&s, &o, took, "-o", "-o whose .data is the model's data (symlink)", &before);
        std::fs::remove_file(other.join("x.onnx.data")).unwrap();
        std::fs::hard_link(&s.data, other.join("x.onnx.data")).unwrap();
        let (o, took) = s.run(&other.join("x.onnx"), &s.calib_file, &[]);
        refused(&s, &o, took, "-o", "-o whose .data is the model's data (hard link)", &before);
        cases += 2;
    }
    // writing a new file inside the calibration folder
    let (o, took) = s.run(&s.calib_dir.join("x.onnx"), &s.calib_dir, &[]);
    refused(&s, &o, took, "-o", "-o inside the calibration folder", &before);
    let (o, took) = s.run(&out, &s.calib_dir, &["--report", path_str(&s.calib_dir.join("r.json"))]);
    refused(&s, &o, took, "--report", "--report inside the calibration folder", &before);
    assert!(cases >= 50, "{cases}");
    // and a run whose outputs are all elsewhere works
    let (o, _) = s.run(&out, &s.calib_file, &["--report", path_str(&s.root.join("r.json"))]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn two_outputs_on_one_file_are_refused() {
    let s = Setup::new();
    let out = s.root.join("same.onnx");
    for extra in [vec!["--report", path_str(&out)], vec!["--write-calib-cache", path_str(&out)], vec!["--emit", "network", path_str(&out)]] {
        let t0 = Instant::now();
        let (o, _) = s.run(&out, &s.calib_file, &extra);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {e}");
        assert!(e.contains("-o") && e.contains(extra[0]) && e.contains("same file"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(!out.exists());
    }
    let r = s.root.join("r.json");
    let (o, _) = s.run(&out, &s.calib_file, &["--report", path_str(&r), "--write-calib-cache", path_str(&r)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--write-calib-cache") && stderr(&o).contains("--report"), "{}", stderr(&o));
}

#[test]
fn missing_output_folders_fail_before_any_pass() {
    let s = Setup::new();
    // the default pipeline with calibration data would run five passes first
    let npy = testdata("cifar10-mini.input.npy");
    let m = testdata("models/resnet20_bn.onnx");
    let out = s.root.join("o.onnx");
    let runs: Vec<(Vec<String>, &str, &str)> = vec![
        (vec!["-o".into(), "/nonexistent/dir/x.onnx".into()], "-o", "/nonexistent/dir"),
        (vec!["-o".into(), path_str(&out).into(), "--report".into(), "/nonexistent/r.json".into()], "--report", "/nonexistent"),
        (vec!["-o".into(), path_str(&out).into(), "--write-calib-cache".into(), "/nonexistent/c.cache".into()], "--write-calib-cache", "/nonexistent"),
        (vec!["-o".into(), path_str(&out).into(), "--emit".into(), "network".into(), "/nonexistent/n.bin".into()], "--emit network", "/nonexistent"),
        // a file where the folder should be
        (vec!["-o".into(), format!("{}/x.onnx", path_str(&s.calib_file))], "-o", "is not a folder"),
    ];
    for (args, flag, what) in runs {
        let mut all = vec![path_str(&m), "--calib", path_str(&npy)];
        all.extend(args.iter().map(|a| a.as_str()));
        let t0 = Instant::now();
        let o = sparseqc(&all);
        let took = t0.elapsed();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains(flag) && e.contains(what), "{args:?}: {e}");
        assert!(!e.contains(".tmp"), "{e}");
        assert!(took < Duration::from_secs(1), "{args:?} took {took:?}");
        assert!(!out.exists(), "{args:?}: the model was written");
    }
    // an output that is a folder
    let o = sparseqc(&[path_str(&m), "--calib", path_str(&npy), "-o", path_str(&s.root), "--report", path_str(&s.root)]);
    assert_ne!(o.status.code(), Some(0));
}

/// The SIGBUS case of issue 21: the calibration cache written over the memory-mapped model.
/// Refused now; and writers are atomic, so even a write to a mapped file's path replaces the
/// directory entry instead of truncating the mapping.
#[test]
fn write_calib_cache_over_the_model_is_refused_not_a_crash() {
    let s = Setup::new();
    let before = std::fs::read(&s.model).unwrap();
    let out = s.root.join("o.onnx");
    let o = sparseqc(&[
        path_str(&s.model), "-o", path_str(&out), "--passes", "calibrate{method=max}", "--calib-cache", path_str(&s.cache),
        "--write-calib-cache", path_str(&s.model),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--write-calib-cache"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&s.model).unwrap(), before);
}
