//! Timing of image decoding + preprocessing, single thread (a benchmark, not a test):
//!
//! ```text
//! cargo run --release --example calib_bench -- [cifar|imagenet] [DIR] [DUMP_DIR]
//! ```
//!
//! `cifar` (default) uses the CIFAR normalisation and no resize; `imagenet` MobileNetV2's
//! `resize=256,crop=224` with the ImageNet mean/std. DIR defaults to the fixture folder
//! `testdata/calib-mini/img`. With DUMP_DIR each set's tensors are also written as
//! `<set>.npy` (`[N, 3, H, W]` f32, file order), for comparison with a Python pipeline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use sparseqc::calib::{jpeg, npy, ImageFolder, Preprocess};

/// CPU time of the calling thread in seconds (Linux `/proc/thread-self/schedstat`, ns on CPU),
/// so that the figures hold on a busy machine too; 0 where unavailable.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns / 1e9)
}

/// Wall and thread-CPU seconds since `start`.
fn since(start: (Instant, f64)) -> (f64, f64) {
    (start.0.elapsed().as_secs_f64(), thread_cpu_s() - start.1)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let set = args.get(1).map(String::as_str).unwrap_or("cifar");
    let spec = match set {
        "cifar" => "mean=0.4914:0.4822:0.4465,std=0.2470:0.2435:0.2616",
        "imagenet" => "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225",
        s => bail!("unknown set '{s}': cifar or imagenet"),
    };
    let dir = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/calib-mini/img"));
    let pre: Preprocess = spec.parse().map_err(|e| anyhow!("{e}"))?;
    let folder = ImageFolder::open(&dir, "input", pre, None).map_err(|e| anyhow!("{e}"))?;
    let files = folder.files().to_vec();
    // Read the files once so that the timing does not depend on the page cache.
    let contents = files.iter().map(std::fs::read).collect::<std::io::Result<Vec<Vec<u8>>>>()?;
    let bytes: u64 = contents.iter().map(|c| c.len() as u64).sum();
    // JPEG decoding alone, from memory.
    let t = (Instant::now(), thread_cpu_s());
    let mut jpegs = 0;
    for c in contents.iter().filter(|c| jpeg::is_jpeg(c)) {
        std::hint::black_box(jpeg::decode_rgb(c).map_err(|e| anyhow!("{e}"))?);
        jpegs += 1;
    }
    let (s, cpu) = since(t);
    println!("{set}: {jpegs} JPEGs decoded from memory: {s:.3} s wall, {cpu:.3} s cpu: {:.0} images/s (cpu)", jpegs as f64 / cpu);
    let t = (Instant::now(), thread_cpu_s());
    let mut tensors = Vec::with_capacity(files.len());
    for f in &files {
        tensors.push(folder.load(f).map_err(|e| anyhow!("{e}"))?);
    }
    let (s, cpu) = since(t);
    println!(
        "{set}: {} images ({:.1} MB) read + decode + preprocess '{spec}': {s:.3} s wall, {cpu:.3} s cpu: {:.0} images/s (cpu), {:.0} (wall)",
        files.len(),
        bytes as f64 / 1e6,
        files.len() as f64 / cpu,
        files.len() as f64 / s
    );
    if let (Some(out), Some(first)) = (args.get(3), tensors.first()) {
        let shape = first.shape.clone();
        if tensors.iter().any(|t| t.shape != shape) {
            bail!("{set}: image sizes vary, cannot stack them");
        }
        let data: Vec<f32> = tensors.iter().flat_map(|t| t.data.iter().copied()).collect();
        let mut full = vec![tensors.len()];
        full.extend_from_slice(&shape[1..]);
        let mut f = std::fs::File::create(PathBuf::from(out).join(format!("{set}.npy")))?;
        npy::write_npy_f32(&mut f, &full, &data).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}
