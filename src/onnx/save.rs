//! Writing an ONNX model: streaming encode (no full in-memory copy), external data when
//! asked or when protobuf's 2 GB limit requires it, and an atomic replace (temporary file
//! in the target folder, then rename), never onto the compiler's own input.

use super::external;
use crate::error::{Error, Result};
use crate::proto::ModelProto;
use crate::proto::TensorProto;
use bytes::buf::UninitSlice;
use bytes::BufMut;
use prost::Message;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Protobuf cannot encode a message of 2 GiB or more.
pub const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalPolicy {
    /// Tensors that were external in the input stay external; everything goes external
    /// when the model would exceed the protobuf limit.
    #[default]
    Auto,
    /// Every tensor of at least `threshold` bytes goes to external data.
    Always,
    /// Everything inline; fails when the model would exceed the protobuf limit.
    Never,
}

#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    pub external: ExternalPolicy,
    /// Minimum tensor size in bytes to move to external data (`Always` and the 2 GB case).
    pub threshold: usize,
    /// Names of tensors that were external in the input (kept external under `Auto`).
    pub was_external: HashSet<String>,
    /// Paths that must never be written (the inputs).
    pub protected: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct SaveSummary {
    pub model_bytes: u64,
    pub external_file: Option<PathBuf>,
    pub external_tensors: usize,
    pub external_bytes: u64,
}

/// Resolves a path for comparison even when the file does not exist yet.
fn canonical_target(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = parent.canonicalize().unwrap_or(parent);
    match p.file_name() {
        Some(n) => parent.join(n),
        None => parent,
    }
}

/// Refuses to write `out` when it is one of the protected paths.
pub fn check_not_protected(out: &Path, protected: &[PathBuf]) -> Result<()> {
    let target = canonical_target(out);
    for p in protected {
        if canonical_target(p) == target {
            return Err(Error::user(format!(
                "refusing to overwrite the input file {}; choose another output path",
                p.display()
            )));
        }
    }
    Ok(())
}

/// A `BufMut` that streams into a writer through a fixed buffer, so encoding a model
/// never materialises it whole in memory. The first I/O error is kept and reported.
struct StreamBuf<W: Write> {
    w: W,
    buf: Vec<u8>,
    len: usize,
    written: u64,
    err: Option<std::io::Error>,
}

impl<W: Write> StreamBuf<W> {
    fn new(w: W) -> Self {
        StreamBuf { w, buf: vec![0; 1 << 20], len: 0, written: 0, err: None }
    }
    fn flush_buf(&mut self) {
        if self.len > 0 && self.err.is_none() {
            if let Err(e) = self.w.write_all(&self.buf[..self.len]) {
                self.err = Some(e);
            }
        }
        self.written += self.len as u64;
        self.len = 0;
    }
    fn finish(mut self) -> std::io::Result<(W, u64)> {
        self.flush_buf();
        match self.err.take() {
            Some(e) => Err(e),
            None => Ok((self.w, self.written)),
        }
    }
}

// SAFETY: `chunk_mut` returns the unused tail of `buf` (always non-empty after a flush)
// and `advance_mut` only moves `len` over bytes the caller has written within it.
unsafe impl<W: Write> BufMut for StreamBuf<W> {
    fn remaining_mut(&self) -> usize {
        usize::MAX - self.written as usize - self.len
    }
    unsafe fn advance_mut(&mut self, cnt: usize) {
        self.len += cnt;
    }
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.len == self.buf.len() {
            self.flush_buf();
        }
        let len = self.len;
        UninitSlice::new(&mut self.buf[len..])
    }
    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= self.buf.len() {
            // large tensor payloads go straight to the writer
            self.flush_buf();
            if self.err.is_none() {
                if let Err(e) = self.w.write_all(src) {
                    self.err = Some(e);
                }
            }
            self.written += src.len() as u64;
            return;
        }
        let mut off = 0;
        while off < src.len() {
            if self.len == self.buf.len() {
                self.flush_buf();
            }
            let n = (self.buf.len() - self.len).min(src.len() - off);
            self.buf[self.len..self.len + n].copy_from_slice(&src[off..off + n]);
            self.len += n;
            off += n;
        }
    }
}

fn tensor_payload_len(t: &TensorProto) -> usize {
    t.raw_data.as_ref().map(|b| b.len()).unwrap_or(0)
}

/// Writes `proto` to `out`. External data, when used, goes to `<out file name>.data` in
/// the same folder.
pub fn save(mut proto: ModelProto, out: &Path, opts: &SaveOptions) -> Result<SaveSummary> {
    let what = out.display().to_string();
    check_not_protected(out, &opts.protected)?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out
        .file_name()
        .ok_or_else(|| Error::user("output path has no file name").context(what.clone()))?
        .to_string_lossy()
        .to_string();
    let data_name = format!("{file_name}.data");
    let data_path = dir.join(&data_name);
    check_not_protected(&data_path, &opts.protected)?;
    let threshold = if opts.threshold == 0 { 1024 } else { opts.threshold };

    let inline_len = proto.encoded_len() as u64;
    let mut externalize_all = opts.external == ExternalPolicy::Always;
    if inline_len > PROTOBUF_LIMIT {
        if opts.external == ExternalPolicy::Never {
            return Err(Error::user(format!(
                "the model is {inline_len} bytes, over protobuf's 2 GB limit; it must be written with external data (drop --no-external-data)"
            ))
            .context(what));
        }
        externalize_all = true;
    }
    let keep = |t: &TensorProto| -> bool {
        if externalize_all {
            tensor_payload_len(t) >= threshold
        } else {
            opts.external == ExternalPolicy::Auto && opts.was_external.contains(t.name()) && t.raw_data.is_some()
        }
    };

    let mut summary = SaveSummary::default();
    let mut data_tmp: Option<tempfile::NamedTempFile> = None;
    {
        let mut offset: u64 = 0;
        let mut writer: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut io_err: Option<std::io::Error> = None;
        super::for_each_tensor_mut(&mut proto, &mut |t: &mut TensorProto| {
            if !keep(t) || io_err.is_some() {
                return Ok(());
            }
            if t.name().is_empty() {
                return Ok(()); // ONNX requires a name for external tensors; keep it inline
            }
            if writer.is_none() {
                let tmp = tempfile::NamedTempFile::new_in(&dir)
                    .map_err(|e| Error::user(format!("cannot create a temporary file in {}: {e}", dir.display())))?;
                let f = tmp.reopen().map_err(|e| Error::user(format!("cannot open temporary file: {e}")))?;
                writer = Some(std::io::BufWriter::with_capacity(1 << 20, f));
                data_tmp = Some(tmp);
            }
            let w = writer.as_mut().expect("writer was created above");
            // align every tensor to 64 bytes so readers can map them directly
            let pad = (64 - offset % 64) % 64;
            let data = t.raw_data.clone().unwrap_or_default();
            let res = w.write_all(&vec![0u8; pad as usize]).and_then(|_| w.write_all(&data));
            if let Err(e) = res {
                io_err = Some(e);
                return Ok(());
            }
            offset += pad;
            external::set_external(t, &data_name, offset, data.len() as u64);
            offset += data.len() as u64;
            summary.external_tensors += 1;
            summary.external_bytes += data.len() as u64;
            Ok(())
        })?;
        if let Some(e) = io_err {
            return Err(Error::user(format!("writing external data failed: {e}")).context(data_path.display().to_string()));
        }
        if let Some(mut w) = writer {
            w.flush().map_err(|e| Error::user(format!("writing external data failed: {e}")))?;
        }
    }
    let final_len = proto.encoded_len() as u64;
    if final_len > PROTOBUF_LIMIT {
        return Err(Error::user(format!(
            "the model is still {final_len} bytes after moving tensors to external data, over protobuf's 2 GB limit"
        ))
        .context(what));
    }

    let tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| Error::user(format!("cannot create a temporary file in {}: {e}", dir.display())).context(what.clone()))?;
    let f = tmp.reopen().map_err(|e| Error::user(format!("cannot open temporary file: {e}")))?;
    let mut sb = StreamBuf::new(std::io::BufWriter::with_capacity(1 << 16, f));
    proto
        .encode(&mut sb)
        .map_err(|e| Error::internal(format!("encoding failed: {e}")).context(what.clone()))?;
    let (mut w, written) = sb.finish().map_err(|e| Error::user(format!("write failed: {e}")).context(what.clone()))?;
    w.flush().map_err(|e| Error::user(format!("write failed: {e}")).context(what.clone()))?;
    drop(w);
    summary.model_bytes = written;

    // data first, then the model: a reader never sees a model whose data is missing
    crate::util::set_default_permissions(tmp.path());
    if let Some(dt) = data_tmp {
        crate::util::set_default_permissions(dt.path());
        dt.persist(&data_path)
            .map_err(|e| Error::user(format!("cannot move external data into place: {e}")).context(data_path.display().to_string()))?;
        summary.external_file = Some(data_path);
    }
    tmp.persist(out).map_err(|e| Error::user(format!("cannot move the output into place: {e}")).context(what))?;
    Ok(summary)
}
