//! `prune-2of4{method=obs}`: layer-wise reconstruction from calibration data.

use super::prune::Prune;
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::pass::{PassContext, PassReport};

pub fn run_obs(_p: &Prune, _m: &mut Model, _ctx: &mut PassContext) -> Result<PassReport> {
    Err(Error::usage("prune-2of4{method=obs} needs the calibration engine, which is not wired in yet"))
}
