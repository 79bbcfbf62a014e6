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
