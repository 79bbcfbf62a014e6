#![no_main]
//! See sparseqc::fuzzing::image_preprocess and docs/reliability.md.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sparseqc::fuzzing::image_preprocess(data) {
        // bad input must give a user error; an internal error is a broken invariant
        assert!(e.kind != sparseqc::ErrorKind::Internal, "{e}");
    }
});
