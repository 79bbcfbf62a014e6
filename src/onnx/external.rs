//! External tensor data: tensors whose bytes live in a separate file next to the model
//! (`data_location = EXTERNAL`, entries `location`, `offset`, `length`).
//!
//! Architecture invariant: a location is resolved only inside the model's folder. An
//! absolute path, a `..` component, or a symlink whose target leaves the folder is
//! refused (reading arbitrary files through a crafted model is a known vulnerability
//! class in ONNX tools). Files are memory-mapped once and tensors become `Bytes` slices
//! of the map: no tensor byte is copied.

use crate::error::{Error, Result};
use crate::proto::tensor_proto::DataLocation;
use crate::proto::{ModelProto, StringStringEntryProto, TensorProto};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Where one tensor's bytes were found, kept so that a later save can write the tensor
/// to external data again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    pub location: String,
    pub offset: u64,
    pub length: u64,
}

pub(crate) fn entry<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data.iter().find(|e| e.key() == key).map(|e| e.value())
}

/// Parses a tensor's external-data entries.
pub fn external_ref(t: &TensorProto) -> Result<ExternalRef> {
    let name = t.name();
    let location = entry(t, "location")
        .ok_or_else(|| Error::user(format!("tensor '{name}': external data without a 'location' entry")))?
        .to_string();
    let num = |key: &str| -> Result<Option<u64>> {
        match entry(t, key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| Error::user(format!("tensor '{name}': external data '{key}' is not a number: '{v}'"))),
        }
    };
    let offset = num("offset")?.unwrap_or(0);
    let length = num("length")?.unwrap_or(u64::MAX);
    Ok(ExternalRef { location, offset, length })
}

/// Checks that `location` stays inside `base` and returns the file path.
pub fn safe_location(base: &Path, location: &str, tensor: &str) -> Result<PathBuf> {
    let rel = Path::new(location);
    if location.is_empty() {
        return Err(Error::user(format!("tensor '{tensor}': external data location is empty")));
    }
    if rel.is_absolute() || location.starts_with('/') || location.starts_with('\\') {
        return Err(Error::user(format!(
            "tensor '{tensor}': external data location '{location}' is an absolute path; only files inside the model's folder are read"
        )));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(Error::user(format!(
                    "tensor '{tensor}': external data location '{location}' leaves the model's folder ('..' or a root); refused"
                )))
            }
        }
    }
    let path = base.join(rel);
    let canon_base = base
        .canonicalize()
        .map_err(|e| Error::user(format!("cannot resolve model folder {}: {e}", base.display())))?;
    let canon = path.canonicalize().map_err(|e| {
        Error::user(format!("tensor '{tensor}': external data file '{}' cannot be opened: {e}", path.display()))
    })?;
    if !canon.starts_with(&canon_base) {
        return Err(Error::user(format!(
            "tensor '{tensor}': external data location '{location}' resolves to {} outside the model's folder (symlink?); refused",
            canon.display()
        )));
    }
    Ok(canon)
}

/// Memory-maps external files on demand and hands out zero-copy slices.
#[derive(Default)]
pub struct ExternalFiles {
    maps: HashMap<PathBuf, Bytes>,
}

impl ExternalFiles {
    fn file(&mut self, path: &Path) -> Result<Bytes> {
        if let Some(b) = self.maps.get(path) {
            return Ok(b.clone());
        }
        let f = std::fs::File::open(path).map_err(|e| Error::user(format!("cannot open external data file {}: {e}", path.display())))?;
        let len = f.metadata()?.len();
        let bytes = if len == 0 {
            Bytes::new()
        } else {
            // SAFETY: the map is read-only; like every mmap-based reader, we rely on the
            // file not being truncated by another process while the compiler runs.
            let map = unsafe { memmap2::Mmap::map(&f) }
                .map_err(|e| Error::user(format!("cannot map external data file {}: {e}", path.display())))?;
            super::load::shared_map(map)
        };
        self.maps.insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }
}

/// Resolves every external tensor of `model` (located relative to `base`): its bytes
/// become `raw_data` (a slice of the memory map) and its external entries are cleared.
/// Returns, per tensor name, where it came from.
pub fn resolve(model: &mut ModelProto, base: &Path) -> Result<HashMap<String, ExternalRef>> {
    let mut files = ExternalFiles::default();
    let mut found = HashMap::new();
    super::for_each_tensor_mut(model, &mut |t: &mut TensorProto| {
        if t.data_location != Some(DataLocation::External as i32) {
            return Ok(());
        }
        let name = t.name().to_string();
        let r = external_ref(t)?;
        let path = safe_location(base, &r.location, &name)?;
        let data = files.file(&path)?;
        let flen = data.len() as u64;
        let end = if r.length == u64::MAX { flen } else { r.offset.saturating_add(r.length) };
        if r.offset > flen || end > flen {
            return Err(Error::user(format!(
                "tensor '{name}': external data range {}..{} is outside '{}' ({} bytes)",
                r.offset,
                end,
                r.location,
                flen
            )));
        }
        t.raw_data = Some(data.slice(r.offset as usize..end as usize));
        t.external_data.clear();
        t.data_location = None;
        found.insert(name, ExternalRef { length: end - r.offset, ..r });
        Ok(())
    })?;
    Ok(found)
}

pub(crate) fn set_external(t: &mut TensorProto, location: &str, offset: u64, length: u64) {
    t.raw_data = None;
    t.data_location = Some(DataLocation::External as i32);
    t.external_data = vec![
        kv("location", location),
        kv("offset", &offset.to_string()),
        kv("length", &length.to_string()),
    ];
}

fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: Some(k.to_string()), value: Some(v.to_string()) }
}
