//! The canonical text form of a model: printed by `sparseqc print`, parsed back by
//! [`parse`], used by every snapshot test.
//!
//! It follows ONNX's own textual syntax where that fits (`<ir_version: 7, opset_import:
//! ["" : 13]>`, `name (float[N,3] x) => (float[N,10] y)`, `y = Conv <group = 1> (x, w)`),
//! with these additions:
//! - initializers and value_info are listed one per line between `<` and `>` after the
//!   signature; small tensors are inline (`float[3] b = [0.5, 1.0, -2.0]`), larger ones
//!   summarised (`float[16,3,3,3] w = {hash: 3f1c..., zeros: 0.5000}`), which parses back
//!   to a data-less placeholder with the same summary;
//! - test inputs may use generators: `{random: 7}` (uniform in [-1, 1), seeded),
//!   `{fill: 0.5}`, `{arange: 0}`;
//! - a node name is written `[name]` before the outputs; node metadata as `@{key = "v"}`;
//! - calibration annotations are a `quant { tensor: amax = ..., scale = ..., ... }` block;
//! - anything without a textual syntax (functions, training info, non-tensor types) is
//!   written as the hex of its protobuf encoding, so nothing is lost.
//!
//! Determinism: nodes come in the IR's deterministic topological order, initializers
//! and value_info in file order, attributes in node order. Printing twice gives the same
//! text, and print → parse → print is a fixed point.

mod parse;
mod print;

pub use parse::{parse, parse_model_proto, unquote_prefix};
#[cfg(test)]
pub(crate) use parse::random_values;
pub use print::{print, print_model_proto, PrintOptions};

pub use crate::ir::QUANT_KEY_PREFIX;

/// Quotes a string the way the text form does.
pub fn quote_str(s: &str) -> String {
    print::quote(s)
}
