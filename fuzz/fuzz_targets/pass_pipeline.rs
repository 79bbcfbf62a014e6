#![no_main]
//! See sparseqc::fuzzing::pass_pipeline and docs/reliability.md.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sparseqc::fuzzing::pass_pipeline(data) {
        // bad input must give a user error; an internal error is a broken invariant
        assert!(e.kind != sparseqc::ErrorKind::Internal, "{e}");
    }
});
