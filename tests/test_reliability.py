"""Threads, fork, interrupts and memory: nothing hangs, nothing leaks, results do not depend on
what else runs."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import cnnbp
from cnnbp import _core
from cnnbp.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D


def run_py(code, timeout=120, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, **kw)


NEEDS_THREADS = pytest.mark.skipif(_core.build_info()["threads"] is None,
                                   reason="a build without the thread pool runs every kernel on the calling thread")


@NEEDS_THREADS
def test_set_num_threads_sets_the_region_size():
    for n in (1, 2, 3):
        cnnbp.set_num_threads(n)
        assert _core._threads_in_region() == n


@NEEDS_THREADS
def test_omp_num_threads_is_the_default():
    env = dict(os.environ, OMP_NUM_THREADS="3")
    r = run_py("import cnnbp; from cnnbp import _core; print(cnnbp.get_num_threads(), _core._threads_in_region())",
               env=env)
    assert r.stdout.split() == ["3", "3"], r.stderr


@NEEDS_THREADS
def test_forked_child_runs_single_threaded_and_does_not_hang():
    r = run_py("""
        import os, numpy as np, cnnbp
        from cnnbp import ops, _core
        cnnbp.set_num_threads(2)
        x = np.random.rand(16, 16, 16, 16).astype(np.float32); w = np.random.rand(3, 3, 16, 16).astype(np.float32)
        ref = ops.conv2d(x, w, padding="same")          # the parent's thread pool is running
        pid = os.fork()
        if pid == 0:
            y = ops.conv2d(x, w, padding="same")
            ok = np.allclose(y, ref, rtol=1e-5) and _core._threads_in_region() == 1 and _core._in_forked_child()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), "parent threads", cnnbp.get_num_threads())
    """, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["child", "0", "parent", "threads", "2"]


def _model(seed):
    cnnbp.set_seed(seed)
    m = cnnbp.Sequential([Input((12, 12, 3)), Conv2D(8, 3, padding="same", activation="relu"), MaxPooling2D(),
                          Flatten(), Dropout(0.2), Dense(4, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    return m


def test_two_models_trained_in_two_threads_equal_sequential_training():
    rng = np.random.default_rng(0)
    x = rng.random((128, 12, 12, 3), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 128)]
    seq = []
    for s in (1, 2):
        m = _model(s)
        m.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=5)
        seq.append(m.get_weights())
    models = [_model(1), _model(2)]
    threads = [threading.Thread(target=m.fit, args=(x, y), kwargs=dict(epochs=2, batch_size=16, verbose=0, seed=5))
               for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m, ws in zip(models, seq):
        for a, b in zip(m.get_weights(), ws):
            assert np.array_equal(a, b)


def test_ctrl_c_stops_fit_within_a_batch_and_the_model_trains_on():
    code = """
        import signal, sys, time, numpy as np, cnnbp
        from cnnbp.layers import Input, Conv2D, Flatten, Dense
        arrived = []
        def on_sigint(signum, frame):  # Python's own handler, plus the arrival time
            arrived.append(time.perf_counter())
            raise KeyboardInterrupt
        # A shell that starts jobs in the background (CI) ignores SIGINT in them; a terminal does not.
        signal.signal(signal.SIGINT, on_sigint)
        m = cnnbp.Sequential([Input((28, 28, 1)), Conv2D(16, 3, activation="relu"), Flatten(), Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x = np.random.rand(20000, 28, 28, 1).astype(np.float32); y = np.random.randint(0, 10, 20000)
        print("ready", flush=True)
        try:
            m.fit(x, y, epochs=1000, batch_size=32, verbose=0)
        except KeyboardInterrupt:
            print("interrupted %.6f" % time.time(), flush=True)
        h = m.fit(x[:256], y[:256], epochs=1, verbose=0)
        print("trained on", np.isfinite(h.history["loss"][0]), flush=True)
    """
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        sent = time.time()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    lines = out.splitlines()
    assert lines and lines[0].startswith("interrupted"), err
    assert float(lines[0].split()[1]) - sent < 1.0  # a batch takes milliseconds; fit stops after it
    assert "trained on True" in out


@pytest.mark.slow
def test_memory_stays_flat_over_2000_steps_and_200_models():
    r = run_py("""
        import gc, numpy as np, cnnbp
        from cnnbp.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096 / 2**20
        def build():
            m = cnnbp.Sequential([Input((28, 28, 1)), Conv2D(32, 3, activation="relu"), MaxPooling2D(), Flatten(),
                                  Dense(10, activation="softmax")])
            m.compile(optimizer="adam", loss="categorical_crossentropy")
            return m
        x = np.random.rand(32, 28, 28, 1).astype(np.float32); y = np.eye(10, dtype=np.float32)[np.arange(32) % 10]
        m = build()
        for _ in range(200):
            m.network.train_step(x, y)
        base = rss()
        for _ in range(2000):
            m.network.train_step(x, y)
        steps = rss() - base
        for _ in range(20):
            build().fit(x, y, verbose=0)
        gc.collect(); base2 = rss()
        for _ in range(200):
            build().fit(x, y, verbose=0)
        gc.collect()
        print("%.2f %.2f" % (steps, rss() - base2))
    """, timeout=600)
    assert r.returncode == 0, r.stderr
    steps, models = map(float, r.stdout.split())
    assert steps < 5.0 and models < 5.0, f"growth: {steps:.2f} MiB over 2000 steps, {models:.2f} MiB over 200 models"


@pytest.mark.skipif(_core._mxcsr() < 0, reason="x86-64 only")
def test_denormals_flushed_inside_cnnbp_only():
    before = _core._mxcsr()
    assert before & 0x8040 == 0  # Python starts without FTZ/DAZ
    for n in (1, 2):
        cnnbp.set_num_threads(n)
        assert _core._mxcsr_in_region() & 0x8040 == 0x8040
    m = _model(3)
    x = np.random.default_rng(0).random((16, 12, 12, 3), dtype=np.float32)
    m.fit(x, np.eye(4, dtype=np.float32)[np.arange(16) % 4], verbose=0)
    assert _core._mxcsr() == before  # the caller's floating-point state, status flags included
    dense = cnnbp.Sequential([cnnbp.layers.Input((6,)), cnnbp.layers.Dense(4, activation="softmax")])
    dense.compile(optimizer="adam", loss="categorical_crossentropy")
    dense.fit(np.ones((8, 6), np.float32) * 30, np.eye(4, dtype=np.float32)[np.arange(8) % 4], epochs=2, verbose=0)
    assert _core._mxcsr() == before  # (a clang build once left divide-by-zero here: log(0) evaluated early)
    p = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)  # log(0) and 0/0 are in reach of the losses
    for kind in ("categorical_crossentropy", "binary_crossentropy", "kl_divergence", "poisson"):
        cnnbp.ops.loss(p, p[:, ::-1].copy(), kind)
        assert _core._mxcsr() == before, kind
    tiny = np.full((4, 4), 1e-40, dtype=np.float32)  # subnormal in float32
    y, _ = cnnbp.ops.dropout(tiny, 0.0)  # y = x * 1 inside cnnbp's parallel work: read as zero
    assert np.all(y == 0) and np.all(tiny * np.float32(1) > 0)
