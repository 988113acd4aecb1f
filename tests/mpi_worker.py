"""Scenarios for tests/test_distributed.py, run under ``mpiexec -n N python mpi_worker.py SCENARIO OUT``.

Each rank writes what the test compares to ``OUT/<scenario>-rank<r>.npz`` and prints one line;
the single-process reference is the same script without mpiexec (world size 1, distributed=False).
"""

import os
import sys
import time

import numpy as np

import cnnbp
from cnnbp import distributed as D
from cnnbp import layers as L


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 5, n)
    x[np.arange(n), y * 2, y * 2, 0] += 2.0  # learnable: the class marks a pixel
    return x, y


def model(units=5, opt="sgd", metrics=("accuracy",)):
    """opt 'reg': SGD with a cosine schedule, clipnorm, an L2 kernel regularizer and label smoothing."""
    reg = opt == "reg"
    m = cnnbp.Sequential([L.Input((12, 12, 1)), L.Conv2D(6, 3, activation="relu", padding="same"),
                          L.MaxPooling2D(2), L.Conv2D(8, 3, activation="relu"), L.Flatten(),
                          L.Dense(16, activation="tanh", kernel_regularizer=cnnbp.regularizers.L2(1e-3) if reg else None),
                          L.Dense(units, activation="softmax")])
    if reg:
        o = cnnbp.optimizers.SGD(cnnbp.optimizers.schedules.CosineDecay(0.05, 10), momentum=0.9, clipnorm=0.5)
        loss = cnnbp.losses.SparseCategoricalCrossentropy(label_smoothing=0.1)
    else:
        o = (cnnbp.optimizers.SGD(0.05, momentum=0.9) if opt == "sgd" else cnnbp.optimizers.Adam(3e-3))
        loss = "sparse_categorical_crossentropy"
    m.compile(optimizer=o, loss=loss, metrics=list(metrics))
    return m


def save(out, name, rank, **arrays):
    np.savez(os.path.join(out, f"{name}-rank{rank}.npz"), **arrays)


def report(out, name, rank, text):
    """A rank's message, to a file of its own (the ranks' stdout lines may interleave)."""
    with open(os.path.join(out, f"{name}-rank{rank}.txt"), "w") as f:
        f.write(text)
    print(text, flush=True)


def expect_error(out, name, rank, error, train):
    """Run train(); report the error it raises (the test wants one on every rank) or its absence."""
    try:
        train()
    except error as e:
        report(out, name, rank, f"rank {rank} {type(e).__name__}: {e}")
        return
    report(out, name, rank, f"rank {rank} trained without error")


def flat(m):
    return np.concatenate([w.ravel() for w in m.get_weights()])


def equivalence(out, distributed):
    # 640 samples: 10 steps of 64 (one process) or of 2 x 32 (two ranks). Rank 0 seeds its weights
    # like the single process; the other ranks start elsewhere and must receive rank 0's.
    r = D.rank() if distributed else 0
    x, y = data(640)
    res = {}
    w = np.linspace(0.2, 2.0, len(x))
    for opt in ("sgd", "adam", "reg"):
        cnnbp.set_seed(7 if r == 0 else 100 + r)
        m = model(opt=opt)
        bs = 64 // (D.world_size() if distributed else 1)
        m.fit(x, y, batch_size=bs, epochs=0, distributed=distributed, seed=3, verbose=0)
        res[f"{opt}_init"] = flat(m)
        h = m.fit(x, y, batch_size=bs, epochs=1, distributed=distributed, seed=3, verbose=0,
                  sample_weight=w if opt == "reg" else None)
        res[f"{opt}_final"] = flat(m)
        res[f"{opt}_iterations"] = np.array(m.optimizer.iterations)
        res[f"{opt}_loss"] = np.array(h.history["loss"])
        res[f"{opt}_accuracy"] = np.array(h.history["accuracy"])
    save(out, "equivalence", r, **res)


def residual_bn(out, distributed):
    """A graph with BatchNormalization and a residual Add: every rank must end with the same weights
    and the same moving statistics (each rank's batch statistics are averaged over the ranks)."""
    r = D.rank() if distributed else 0
    x, y = data(256)
    cnnbp.set_seed(5 if r == 0 else 50 + r)
    inp = L.Input((12, 12, 1))
    h = L.Conv2D(6, 3, padding="same", use_bias=False)(inp)
    h = L.ReLU()(L.BatchNormalization()(h))
    b = L.BatchNormalization()(L.Conv2D(6, 3, padding="same")(h))
    h = L.ReLU()(L.Add()([h, b]))
    outp = L.Dense(5, activation="softmax")(L.GlobalAveragePooling2D()(h))
    m = cnnbp.Model(inp, outp)
    m.compile(optimizer=cnnbp.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    bs = 32 // (D.world_size() if distributed else 1)
    m.fit(x, y, batch_size=bs, epochs=0, distributed=distributed, seed=3, verbose=0)
    init = flat(m)
    m.fit(x, y, batch_size=bs, epochs=2, distributed=distributed, seed=3, verbose=0)
    stats = np.concatenate([w.ravel() for l in m.layers if isinstance(l, L.BatchNormalization)
                            for w in l.get_weights()[2:]])
    save(out, "residual_bn", r, init=init, final=flat(m), stats=stats)


def metrics(out, distributed):
    # An uneven split: 650 training rows (the last global batch has 10) and 101 validation rows.
    r = D.rank() if distributed else 0
    x, y = data(650)
    vx, vy = data(101, seed=1)
    cnnbp.set_seed(5)
    m = model(opt="adam", metrics=["accuracy", "mae", cnnbp.metrics.AUC(), cnnbp.metrics.F1Score("macro")])
    bs = 32 if distributed else 32 * 2
    h = m.fit(x, y, batch_size=bs, epochs=2, validation_data=(vx, vy), distributed=distributed, seed=1,
              verbose=0, callbacks=[cnnbp.callbacks.CSVLogger(os.path.join(out, "metrics.csv"))])
    ev = m.evaluate(vx, vy, verbose=0)
    save(out, "metrics", r, loss=h.history["loss"], accuracy=h.history["accuracy"],
         val_loss=h.history["val_loss"], val_accuracy=h.history["val_accuracy"], evaluate=np.array(ev),
         others=np.array([h.history[k] for k in ("mae", "auc", "f1_score", "val_mae", "val_auc", "val_f1_score")]),
         weights=flat(m))


def mismatch(out, distributed):
    # Rank 1 builds a wider last layer: every rank must raise DistributedError, quickly.
    r = D.rank()
    x, y = data(64)
    cnnbp.set_seed(1)
    m = model(units=5 if r != 1 else 6)
    expect_error(out, "mismatch", r, D.DistributedError,
                 lambda: m.fit(x, y, batch_size=16, epochs=1, distributed=True, verbose=0))


def absent(out, distributed):
    # Rank 1 never calls fit: rank 0 must give up after CNNBP_DISTRIBUTED_TIMEOUT and abort the job.
    r = D.rank()
    x, y = data(64)
    m = model()
    if r == 0:
        m.fit(x, y, batch_size=16, epochs=1, distributed=True, verbose=0)
    else:
        time.sleep(60)


def nan_on_one_rank(out, distributed):
    # A NaN in a row that only rank 1 sees: the reduced loss is NaN on every rank, all raise alike.
    r = D.rank()
    x, y = data(64)
    x[40] = np.nan  # global batch 0 is rows [0, 64) of the unshuffled order; rank 1 holds [32, 64)
    cnnbp.set_seed(1)
    m = model()
    m.fit(x, y, batch_size=32, epochs=0, distributed=True, verbose=0)  # rank 0's weights everywhere
    before = flat(m)
    expect_error(out, "nan", r, cnnbp.NumericalError,
                 lambda: m.fit(x, y, batch_size=32, epochs=1, distributed=True, shuffle=False, verbose=0))
    report(out, "nan-weights", r, f"weights unchanged: {np.array_equal(before, flat(m))}")


def progress(out, distributed):
    # Only rank 0 prints; a callback's stop on one rank stops every rank.
    r = D.rank()
    x, y = data(256)
    m = model()

    class StopOnRank1(cnnbp.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if r == 1 and batch == 1:
                self.model.stop_training = True

    h = m.fit(x, y, batch_size=16, epochs=3, distributed=True, verbose=2, callbacks=[StopOnRank1()])
    report(out, "progress", r, f"epochs run {len(h.history['loss'])}, steps {m.optimizer.iterations}")


def drift(out, distributed):
    # Rank 1's weights are disturbed after epoch 1: the end-of-epoch check restores rank 0's.
    import warnings
    r = D.rank()
    x, y = data(128)
    cnnbp.set_seed(1)
    m = model()

    class Disturb(cnnbp.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if r == 1 and epoch == 0:
                self.model.network.flat_params()[:10] += 1.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.fit(x, y, batch_size=16, epochs=2, distributed=True, verbose=0, callbacks=[Disturb()])
    save(out, "drift", r, weights=flat(m), warned=np.array(any("drifted apart" in str(w.message) for w in caught)))


if __name__ == "__main__":
    scenario, out = sys.argv[1], sys.argv[2]
    distributed = len(sys.argv) < 4 or sys.argv[3] != "single"
    cnnbp.set_num_threads(1)
    if distributed and "CNNBP_TEST_BUCKET_MB" in os.environ:
        D.init(bucket_mb=float(os.environ["CNNBP_TEST_BUCKET_MB"]))
    globals()[scenario](out, distributed)
