//! Calibration: choosing the INT8 scale of every activation tensor from the user's data.
//!
//! The module is independent of the IR; the `calibrate` pass wires it to the model. The flow:
//!
//! 1. **Data** ([`data`]): [`open_source`] opens an image folder (decoded and preprocessed like
//!    a PIL/torchvision script would, see [`Preprocess`]) or `.npz`/`.npy` tensors, and checks
//!    them against the model's inputs before anything runs. A [`CalibSource`] then yields one
//!    sample at a time, by index, so memory stays bounded and samples can be loaded in
//!    parallel.
//! 2. **Statistics** ([`stats`]): by default the model runs on every sample **once** and each
//!    tensor gets a [`GridHistogram`]: 2048 bins of `|x|` over `[0, 2^e)`, `e` the smallest
//!    power of two above the max, coarsened exactly when a larger value arrives. Or, two runs:
//!    pass 1 collects the max `|x|`, pass 2 a 2048-bin histogram over exactly `[0, max]`. Both
//!    are integer counts and maxima, so partial results (per sample, per thread) merge in any
//!    order to identical statistics: the amax never depends on thread count or sample order
//!    (TensorRT's own calibrator, which rescales its histogram as data arrives, does).
//!    [`StatsSet`] manages either scheme for all tensors by name.
//! 3. **Methods** ([`methods`]): [`compute_amax`] turns a tensor's statistics into an amax with
//!    [`Method::Max`], [`Method::Percentile`], [`Method::Entropy`] (TensorRT's
//!    EntropyCalibration2 algorithm as published) or [`Method::Mse`]; the scale is `amax / 127`
//!    and the clipped fraction is reported.
//! 4. **Tables** ([`cache`]): a [`CalibTable`] is written and read as a TensorRT calibration
//!    cache (text, scales as big-endian f32 hex) or as JSON (amax, scale, method).
//!
//! Sketch of the intended use by the pass (`run` stands for the interpreter; parallel
//! workers would `fork` the set and `merge` their parts):
//!
//! ```ignore
//! let src = calib::open_source(path, &opts, &model_inputs)?;
//! let mut set = calib::StatsSet::new();
//! for pass in 0..2 {
//!     for sample in calib::samples(src.as_ref()) {
//!         for (name, values) in run(&sample?)? { set.observe(&name, &values)?; }
//!     }
//!     if pass == 0 { set.begin_histograms()?; }
//! }
//! let mut table = calib::CalibTable::new(calib::default_header(method));
//! for (name, st) in set.finish()? {
//!     let c = calib::compute_amax(&st, method)?;
//!     table.insert(name, &c, method);
//! }
//! ```

pub mod cache;
pub mod data;
pub mod jpeg;
pub mod methods;
pub mod npy;
pub mod resize;
pub mod stats;

pub use cache::{default_header, CalibEntry, CalibTable};
pub use data::{
    check_dtypes, numpy_name, open_source, samples, validate, CalibSource, ChannelOrder, ImageFolder, InputTensor, Layout,
    ModelInput, NpySource, Preprocess, Resize, PRESETS, Sample, SourceInput, SourceOptions,
};
pub use methods::{compute_amax, Calibration, Method};
pub use stats::{GridHistogram, HistogramCollector, RangeCollector, StatsSet, TensorStats, NUM_BINS};
