//! The TensorRT back end: a network-definition model mirroring `INetworkDefinition`
//! ([`network`]), builder configuration ([`config`]), its text form ([`text`]) and protobuf
//! form ([`serial`]), 2:4 sparsity checks ([`sparsity`]), build-log parsing ([`buildlog`])
//! and engine building through the C++ shim ([`engine`]). See docs/tensorrt.md.
//!
//! [`lower`] turns the quantized IR into a [`Network`] and its [`BuildConfig`]; then:
//! ```no_run
//! # use sparseqc::trt::*;
//! # fn f(net: &Network) -> sparseqc::Result<()> {
//! let config = BuildConfig::new(TrtVersion::V11);
//! println!("{}", network_to_text(net, Some(&config)));
//! let build = build_engine(net, &config, &mut |sev, msg| eprintln!("[{}] {msg}", sev.tag()))?;
//! std::fs::write("model.plan", &build.plan)?;
//! print!("{}", build.sparsity);
//! # Ok(()) }
//! ```

pub mod buildlog;
pub mod config;
pub mod engine;
pub mod lower;
pub mod network;
pub mod serial;
#[cfg(feature = "tensorrt")]
pub mod shim_driver;
pub mod sparsity;
pub mod text;

pub use buildlog::{LogLine, Severity, SparsityReport};
pub use config::{
    BuildConfig, BuilderFlag, NetworkCreationFlag, OptimizationProfile, ProfileShapes, TrtVersion,
};
pub use engine::{build_engine, check_available, shim_available, tensorrt_not_found, EngineBuild};
pub use lower::{build_config, lower, lower_network, LowerOptions};
pub use network::{
    ActivationType, ConvParams, DataType, ElementWiseOperation, Layer, LayerId, LayerKind,
    MatrixOperation, Network, PoolingParams, PoolingType, ReduceOperation, SampleMode,
    ShuffleParams, Tensor, TensorId, Weights,
};
pub use serial::{decode, encode, read_network_file, write_network_file};
pub use sparsity::{check_2to4, kernel_info, KernelInfo, KernelSource, Sparse24};
pub use text::{config_to_text, network_to_text, weights_summary};
