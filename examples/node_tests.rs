//! Runs the ONNX backend node tests of the listed ops through sparseqc's importer and
//! interpreter (`sparseqc::conformance::run_case`) and prints per-op pass/fail counts and
//! every failure with its reason. Usage (scripts/node-tests.sh does this):
//!
//! ```text
//! cargo run --release --example node_tests -- NODE_DIR [--ops Op1,Op2,...] [--extra Op,...] [--markdown]
//! ```
//!
//! Without `--ops` the ops are those of issue 18's list. `--extra` adds ops reported in a
//! second table and left out of the headline rate. A test belongs to op X when its model is
//! one node of type X (the `_expanded` function-body variants are left out).

use std::collections::BTreeMap;
use std::path::PathBuf;

const ISSUE_OPS: &[&str] = &[
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "LRN", "Resize", "Upsample", "Gelu", "Pow",
    "Sqrt", "Reciprocal", "Tile", "Einsum", "TopK", "ArgMax", "ArgMin", "CumSum", "Trilu", "Mod", "GatherElements",
    "GatherND", "ScatterND", "OneHot", "Sin", "Cos", "Neg", "Abs", "Log", "Exp", "Tanh", "Sigmoid", "ReduceL2",
    "ReduceProd", "ReduceLogSumExp", "NonZero", "Shrink", "PRelu", "Selu", "DepthToSpace", "SpaceToDepth",
];

#[derive(Default)]
struct Row {
    tests: usize,
    passed: usize,
    failures: Vec<(String, String)>,
}

fn print_table(title: &str, rows: &BTreeMap<String, Row>, order: &[String], markdown: bool) -> (usize, usize) {
    let (mut t, mut p) = (0, 0);
    println!("\n{title}");
    if markdown {
        println!("| op | tests | passed | failed |\n|---|---:|---:|---:|");
    }
    for op in order {
        let r = rows.get(op.as_str()).map_or((0, 0), |r| (r.tests, r.passed));
        t += r.0;
        p += r.1;
        if markdown {
            println!("| {op} | {} | {} | {} |", r.0, r.1, r.0 - r.1);
        } else {
            println!("{op:<24} tests {:>3}  passed {:>3}  failed {:>3}", r.0, r.1, r.0 - r.1);
        }
    }
    let pct = if t == 0 { 0.0 } else { 100.0 * p as f64 / t as f64 };
    println!("TOTAL {title}: {p} / {t} passed ({pct:.1} %)");
    (t, p)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let mut ops: Vec<String> = ISSUE_OPS.iter().map(|s| s.to_string()).collect();
    let mut extra: Vec<String> = Vec::new();
    let mut markdown = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ops" => ops = it.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            "--extra" => extra = it.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            "--markdown" => markdown = true,
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: node_tests NODE_DIR [--ops A,B] [--extra C,D] [--markdown]");
        std::process::exit(2);
    };
    let mut cases: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("model.onnx").exists()).collect(),
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            std::process::exit(2);
        }
    };
    cases.sort();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for case in &cases {
        let name = case.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let op = match sparseqc::conformance::case_op(case) {
            Ok(Some(op)) => op,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("{name}: {e}");
                continue;
            }
        };
        if !ops.contains(&op) && !extra.contains(&op) {
            continue;
        }
        let row = rows.entry(op).or_default();
        row.tests += 1;
        // a kernel bug must not end the run: count a panic as a failure
        match std::panic::catch_unwind(|| sparseqc::conformance::run_case(case)) {
            Ok(Ok(())) => row.passed += 1,
            Ok(Err(e)) => row.failures.push((name, e)),
            Err(_) => row.failures.push((name, "PANIC".to_string())),
        }
    }
    println!("FAILURES");
    for (op, r) in &rows {
        for (name, why) in &r.failures {
            println!("{op}\t{name}\t{why}");
        }
    }
    let (t, p) = print_table("issue 18 ops", &rows, &ops, markdown);
    if !extra.is_empty() {
        print_table("other ops", &rows, &extra, markdown);
    }
    if t == 0 || p * 100 < t * 95 {
        std::process::exit(1);
    }
}
