//! Throughput benchmark and output dump of the reference interpreter (`sparseqc::exec`).
//!
//! ```text
//! cargo run --release --example exec_bench -- MODEL.onnx INPUT.f32 C H W [SAMPLES] [THREADS] [OUT.f32]
//! ```
//! INPUT.f32 holds `SAMPLES` images of shape [1, C, H, W] as raw little-endian float32 (the
//! file is reused cyclically if it holds fewer). Runs them with `Session::run_batch` on a
//! rayon pool of THREADS threads, prints images/s, and writes all logits to OUT.f32.

use std::time::Instant;

use prost::Message;
use sparseqc::exec::{Program, Session, Tensor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        anyhow::bail!("usage: exec_bench MODEL.onnx INPUT.f32 C H W [SAMPLES] [THREADS] [OUT.f32]");
    }
    let (c, h, w): (usize, usize, usize) = (args[3].parse()?, args[4].parse()?, args[5].parse()?);
    let samples: usize = args.get(6).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let threads: usize = args.get(7).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let bytes = std::fs::read(&args[1])?;
    let model = sparseqc::proto::ModelProto::decode(bytes.as_slice())?;
    let t0 = Instant::now();
    let program = Program::from_model(&model).map_err(|e| anyhow::anyhow!("{e}"))?;
    let session = Session::new(program).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("session ready in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    let raw = std::fs::read(&args[2])?;
    let data: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let per = c * h * w;
    let avail = data.len() / per;
    anyhow::ensure!(avail > 0, "input file holds less than one image");
    let input = session.program().inputs[0];
    let output = session.program().outputs[0];
    let make = |n: usize| -> Vec<Vec<(usize, Tensor)>> {
        (0..n)
            .map(|i| {
                let j = i % avail;
                vec![(input, Tensor::new(vec![1, c, h, w], data[j * per..(j + 1) * per].to_vec()).unwrap())]
            })
            .collect()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    // warm-up
    pool.install(|| session.run_batch(make(threads.max(2)), &[output])).map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = make(samples);
    let t = Instant::now();
    let res = pool.install(|| session.run_batch(batch, &[output])).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{}: {samples} images in {:.3} s on {threads} threads: {:.1} images/s",
        args[1],
        dt,
        samples as f64 / dt
    );
    if std::env::var_os("EXEC_PROFILE").is_some() {
        // per op type time of single-sample runs on this thread
        let plan = session.plan(&[input], &[output]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut by_op: std::collections::BTreeMap<String, f64> = Default::default();
        let mut by_node: std::collections::BTreeMap<usize, f64> = Default::default();
        let reps = samples.min(avail).max(1);
        for s in make(reps) {
            let (_, times) =
                pool.install(|| session.run_plan_profiled(&plan, s)).map_err(|e| anyhow::anyhow!("{e}"))?;
            for (n, t) in times {
                *by_op.entry(session.program().nodes[n].op_type.clone()).or_default() += t / reps as f64;
                *by_node.entry(n).or_default() += t / reps as f64;
            }
        }
        let mut v: Vec<_> = by_op.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (op, t) in v {
            println!("  {op:<20} {:8.3} ms/image", t * 1e3);
        }
        let mut v: Vec<_> = by_node.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("  slowest nodes:");
        for (n, t) in v.into_iter().take(12) {
            let node = &session.program().nodes[n];
            println!("  {:<60} {:8.3} ms/image", format!("{} ({})", node.name, node.op_type), t * 1e3);
        }
    }
    if let Some(out) = args.get(8) {
        let mut buf = Vec::new();
        for r in res.iter().take(avail) {
            for v in r[0].as_f32().map_err(|e| anyhow::anyhow!("{e}"))? {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        std::fs::write(out, buf)?;
    }
    Ok(())
}
