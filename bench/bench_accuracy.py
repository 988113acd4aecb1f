"""Test accuracy of a training recipe on the full Fashion-MNIST set, one row per seed:

    python bench/bench_accuracy.py --model seed --epochs 30 --flip --crop 1 --schedule cosine --seeds 0 1

Recipe: --flip (RandomFlip horizontal), --crop P (RandomCrop(28, 28, padding=P)), --translate F
(RandomTranslation(F, F)), --schedule cosine|constant (cosine: from --lr to 0 over the run, with
--warmup epochs of linear warmup), --weight-decay (decoupled), --coupled-weight-decay (SGD's L2),
--label-smoothing, --optimizer adam|sgd (sgd: momentum 0.9, Nesterov), --policy mixed_bfloat16. Prints model, recipe, epochs, wall time, test accuracy per seed and the mean."""

import argparse
import math
import time

import numpy as np

import cnnbp
from cnnbp import layers as L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="seed", choices=sorted(cnnbp.applications.MODELS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    ap.add_argument("--warmup", type=float, default=0.0, help="epochs of linear warmup (cosine)")
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--crop", type=int, default=0, help="pad-and-crop padding (0: none)")
    ap.add_argument("--translate", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.0, help="decoupled (Keras 3)")
    ap.add_argument("--coupled-weight-decay", type=float, default=0.0, help="SGD's L2 form (PyTorch's)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--policy", default="float32", help="float32 or mixed_bfloat16 (cnnbp.mixed_precision)")
    a = ap.parse_args()
    cnnbp.mixed_precision.set_global_policy(a.policy)
    if a.threads:
        cnnbp.set_num_threads(a.threads)
    (x, y), (xt, yt) = cnnbp.datasets.load_fashion_mnist(subset=False)
    x, xt = x[..., None], xt[..., None]                   # uint8: Rescaling in the model
    lr = a.lr or (0.001 if a.optimizer == "adam" else 0.1)
    aug = []
    if a.flip:
        aug.append("flip")
    if a.crop:
        aug.append(f"crop pad {a.crop}")
    if a.translate:
        aug.append(f"translate {a.translate}")
    recipe = ", ".join(aug + [f"{a.optimizer} lr {lr:g}", a.schedule + (f" warmup {a.warmup:g} ep" if a.warmup else "")]
                       + ([f"wd {a.weight_decay:g}"] if a.weight_decay else [])
                       + ([f"L2 {a.coupled_weight_decay:g}"] if a.coupled_weight_decay else [])
                       + ([f"ls {a.label_smoothing:g}"] if a.label_smoothing else []) + [f"batch {a.batch}"]
                       + ([f"{a.policy} ({cnnbp.mixed_precision.path()})"] if a.policy != "float32" else []))
    accs = []
    for seed in a.seeds:
        cnnbp.set_seed(seed)
        pre = [L.Rescaling(1 / 255)]
        if a.flip:
            pre.append(L.RandomFlip("horizontal"))
        if a.translate:
            pre.append(L.RandomTranslation(a.translate, a.translate, fill_mode="constant"))
        if a.crop:
            pre.append(L.RandomCrop(28, 28, padding=a.crop))
        core = cnnbp.applications.MODELS[a.model]((28, 28, 1), 10)
        model = cnnbp.Sequential([L.Input((28, 28, 1))] + pre + [core])
        steps = a.epochs * math.ceil(len(x) / a.batch)
        rate = lr
        if a.schedule == "cosine":
            w = int(a.warmup * math.ceil(len(x) / a.batch))
            rate = (cnnbp.optimizers.schedules.CosineDecay(0.0, steps - w, warmup_target=lr, warmup_steps=w) if w
                    else cnnbp.optimizers.schedules.CosineDecay(lr, steps))
        kw = {"weight_decay": a.weight_decay} if a.weight_decay else {}
        opt = (cnnbp.optimizers.Adam(rate, **kw) if a.optimizer == "adam"
               else cnnbp.optimizers.SGD(rate, momentum=0.9, nesterov=True,
                                         coupled_weight_decay=a.coupled_weight_decay, **kw))
        model.compile(optimizer=opt, loss=cnnbp.losses.SparseCategoricalCrossentropy(label_smoothing=a.label_smoothing),
                      metrics=["accuracy"])
        t = time.perf_counter()
        model.fit(x, y, batch_size=a.batch, epochs=a.epochs, verbose=0, seed=seed)
        took = time.perf_counter() - t
        _, acc = model.evaluate(xt, yt, verbose=0)
        accs.append(acc)
        print(f"| {a.model} | {recipe} | {a.epochs} | {took:.0f} s | seed {seed}: {100 * acc:.2f} % |", flush=True)
    print(f"| {a.model} | {recipe} | {a.epochs} | | mean of {len(accs)}: {100 * np.mean(accs):.2f} % |  "
          f"({cnnbp.get_num_threads()} threads, {cnnbp.cpu_capability()} kernels)", flush=True)


if __name__ == "__main__":
    main()
