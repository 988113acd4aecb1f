"""One layer's training step (forward + backward + update; the layer's output averaged over its
positions under an MSE loss, so that the loss costs next to nothing) in cnnbp and in PyTorch side by side: the new convolution kinds (depthwise, separable, grouped,
transposed, 1-D) and upsampling at MobileNet / autoencoder sizes, with a plain 3x3 and a 1x1
convolution of the same sizes for scale. Each (framework, case) runs in its own process,
frameworks alternate, medians over timed windows are reported.

    python bench/bench_layers.py [--threads 2] [--batch 64] [--cases dw3,convT]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench_train import have_torch, machine, time_steps

CASES = {  # name: (input shape HWC or (steps, channels), cnnbp layer, torch module), built lazily
    "conv3x3": ((32, 32, 32), "L.Conv2D(32, 3, padding='same')", "nn.Conv2d(32, 32, 3, padding=1)"),
    "conv1x1": ((32, 32, 32), "L.Conv2D(64, 1)", "nn.Conv2d(32, 64, 1)"),
    "conv1x1+up": ((16, 16, 32), "L.Conv2D(32, 1)", "nn.Conv2d(32, 32, 1)"),   # the 1x1 under "upsample"
    "dw3": ((32, 32, 32), "L.DepthwiseConv2D(3, padding='same')", "nn.Conv2d(32, 32, 3, padding=1, groups=32)"),
    "dw3s2": ((32, 32, 64), "L.DepthwiseConv2D(3, strides=2, padding='same')",
              "nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64)"),
    "separable": ((32, 32, 32), "L.SeparableConv2D(64, 3, padding='same')",
                  "nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.Conv2d(32, 64, 1))"),
    "grouped": ((32, 32, 32), "L.Conv2D(32, 3, padding='same', groups=4)",
                "nn.Conv2d(32, 32, 3, padding=1, groups=4)"),
    "convT": ((16, 16, 32), "L.Conv2DTranspose(16, 3, strides=2, padding='same')",
              "nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1)"),
    # after a 1x1 convolution, so that its backward runs (a first layer's input gradient is not computed)
    "upsample": ((16, 16, 32), "lambda t: L.UpSampling2D(2, interpolation='bilinear')(L.Conv2D(32, 1)(t))",
                 "nn.Sequential(nn.Conv2d(32, 32, 1), nn.Upsample(scale_factor=2, mode='bilinear'))"),
    "conv1d": ((256, 32), "L.Conv1D(64, 5, padding='same')", "nn.Conv1d(32, 64, 5, padding=2)"),
}


def worker(framework, case, batch, threads, steps, windows):
    import numpy as np
    shape, cn, tn = CASES[case]
    if framework == "cnnbp":
        import cnnbp
        from cnnbp import layers as L
        cnnbp.set_num_threads(threads)
        i = L.Input(shape)
        h = eval(cn, {"L": L})(i)   # a layer object, or a function of the input tensor
        model = cnnbp.Model(i, (L.GlobalAveragePooling1D() if len(shape) == 2 else L.GlobalAveragePooling2D())(h))
        model.compile(optimizer=cnnbp.optimizers.SGD(0.001), loss="mse")
        x = np.random.default_rng(0).random((batch,) + shape, dtype=np.float32)
        y = np.zeros((batch,) + model.output_shape[1:], np.float32)
        net = model.network
        return {"isa": cnnbp.cpu_capability(), "secs": time_steps(lambda: net.train_step(x, y), steps, windows)}
    import torch
    import torch.nn as nn
    torch.set_num_threads(threads)
    class Mean(nn.Module):   # over the positions (a plain mean: torch's adaptive pooling is slower)
        def forward(self, t):
            return t.mean(dim=tuple(range(2, t.dim())))

    m = nn.Sequential(eval(tn, {"nn": nn}), Mean())
    opt = torch.optim.SGD(m.parameters(), 0.001)
    x = torch.rand((batch, shape[-1]) + tuple(shape[:-1]))
    y = torch.zeros_like(m(x))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(m(x), y).backward()
        opt.step()

    return {"version": torch.__version__, "secs": time_steps(step, steps, windows)}


def run(framework, case, batch, threads, steps, windows):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", framework, "--cases", case,
                          "--batch", str(batch), "--threads", str(threads), "--steps", str(steps),
                          "--windows", str(windows)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{framework} {case} failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["ms"] = [1000 * s / steps for s in res["secs"]]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", choices=["cnnbp", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.cases, a.batch, a.threads, a.steps, a.windows)))
        return
    torch_ok = have_torch()
    print(f"machine: {machine()}; batch {a.batch}, {a.threads} threads; ms per training step (median)")
    print(f"{'case':10} {'shape':14} {'cnnbp ms':>9} {'torch ms':>9} {'torch/cnnbp':>12}")
    for case in a.cases.split(","):
        res = {"cnnbp": [], "torch": []}
        for _ in range(a.repeats):   # alternate the frameworks
            res["cnnbp"].append(run("cnnbp", case, a.batch, a.threads, a.steps, a.windows))
            if torch_ok:
                res["torch"].append(run("torch", case, a.batch, a.threads, a.steps, a.windows))
        med = {k: statistics.median([m for r in v for m in r["ms"]]) if v else None for k, v in res.items()}
        isa = res["cnnbp"][0]["isa"]
        t = f"{med['torch']:9.2f} {med['torch'] / med['cnnbp']:12.2f}" if med["torch"] else f"{'-':>9} {'-':>12}"
        print(f"{case:10} {str(CASES[case][0]):14} {med['cnnbp']:9.2f} {t}   ({isa})", flush=True)


if __name__ == "__main__":
    main()
