//! The TensorRT back end entry points used by the CLI.

use crate::cli::CompileArgs;
use crate::error::{Error, Result};
use crate::ir::Model;
use std::path::Path;

pub fn build_plan(_model: &Model, out: &Path, _a: &CompileArgs) -> Result<()> {
    Err(Error::user(format!("cannot write {}: TensorRT lowering is not built yet", out.display())))
}

pub fn emit_network(_model: &Model, out: &Path, _a: &CompileArgs) -> Result<()> {
    Err(Error::user(format!("cannot write {}: TensorRT lowering is not built yet", out.display())))
}
