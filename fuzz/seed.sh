#!/usr/bin/env bash
# Builds fuzz/corpus/<target> from testdata/ (the corpus itself is not committed).
# Needs the release binary (target/release/sparseqc) for the text seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
mkdir -p $C/onnx_roundtrip $C/pass_pipeline $C/text_roundtrip $C/npy_read $C/image_preprocess
n=0
for m in $(find testdata -name '*.onnx' -size -64k | sort); do
  n=$((n+1))
  cp "$m" $C/onnx_roundtrip/seed$n.onnx
  cp "$m" $C/pass_pipeline/seed$n.onnx
  target/release/sparseqc print "$m" > $C/text_roundtrip/seed$n.txt 2>/dev/null || rm -f $C/text_roundtrip/seed$n.txt
done
# snapshot files hold the text form after a '---' front matter
for s in tests/snapshots/*.snap; do
  b=$(basename "$s" .snap)
  awk 'c>=2{print} /^---$/{c++}' "$s" | head -c 16000 > $C/text_roundtrip/$b.txt
done
find passes -name '*.sqc' -exec cp {} $C/text_roundtrip/ \;
for f in $(find testdata -name '*.npy' -size -16k -o -name '*.npz' -size -16k); do
  cp "$f" $C/npy_read/$(echo "$f" | tr / _)
done
for f in $(find testdata/calib-mini testdata/cifar10-mini -iname '*.jp*g' -o -iname '*.png' | sort | head -60); do
  cp "$f" $C/image_preprocess/$(echo "$f" | tr / _)
done
ls $C | while read t; do echo "$t: $(ls $C/$t | wc -l) seeds"; done
