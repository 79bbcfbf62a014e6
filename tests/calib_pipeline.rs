//! End-to-end use of the calibration API as the `calibrate` pass will use it, with the
//! network replaced by two fixed functions of the input ("activations"), checking that the
//! resulting tables do not depend on thread count or sample order.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sparseqc::calib::{
    compute_amax, default_header, open_source, CalibSource, CalibTable, Method, Sample,
    SourceOptions, StatsSet,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/calib-mini")
        .join(name)
}

/// Stand-in for running the model: the input itself, a ReLU of it and a scaled square.
fn activations(sample: &Sample) -> Vec<(String, Vec<f32>)> {
    let x = &sample[0].data;
    vec![
        ("input".to_string(), x.clone()),
        ("relu".to_string(), x.iter().map(|v| v.max(0.0)).collect()),
        (
            "square".to_string(),
            x.iter().map(|v| v * v * 0.5).collect(),
        ),
    ]
}

fn run_pass(src: &dyn CalibSource, set: &mut StatsSet, order: &[usize], threads: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let parts: Vec<StatsSet> = pool.install(|| {
        order
            .par_iter()
            .map(|&i| {
                let mut part = set.fork();
                for (name, values) in activations(&src.sample(i).unwrap()) {
                    part.observe(&name, &values).unwrap();
                }
                part
            })
            .collect()
    });
    for p in &parts {
        set.merge(p).unwrap();
    }
}

fn calibrate(order: &[usize], threads: usize, method: Method) -> String {
    let opts = SourceOptions {
        preprocess: Some(
            "mean=0.4914:0.4822:0.4465,std=0.2470:0.2435:0.2616"
                .parse()
                .unwrap(),
        ),
        limit: None,
    };
    let inputs = vec![("input".to_string(), vec![None, Some(3), Some(32), Some(32)])];
    let src = open_source(&fixture("img"), &opts, &inputs).unwrap();
    let mut set = StatsSet::new();
    run_pass(src.as_ref(), &mut set, order, threads);
    set.begin_histograms().unwrap();
    run_pass(src.as_ref(), &mut set, order, threads);
    let mut table = CalibTable::new(default_header(method));
    for (name, st) in set.finish().unwrap() {
        let c = compute_amax(&st, method).unwrap();
        assert!(c.amax <= st.max_abs && c.amax > 0.0);
        table.insert(name, &c, method);
    }
    table.to_trt_cache().unwrap()
}

#[test]
fn tables_are_independent_of_threads_and_order() {
    let forward: Vec<usize> = (0..8).collect();
    let shuffled = vec![5, 2, 7, 0, 3, 6, 1, 4];
    for method in [
        Method::Entropy,
        Method::Percentile(99.9),
        Method::Mse,
        Method::Max,
    ] {
        let a = calibrate(&forward, 1, method);
        let b = calibrate(&shuffled, 2, method);
        let c = calibrate(
            &forward.iter().rev().copied().collect::<Vec<_>>(),
            2,
            method,
        );
        assert_eq!(a, b, "{method}");
        assert_eq!(a, c, "{method}");
        assert_eq!(a.lines().count(), 4);
        // The cache reads back to the same text.
        let back = CalibTable::from_trt_cache(&a, "x").unwrap();
        assert_eq!(back.to_trt_cache().unwrap(), a);
    }
}
