//! Checks every path the compiler will write before any work is done.
//!
//! `sparseqc` writes several files (`-o`, the `.data` file next to an ONNX output, `--report`,
//! `--emit network FILE`, `--write-calib-cache`). [`OutputPlan::check`] runs before the model
//! is loaded and refuses, naming the flag and the path as the user wrote it:
//! - an output that is one of the inputs (the model, the calibration file, any file under the
//!   calibration folder, the calibration cache, a plugin), compared by canonical path (so
//!   through symlinks and `./` spellings) and, when both exist, by device and inode (so
//!   through hard links);
//! - two outputs that are the same file;
//! - an output whose folder does not exist or is not writable (probed by creating and
//!   removing a file there), or that is a folder itself.
//!
//! The model's external-data files are only known once the model is decoded;
//! [`OutputPlan::check_inputs`] runs right after loading, before any pass.
//!
//! Every writer goes through a temporary file in the output's folder and a rename
//! ([`crate::util::write_atomic`], [`crate::onnx::save`]), so an output never writes into a
//! file that is memory-mapped as an input.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// One path the run will write.
#[derive(Debug, Clone)]
pub struct Output {
    /// The flag that names it, as the user typed it (`-o`, `--report`, ...).
    pub flag: String,
    pub path: PathBuf,
}

/// One path the run reads.
#[derive(Debug, Clone)]
pub struct Input {
    /// What it is, for messages ("the model", "the calibration data", ...).
    pub what: String,
    pub path: PathBuf,
}

/// The outputs and inputs of one compile run.
#[derive(Debug, Clone, Default)]
pub struct OutputPlan {
    pub outputs: Vec<Output>,
    pub inputs: Vec<Input>,
}

/// The identity of a path: its canonical form (the folder canonicalised when the file does
/// not exist yet) and, when it exists, `(device, inode)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ident {
    canonical: PathBuf,
    inode: Option<(u64, u64)>,
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn ident(p: &Path) -> Ident {
    let canonical = match p.canonicalize() {
        Ok(c) => c,
        Err(_) => {
            let parent = parent_of(p);
            let parent = parent.canonicalize().unwrap_or(parent);
            match p.file_name() {
                Some(n) => parent.join(n),
                None => parent,
            }
        }
    };
    let inode = std::fs::metadata(p).ok().and_then(|m| inode(&m));
    Ident { canonical, inode }
}

impl Ident {
    fn same(&self, other: &Ident) -> bool {
        self.canonical == other.canonical || (self.inode.is_some() && self.inode == other.inode)
    }
}

/// Every regular file under `dir` (recursively, not following symlinked folders) with its
/// inode, for the hard-link check against a calibration folder.
fn inodes_under(dir: &Path, out: &mut Vec<(u64, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            inodes_under(&e.path(), out);
        } else if let Some(i) = std::fs::metadata(e.path()).ok().and_then(|m| inode(&m)) {
            out.push(i);
        }
    }
}

/// Tells whether `dir` accepts new files, by creating and removing one.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let f = tempfile::Builder::new().prefix(".sparseqc-probe").tempfile_in(dir)?;
    f.close()
}

impl OutputPlan {
    /// The outputs and inputs of `sparseqc MODEL -o OUT ...`. `plan` is true for a TensorRT
    /// engine output (no `.data` file).
    pub fn of_compile(a: &crate::cli::CompileArgs, model: &Path, out: &Path, plan: bool) -> OutputPlan {
        let mut p = OutputPlan::default();
        p.output("-o", out);
        if !plan {
            if let Some(name) = out.file_name() {
                let mut data = name.to_os_string();
                data.push(".data");
                p.output("-o (its external data file)", &parent_of(out).join(data));
            }
        }
        if let Some(r) = &a.report {
            p.output("--report", r);
        }
        if a.emit.len() == 2 {
            p.output("--emit network", Path::new(&a.emit[1]));
        }
        if let Some(w) = &a.write_calib_cache {
            p.output("--write-calib-cache", w);
        }
        if let Some(l) = &a.log_file {
            p.output("--log-file", l);
        }
        p.input("the model", model);
        if let Some(c) = &a.calib {
            p.input("the calibration data (--calib)", c);
        }
        if let Some(c) = &a.calib_cache {
            p.input("the calibration cache (--calib-cache)", c);
        }
        for l in &a.plugins {
            p.input("a plugin (--plugin)", l);
        }
        p
    }

    /// [`OutputPlan::of_compile`] for the flags as given, checked: run before `--log-file`
    /// starts writing, which happens before the compile command.
    pub fn check_compile_args(a: &crate::cli::CompileArgs) -> Result<()> {
        let (Some(model), Some(out)) = (&a.model, &a.output) else { return Ok(()) };
        let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let plan = matches!(ext.as_str(), "plan" | "engine" | "trt");
        OutputPlan::of_compile(a, model, out, plan).check()
    }

    pub fn output(&mut self, flag: &str, path: &Path) {
        self.outputs.push(Output { flag: flag.to_string(), path: path.to_path_buf() });
    }

    pub fn input(&mut self, what: &str, path: &Path) {
        self.inputs.push(Input { what: what.to_string(), path: path.to_path_buf() });
    }

    /// Checks every output against the inputs, the other outputs and its folder.
    pub fn check(&self) -> Result<()> {
        let outs: Vec<Ident> = self.outputs.iter().map(|o| ident(&o.path)).collect();
        for (i, o) in self.outputs.iter().enumerate() {
            let shown = format!("{} '{}'", o.flag, o.path.display());
            for (j, p) in self.outputs.iter().enumerate().take(i) {
                if outs[i].same(&outs[j]) {
                    return Err(Error::usage(format!(
                        "{shown} is the same file as {} '{}'; give each output its own path",
                        p.flag,
                        p.path.display()
                    )));
                }
            }
            self.check_against_inputs(o, &outs[i], &self.inputs)?;
            check_folder(o, &shown)?;
        }
        Ok(())
    }

    /// Checks every output against `inputs` only (the model's external-data files, known once
    /// the model is decoded).
    pub fn check_inputs(&self, what: &str, paths: &[PathBuf]) -> Result<()> {
        let inputs: Vec<Input> = paths.iter().map(|p| Input { what: what.to_string(), path: p.clone() }).collect();
        for o in &self.outputs {
            self.check_against_inputs(o, &ident(&o.path), &inputs)?;
        }
        Ok(())
    }

    fn check_against_inputs(&self, o: &Output, id: &Ident, inputs: &[Input]) -> Result<()> {
        let refuse = |inp: &Input, detail: &str| {
            Error::user(format!(
                "{} '{}': refusing to overwrite the input file {} ({}{detail}); choose another output path",
                o.flag,
                o.path.display(),
                inp.path.display(),
                inp.what
            ))
        };
        for inp in inputs {
            let iid = ident(&inp.path);
            if id.same(&iid) {
                return Err(refuse(inp, ""));
            }
            if inp.path.is_dir() {
                // nothing may be written inside a calibration folder: it would become a sample,
                // or replace one
                if id.canonical.starts_with(&iid.canonical) {
                    return Err(Error::user(format!(
                        "{} '{}': refusing to write inside {} '{}'; choose another output path",
                        o.flag,
                        o.path.display(),
                        inp.what,
                        inp.path.display()
                    )));
                }
                // a hard link to one of its files
                if let Some(i) = id.inode {
                    if std::fs::metadata(&o.path).map(|m| nlink(&m) > 1).unwrap_or(false) {
                        let mut all = Vec::new();
                        inodes_under(&inp.path, &mut all);
                        if all.contains(&i) {
                            return Err(refuse(inp, ", a hard link to one of its files"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn nlink(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.nlink()
}

#[cfg(not(unix))]
fn nlink(_m: &std::fs::Metadata) -> u64 {
    1
}

fn check_folder(o: &Output, shown: &str) -> Result<()> {
    if o.path.file_name().is_none() || o.path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::usage(format!("{shown}: not a file name")));
    }
    if o.path.is_dir() {
        return Err(Error::user(format!("{shown} is a folder; give a file name")));
    }
    let dir = parent_of(&o.path);
    if !dir.is_dir() {
        let what = if dir.exists() { "is not a folder" } else { "does not exist" };
        return Err(Error::user(format!("{shown}: the folder '{}' {what}", dir.display())));
    }
    probe_writable(&dir).map_err(|e| {
        Error::user(format!("{shown}: cannot write into the folder '{}' ({})", dir.display(), e.kind()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_by_name_symlink_and_hard_link() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.onnx");
        std::fs::write(&a, b"x").unwrap();
        assert!(ident(&a).same(&ident(&d.path().join(".").join("a.onnx"))));
        #[cfg(unix)]
        {
            let s = d.path().join("s.onnx");
            std::os::unix::fs::symlink(&a, &s).unwrap();
            assert!(ident(&a).same(&ident(&s)));
            let h = d.path().join("h.onnx");
            std::fs::hard_link(&a, &h).unwrap();
            assert!(ident(&a).same(&ident(&h)));
        }
        assert!(!ident(&a).same(&ident(&d.path().join("b.onnx"))));
    }

    #[test]
    fn missing_folder_and_folder_output_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut p = OutputPlan::default();
        p.output("--report", &d.path().join("missing/r.json"));
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains("--report") && e.contains("does not exist"), "{e}");
        let mut p = OutputPlan::default();
        p.output("-o", d.path());
        assert!(p.check().is_err());
        // the probe leaves nothing behind
        let mut p = OutputPlan::default();
        p.output("-o", &d.path().join("fine.onnx"));
        p.check().unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
