"""Independent numpy implementation of histogram entropy calibration (pytorch-quantization's
algorithm: linspace grouping into 128 levels, outliers folded into the last bin of P, Q spread
over the nonzero bins of the unfolded histogram), used to cross-check src/calib/methods.rs.

Usage: python entropy_ref.py hist.json, where hist.json is a list of
{"name":..., "range": float, "bins": [2048 counts, exact zeros already removed from bin 0]}.
Prints the amax per histogram."""
import json
import sys

import numpy as np


def kl(p, q):
    p = p / p.sum()
    q = q / q.sum()
    m = p > 0
    if np.any(q[m] == 0):
        return np.inf
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def entropy_amax(bins, rng, start=128, levels=128):
    bins = np.asarray(bins, dtype=np.float64)
    edges = np.linspace(0, rng, len(bins) + 1)
    divs = []
    for i in range(start, len(bins) + 1):
        group = np.digitize(np.arange(i), np.linspace(0, i, num=levels + 1)) - 1
        group[bins[:i] == 0] = -1
        sums = np.zeros(levels)
        nonzero = np.zeros(levels)
        for k, g in enumerate(group):
            if g != -1:
                sums[g] += bins[k]
                nonzero[g] += 1
        q = np.zeros(i)
        for k, g in enumerate(group):
            if g != -1:
                q[k] = sums[g] / nonzero[g]
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        divs.append(kl(p, q))
    divs = np.array(divs)
    best = len(divs) - 1 - int(np.argmin(divs[::-1]))  # last minimum
    return edges[best + start]


if __name__ == "__main__":
    for h in json.load(open(sys.argv[1])):
        print(h["name"], entropy_amax(h["bins"], h["range"]))
