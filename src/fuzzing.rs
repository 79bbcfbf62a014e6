//! Entry points of the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the library so that the
//! normal test suite (`tests/fuzz_regressions.rs`) feeds the saved crash inputs to exactly the
//! code the fuzzer ran. See docs/reliability.md.
//!
//! Each function takes untrusted bytes and returns `Ok` or an error. A user error is the
//! expected answer to bad input; an [`ErrorKind::Internal`](crate::ErrorKind::Internal) error
//! (a broken invariant such as the text form's print → parse → print fixed point) and any panic
//! are bugs: the fuzz targets abort on both.

use crate::error::{Error, Result};
use crate::pass::{parse_pipeline, PassContext, PassManager, Registry, RunOptions};
use bytes::Bytes;
use prost::Message;

/// Refuses to go on with an internal error: the fuzz targets turn it into a crash.
fn invariant(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::internal(what()))
    }
}

fn import_bytes(data: &[u8]) -> Result<crate::ir::Model> {
    let opts = crate::onnx::LoadOptions { allow_unknown_fields: true };
    let (mut proto, _, _) = crate::onnx::load::decode(Bytes::copy_from_slice(data), "fuzz.onnx", &opts)?;
    // External data resolves against a folder that holds nothing: every location is refused
    // or missing, through the same checks as a real load.
    let empty = std::env::temp_dir().join("sparseqc-fuzz-empty-dir");
    let _ = std::fs::create_dir_all(&empty);
    crate::onnx::external::resolve(&mut proto, &empty)?;
    crate::ir::import::import(proto)
}

/// ONNX bytes → decode → import → verify → export → encode → decode → import → verify.
/// A model that imported must export to bytes that import again.
pub fn onnx_roundtrip(data: &[u8]) -> Result<()> {
    let model = import_bytes(data)?;
    crate::ir::verify::verify(&model.graph)?;
    let proto = crate::ir::export::export(&model)?;
    let bytes = proto.encode_to_vec();
    let again = import_bytes(&bytes).map_err(|e| Error::internal(format!("the exported model does not import again: {e}")))?;
    crate::ir::verify::verify(&again.graph).map_err(|e| Error::internal(format!("the re-imported model does not verify: {e}")))?;
    Ok(())
}

/// Text → parse → print → parse → print; the two printed texts must be equal.
pub fn text_roundtrip(data: &[u8]) -> Result<()> {
    let text = std::str::from_utf8(data).map_err(|e| Error::user(format!("not UTF-8: {e}")))?;
    let model = crate::text::parse(text)?;
    let opts = crate::text::PrintOptions::default();
    let first = crate::text::print(&model, &opts)?;
    let again = crate::text::parse(&first).map_err(|e| Error::internal(format!("printed text does not parse: {e}")))?;
    let second = crate::text::print(&again, &opts)?;
    invariant(first == second, || format!("print -> parse -> print is not a fixed point:\n{first}\n----\n{second}"))
}

/// `.npy` or `.npz` bytes (told apart by the zip magic) → the calibration reader → every sample.
pub fn npy_read(data: &[u8]) -> Result<()> {
    use crate::calib::{CalibSource, NpySource};
    let dir = tempfile::tempdir()?;
    let npz = data.starts_with(b"PK");
    let path = dir.path().join(if npz { "x.npz" } else { "x.npy" });
    std::fs::write(&path, data)?;
    let src = if npz { NpySource::open_npz(&path)? } else { NpySource::open_npy(&path)? };
    let _ = src.inputs();
    for i in 0..src.len().min(16) {
        src.sample(i)?;
    }
    Ok(())
}

/// The preprocessing specs the image target cycles through (by input length).
pub const IMAGE_SPECS: [&str; 4] = [
    "resize=7x5,crop=3",
    "resize=16",
    "crop=8,layout=NHWC,order=BGR",
    "resize=5x9,mean=0.485:0.456:0.406,std=0.229:0.224:0.225",
];

/// Image bytes (JPEG, PNG, anything the decoders take) → decode → `--preprocess`.
pub fn image_preprocess(data: &[u8]) -> Result<()> {
    let spec = IMAGE_SPECS[data.len() % IMAGE_SPECS.len()];
    let pre: crate::calib::Preprocess = spec.parse()?;
    let t = crate::calib::data::load_image_bytes(&pre, data, "fuzz", |_, _| Ok(()))?;
    invariant(t.shape.iter().product::<usize>() == t.data.len(), || format!("tensor shape {:?} but {} values", t.shape, t.data.len()))
}

/// ONNX bytes → import → `fold-bn,cleanup` (verifier after each pass) → export.
pub fn pass_pipeline(data: &[u8]) -> Result<()> {
    let mut model = import_bytes(data)?;
    crate::ir::verify::verify(&model.graph)?;
    let reg = Registry::with_builtins();
    let passes = parse_pipeline("fold-bn,cleanup")?.iter().map(|e| reg.create(e)).collect::<Result<Vec<_>>>()?;
    let mut pm = PassManager::new(passes, RunOptions { verify_each: true, ..Default::default() });
    let mut ctx = PassContext { quiet: true, ..Default::default() };
    pm.run(&mut model, &mut ctx)?;
    crate::ir::export::export(&model)?;
    Ok(())
}

/// The targets by name, for the regression test that replays saved inputs.
pub const TARGETS: [(&str, fn(&[u8]) -> Result<()>); 5] = [
    ("onnx_roundtrip", onnx_roundtrip),
    ("text_roundtrip", text_roundtrip),
    ("npy_read", npy_read),
    ("image_preprocess", image_preprocess),
    ("pass_pipeline", pass_pipeline),
];
