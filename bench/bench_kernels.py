"""GFLOP/s of each convolution pass (forward, backward-data, backward-weight) at the reference
models' shapes, per cnnbp ISA path (and the mixed_bfloat16 kernels: emulated, and AVX512_BF16
where the CPU has it), beside PyTorch's (when installed) and numpy's sgemm at the
equivalent GEMM size (M = N*P*Q, K = R*S*C, N = filters).

    python bench/bench_kernels.py [--threads 2] [--json out.json]
"""

import argparse
import json
import statistics
import time

import numpy as np

import cnnbp
from cnnbp import _core, ops

# name: (N, H, W, C, K, kernel, padding)
SHAPES = {
    "3->32 32x32 3x3": (64, 32, 32, 3, 32, 3, "valid"),
    "32->32 32x32 3x3": (64, 32, 32, 32, 32, 3, "same"),
    "32->64 16x16 3x3": (64, 16, 16, 32, 64, 3, "same"),
    "64->128 8x8 3x3": (64, 8, 8, 64, 128, 3, "same"),
    "1->6 28x28 5x5": (64, 28, 28, 1, 6, 5, 2),
    "6->16 14x14 5x5": (64, 14, 14, 6, 16, 5, "valid"),
}


def timeit(fn, min_time=0.3, reps=5):
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > min_time / reps:
            break
        n *= 2
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def isas():
    """The float32 paths this CPU runs, then the mixed-precision (bf16) kernels."""
    order = ["baseline", "avx2", "avx512"]
    best = order.index(_core.detected_capability())
    paths = [i for i in order[: best + 1] if i in _core.compiled_capabilities()]
    return paths + ["bf16-emulated"] + (["avx512_bf16"] if _core.bf16_detected() == "avx512_bf16" else [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cnnbp.set_num_threads(a.threads)
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    rows = []
    cols = isas() + (["torch"] if torch else []) + ["np sgemm"]
    print(f"threads: {a.threads}; GFLOP/s per pass (fwd / bwd-data / bwd-weight)")
    print(f"{'shape':20} " + " ".join(f"{c:>22}" for c in cols))
    for name in a.shapes.split(","):
        N, H, W, C, K, k, pad = SHAPES[name]
        x = rng.random((N, H, W, C), dtype=np.float32)
        w = rng.standard_normal((k, k, C, K)).astype(np.float32)
        y = ops.conv2d(x, w, padding=pad)
        P, Q = y.shape[1:3]
        dy = rng.standard_normal(y.shape).astype(np.float32)
        flops = 2.0 * N * P * Q * K * C * k * k
        row = {"shape": name, "gflop": flops / 1e9}
        for isa in isas():
            row[isa] = [flops / 1e9 / timeit(f) for f in (
                lambda: ops.conv2d(x, w, padding=pad, isa=isa),
                lambda: ops.conv2d_backward_data(dy, w, (H, W), padding=pad, isa=isa),
                lambda: ops.conv2d_backward_weight(dy, x, k, padding=pad, isa=isa))]
        if torch:
            tp = pad if isinstance(pad, int) else (k // 2 if pad == "same" else 0)
            xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
            wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
            dyt = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())
            conv = torch.nn.functional.conv2d
            fwd = lambda: conv(xt.detach(), wt.detach(), padding=tp)
            bd = lambda: torch.autograd.grad(conv(xt, wt.detach(), padding=tp), xt, dyt)
            bw = lambda: torch.autograd.grad(conv(xt.detach(), wt, padding=tp), wt, dyt)
            tf = timeit(fwd)
            row["torch"] = [flops / 1e9 / tf, flops / 1e9 / max(timeit(bd) - tf, 1e-9),
                            flops / 1e9 / max(timeit(bw) - tf, 1e-9)]
        A = rng.random((N * P * Q, k * k * C), dtype=np.float32)
        B = rng.random((k * k * C, K), dtype=np.float32)
        g = flops / 1e9 / timeit(lambda: A @ B)
        row["np sgemm"] = [g, g, g]
        rows.append(row)
        print(f"{name:20} " + " ".join(f"{'%6.1f /%6.1f /%6.1f' % tuple(row[c]):>22}" for c in cols), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
