//! Timing of the 2:4 numerics on synthetic layers of the shared models' sizes (a benchmark,
//! not a test): `cargo run --release --example sparsity_bench`.

use std::time::Instant;

use anyhow::{anyhow, Result};
use sparseqc::sparsity::{layer_output_error, obs_prune_2of4, search_permutation, GroupLayout, HessianAccumulator, PermuteOptions};

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

/// splitmix64 with an approximately normal draw (sum of 4 uniforms, centred and scaled).
struct Gen(u64);
impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.uniform()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

/// Cheap correlated inputs: a few shared factors plus noise, ReLU'd.
fn inputs(g: &mut Gen, rows: usize, cols: usize) -> Vec<f32> {
    let f = 8;
    let load: Vec<f64> = (0..f * cols).map(|_| g.normal()).collect();
    let mut x = vec![0f32; rows * cols];
    for r in 0..rows {
        let z: Vec<f64> = (0..f).map(|_| g.normal()).collect();
        for j in 0..cols {
            let s = g.normal() * 0.5 + (0..f).map(|k| z[k] * load[k * cols + j]).sum::<f64>();
            x[r * cols + j] = s.max(0.0) as f32;
        }
    }
    x
}

fn obs_case(name: &str, rows: usize, cols: usize, samples: usize) -> Result<()> {
    let mut g = Gen(1);
    let x = inputs(&mut g, samples, cols);
    let t = Timer::start();
    let mut acc = HessianAccumulator::new(cols);
    acc.add_rows(&x, samples).map_err(|e| anyhow!("{e}"))?;
    let h = acc.hessian().map_err(|e| anyhow!("{e}"))?;
    let th = t.show();
    let w0: Vec<f32> = (0..rows * cols).map(|_| g.normal() as f32).collect();
    let mut w = w0.clone();
    let t = Timer::start();
    let st = obs_prune_2of4(&mut w, rows, cols, &h, 0.01, 128).map_err(|e| anyhow!("{e}"))?;
    let to = t.show();
    let t = Timer::start();
    layer_output_error(&w0, &w, rows, cols, &h).map_err(|e| anyhow!("{e}"))?;
    let te = t.show();
    println!(
        "{name}: W {rows}x{cols}: Hessian of {samples} rows {th}; obs_prune_2of4 {to} (one error evaluation {te}); error obs/mag = {:.3} ({} fallback rows)",
        st.error_obs / st.error_magnitude,
        st.rows_fallback
    );
    Ok(())
}

fn perm_case(k: usize, c: usize, rs: usize) -> Result<()> {
    let mut g = Gen(2);
    let w: Vec<f32> = (0..k * c * rs).map(|_| g.normal() as f32).collect();
    let layout = GroupLayout::conv(&[k, c, rs]).map_err(|e| anyhow!("{e}"))?;
    let t = Timer::start();
    let r = search_permutation(&w, &layout, &PermuteOptions::default()).map_err(|e| anyhow!("{e}"))?;
    println!(
        "permute K={k} C={c} RS={rs}: {}, retained {:.4} -> {:.4}, {} swaps, {} rounds, converged {}",
        t.show(),
        r.retained_identity,
        r.retained_permuted,
        r.swaps,
        r.rounds,
        r.converged
    );
    Ok(())
}

fn main() -> Result<()> {
    obs_case("Gemm 1280->1000", 1000, 1280, 8192)?;
    obs_case("ResNet-56 3x3 conv 64->64 (8x8, 512 images)", 64, 576, 32768)?;
    obs_case("ResNet-56 3x3 conv 16->16 (32x32, 128 images)", 16, 144, 131072)?;
    obs_case("MobileNetV2 1x1 conv 320->1280", 1280, 320, 8192)?;
    obs_case("MobileNetV2 1x1 conv 960->160", 160, 960, 8192)?;
    perm_case(64, 64, 9)?;
    perm_case(1000, 1280, 1)?;
    perm_case(512, 512, 9)?;
    perm_case(1000, 2048, 1)?;
    perm_case(4608, 2048, 1)
}
