//! Running a model on calibration samples, for passes, the CLI and plugins alike: the sample
//! type and loaders ([`samples`]), forward runs and the layer-by-layer [`Resume`] schedule
//! ([`forward`]), the float model's recorded observations ([`observe`]) and the one measure
//! of how closely a model reproduces another ([`fidelity`]).
//!
//! It sits under the pass API: it reads the calibration settings and the pipeline's
//! [`crate::pass::RunCache`] from a [`crate::pass::PassContext`], and names no pass.

pub mod fidelity;
pub mod forward;
pub mod observe;
pub mod samples;

pub use fidelity::{fidelity, outputs_of, sqnr_against, Fidelity};
pub use forward::{feed, forward, Resume};
pub use observe::{channel_means, layers_with_channels, sum_f32, FloatObs, OBS_SAMPLES, RECORD_LAYER_BYTES};
pub use samples::{count_samples, load_sample_window, load_samples, open_calib_source, Sample, SampleCache, SAMPLE_CACHE_BYTES};
