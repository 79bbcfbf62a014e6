//! Calibration (placeholder, filled below).
pub mod methods;
pub mod stats;
