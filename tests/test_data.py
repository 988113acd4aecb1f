"""Inputs besides in-memory float arrays (cnnbp._data): generators, iterators, Sequences, uint8
and memory-mapped arrays give the training the equivalent arrays give, bit for bit; bad batches
raise errors naming their index with the model left as its last completed step made it."""

import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L


def _model(rescale=False):
    cnnbp.set_seed(11)
    layers = [L.Input((6, 6, 1))] + ([L.Rescaling(1 / 255)] if rescale else []) + [
        L.Conv2D(3, 3, activation="relu"), L.Flatten(), L.Dense(4, activation="softmax")]
    m = cnnbp.Sequential(layers)
    m.compile(optimizer=cnnbp.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.fixture
def data(rng):
    x = rng.integers(0, 256, (50, 6, 6, 1)).astype(np.uint8)
    y = rng.integers(0, 4, 50)
    return x, y


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def _gen(x, y, bs, epochs, w=None):
    for _ in range(epochs):
        for a in range(0, len(x), bs):
            yield (x[a:a + bs], y[a:a + bs]) + (() if w is None else (w[a:a + bs],))


class Batches(cnnbp.utils.Sequence):
    def __init__(self, x, y, bs):
        super().__init__()
        self.x, self.y, self.bs, self.ends = x, y, bs, 0

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        return self.x[i * self.bs:(i + 1) * self.bs], self.y[i * self.bs:(i + 1) * self.bs]

    def on_epoch_end(self):
        self.ends += 1


@pytest.fixture(params=[True, False], ids=["prefetch", "inline"])
def prefetch(request, monkeypatch):
    from cnnbp import _data
    monkeypatch.setattr(_data, "PREFETCH", request.param)
    return request.param


def test_generators_sequences_uint8_and_memmaps_train_as_arrays(data, tmp_path, prefetch):
    x, y = data
    ref = _model()
    h = ref.fit(x.astype(np.float32), y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    a = _model()
    a.fit(_gen(x, y, 8, 3), steps_per_epoch=7, epochs=3, verbose=0)
    assert _same(a, ref)
    b = _model()
    seq = Batches(x, y, 8)
    hb = b.fit(seq, epochs=3, verbose=0)
    assert _same(b, ref) and seq.ends == 3
    assert np.allclose(hb.history["loss"], h.history["loss"], rtol=0, atol=0)
    c = _model()
    c.fit(iter(list(_gen(x, y, 8, 1))), epochs=1, verbose=0)      # a finite iterator: one epoch of it
    d = _model()
    d.fit(x.astype(np.float32), y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert _same(c, d)
    # uint8 arrays and memory-mapped .npy files, shuffled: as the float32 copy
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    runs = []
    for xx in (x.astype(np.float32), x, xm):
        m = _model(rescale=True)
        m.fit(xx, y, batch_size=8, epochs=2, verbose=0, validation_data=(xx[:10], y[:10]))
        runs.append((m, m.evaluate(xx, y, verbose=0), m.predict(xx, verbose=0)))
    for m, ev, pr in runs[1:]:
        assert _same(m, runs[0][0]) and ev == runs[0][1] and np.array_equal(pr, runs[0][2])


def test_evaluate_and_predict_read_generators_and_sequences(data):
    x, y = data
    m = _model()
    m.fit(x, y, epochs=1, verbose=0)
    xf = x.astype(np.float32)
    assert m.evaluate(Batches(x, y, 8), verbose=0) == m.evaluate(xf, y, batch_size=8, verbose=0)
    assert m.evaluate(_gen(x, y, 8, 1), verbose=0) == m.evaluate(xf, y, batch_size=8, verbose=0)
    assert np.array_equal(m.predict(Batches(x, y, 8), verbose=0), m.predict(xf, verbose=0))
    assert np.array_equal(m.predict((b[0] for b in _gen(x, y, 8, 1)), verbose=0), m.predict(xf, verbose=0))
    assert m.evaluate(x, y, batch_size=8, steps=2, verbose=0) == m.evaluate(xf[:16], y[:16], batch_size=8,
                                                                             verbose=0)
    h = m.fit(_gen(x, y, 8, 100), steps_per_epoch=3, epochs=2, verbose=0,
              validation_data=Batches(x, y, 10), validation_steps=2)
    assert len(h.history["val_loss"]) == 2
    it0 = m.optimizer.iterations
    m.fit(x, y, batch_size=8, steps_per_epoch=2, epochs=2, verbose=0)
    assert m.optimizer.iterations == it0 + 4


def test_weights_from_generators(data):
    x, y = data
    w = np.linspace(0.5, 1.5, len(x))
    a, b = _model(), _model()
    a.fit(_gen(x, y, 10, 1, w), steps_per_epoch=5, class_weight={1: 2.0}, verbose=0)
    b.fit(x, y, batch_size=10, sample_weight=w * np.where(y == 1, 2.0, 1.0), shuffle=False, verbose=0)
    assert _same(a, b)


def test_bad_batches_name_their_index_and_keep_the_last_completed_step(data):
    x, y = data
    done = _model()
    done.fit(x, y, batch_size=8, steps_per_epoch=3, shuffle=False, verbose=0)

    def bad(kind):
        for i, (xb, yb) in enumerate(_gen(x, y, 8, 1)):
            if i == 3:
                if kind == "shape":
                    xb = xb[:, :5]
                elif kind == "dtype":
                    xb = xb.astype(str)
                elif kind == "lengths":
                    yb = yb[:-1]
                elif kind == "tuple":
                    yield xb
                    continue
            yield xb, yb
    for kind, err, match in (("shape", ValueError, r"fit: batch 3: .*expected input of shape"),
                             ("dtype", TypeError, r"fit: batch 3: x: expected a numeric array"),
                             ("lengths", ValueError, r"fit: batch 3: y: x has 8 samples but y has 7"),
                             ("tuple", ValueError, r"fit: batch 3 must be \(x, y\)")):
        m = _model()
        with pytest.raises(err, match=match):
            m.fit(bad(kind), epochs=1, verbose=0)
        assert _same(m, done) and m.optimizer.iterations == 3, kind

    class Raising(Batches):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("no such file")
            return super().__getitem__(i)
    m = _model()
    with pytest.raises(RuntimeError, match=r"the Sequence raised on batch 2 \(KeyError"):
        m.fit(Raising(x, y, 8), verbose=0)
    assert m.optimizer.iterations == 2
    with pytest.raises(ValueError, match="gave no batches"):
        _model().fit(iter([]), verbose=0)
    with pytest.raises(ValueError, match="y and sample_weight must be None"):
        _model().fit(_gen(x, y, 8, 1), y, verbose=0)
    with pytest.raises(ValueError, match="distributed=True needs arrays"):
        _model().fit(_gen(x, y, 8, 1), distributed=True, verbose=0)
    with pytest.raises(ValueError, match="distributed=True needs validation_data as arrays"):
        _model().fit(x, y, validation_data=Batches(x, y, 8), distributed=True, verbose=0)


def test_a_generator_that_runs_out_stops_training_with_a_warning(data):
    x, y = data
    threads = threading.active_count()
    m = _model()
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        h = m.fit(_gen(x, y, 8, 1), epochs=3, verbose=0)       # one epoch's worth, three asked for
    assert len(h.history["loss"]) == 1 and m.optimizer.iterations == 7
    m2 = _model()
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        h = m2.fit(_gen(x, y, 8, 1), steps_per_epoch=5, epochs=3, verbose=0)
    assert m2.optimizer.iterations == 7
    assert threading.active_count() == threads                 # the prefetch threads have ended


def test_a_uint8_set_is_never_converted_whole(rng):
    x = rng.integers(0, 256, (20000, 6, 6, 1)).astype(np.uint8)   # float32 copy: 2.9 MB
    y = rng.integers(0, 4, len(x))
    m = _model(rescale=True)
    m.fit(x[:64], y[:64], batch_size=32, verbose=0)            # built and planned
    tracemalloc.start()
    try:
        m.fit(x, y, batch_size=32, epochs=1, verbose=0)
        m.evaluate(x, y, batch_size=256, verbose=0)
        m.predict(x, batch_size=256, verbose=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the order (160 kB), the labels as floats (80 kB), the predictions (320 kB) and batch buffers
    assert peak < 1.5e6, peak
