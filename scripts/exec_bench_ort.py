"""Reference side of the exec benchmark: makes deterministic inputs, runs onnxruntime on them
(2 threads), reports images/s and compares the interpreter's logits (relative L2).

  python scripts/exec_bench_ort.py make  OUT.f32 C H W N            # N random images
  python scripts/exec_bench_ort.py bench MODEL.onnx INPUT.f32 C H W SAMPLES [OURS.f32]

Environment: ORT_NO_SPIN=1 stops idle worker threads from spinning (for CPU-time
measurements with `perf stat -e task-clock`), ORT_ONLY_LOOP=1 runs only the batch-1 loop.
"""
import os, sys, time
import numpy as np

def make(out, c, h, w, n):
    rng = np.random.default_rng(0)
    rng.standard_normal((n, c, h, w), dtype=np.float32).tofile(out)

def bench(model, inp, c, h, w, samples, ours=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    if os.environ.get("ORT_NO_SPIN"):
        # for CPU-time measurements: idle threads sleep instead of spinning
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    only_loop = bool(os.environ.get("ORT_ONLY_LOOP"))
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.fromfile(inp, dtype=np.float32).reshape(-1, c, h, w)
    n = x.shape[0]
    idx = [i % n for i in range(samples)]
    sess.run(None, {name: x[:1]})
    t = time.perf_counter()
    for i in idx:
        sess.run(None, {name: x[i:i + 1]})
    dt1 = time.perf_counter() - t
    print(f"ort batch=1 loop: {samples / dt1:.1f} images/s")
    for bs in (() if only_loop else (8, 32)):
        xb = np.concatenate([x[idx[j % samples]][None] for j in range(bs)])
        sess.run(None, {name: xb})
        reps = max(1, samples // bs)
        t = time.perf_counter()
        for _ in range(reps):
            sess.run(None, {name: xb})
        dt = time.perf_counter() - t
        print(f"ort batch={bs}: {reps * bs / dt:.1f} images/s")
    if ours:
        ref = sess.run(None, {name: x})[0]
        got = np.fromfile(ours, dtype=np.float32).reshape(ref.shape[0], -1)[: ref.shape[0]]
        ref = ref.reshape(got.shape)
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        per = max(np.linalg.norm(got[i] - ref[i]) / np.linalg.norm(ref[i]) for i in range(ref.shape[0]))
        print(f"logits vs ort: relative L2 {rel:.3e} (worst sample {per:.3e}), argmax agree "
              f"{(got.argmax(1) == ref.argmax(1)).mean() * 100:.1f}%")

if __name__ == "__main__":
    a = sys.argv
    if a[1] == "make":
        make(a[2], int(a[3]), int(a[4]), int(a[5]), int(a[6]))
    else:
        bench(a[2], a[3], int(a[4]), int(a[5]), int(a[6]), int(a[7]), a[8] if len(a) > 8 else None)
