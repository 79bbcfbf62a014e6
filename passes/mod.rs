//! The built-in passes. They live outside `src/` and use only the public API of the
//! `sparseqc` library (`ir`, `pass`, `text`, `error`, and the numeric modules), the same
//! API a plugin gets; `src/lib.rs` compiles them in as `sparseqc::passes`.

use crate::pass::Registry;

/// Registers every built-in pass.
pub fn register_builtins(_reg: &mut Registry) {}
