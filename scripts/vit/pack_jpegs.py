#!/usr/bin/env python3
"""Pack a CIFAR-style JPEG folder (<split>/<class>/*.jpg) into one uncompressed .npz.

The .npz holds the JPEG files' bytes unchanged (no decoding, no re-encoding), so a training
machine receives one file instead of tens of thousands:
  data     uint8 [total bytes]   all JPEG files concatenated, in sorted <class>/<file> order
  offsets  int64 [N + 1]         file i is data[offsets[i]:offsets[i+1]]
  labels   int64 [N]             index of the class folder in the sorted folder names
  classes  str   [10]            the sorted folder names

Usage: pack_jpegs.py SRC_DIR OUT.npz
"""
import argparse
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="folder with one sub-folder of .jpg files per class")
    ap.add_argument("out", help="output .npz")
    a = ap.parse_args()
    classes = sorted(d for d in os.listdir(a.src) if os.path.isdir(os.path.join(a.src, d)))
    if not classes:
        sys.exit(f"error: no class folders in {a.src}")
    blobs, labels = [], []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(a.src, c))):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                with open(os.path.join(a.src, c, f), "rb") as fh:
                    blobs.append(fh.read())
                labels.append(ci)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    tmp = a.out + ".tmp.npz"
    np.savez(tmp, data=data, offsets=offsets, labels=np.array(labels, dtype=np.int64),
             classes=np.array(classes))
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(blobs)} images, {len(classes)} classes, {data.size} bytes")


if __name__ == "__main__":
    main()
