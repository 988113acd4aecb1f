"""Training throughput (images/s) of the reference models: cnnbp, and PyTorch side by side when
it is installed (``pip install torch==2.13.0``; never a cnnbp dependency), and TensorFlow graph mode
(a tf.function step) from a Python of its own (``--tf-python``: a venv with
``pip install tensorflow-cpu==2.21.0``).

Each (framework, model, batch, threads) runs in its own process (so thread pools and allocators do
not interfere), frameworks alternate, and the median over timed windows is reported with the
ratio and each process's peak resident memory. Synthetic data; full step = forward + loss +
backward + update.

    python bench/bench_train.py                       # all models, native batch and 128, 1 and 2 threads
    python bench/bench_train.py --models seed --threads 2 --json out.json
    python bench/bench_train.py --models vgg --policy float32,mixed_bfloat16   # cnnbp in both precisions
    python bench/bench_train.py --tf-python /path/to/tf-venv/bin/python      # and TensorFlow
    python bench/bench_train.py --models vgg --conv-algo heuristic,direct      # Winograd on and off
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SPECS = {  # model: (input shape HWC, native batch, optimizer)
    "seed": ((32, 32, 3), 32, "adam"),
    "lenet": ((28, 28, 1), 64, "sgd"),
    "vgg": ((32, 32, 3), 64, "adam"),
    "resnet20": ((32, 32, 3), 128, "sgd"),  # conv-BN-ReLU basic blocks, projection shortcuts
    "mobilenet": ((32, 32, 3), 64, "adam"),  # depthwise-separable blocks (alpha 0.5)
}


def peak_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_steps(step, steps, windows):
    for _ in range(max(3, steps // 5)):  # warm-up: buffers, caches, thread pools
        step()
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(time.perf_counter() - t0)
    return rates


def worker_cnnbp(model_name, batch, threads, steps, windows, policy="float32"):
    import numpy as np
    import cnnbp
    cnnbp.set_num_threads(threads)
    cnnbp.mixed_precision.set_global_policy(policy)
    cnnbp.set_seed(0)
    shape, _, opt = SPECS[model_name]
    model = cnnbp.applications.MODELS[model_name](shape, 10)
    optimizer = cnnbp.optimizers.Adam(1e-3) if opt == "adam" else cnnbp.optimizers.SGD(0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    net = model.network
    secs = time_steps(lambda: net.train_step(x, y), steps, windows)
    isa = cnnbp.cpu_capability() + ("" if policy == "float32" else f" ({policy}: {cnnbp.mixed_precision.path()})")
    return {"isa": isa, "secs": secs}


def torch_resnet20():
    """The same ResNet-20 as cnnbp.applications.resnet20, in torch.nn."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, f, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, f, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(f, eps=1e-3, momentum=0.01)
            self.c2 = nn.Conv2d(f, f, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(f, eps=1e-3, momentum=0.01)
            self.sc = None
            if stride != 1 or cin != f:
                self.sc = nn.Sequential(nn.Conv2d(cin, f, 1, stride, bias=False), nn.BatchNorm2d(f, eps=1e-3, momentum=0.01))
            self.relu = nn.ReLU()

        def forward(self, x):
            y = self.b2(self.c2(self.relu(self.b1(self.c1(x)))))
            return self.relu(y + (x if self.sc is None else self.sc(x)))

    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16, eps=1e-3, momentum=0.01), nn.ReLU()], 16
    for stage, f in enumerate((16, 32, 64)):
        for b in range(3):
            layers.append(Block(cin, f, 2 if stage and not b else 1))
            cin = f
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def torch_mobilenet():
    """The same small MobileNet as cnnbp.applications.mobilenet (alpha 0.5), in torch.nn."""
    import torch.nn as nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), bn(16), nn.ReLU6()], 16
    for f, s in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
        layers += [nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False), bn(cin), nn.ReLU6(),
                   nn.Conv2d(cin, f, 1, bias=False), bn(f), nn.ReLU6()]
        cin = f
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def torch_model(name):
    import torch.nn as nn
    if name == "resnet20":
        return torch_resnet20()
    if name == "mobilenet":
        return torch_mobilenet()
    if name == "seed":
        return nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 15 * 15, 10))
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84),
                             nn.ReLU(), nn.Linear(84, 10))
    layers, c = [], 3
    for f in (32, 64, 128):
        layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = f
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10))


def worker_torch(model_name, batch, threads, steps, windows):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape, _, opt = SPECS[model_name]
    model = torch_model(model_name)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3) if opt == "adam" else \
        torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand((batch, shape[2], shape[0], shape[1]))
    y = torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return {"version": torch.__version__, "secs": time_steps(step, steps, windows)}


def tf_model(name):
    """The reference models in Keras 3 (TensorFlow's tf.keras), NHWC as cnnbp."""
    import tensorflow as tf
    L = tf.keras.layers
    shape = SPECS[name][0]
    if name == "seed":
        body = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dense(10)]
    elif name == "lenet":
        body = [L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
                L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10)]
    elif name == "vgg":
        body = []
        for f in (32, 64, 128):
            body += [L.Conv2D(f, 3, padding="same", activation="relu"), L.Conv2D(f, 3, padding="same", activation="relu"),
                     L.MaxPooling2D(2)]
        body += [L.Flatten(), L.Dense(256, activation="relu"), L.Dense(10)]
    elif name == "resnet20":
        def bn():
            return L.BatchNormalization(epsilon=1e-3, momentum=0.99)
        inp = tf.keras.Input(shape)
        h = L.ReLU()(bn()(L.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
        cin = 16
        for stage, f in enumerate((16, 32, 64)):
            for b in range(3):
                st = 2 if stage and not b else 1
                y = L.ReLU()(bn()(L.Conv2D(f, 3, st, padding="same", use_bias=False)(h)))
                y = bn()(L.Conv2D(f, 3, padding="same", use_bias=False)(y))
                sc = h if st == 1 and cin == f else bn()(L.Conv2D(f, 1, st, use_bias=False)(h))
                h, cin = L.ReLU()(L.Add()([y, sc])), f
        out = L.Dense(10)(L.GlobalAveragePooling2D()(h))
        return tf.keras.Model(inp, out)
    else:
        raise SystemExit(f"no TensorFlow version of {name}")
    return tf.keras.Sequential([tf.keras.Input(shape)] + body)


def worker_tf(model_name, batch, threads, steps, windows):
    """TensorFlow graph mode: one tf.function (forward, loss, gradients, update) per step."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(0)
    shape, _, opt = SPECS[model_name]
    model = tf_model(model_name)
    optimizer = tf.keras.optimizers.Adam(1e-3) if opt == "adam" else tf.keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((batch,) + shape)
    y = tf.random.uniform((batch,), 0, 10, dtype=tf.int32)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return {"version": tf.__version__, "secs": time_steps(lambda: train_step().numpy(), steps, windows)}


def run_worker(framework, model, batch, threads, steps, windows, python=sys.executable, policy="float32",
               conv_algo=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if conv_algo:
        env["CNNBP_CONV_ALGO"] = conv_algo
    cmd = [python, os.path.abspath(__file__), "--worker", framework, "--models", model, "--batch", str(batch),
           "--threads", str(threads), "--steps", str(steps), "--windows", str(windows), "--policy", policy]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{framework} worker failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["img_s"] = [batch * steps / s for s in res["secs"]]
    return res


def have_torch():
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except Exception:
        return False


def machine():
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="seed,lenet,vgg,resnet20")
    ap.add_argument("--batches", default="native,128", help="comma list of sizes or 'native'")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=0, help="steps per timed window (default: by model)")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="processes per framework and configuration")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--policy", default="float32",
                    help="cnnbp's mixed-precision policies, comma list (float32, mixed_bfloat16): a column each")
    ap.add_argument("--conv-algo", default="",
                    help="CNNBP_CONV_ALGO settings, comma list (heuristic, direct, winograd, auto): a cnnbp column "
                         "each (default: the environment's)")
    ap.add_argument("--tf-python", default=None,
                    help="a Python with tensorflow-cpu (its own venv: never beside cnnbp): adds TensorFlow graph mode")
    ap.add_argument("--worker", choices=["cnnbp", "torch", "tf"], help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        if a.worker == "cnnbp":
            res = worker_cnnbp(a.models, a.batch, int(a.threads), a.steps, a.windows, a.policy)
        elif a.worker == "tf":
            res = worker_tf(a.models, a.batch, int(a.threads), a.steps, a.windows)
        else:
            res = worker_torch(a.models, a.batch, int(a.threads), a.steps, a.windows)
        res["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(res))
        return

    torch_ok = not a.no_torch and have_torch()
    algos = a.conv_algo.split(",") if a.conv_algo else [None]
    # cnnbp columns: policy x algorithm (mixed precision keeps its convolutions direct: one column)
    configs = [(p, al) for p in a.policy.split(",") for al in (algos if p == "float32" else algos[:1])]
    cols = [" ".join(["cnnbp"] + ([p] if p != "float32" else []) + ([al] if al and al != algos[0] else []))
            for p, al in configs]
    others = (["torch"] if torch_ok else []) + (["tf"] if a.tf_python else [])
    rows = []
    print(f"machine: {machine()}")
    hdr = f"{'model':8} {'batch':>5} {'thr':>3} " + " ".join(f"{c + ' img/s':>12}" for c in cols + others)
    hdr += "  ratios " + ", ".join(f"{c}/{o}" for c in cols for o in others)
    hdr += f"  {'RSS cnnbp':>10}" + "".join(f" {'RSS ' + o:>10}" for o in others)
    print(hdr)
    for model in a.models.split(","):
        shape, native, _ = SPECS[model]
        batches = [native if b == "native" else int(b) for b in a.batches.split(",")]
        for batch in dict.fromkeys(batches):
            for threads in [int(t) for t in a.threads.split(",")]:
                steps = a.steps or max(4, int({"seed": 400, "lenet": 600, "vgg": 16, "resnet20": 8, "mobilenet": 16}[model] * 32 / batch))
                res = {c: [] for c in cols + others}
                for _ in range(a.repeats):  # alternate frameworks (and policies)
                    for c, (pol, al) in zip(cols, configs):
                        res[c].append(run_worker("cnnbp", model, batch, threads, steps, a.windows, policy=pol,
                                                 conv_algo=al))
                    if torch_ok:
                        res["torch"].append(run_worker("torch", model, batch, threads, steps, a.windows))
                    if a.tf_python:
                        res["tf"].append(run_worker("tf", model, batch, threads, steps, a.windows, python=a.tf_python))
                med = {k: statistics.median([r for v in res[k] for r in v["img_s"]]) for k in res}
                rss = {k: max(v["peak_rss_mib"] for v in res[k]) for k in res}
                ratios = {f"{c}/{o}": med[c] / med[o] for c in cols for o in others}
                row = {"model": model, "batch": batch, "threads": threads, "cnnbp_img_s": med[cols[0]],
                       "torch_img_s": med.get("torch"), "ratio": ratios.get(f"{cols[0]}/torch"),
                       "tf_img_s": med.get("tf"), "ratios": ratios, "cnnbp_rss_mib": rss[cols[0]],
                       "torch_rss_mib": rss.get("torch"), "isa": res[cols[0]][0]["isa"], "raw": res,
                       "columns": {c: med[c] for c in cols},
                       "versions": {o: res[o][0].get("version") for o in others}}
                rows.append(row)
                print(f"{model:8} {batch:>5} {threads:>3} " + " ".join(f"{med[c]:12,.0f}" for c in cols + others)
                      + "  " + ", ".join(f"{v:.2f}" for v in ratios.values())
                      + f"  {rss[cols[0]]:9.0f}M" + "".join(f" {rss[o]:9.0f}M" for o in others), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
