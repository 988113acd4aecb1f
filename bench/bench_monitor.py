"""What the GradientMonitor costs: training images/s of a reference model through fit() without
the monitor, with it every 100 steps (the default: 10 of them read), every 100 steps reading
all 100, and every step, in alternating rounds (each
round times every variant once, so drift hits all alike); medians and ratios.

    python bench/bench_monitor.py [--model seed] [--threads 2] [--rounds 7] [--images 32000]
"""

import argparse
import time

import numpy as np

import cnnbp
from bench_train import SPECS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="seed", choices=sorted(SPECS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--images", type=int, default=32000)
    a = ap.parse_args()
    cnnbp.set_num_threads(a.threads)
    shape, batch, opt = SPECS[a.model]
    rng = np.random.default_rng(0)
    x = rng.random((a.images,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, a.images)
    cnnbp.set_seed(0)
    model = cnnbp.applications.MODELS[a.model](shape, 10)
    model.compile(optimizer=cnnbp.optimizers.Adam() if opt == "adam" else cnnbp.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    variants = {"off": None, "every=100": (100, None), "every=100 samples=100": (100, 100), "every=1": (1, None)}
    times = {k: [] for k in variants}
    model.fit(x[: batch * 20], y[: batch * 20], batch_size=batch, verbose=0)  # warm-up: plans, pages
    for _ in range(a.rounds):
        for name, every in variants.items():
            cbs = [] if every is None else [cnnbp.callbacks.GradientMonitor(every=every[0], samples=every[1],
                                                                            warn=False)]
            t = time.perf_counter()
            model.fit(x, y, batch_size=batch, verbose=0, shuffle=False, callbacks=cbs)
            times[name].append(time.perf_counter() - t)
    base = float(np.median(times["off"]))
    print(f"{a.model}, batch {batch}, {a.images} images per fit, {a.threads} threads, {cnnbp.cpu_capability()} "
          f"kernels, median of {a.rounds} rounds")
    for name in variants:
        med = float(np.median(times[name]))
        print(f"  monitor {name:22s} {a.images / med:9.0f} images/s   time x{med / base:.3f}")


if __name__ == "__main__":
    main()
