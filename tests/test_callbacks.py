"""Each callback's behaviour: checkpoints, learning-rate schedules and plateaus, CSV logs."""

import csv

import numpy as np
import pytest

import cnnbp
from cnnbp.callbacks import CSVLogger, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau
from cnnbp.layers import Dense, Flatten, Input
from conftest import ISAS


def model(lr=0.05):
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([Input((4, 4, 1)), Flatten(), Dense(2, activation="softmax")])
    m.compile(optimizer=cnnbp.optimizers.SGD(lr), loss="categorical_crossentropy", metrics=["accuracy"])
    return m


def data(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 64)
    x = rng.random((64, 4, 4, 1), dtype=np.float32) + labels[:, None, None, None] * 0.5
    return x, np.eye(2, dtype=np.float32)[labels]


def test_model_checkpoint_every_epoch_with_formatted_names(tmp_path):
    m = model()
    x, y = data()
    cb = ModelCheckpoint(tmp_path / "ck-{epoch:02d}-{loss:.2f}.cnnbp", save_best_only=False)
    m.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and files[0].startswith("ck-01-")
    m2 = cnnbp.load_model(tmp_path / files[-1])
    assert np.array_equal(m2.predict(x), m.predict(x))


def test_model_checkpoint_save_best_only(tmp_path):
    m = model(lr=0.5)
    x, y = data()
    xv, yv = data(1)
    yv = yv[:, ::-1].copy()  # val_loss rises while training improves: only epoch 1 is best
    p = tmp_path / "best.cnnbp"
    seen = []

    class Rec(cnnbp.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["val_loss"], self.model.predict(xv)))

    cb = ModelCheckpoint(p, monitor="val_loss", save_best_only=True)
    m.fit(x, y, epochs=4, validation_data=(xv, yv), verbose=0, callbacks=[Rec(), cb])
    best = min(range(4), key=lambda i: seen[i][0])
    assert abs(cb.best - seen[best][0]) < 1e-12
    assert np.array_equal(cnnbp.load_model(p).predict(xv), seen[best][1])


def test_learning_rate_scheduler_sets_rate_each_epoch():
    m = model()
    x, y = data()
    rates = []

    class Rec(cnnbp.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rates.append(self.model.network.learning_rate)

    h = m.fit(x, y, epochs=3, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: 0.1 / (e + 1)), Rec()])
    assert np.allclose(rates, [0.1, 0.05, 0.1 / 3])
    assert np.allclose(h.history["learning_rate"], rates)
    with pytest.raises(ValueError, match="schedule returned"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: -1)])


def test_reduce_lr_on_plateau_reduces_after_patience():
    m = model(lr=0.2)
    x, y = data()
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0, min_lr=0.03)
    h = m.fit(x, y, epochs=5, verbose=0, callbacks=[cb])
    # min_delta=10 makes every epoch after the first a non-improvement: the rate is halved at the end
    # of epochs 2, 3, 4, 5 (floor 0.03); the logs show the rate each epoch trained with.
    assert np.allclose(h.history["learning_rate"], [0.2, 0.2, 0.1, 0.05, 0.03])
    assert m.optimizer.learning_rate == 0.03 and m.network.learning_rate == 0.03


def test_csv_logger_writes_header_and_rows(tmp_path):
    m = model()
    x, y = data()
    f = tmp_path / "log.csv"
    m.fit(x, y, epochs=2, verbose=0, callbacks=[CSVLogger(f)])
    m.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(f, append=True)])
    with open(f) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["epoch", "accuracy", "loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "0"]
    assert all(0 <= float(r[1]) <= 1 for r in rows[1:])


# ---- GradientMonitor -------------------------------------------------------------------------
_MONITOR_SCRIPT = r"""
import json, sys
import numpy as np
import cnnbp
from cnnbp import layers as L
cnnbp.set_seed(1)
m = cnnbp.Sequential([L.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
                      L.Flatten(), L.Dense(5, activation="sigmoid"), L.Dense(3, activation="tanh"),
                      L.Dense(3, activation="softmax")])
m.compile(optimizer=cnnbp.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x = rng.standard_normal((7, 6, 6, 2)).astype(np.float32) * 3
y = rng.integers(0, 3, 7)
net = m.network
net.monitoring = True
m.fit(x, y, epochs=2, batch_size=7, verbose=0)  # some momentum first
n = len(net.layer_info())
steps, samples = int(sys.argv[1]), int(sys.argv[2])
net.monitor_next(steps, samples)
k = -(-7 // samples)  # the samples each read step reads of every output
acts, params, reads = [], [], 0
for jj in range(steps):
    net.forward(x, training=True, keep=list(range(n)))
    if (jj * samples) % steps >= samples:  # a step not read: counted only
        net.backward(y.astype(np.float32))
        net.apply_update()
        continue
    j, reads = reads, reads + 1
    lo = (j * k) % 7
    for i in range(n - 1):  # the softmax is fused into the loss
        a = np.array(net.activation(i), dtype=np.float64)[lo:lo + k]
        st = [float(a.size), a.sum(), (a * a).sum(), float((a == 0).sum()), float((np.abs(a) <= 0.01).sum()),
              float((np.abs(a) >= 0.99).sum())]
        if j:
            acts[i] = [u + v for u, v in zip(acts[i], st)]
        else:
            acts.append(st)
    sizes = [np.asarray(net.activation(i)).size for i in range(n - 1)]
    bn = [i for i, d in enumerate(net.layer_info()) if d["kind"] == "BatchNormalization"][0]
    xb = np.array(net.activation(bn - 1), dtype=np.float64).reshape(-1, 4)  # the whole batch's statistics
    bn_stats = [float(np.abs(xb.mean(0)).mean()), float(xb.var(0).mean())]
    bn_sum = [u + v for u, v in zip(bn_sum, bn_stats)] if j else bn_stats
    net.backward(y.astype(np.float32))
    w0, g = np.array(net.flat_params(), dtype=np.float64), np.array(net.flat_grads(), dtype=np.float64)
    net.apply_update()
    w1 = np.array(net.flat_params(), dtype=np.float64)
    q = 0
    for d in net.layer_info():
        for name, shape, off, size in d["params"]:
            a, b, gg = w0[off:off + size], w1[off:off + size], g[off:off + size]
            nw, ng, nd = np.sqrt((b * b).sum()), np.sqrt((gg * gg).sum()), np.sqrt(((b - a) ** 2).sum())
            st = [nw, ng, ng, nd / nw, nd / nw, 1.0]
            if j:
                p = params[q]
                params[q] = [p[0] + st[0], p[1] + st[1], max(p[2], st[2]), p[3] + st[3], max(p[4], st[4]), p[5] + 1]
            else:
                params.append(st)
            q += 1
s = net.monitor_stats()
print(json.dumps({"step": s["step"], "steps": s["steps"], "sampled": s["sampled"], "reads": reads, "iterations": net.iterations, "output": s["output"].tolist(),
                  "param": s["param"].tolist(), "acts": acts, "params": params, "bn": [bn] + bn_sum,
                  "sizes": sizes}))
"""


@pytest.mark.parametrize("isa,steps,samples", [(i, 1, 1) for i in ISAS if i != "avx2-wide"]
                         + [("baseline", 3, 3), (ISAS[-1], 3, 3), ("baseline", 5, 2), (ISAS[-1], 5, 2)])
def test_monitor_statistics_equal_numpy(isa, steps, samples):
    """The statistics of a monitored interval (taken inside the C++ passes) equal numpy's (counts
    exactly, sums to float32 rounding) on the same activations, gradients and weights (read through
    forward(keep=...), flat_grads, flat_params), on every kernel path: one step (every output read
    whole); an interval of three steps over a batch of 7, all read (each step reads its own slice
    of 3, 3 and 1 samples; the parameter statistics are summed or maximised over the three
    updates); and an interval of five steps of which two are read (steps 0 and 3, slices of 4 and
    3 samples), the other three counted but adding nothing."""
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, CNNBP_CPU_CAPABILITY=isa)
    p = subprocess.run([sys.executable, "-c", _MONITOR_SCRIPT, str(steps), str(samples)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["step"] == r["iterations"] == 2 + steps and r["steps"] == steps
    assert r["sampled"] == r["reads"] == samples
    out = np.array(r["output"])
    for i, a in enumerate(r["acts"]):
        if i == 2:  # Flatten: a view of the BatchNormalization's output, no pass of its own
            assert out[i, 0] == 0
            continue
        assert out[i, 0] == r["sizes"][i]  # every sample read once over the interval
        a = np.array(a)
        np.testing.assert_array_equal(out[i, [0, 3, 4, 5]], a[[0, 3, 4, 5]], err_msg=f"node {i}")  # exact counts
        # sums: float32 lanes of 64 elements carried in double (see kernels/monitor.h)
        np.testing.assert_allclose(out[i, 1:3], a[1:3], rtol=1e-5, atol=1e-5 * np.sqrt(a[2]), err_msg=f"node {i}")
    assert out[0, 3] > 0  # zeros after the ReLU are counted
    bn, mean_abs, mean_var = r["bn"]
    np.testing.assert_allclose(out[bn, 6:], [mean_abs, mean_var], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(r["param"]), np.array(r["params"]), rtol=1e-6, atol=1e-9)
    assert all(p[1] > 0 and p[3] > 0 and p[5] == samples for p in r["params"])


def _broken_and_healthy(x, y, broken):
    from cnnbp import layers as L
    cnnbp.set_seed(0)
    if broken == "sigmoid-deep":  # vanishing gradients, saturation, a too-high learning rate
        m = cnnbp.Sequential([L.Input(x.shape[1:]), L.Flatten()] + [L.Dense(64, activation="sigmoid") for _ in range(8)]
                             + [L.Dense(10, activation="softmax")])
        m.compile(optimizer=cnnbp.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    elif broken == "dead-relu":  # a bias far below zero kills every unit
        m = cnnbp.Sequential([L.Input(x.shape[1:]), L.Flatten(), L.Dense(32, activation="relu", name="dead",
                                                                         bias_initializer="zeros"),
                              L.Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        m.count_params()  # builds it
        m.get_layer("dead").bias[...] = -100.0
    elif broken == "saturated":  # weights 100x too large drive tanh to +-1
        m = cnnbp.Sequential([L.Input(x.shape[1:]), L.Flatten(), L.Dense(32, activation="tanh", name="sat"),
                              L.Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        m.count_params()  # builds it
        m.get_layer("sat").kernel[...] *= 100.0
    elif broken == "exploding":
        m = cnnbp.Sequential([L.Input(x.shape[1:]), L.Flatten(), L.Dense(32, activation="relu"),
                              L.Dense(10, activation="softmax")])
        m.compile(optimizer=cnnbp.optimizers.SGD(50.0), loss="sparse_categorical_crossentropy")
    elif broken == "lr-too-low":
        m = cnnbp.Sequential([L.Input(x.shape[1:]), L.Flatten(), L.Dense(32, activation="relu"),
                              L.Dense(10, activation="softmax")])
        m.compile(optimizer=cnnbp.optimizers.SGD(1e-9), loss="sparse_categorical_crossentropy")
    mon = cnnbp.callbacks.GradientMonitor(every=10, warn=False)
    try:
        m.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[mon])
    except cnnbp.NumericalError:
        pass
    return mon


@pytest.fixture(scope="module")
def bundled():
    (x, y), _ = cnnbp.datasets.load_fashion_mnist(subset=True)
    return x[:3000, :, :, None].astype(np.float32) / 255, y[:3000]


@pytest.mark.parametrize("broken,expect", [
    ("sigmoid-deep", ["vanishes before it reaches this layer", "exploding gradients"]),
    ("saturated", ["layer 'sat': 9", "of its tanh outputs are saturated"]),
    ("dead-relu", ["layer 'dead': 100% of its ReLU outputs are zero"]),
    ("exploding", ["exploding gradients", "learning rate looks too high"]),
    ("lr-too-low", ["learning rate looks too low"]),
])
def test_monitor_warnings_fire_on_broken_networks(bundled, broken, expect):
    mon = _broken_and_healthy(*bundled, broken)
    text = "\n".join(mon.messages)
    for e in expect:
        assert e in text, text
    assert len(mon.messages) == len(set(mon.messages))  # once each


def test_monitor_warns_once_per_layer_through_warnings_and_writes_csv(bundled, tmp_path):
    import csv
    import warnings
    from cnnbp import layers as L
    x, y = bundled
    cnnbp.set_seed(0)
    m = cnnbp.Sequential([L.Input((28, 28, 1)), L.Flatten(), L.Dense(16, activation="relu", name="dead"),
                          L.Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.count_params()  # builds it
    m.get_layer("dead").bias[...] = -100.0
    mon = cnnbp.callbacks.GradientMonitor(every=7, samples=3, log_dir=str(tmp_path / "run"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = m.fit(x, y, epochs=1, batch_size=100, verbose=0, callbacks=[mon])
    mine = [w for w in caught if issubclass(w.category, cnnbp.callbacks.TrainingWarning)]
    dead_msgs = [str(w.message) for w in mine if "dead units" in str(w.message)]
    assert len(dead_msgs) == 1 and "He initialisation" in dead_msgs[0], [str(w.message) for w in mine]
    assert len(mine) == len(mon.messages) == len(set(mon.messages))  # each once
    with open(tmp_path / "run" / "gradients.csv") as f:
        rows = list(csv.DictReader(f))
    # 30 steps of 100 images in intervals of 7: four whole ones and the last 2 steps.
    per_step = {int(r["step"]): (int(r["steps"]), float(r["loss"])) for r in rows}
    assert sorted(per_step) == [7, 14, 21, 28, 30]
    assert [per_step[k][0] for k in sorted(per_step)] == [7, 7, 7, 7, 2]
    # 3 of every 7 steps read (steps 0, 3 and 5 of each interval; the last interval's 0 only)
    sampled = {int(r["step"]): int(r["sampled"]) for r in rows}
    assert [sampled[k] for k in sorted(sampled)] == [3, 3, 3, 3, 1]
    # each record's loss is its interval's mean batch loss: weighted by steps, the epoch's loss
    total = sum(n * v for n, v in per_step.values()) / 30
    np.testing.assert_allclose(total, h.history["loss"][0], rtol=1e-5)
    dead = [r for r in rows if r["layer"] == "dead" and r["tensor"] == "output"]
    assert dead and all(float(r["zero_fraction"]) == 1.0 for r in dead)
    kern = [r for r in rows if r["tensor"] == "kernel"]
    assert all(float(r["weight_norm"]) > 0 for r in kern)
    live = [r for r in rows if r["grad_norm"] and float(r["grad_norm"]) > 0]  # the last layer's bias only:
    assert live and all(float(r["grad_norm_max"]) >= float(r["grad_norm"]) for r in live)  # its input is all zero
    f = mon.frame()
    assert len(f["step"]) == len(rows)
    assert m.network.monitoring is False


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed", "lenet", "vgg", "resnet20"])
def test_monitor_silent_on_healthy_reference_models(name):
    """No false alarms: the reference models trained as the command line trains them (Adam, or SGD
    with momentum for lenet; batch 32 for seed, else 64), 2 epochs of Fashion-MNIST, every 100
    steps recorded. (About 100 s each for vgg and resnet20 on 2 cores.)"""
    (x, y), _ = cnnbp.datasets.load_fashion_mnist()
    x = x[..., None].astype(np.float32) / 255
    shape = (32, 32, 1) if name == "vgg" else (28, 28, 1)
    if name == "vgg":
        x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    cnnbp.set_seed(0)
    m = cnnbp.applications.MODELS[name](shape, 10)
    opt = cnnbp.optimizers.SGD(0.01, momentum=0.9) if name == "lenet" else cnnbp.optimizers.Adam(1e-3)
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    mon = cnnbp.callbacks.GradientMonitor(every=100, warn=False)
    h = m.fit(x, y, epochs=2, batch_size=32 if name == "seed" else 64, verbose=0, callbacks=[mon])
    assert h.history["accuracy"][-1] > 0.8
    assert mon.messages == []
    assert len({r["step"] for r in mon.rows}) >= 18


def test_monitor_silent_on_a_small_resnet(bundled):
    x, y = bundled
    cnnbp.set_seed(0)
    m = cnnbp.applications.MODELS["small_resnet"]((28, 28, 1), 10)
    m.compile(optimizer=cnnbp.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    mon = cnnbp.callbacks.GradientMonitor(every=10, warn=False)
    m.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[mon])
    assert mon.messages == []
    bn = [r for r in mon.rows if r["kind"] == "BatchNormalization" and r["tensor"] == "output"]
    assert bn and all(r["batch_var"] > 0 for r in bn)


def test_monitor_arguments():
    with pytest.raises(ValueError, match="every must be a positive int"):
        cnnbp.callbacks.GradientMonitor(every=0)
    with pytest.raises(ValueError, match="window must be a positive int"):
        cnnbp.callbacks.GradientMonitor(window=1.5)
    assert cnnbp.callbacks.GradientMonitor(every=100).samples == 10
    assert cnnbp.callbacks.GradientMonitor(every=4).samples == 4
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match=r"samples must be an int in \[1, every=4\]"):
            cnnbp.callbacks.GradientMonitor(every=4, samples=bad)


def test_monitor_next_rejects_bad_arguments_and_counts_unread_steps():
    from cnnbp import layers as L
    m = cnnbp.Sequential([L.Input((4,)), L.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.ones((5, 4), np.float32), np.zeros(5)
    net = m.network
    net.monitoring = True
    with pytest.raises(ValueError, match="steps must be >= 1"):
        net.monitor_next(0)
    with pytest.raises(ValueError, match="samples must be >= 0"):
        net.monitor_next(4, -1)
    net.monitor_next(4, 9)  # more samples than steps: every step read
    for _ in range(4):
        m.train_on_batch(x, y)
    s = net.monitor_stats()
    assert (s["steps"], s["sampled"]) == (4, 4)
    net.monitor_next(4, 1)  # the first of every 4
    for _ in range(6):
        m.train_on_batch(x, y)
    s = net.monitor_stats()
    assert (s["steps"], s["sampled"], s["step"]) == (6, 2, 10)
    assert s["output"][0, 0] == 2 * 5 * 3  # two reads of ceil(5 / 1) samples
