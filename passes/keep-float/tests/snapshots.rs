//! Snapshot tests of the keep-float pass: text-form model in, text-form model and report
//! out (sparseqc::testing), plus a check that the rewrite keeps the model's function.

use sparseqc::pass::Registry;
use sparseqc::testing::{assert_same_function, check_pipeline_with_report, pipeline_error, run_pipeline};

const SMALL: &str = include_str!("small.sqc");

fn registry() -> Registry {
    let mut reg = Registry::new();
    keep_float::register(&mut reg).expect("register");
    reg
}

#[test]
fn first_and_last_layers() {
    insta::assert_snapshot!(check_pipeline_with_report(SMALL, "keep-float{first=true,last=true}", &registry()));
}

#[test]
fn by_pattern_and_channel_count() {
    insta::assert_snapshot!(check_pipeline_with_report(SMALL, "keep-float{layers=op:Gemm,min-channels=4}", &registry()));
}

#[test]
fn running_twice_changes_nothing_more() {
    let out = check_pipeline_with_report(SMALL, "keep-float{first=true},keep-float{first=true}", &registry());
    assert!(out.contains("conv1 (Conv) unchanged: first quantizable layer"), "{out}");
}

#[test]
fn needs_something_to_do() {
    insta::assert_snapshot!(pipeline_error(SMALL, "keep-float", &registry()), @"pass 'keep-float' has nothing to do: give layers=PATTERN, first, last or min-channels=N");
}

#[test]
fn keeps_the_function() {
    let run = run_pipeline(SMALL, "keep-float{first=true,last=true}", &registry()).expect("pipeline");
    assert_same_function(&run.before, &run.after, 1e-6);
}
