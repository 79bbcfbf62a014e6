//! Reading an ONNX file: memory map, zero-copy decode, unknown-field detection,
//! external data resolution.

use super::external::{self, ExternalRef};
use super::wire;
use crate::error::{Error, Result};
use crate::proto::ModelProto;
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Accept a model holding fields this schema does not know, dropping them on save.
    pub allow_unknown_fields: bool,
}

/// A decoded model plus what is known about where it came from.
pub struct LoadedModel {
    pub proto: ModelProto,
    pub path: PathBuf,
    /// The folder external data is resolved against.
    pub base_dir: PathBuf,
    /// Size of the file on disk.
    pub file_len: u64,
    /// Whether re-encoding the decoded model gives back exactly the input bytes
    /// (false for non-canonical writers, e.g. packed `dims`, or for unknown fields).
    pub canonical: bool,
    /// Tensors that were stored as external data, by name.
    pub external: HashMap<String, ExternalRef>,
    /// Unknown fields that were dropped (only with `allow_unknown_fields`).
    pub dropped_fields: Vec<wire::UnknownField>,
}

/// Maps a file read-only and returns its bytes without copying.
pub fn map_file(path: &Path) -> Result<Bytes> {
    let f = std::fs::File::open(path).map_err(|e| Error::user(format!("cannot open: {e}")))?;
    let meta = f.metadata().map_err(|e| Error::user(format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(Error::user("is a directory, not an ONNX file"));
    }
    if meta.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: read-only map; as with any mmap reader, the file must not be truncated
    // concurrently. The compiler never writes to its input (see save.rs).
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::user(format!("cannot map: {e}")))?;
    Ok(shared_map(map))
}

/// Every mapping of an input file at least [`RELEASE_MIN_BYTES`] long, for
/// [`release_mapped_pages`].
static MAPPED: std::sync::Mutex<Vec<std::sync::Weak<memmap2::Mmap>>> = std::sync::Mutex::new(Vec::new());

/// Mappings shorter than this keep their pages (their memory does not matter).
const RELEASE_MIN_BYTES: usize = 64 << 20;

/// The owner of a mapping behind [`Bytes`], shared with [`MAPPED`].
struct SharedMap(std::sync::Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The bytes of a read-only mapping, registered so that its pages can be released.
pub(crate) fn shared_map(map: memmap2::Mmap) -> Bytes {
    let map = std::sync::Arc::new(map);
    if map.len() >= RELEASE_MIN_BYTES {
        if let Ok(mut v) = MAPPED.lock() {
            v.retain(|w| w.strong_count() > 0);
            v.push(std::sync::Arc::downgrade(&map));
        }
    }
    Bytes::from_owner(SharedMap(map))
}

/// Drops the resident pages of the large input mappings still alive. Their contents stay
/// readable: the next read faults the pages in again from the file (the page cache). Called
/// when an interpreter session has copied the weights it needs, so that the model's weights
/// are not resident twice (mapped and copied): BERT-base's 415 MiB file otherwise stays
/// resident for the whole run on top of every copy.
pub fn release_mapped_pages() {
    let Ok(v) = MAPPED.lock() else { return };
    for map in v.iter().filter_map(|w| w.upgrade()) {
        // SAFETY: the mapping is read-only and private and never written, so dropping its
        // pages loses nothing: later reads see the file's contents again, as before.
        #[cfg(unix)]
        let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        #[cfg(not(unix))]
        let _ = map;
    }
}

/// Decodes a model from bytes (already in memory); `what` names it in errors.
pub fn decode(bytes: Bytes, what: &str, opts: &LoadOptions) -> Result<(ModelProto, bool, Vec<wire::UnknownField>)> {
    if bytes.is_empty() {
        return Err(Error::user("empty file: not an ONNX model").context(what.to_string()));
    }
    let len = bytes.len();
    let proto = ModelProto::decode(bytes.clone()).map_err(|e| {
        Error::user(format!("not a valid ONNX model (protobuf decode failed: {e}); the file is truncated, corrupt or not ONNX"))
            .context(what.to_string())
    })?;
    if proto.graph.is_none() {
        return Err(Error::user("not an ONNX model: it has no graph (ModelProto.graph is missing)").context(what.to_string()));
    }
    // Length equality is the cheap test the decoder can afford on a multi-GB model
    // (the round-trip tests compare bytes).
    let canonical = proto.encoded_len() == len;
    let mut dropped = Vec::new();
    if !canonical {
        let unknown = wire::find_unknown_fields(&bytes, ".onnx.ModelProto", 20);
        if !unknown.is_empty() {
            if !opts.allow_unknown_fields {
                let list: Vec<String> =
                    unknown.iter().take(5).map(|u| format!("{} field #{} ({} bytes)", u.path, u.number, u.bytes)).collect();
                return Err(Error::user(format!(
                    "the model holds {}{} field(s) unknown to this ONNX schema (IR version 14), which would be lost on save: {}{}; \
                     pass --allow-unknown-fields to drop them",
                    unknown.len(),
                    if unknown.len() >= 20 { "+" } else { "" },
                    list.join(", "),
                    if unknown.len() > 5 { ", ..." } else { "" }
                ))
                .context(what.to_string()));
            }
            dropped = unknown;
        }
    }
    Ok((proto, canonical, dropped))
}

/// Loads an ONNX model from `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let what = path.display().to_string();
    let bytes = map_file(path).map_err(|e| e.context(what.clone()))?;
    let file_len = bytes.len() as u64;
    let (mut proto, canonical, dropped_fields) = decode(bytes, &what, opts)?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let external = external::resolve(&mut proto, &base_dir).map_err(|e| e.context(what.clone()))?;
    Ok(LoadedModel { proto, path: path.to_path_buf(), base_dir, file_len, canonical, external, dropped_fields })
}
