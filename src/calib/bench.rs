//! Timing of image decoding + preprocessing (ignored by default), single thread:
//!
//! ```text
//! SPARSEQC_BENCH_CIFAR=<folder of CIFAR-10 images> \
//! SPARSEQC_BENCH_IMAGENET=<folder of ImageNet images> \
//! cargo test --release --lib calib::bench -- --ignored --nocapture
//! ```
//!
//! CIFAR images get the CIFAR normalisation and no resize; ImageNet images MobileNetV2's
//! `resize=256,crop=224` with the ImageNet mean/std. Without the variables the fixture folder
//! is timed. `SPARSEQC_BENCH_DUMP=<folder>` also writes each set's tensors as
//! `<set>.npy` (`[N, 3, H, W]` f32, file order), for comparison with a Python pipeline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::data::{ImageFolder, Preprocess};
use super::jpeg;

/// CPU time of the calling thread in seconds (Linux `/proc/thread-self/schedstat`, ns on CPU),
/// so that the figures hold on a busy machine too; 0 where unavailable.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |ns| ns / 1e9)
}

/// Wall and thread-CPU seconds since `start`.
fn since(start: (Instant, f64)) -> (f64, f64) {
    (start.0.elapsed().as_secs_f64(), thread_cpu_s() - start.1)
}

fn time_folder(set: &str, dir: &Path, spec: &str) {
    let pre: Preprocess = spec.parse().unwrap();
    let folder = ImageFolder::open(dir, "input", pre, None).unwrap();
    let files = folder.files().to_vec();
    // Read the files once so that the timing does not depend on the page cache.
    let contents: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let bytes: u64 = contents.iter().map(|c| c.len() as u64).sum();
    // JPEG decoding alone, from memory.
    let t = (Instant::now(), thread_cpu_s());
    let mut jpegs = 0;
    for c in contents.iter().filter(|c| jpeg::is_jpeg(c)) {
        std::hint::black_box(jpeg::decode_rgb(c).unwrap());
        jpegs += 1;
    }
    let (s, cpu) = since(t);
    println!(
        "{set}: {jpegs} JPEGs decoded from memory: {s:.3} s wall, {cpu:.3} s cpu: {:.0} images/s (cpu)",
        jpegs as f64 / cpu
    );
    let t = (Instant::now(), thread_cpu_s());
    let mut tensors = Vec::with_capacity(files.len());
    for f in &files {
        tensors.push(folder.load(f).unwrap());
    }
    let (s, cpu) = since(t);
    println!(
        "{set}: {} images ({:.1} MB) read + decode + preprocess '{spec}': {s:.3} s wall, {cpu:.3} s cpu: {:.0} images/s (cpu), {:.0} (wall)",
        files.len(),
        bytes as f64 / 1e6,
        files.len() as f64 / cpu,
        files.len() as f64 / s
    );
    if let Some(out) = std::env::var_os("SPARSEQC_BENCH_DUMP") {
        let shape = &tensors[0].shape;
        assert!(
            tensors.iter().all(|t| &t.shape == shape),
            "{set}: sizes vary"
        );
        let data: Vec<f32> = tensors
            .iter()
            .flat_map(|t| t.data.iter().copied())
            .collect();
        let mut full = vec![tensors.len()];
        full.extend_from_slice(&shape[1..]);
        let mut f = std::fs::File::create(PathBuf::from(out).join(format!("{set}.npy"))).unwrap();
        super::npy::write_npy_f32(&mut f, &full, &data).unwrap();
    }
}

#[test]
#[ignore]
fn bench_decode_preprocess() {
    const CIFAR: &str = "mean=0.4914:0.4822:0.4465,std=0.2470:0.2435:0.2616";
    const IMAGENET: &str = "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225";
    let mut any = false;
    if let Some(d) = std::env::var_os("SPARSEQC_BENCH_CIFAR") {
        time_folder("cifar", Path::new(&d), CIFAR);
        any = true;
    }
    if let Some(d) = std::env::var_os("SPARSEQC_BENCH_IMAGENET") {
        time_folder("imagenet", Path::new(&d), IMAGENET);
        any = true;
    }
    if !any {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/calib-mini/img");
        time_folder("fixtures", &d, CIFAR);
    }
}
