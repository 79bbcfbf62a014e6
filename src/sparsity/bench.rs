//! Timing runs (ignored by default): `cargo test --release --lib sparsity::bench -- --ignored --nocapture`.

use super::layout::GroupLayout;
use super::obs::{layer_output_error, obs_prune_2of4, upper_factor_of_inverse, HessianAccumulator};
use super::permute::{search_permutation, PermuteOptions};
use super::testutil::Rng;
use std::time::Instant;

/// Process CPU time (user + system) in seconds, from /proc/self/stat (Linux).
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

struct Timer(Instant, f64);
impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), cpu_s())
    }
    fn show(&self) -> String {
        format!("{:.3}s wall / {:.2}s cpu", self.0.elapsed().as_secs_f64(), cpu_s() - self.1)
    }
}

fn inputs(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    // Cheap correlated inputs: a few shared factors plus noise, ReLU'd.
    let f = 8;
    let load: Vec<f64> = (0..f * cols).map(|_| rng.normal()).collect();
    let mut x = vec![0f32; rows * cols];
    for r in 0..rows {
        let z: Vec<f64> = (0..f).map(|_| rng.normal()).collect();
        for j in 0..cols {
            let mut s = rng.normal() * 0.5;
            for k in 0..f {
                s += z[k] * load[k * cols + j];
            }
            x[r * cols + j] = s.max(0.0) as f32;
        }
    }
    x
}

fn obs_case(name: &str, rows: usize, cols: usize, samples: usize) {
    let mut rng = Rng::new(1);
    let x = inputs(&mut rng, samples, cols);
    let t = Timer::start();
    let mut acc = HessianAccumulator::new(cols);
    acc.add_rows(&x, samples).unwrap();
    let h = acc.hessian().unwrap();
    let th = t.show();
    let t = Timer::start();
    upper_factor_of_inverse(&h, cols).unwrap();
    let tf = t.show();
    let w0: Vec<f32> = (0..rows * cols).map(|_| rng.normal() as f32).collect();
    let mut w = w0.clone();
    let t = Timer::start();
    let st = obs_prune_2of4(&mut w, rows, cols, &h, 0.01, 128).unwrap();
    let to = t.show();
    let t = Timer::start();
    layer_output_error(&w0, &w, rows, cols, &h).unwrap();
    let te = t.show();
    println!(
        "{name}: W {rows}x{cols}: Hessian of {samples} rows {th}; obs_prune_2of4 {to} (of which factorisation {tf}; one error evaluation {te}); error obs/mag = {:.3} ({} fallback rows)",
        st.error_obs / st.error_magnitude,
        st.rows_fallback
    );
}

fn perm_case(k: usize, c: usize, rs: usize) {
    let mut rng = Rng::new(2);
    let w: Vec<f32> = (0..k * c * rs).map(|_| rng.normal() as f32).collect();
    let layout = GroupLayout::conv(&[k, c, rs]).unwrap();
    let t = Timer::start();
    let r = search_permutation(&w, &layout, &PermuteOptions::default()).unwrap();
    println!(
        "permute K={k} C={c} RS={rs}: {}, retained {:.4} -> {:.4}, {} swaps, {} rounds, converged {}",
        t.show(),
        r.retained_identity,
        r.retained_permuted,
        r.swaps,
        r.rounds,
        r.converged
    );
}

#[test]
#[ignore]
fn bench_timings() {
    obs_case("Gemm 1280->1000", 1000, 1280, 8192);
    obs_case("ResNet-56 3x3 conv 64->64 (8x8, 512 images)", 64, 576, 32768);
    obs_case("ResNet-56 3x3 conv 16->16 (32x32, 128 images)", 16, 144, 131072);
    obs_case("MobileNetV2 1x1 conv 320->1280", 1280, 320, 8192);
    obs_case("MobileNetV2 1x1 conv 960->160", 160, 960, 8192);
    perm_case(64, 64, 9);
    perm_case(1000, 1280, 1);
    perm_case(512, 512, 9);
    perm_case(1000, 2048, 1);
    perm_case(4608, 2048, 1);
}
