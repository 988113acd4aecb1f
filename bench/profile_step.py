"""Where a training step's time goes: per-layer forward and backward milliseconds of a
reference model (cnnbp's own timers around each layer pass).

    python bench/profile_step.py --model resnet20 [--batch 128] [--threads 2] [--steps 20]
                                 [--no-prologue]   (BatchNormalization+ReLU stored, not fused)
"""

import argparse
from collections import defaultdict

import numpy as np

import cnnbp
from bench_train import SPECS  # the same models, batches and optimizers as the throughput bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="seed", choices=sorted(SPECS))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--policy", default="float32", help="float32 or mixed_bfloat16 (cnnbp.mixed_precision)")
    ap.add_argument("--no-prologue", action="store_true",
                    help="store each BatchNormalization+ReLU output (network.prologue_fusion off)")
    a = ap.parse_args()
    cnnbp.set_num_threads(a.threads)
    shape, batch, opt = SPECS[a.model]
    batch = a.batch or batch
    cnnbp.mixed_precision.set_global_policy(a.policy)
    model = cnnbp.applications.MODELS[a.model](shape, 10)
    model.compile(optimizer=cnnbp.optimizers.Adam() if opt == "adam" else cnnbp.optimizers.SGD(0.01, momentum=0.9),
                  loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    net = model.network
    net.prologue_fusion = not a.no_prologue
    for _ in range(5):
        net.train_step(x, y)
    net.set_profiling(True)
    for _ in range(a.steps):
        net.train_step(x, y)
    p = net.profile()
    ms = 1000.0 / p["steps"]
    total = 0.0
    by_kind = defaultdict(float)
    print(f"{a.model} batch {batch}, {a.threads} threads, {cnnbp.cpu_capability()}: ms per step")
    print(f"{'layer':28} {'forward':>9} {'backward':>9}")
    for l in p["layers"]:
        total += l["forward_s"] + l["backward_s"]
        by_kind[l["kind"]] += l["forward_s"] + l["backward_s"]
        print(f"{l['name'] + ' (' + l['kind'] + ')':28} {l['forward_s'] * ms:9.3f} {l['backward_s'] * ms:9.3f}")
    total += p["loss_s"] + p["update_s"]
    print(f"{'loss':28} {p['loss_s'] * ms:9.3f}\n{'update':28} {p['update_s'] * ms:9.3f}")
    print(f"{'total':28} {total * ms:9.3f}  ({batch / (total * ms / 1000):,.0f} img/s)")
    by_kind["loss + update"] = p["loss_s"] + p["update_s"]
    print("\nshare of the step by layer kind (forward + backward)")
    for kind, s in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"{kind:28} {s * ms:9.3f}  {100 * s / total:5.1f} %")


if __name__ == "__main__":
    main()
