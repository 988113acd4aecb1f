"""Each callback's behaviour: checkpoints, learning-rate schedules and plateaus, CSV logs."""

import csv

import numpy as np
import pytest

import cnnbp
from cnnbp.callbacks import CSVLogger, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau
from cnnbp.layers import Dense, Flatten, Input


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
