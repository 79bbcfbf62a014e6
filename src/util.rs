//! Small shared helpers.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes a file atomically: a temporary file in the same folder, then a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| Error::user(format!("cannot create a temporary file in {}: {e}", dir.display())))?;
    tmp.write_all(data).map_err(|e| Error::user(format!("write failed: {e}")).context(path.display().to_string()))?;
    set_default_permissions(tmp.path());
    tmp.persist(path).map_err(|e| Error::user(format!("cannot move into place: {e}")).context(path.display().to_string()))?;
    Ok(())
}

/// tempfile creates files 0600; outputs should get the usual 0644 (less the umask is
/// not applied here; 0644 is what most tools produce).
pub fn set_default_permissions(p: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
    }
}

/// Tunes glibc's `malloc` for the engine's allocation pattern; called once by the CLI before
/// any work. A model run allocates and frees activation buffers of megabytes per node. By
/// default glibc serves those with `mmap` (threshold 128 KiB, adapting upwards) and hands freed
/// heap tops back to the kernel, so every buffer was faulted in and zeroed by the kernel again:
/// 13 % of the CPU time of MobileNetV2 `--dense` went to page faults and `memset`. Raising
/// the mmap threshold to its maximum (32 MiB on 64-bit) and the trim threshold to 1 GiB keeps
/// freed buffers in the heap for reuse (MobileNetV2 `--dense` 12.3 s -> 11.0 s, peak RSS
/// 957 -> 862 MB; docs/performance.md). The allocator stays the C library's one heap that
/// plugins share (see `plugin.rs`). Elsewhere this does nothing.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        // SAFETY: mallopt only changes allocator parameters; it is called before any thread
        // is started. A refused value (return 0) leaves glibc's default, which is only slower.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Hands the C library heap's free memory back to the kernel (glibc `malloc_trim`). The
/// trim threshold that [`tune_allocator`] raises keeps freed buffers for reuse within a run,
/// which is what a session wants; between sessions it would pin the last session's peak:
/// BERT-base's whole-model forward left 600 MiB of freed activations resident through the
/// whole pruning pass. Called when an interpreter session is dropped ([`HeapTrim`]).
/// Elsewhere this does nothing.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Calls [`trim_heap`] when dropped. Put it as the last field of a struct that owns large
/// buffers: fields drop in declaration order, so the trim runs after they are freed.
#[derive(Debug, Default)]
pub struct HeapTrim;

impl Drop for HeapTrim {
    fn drop(&mut self) {
        trim_heap();
    }
}

/// Quotes a string the way the text form and the IR's annotations do: `"` and `\\` escaped,
/// newline, tab and carriage return as `\\n`, `\\t`, `\\r`, other control characters as `\\u{..}`.
pub fn quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// ONNX's `auto_pad` attribute of Conv, ConvTranspose and the pools: the one reading of it
/// that the interpreter, shape inference, the TensorRT lowering and the passes share.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AutoPad {
    /// `NOTSET` (or empty): the explicit `pads`.
    NotSet,
    /// `SAME_UPPER`: output size `ceil(in / stride)`, the odd padding at the end.
    SameUpper,
    /// `SAME_LOWER`: output size `ceil(in / stride)`, the odd padding at the beginning.
    SameLower,
    /// `VALID`: no padding.
    Valid,
}

impl AutoPad {
    /// The attribute's value (`None` for a value ONNX does not define; callers name the node).
    pub fn parse(s: &str) -> Option<AutoPad> {
        Some(match s {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            _ => return None,
        })
    }

    /// Whether this is `SAME_UPPER` or `SAME_LOWER`.
    pub fn is_same(self) -> bool {
        matches!(self, AutoPad::SameUpper | AutoPad::SameLower)
    }

    /// Splits a total padding into (begin, end): `SAME_LOWER` puts the odd one at the
    /// beginning, every other mode at the end (`total / 2` truncates toward zero, so a
    /// negative total, a ConvTranspose `output_shape` larger than the full output, splits
    /// the same way onnxruntime does).
    pub fn split(self, total: i64) -> (i64, i64) {
        let small = total / 2;
        if self == AutoPad::SameLower {
            (total - small, small)
        } else {
            (small, total - small)
        }
    }

    /// SAME padding of a convolution or pooling window along one spatial axis: the output
    /// size `ceil(input / stride)` and the (begin, end) padding that gives it, for a kernel of
    /// effective extent `extent` = `dilation · (kernel − 1) + 1`. `self` must be SAME_*.
    pub fn same_pads(self, input: i64, extent: i64, stride: i64) -> (i64, i64, i64) {
        let stride = stride.max(1);
        let out = input.max(0).saturating_add(stride - 1) / stride;
        let total = (out.max(1) - 1).saturating_mul(stride).saturating_add(extent).saturating_sub(input).max(0);
        let (b, e) = self.split(total);
        (b, e, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_pads_follow_onnx() {
        // in 5, kernel 3, stride 2: out 3, total (3-1)*2+3-5 = 2
        assert_eq!(AutoPad::SameUpper.same_pads(5, 3, 2), (1, 1, 3));
        // in 6, kernel 3, stride 2: out 3, total 1: odd one at the end (upper) or beginning (lower)
        assert_eq!(AutoPad::SameUpper.same_pads(6, 3, 2), (0, 1, 3));
        assert_eq!(AutoPad::SameLower.same_pads(6, 3, 2), (1, 0, 3));
        // dilation 2 on a 3-tap kernel: extent 5, stride 1: total 4
        assert_eq!(AutoPad::SameLower.same_pads(7, 5, 1), (2, 2, 7));
        // a kernel smaller than the stride needs no padding
        assert_eq!(AutoPad::SameUpper.same_pads(8, 1, 2), (0, 0, 4));
        assert_eq!(AutoPad::SameLower.split(-3), (-2, -1));
        assert_eq!(AutoPad::parse("SAME_LOWER"), Some(AutoPad::SameLower));
        assert_eq!(AutoPad::parse(""), Some(AutoPad::NotSet));
        assert_eq!(AutoPad::parse("same"), None);
    }
}
