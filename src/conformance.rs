//! ONNX backend node tests through sparseqc: a test case is a folder holding `model.onnx`
//! and `test_data_set_*/{input,output}_*.pb` (the layout of onnx's
//! `onnx/backend/test/data/node`). [`run_case`] loads the model with the importer
//! ([`crate::onnx::load`] + [`crate::ir::import::import`]), builds the interpreter session
//! ([`crate::engine::ModelSession`]), runs every data set and compares each output with the
//! expected one: floats within `atol + rtol·|expected|` (onnx's backend defaults, 1e-7 and
//! 1e-3; NaN matches NaN), every other type exactly, shapes and element types always.
//!
//! Used by `examples/node_tests.rs` (the whole suite, scripts/node-tests.sh) and by
//! `tests/onnx_node.rs` (a committed slice in testdata/onnx-node).

use std::path::{Path, PathBuf};

use prost::Message;

use crate::engine::ModelSession;
use crate::exec::{Data, Tensor};
use crate::proto::TensorProto;

/// onnx's backend test tolerances for floating-point outputs.
pub const RTOL: f64 = 1e-3;
/// See [`RTOL`].
pub const ATOL: f64 = 1e-7;

/// What a node test case is about: the op type of its (single) node, or `None` when the
/// graph has several nodes (the `_expanded` function bodies).
pub fn case_op(dir: &Path) -> Result<Option<String>, String> {
    let lm = crate::onnx::load(&dir.join("model.onnx"), &Default::default()).map_err(|e| e.to_string())?;
    let g = lm.proto.graph.as_ref().ok_or("model has no graph")?;
    Ok(match g.node.as_slice() {
        [n] => Some(n.op_type().to_string()),
        _ => None,
    })
}

fn read_tensor(p: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let tp = TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", p.display()))?;
    Tensor::from_proto(&tp).map_err(|e| format!("{}: {e}", p.display()))
}

/// The `prefix_N.pb` files of a data set folder, in order.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.exists()).collect()
}

/// Compares one output; `Err` says where and how it differs.
pub fn compare(name: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("output '{name}': type {} expected {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!("output '{name}': shape {:?} expected {:?}", got.shape(), want.shape()));
    }
    let close = |g: f64, w: f64| (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= ATOL + RTOL * w.abs();
    let bad = match (got.data(), want.data()) {
        (Data::F32(_), _) | (Data::F64(_), _) => {
            let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
            g.iter().zip(&w).position(|(a, b)| !close(*a, *b)).map(|i| (i, g[i], w[i]))
        }
        _ => {
            if got.bit_eq(want) {
                None
            } else {
                let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
                g.iter().zip(&w).position(|(a, b)| a != b).map(|i| (i, g[i], w[i]))
            }
        }
    };
    match bad {
        None => Ok(()),
        Some((i, g, w)) => Err(format!("output '{name}' [{i}] = {g} expected {w} (shape {:?})", want.shape())),
    }
}

/// Runs one node test case; `Err` holds the first failure (load, session build, run or
/// comparison), as one line.
pub fn run_case(dir: &Path) -> Result<(), String> {
    let lm = crate::onnx::load(&dir.join("model.onnx"), &Default::default()).map_err(|e| format!("load: {e}"))?;
    let model = crate::ir::import::import(lm.proto).map_err(|e| format!("import: {e}"))?;
    let ms = ModelSession::new(&model).map_err(|e| format!("session: {e}"))?;
    let out_names: Vec<String> = model.graph.outputs.iter().map(|v| model.graph.name_of(*v).to_string()).collect();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_")))
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err("no test_data_set_* folder".into());
    }
    for set in sets {
        let inputs: Vec<Tensor> = numbered(&set, "input").iter().map(|p| read_tensor(p)).collect::<Result<_, _>>()?;
        let want: Vec<Tensor> = numbered(&set, "output").iter().map(|p| read_tensor(p)).collect::<Result<_, _>>()?;
        if inputs.len() != ms.inputs.len() {
            return Err(format!("{} inputs given, the model has {}", inputs.len(), ms.inputs.len()));
        }
        let got = ms.session.run_outputs(inputs).map_err(|e| format!("run: {e}"))?;
        if want.len() != got.len() {
            return Err(format!("{} outputs computed, {} expected", got.len(), want.len()));
        }
        for ((g, w), name) in got.iter().zip(&want).zip(&out_names) {
            compare(name, g, w)?;
        }
    }
    Ok(())
}
