//! The built-in passes. They live outside `src/` and use only the public API of the
//! `sparseqc` library (`ir`, `pass`, `text`, `error`, and the numeric modules), the same
//! API a plugin gets; `src/lib.rs` compiles them in as `sparseqc::passes`.

pub mod bias_correct;
pub mod calibrate;
pub mod cleanup;
pub mod fold_bn;
pub mod insert_qdq;
pub mod prequant;
pub mod prune;
pub mod upgrade_opset;

use crate::pass::{PassInfo, Registry};

fn builtin(name: &str, summary: &str, options: &[crate::pass::OptionSpec]) -> PassInfo {
    PassInfo { name: name.into(), summary: summary.into(), options: options.to_vec(), origin: "built-in".into() }
}

/// Registers every built-in pass.
pub fn register_builtins(reg: &mut Registry) {
    let r = reg.register(
        builtin(fold_bn::NAME, "fold BatchNormalization into the producing Conv/ConvTranspose/Gemm/MatMul", fold_bn::OPTIONS),
        Box::new(|o| Ok(Box::new(fold_bn::FoldBn::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(cleanup::NAME, "constants to initializers, constant folding, Identity and dead-code removal, Pad fusion", cleanup::OPTIONS),
        Box::new(|o| Ok(Box::new(cleanup::Cleanup::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(calibrate::NAME, "run the float model on calibration data and annotate activation scales", calibrate::OPTIONS),
        Box::new(|o| Ok(Box::new(calibrate::Calibrate::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(prune::NAME, "2:4 structured pruning along TensorRT's input-channel groups", prune::OPTIONS),
        Box::new(|o| Ok(Box::new(prune::Prune::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(bias_correct::NAME, "after insert-qdq: fold each quantized layer's output mean shift into its bias", bias_correct::OPTIONS),
        Box::new(|o| Ok(Box::new(bias_correct::BiasCorrect::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(insert_qdq::NAME, "insert Q/DQ by TensorRT's explicit-quantization placement rules", insert_qdq::OPTIONS),
        Box::new(|o| Ok(Box::new(insert_qdq::InsertQdq::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(upgrade_opset::NAME, "rewrite a default-domain opset 7-12 model to opset 13, keeping its function", upgrade_opset::OPTIONS),
        Box::new(|o| Ok(Box::new(upgrade_opset::UpgradeOpset::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
    let r = reg.register(
        builtin(prequant::NAME, "check a pre-quantized model's Q/DQ against TensorRT's placement rules; keep its scales", prequant::OPTIONS),
        Box::new(|o| Ok(Box::new(prequant::CheckQdq::from_options(o)?))),
    );
    debug_assert!(r.is_ok(), "built-in pass names are unique");
}
