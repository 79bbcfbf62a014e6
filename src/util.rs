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
