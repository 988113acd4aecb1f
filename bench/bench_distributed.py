"""Data-parallel training throughput over MPI: 1 and 2 ranks of 1 thread each (and, for
comparison, 1 rank of 2 threads), the scaling efficiency, and the time per step spent in the
gradient all-reduce.

    python bench/bench_distributed.py                  # seed, lenet, vgg; batch 64 per rank
    python bench/bench_distributed.py --models lenet --batch 32 --steps 40 --json out.json

Each configuration is one ``mpiexec -n R`` run of this script in worker mode: it times
``model.fit(..., distributed=True)`` over synthetic data (batch_size per rank, so R ranks process
R x batch images per step) after a warm-up epoch, and reports images/s over all ranks. The
all-reduce time is what rank 0 spends in MPI calls per step (starting the bucketed all-reduces
during the backward pass and waiting for them after it; or the one blocking MPI_Allreduce with
--bucket-mb 0), so it includes any wait for a slower rank; "pure" is the same all-reduce of a buffer of the gradient's size with no
training around it (the communication cost alone). Needs mpi4py and an MPI (pip install
"cnnbp[mpi]"); the mpiexec next to the running python is used, else the one on PATH.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

SPECS = {"seed": ((32, 32, 3), "adam"), "lenet": ((28, 28, 1), "sgd"), "vgg": ((32, 32, 3), "adam")}


def worker(args):
    import numpy as np
    import cnnbp
    from cnnbp import distributed as D
    from mpi4py import MPI
    cnnbp.set_num_threads(args.threads)
    D.init(bucket_mb=args.bucket_mb)
    cnnbp.set_seed(0)
    shape, opt = SPECS[args.model]
    model = cnnbp.applications.MODELS[args.model](shape, 10)
    optimizer = cnnbp.optimizers.Adam(1e-3) if opt == "adam" else cnnbp.optimizers.SGD(0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    world = D.world_size()
    n = args.batch * world * args.steps
    rng = np.random.default_rng(0)
    x = rng.random((n,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, n)
    model.fit(x[: args.batch * world * 3], y[: args.batch * world * 3], batch_size=args.batch, epochs=1,
              verbose=0, distributed=True)  # warm-up: buffers, MPI connections
    runs = []
    for _ in range(args.repeats):
        D.comm().Barrier()
        t0 = time.perf_counter()
        h = model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, distributed=True)
        runs.append({"secs": time.perf_counter() - t0, "allreduce_s": h.allreduce_seconds,
                     "steps": h.allreduce_steps})
    # the same all-reduce with nothing around it: the communication cost alone
    g = np.zeros(model.network.num_params, dtype=np.float32)
    pure = []
    for _ in range(5 + 20):
        D.comm().Barrier()
        t0 = time.perf_counter()
        D.comm().Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
        pure.append(time.perf_counter() - t0)
    if D.rank() == 0:
        secs = statistics.median(r["secs"] for r in runs)
        ar = statistics.median(r["allreduce_s"] / r["steps"] for r in runs)
        print("RESULT " + json.dumps({
            "model": args.model, "ranks": world, "threads": args.threads, "batch_per_rank": args.batch,
            "params": int(model.network.num_params), "steps": args.steps, "images_per_s": n / secs,
            "step_ms": 1e3 * secs / args.steps, "allreduce_ms": 1e3 * ar,
            "pure_allreduce_ms": 1e3 * statistics.median(pure[5:]), "isa": cnnbp.cpu_capability(),
            "mpi": MPI.Get_library_version().splitlines()[0].strip()}), flush=True)


def mpiexec():
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if exe is None:
        sys.exit("bench_distributed: no mpiexec found (pip install \"cnnbp[mpi]\")")
    return exe


def run(model, ranks, threads, bucket_mb, args):
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, __file__, "--worker", "--model", model,
           "--threads", str(threads), "--batch", str(args.batch), "--steps", str(args.steps),
           "--repeats", str(args.repeats), "--bucket-mb", str(bucket_mb)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"bench_distributed: {' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(next(l for l in r.stdout.splitlines() if l.startswith("RESULT "))[7:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="seed,lenet,vgg")
    p.add_argument("--batch", type=int, default=64, help="batch per rank")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per timed epoch")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs (the median is reported)")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--bucket-mb", type=float, default=1.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}")
    print(f"batch {args.batch} per rank, {args.steps} steps per timed epoch, median of {args.repeats}\n")
    head = (f"{'model':6} {'ranks x threads':>15} {'all-reduce':>10} {'img/s':>8} {'step ms':>8} {'speed-up':>8} {'efficiency':>10} "
            f"{'allreduce ms/step':>17} {'pure allreduce ms':>17}")
    print(head)
    print("-" * len(head))
    results = []
    for model in args.models.split(","):
        base = None
        for ranks, threads, bucket in ((1, 1, 1), (2, 1, 1), (2, 1, 0), (1, 2, 1)):
            r = run(model, ranks, threads, bucket, args)
            r["mode"] = "-" if ranks == 1 else ("bucketed" if bucket else "blocking")
            results.append(r)
            base = base or r["images_per_s"]
            speed = r["images_per_s"] / base
            eff = speed / (ranks * threads)
            print(f"{model:6} {f'{ranks} x {threads}':>15} {r['mode']:>10} {r['images_per_s']:8.0f} {r['step_ms']:8.1f} "
                  f"{speed:7.2f}x {100 * eff:9.0f}% {r['allreduce_ms']:17.2f} {r['pure_allreduce_ms']:17.3f}",
                  flush=True)
    print(f"\n{results[0]['mpi']}; kernels: {results[0]['isa']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
