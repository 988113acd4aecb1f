"""Training on a busy machine: images/s of the reference models at each thread count, alone and next
to competitor processes that each spin on one core (as a browser, a data loader or another MPI
rank would take it). Each measurement is its own process (bench_train.py's worker: synthetic
data, full training step); idle and busy runs alternate, and the medians over timed windows are
reported. A competitor is started before a busy measurement and stopped after it.

    python bench/bench_contention.py                           # seed, lenet, vgg; 1 and 2 threads; 1 competitor
    python bench/bench_contention.py --models lenet --threads 1,2 --competitors 1 --repeats 3
    python bench/bench_contention.py --python /path/to/other/venv/bin/python   # A/B against another build

With several interpreters (--python, comma-separated; default: this one), every configuration is
measured with each in turn, so two builds of cnnbp compare side by side under the same load.
"""

import argparse
import json
import statistics
import subprocess
import sys

from bench_train import SPECS, machine, run_worker

STEPS = {"seed": 300, "lenet": 400, "vgg": 12, "resnet20": 6, "mobilenet": 12}


def measure(python, model, batch, threads, steps, windows):
    res = run_worker("cnnbp", model, batch, threads, steps, windows, python)
    return res["isa"], res["img_s"]


def spinners(n):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs):
    for p in procs:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="seed,lenet,vgg")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--competitors", type=int, default=1,
                    help="spinning processes during the busy runs (0: idle runs only, e.g. to compare builds)")
    ap.add_argument("--repeats", type=int, default=3, help="processes per configuration and load")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--python", default=sys.executable, help="comma-separated interpreters (builds) to compare")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    pythons = a.python.split(",")
    print(f"machine: {machine()}; competitors: {a.competitors}")
    label = {p: f"[{i}]" if len(pythons) > 1 else "" for i, p in enumerate(pythons)}
    if len(pythons) > 1:
        print("\n".join(f"{label[p]} {p}" for p in pythons))
    print(f"{'model':6} {'batch':>5} {'thr':>3} {'isa':>8} {'idle img/s':>11} {'busy img/s':>11} {'busy/idle':>9}")
    rows = []
    for model in a.models.split(","):
        batch = SPECS[model][1]
        for threads in [int(t) for t in a.threads.split(",")]:
            res = {(p, load): [] for p in pythons for load in ("idle", "busy")}
            isa = {}
            for _ in range(a.repeats):
                for p in pythons:
                    isa[p], r = measure(p, model, batch, threads, STEPS[model], a.windows)
                    res[(p, "idle")] += r
                    if not a.competitors:  # idle only: an A/B of builds
                        continue
                    comp = spinners(a.competitors)
                    try:
                        res[(p, "busy")] += measure(p, model, batch, threads, STEPS[model], a.windows)[1]
                    finally:
                        stop(comp)
            for p in pythons:
                idle = statistics.median(res[(p, "idle")])
                busy = statistics.median(res[(p, "busy")]) if a.competitors else float("nan")
                rows.append({"python": p, "model": model, "batch": batch, "threads": threads, "isa": isa[p],
                             "idle_img_s": idle, "busy_img_s": busy, "competitors": a.competitors})
                print(f"{model:6} {batch:>5} {threads:>3} {isa[p]:>8} {idle:11,.0f} {busy:11,.0f} {busy / idle:9.2f} "
                      f"{label[p]}", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
