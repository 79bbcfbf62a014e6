//! The numeric core of 2:4 structured sparsity: where the groups lie, magnitude pruning
//! and the pattern check, input-channel permutation search, and one-shot layer-wise
//! reconstruction (OBS / SparseGPT style). Everything here works on plain `f32`/`f64`
//! slices with explicit shapes, independent of the IR; the `prune-2of4` pass and
//! `inspect --sparsity` wire it to the model.
//!
//! # TensorRT's rule
//! TensorRT's sparse kernels (Conv and fully connected / MatMul layers with constant
//! weights, builder flag `kSPARSE_WEIGHTS`) need, for every output channel and every
//! kernel position, at least two zeros in every four consecutive **input channels**.
//! For a Conv weight `K×C×R×S` the groups run along `C`, separately for each `(k, r, s)`.
//! Grouping four consecutive elements of the flattened `C·R·S` axis, as some pruners do,
//! is a different pattern for kernels larger than 1×1 and is not what TensorRT checks
//! (see the test `flattened_crs_grouping_is_not_tensorrt_rule` in [`mask`]).
//!
//! # Axis conventions (as Polygraphy's `surgeon prune` / `inspect sparsity`)
//! - Conv weight `K×C×spatial…`: axis 1 ([`GroupLayout::conv`]); 1-D and 3-D kernels too.
//! - MatMul constant `B` (`K×N`): axis 0 ([`GroupLayout::matmul_b`]).
//! - Gemm `B`: axis 0, or axis 1 when `transB=1` (`N×K`) ([`GroupLayout::gemm_b`]).
//! - One definition of the axis: [`reduction_axis`]; one of eligibility: an axis whose
//!   length is not a multiple of 4 is not eligible ([`GroupLayout::try_new`] says why), no
//!   short last group is checked or pruned (Polygraphy skips such weights too); grouped and
//!   depthwise convolutions are not considered by TensorRT ([`reduction_axis`] gives none).
//! - One check: [`check_2of4_by`] (any element type through an is-zero test), used by the
//!   testing kit, `inspect` and the TensorRT lowering's report.
//!
//! # Algorithms
//! - [`mask`]: keep the two largest `|w|` of each group, ties to the lower index
//!   (deterministic). [`check_2of4`] counts groups with fewer than two zeros.
//! - [`permute`]: a swap-based local search over input-channel permutations that
//!   maximises the magnitude kept by 2:4 pruning (after Pool & Yu, "Channel Permutations
//!   for N:M Sparsity", 2021). It starts from the identity and accepts only
//!   improvements, so it never keeps less than the original order; the amount of work is
//!   bounded and the result does not depend on the number of threads.
//! - [`obs`]: layer-wise reconstruction. With the Hessian `H = XᵀX/n` of the layer's
//!   inputs on calibration data (Conv inputs unfolded by [`obs::im2col`] into patches
//!   whose columns are ordered `(kernel position, channel)`, so four consecutive columns
//!   are four consecutive input channels), columns are processed left to right using the
//!   upper Cholesky factor `U` of `(H + λI)⁻¹`: in each group of four columns each row
//!   drops the two weights with the smallest saliency `w²/U_jj²`, and the error is pushed
//!   onto the row's later columns (the OBS update), lazily in column blocks. Per row, the
//!   result is compared with plain magnitude pruning on the given `H` and the better one
//!   is kept, so reconstruction never increases a layer's output error on the
//!   calibration data. Everything is parallel over rows with `rayon` and deterministic.

pub mod layout;
pub mod mask;
pub mod obs;
pub mod permute;


pub use layout::{reduction_axis, GroupIter, GroupLayout, Ineligible, WeightedKind};
pub use mask::{check_2of4, check_2of4_by, keep_two_of_four, prune_2of4_magnitude, retained_fraction_2of4, CheckResult, PruneStats};
pub use obs::{
    conv_weight_to_rows, im2col, layer_output_error, obs_prune_2of4, obs_prune_2of4_layout, rows_to_conv_weight,
    transpose, ConvGeometry, HessianAccumulator, ObsStats, Patches,
};
pub use permute::{invert_permutation, permute_axis, search_permutation, PermutationResult, PermuteOptions};

#[cfg(test)]
pub(crate) mod testutil {
    /// A small deterministic generator for tests (SplitMix64).
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [0, 1).
        pub fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Standard normal (Box–Muller).
        pub fn normal(&mut self) -> f64 {
            let u1 = 1.0 - self.uniform();
            let u2 = self.uniform();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }
}
