//! Loading passes from plugin libraries (`--plugin`).

use crate::error::{Error, Result};
use crate::pass::Registry;
use std::path::Path;

/// Loads the passes of the plugin at `path` into `reg`.
pub fn load_into(_reg: &mut Registry, path: &Path) -> Result<()> {
    Err(Error::user(format!("cannot load plugin {}: plugin loading is not built yet", path.display())))
}
