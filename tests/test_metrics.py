"""cnnbp.metrics: each metric's C++ sums (every ISA path, float32 and float64) against Keras's
definition in tests/reference.py, logits turned back into probabilities, the metrics of fit /
evaluate / train_on_batch / test_on_batch named as asked, standalone metric objects, save/load."""

import numpy as np
import pytest

import cnnbp
from cnnbp import metrics as M
from cnnbp.layers import Conv2D, Dense, Flatten, Input

import reference as ref
from conftest import ISAS

N, K = 40, 5


def _data(rng, binary=False):
    z = rng.standard_normal((N, K))
    if binary:
        return 1 / (1 + np.exp(-z)), rng.integers(0, 2, (N, K)).astype(float)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return p, np.eye(K)[rng.integers(0, K, N)]


def _value(metric, p, t):
    metric.reset_state()
    metric.update_state(t, p)
    return metric.result()


CASES = [   # (metric object, reference kind, reference kwargs, binary targets)
    (M.Accuracy(), "accuracy", {}, False),
    (M.CategoricalAccuracy(), "accuracy", {}, False),
    (M.BinaryAccuracy(), "binary_accuracy", {}, True),
    (M.BinaryAccuracy(threshold=0.7), "binary_accuracy", dict(threshold=0.7), True),
    (M.TopKCategoricalAccuracy(k=2), "top_k", dict(k=2), False),
    (M.TopKCategoricalAccuracy(), "top_k", dict(k=5), False),
    (M.MeanAbsoluteError(), "mae", {}, True),
    (M.MeanSquaredError(), "mse", {}, True),
    (M.Precision(), "precision", {}, True),
    (M.Precision(thresholds=0.3, class_id=2), "precision", dict(threshold=0.3, class_id=2), True),
    (M.Recall(), "recall", {}, True),
    (M.Recall(class_id=0), "recall", dict(class_id=0), True),
    (M.AUC(), "auc", {}, True),
    (M.AUC(num_thresholds=7), "auc", dict(num_thresholds=7), True),
]


@pytest.mark.parametrize("metric,kind,kw,binary", CASES, ids=[f"{c[0].name}-{i}" for i, c in enumerate(CASES)])
def test_metric_matches_keras_definition(rng, metric, kind, kw, binary):
    p, t = _data(rng, binary)
    assert abs(_value(metric, p, t) - ref.metric(kind, p, t, **kw)) < 1e-12


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("metric,kind,kw,binary", CASES, ids=[f"{c[0].name}-{i}" for i, c in enumerate(CASES)])
def test_metric_float32_paths(rng, metric, kind, kw, binary, isa):
    p, t = _data(rng, binary)
    p = np.round(p, 3)   # away from float32 rounding at a threshold
    spec = metric._spec()
    s64 = cnnbp.ops.metric_sums(p, t, spec[0], *spec[1:])
    s32 = cnnbp.ops.metric_sums(p.astype(np.float32), t.astype(np.float32), spec[0], *spec[1:], isa=isa)
    assert np.allclose(s32, s64, atol=1e-5)


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_f1_score(rng, average, threshold):
    p, t = _data(rng)
    got = _value(M.F1Score(average=average, threshold=threshold), p, t)
    assert np.allclose(got, ref.f1(p, t, average, threshold), atol=1e-12, rtol=0)


def test_sparse_targets_equal_one_hot(rng):
    p, t = _data(rng)
    labels = t.argmax(1)
    for m in (M.SparseCategoricalAccuracy(), M.SparseTopKCategoricalAccuracy(k=2), M.F1Score(average="macro"),
              M.MeanSquaredError(), M.AUC(), M.Precision()):
        assert _value(m, p, labels) == _value(m, p, t), m


def test_auc_is_the_rank_statistic_for_distinct_scores(rng):
    """With scores far apart next to the threshold spacing, the trapezoid over the thresholds is
    the Mann-Whitney probability that a positive outranks a negative."""
    scores = (rng.permutation(40) + 0.5) / 40
    labels = rng.integers(0, 2, 40)
    pos, neg = scores[labels == 1], scores[labels == 0]
    exact = np.mean(pos[:, None] > neg[None, :])
    assert abs(_value(M.AUC(num_thresholds=4001), scores[:, None], labels[:, None]) - exact) < 1e-9


@pytest.mark.parametrize("logits,fn", [(1, lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)),
                                        (2, lambda z: 1 / (1 + np.exp(-z)))])
def test_logits_are_turned_into_probabilities(rng, logits, fn):
    z = 3 * rng.standard_normal((N, K))
    t = np.eye(K)[rng.integers(0, K, N)]
    for kind in range(9):
        a = cnnbp.ops.metric_sums(z, t, kind, threshold=0.4 if kind != 7 else 0.4, logits=logits)
        b = cnnbp.ops.metric_sums(fn(z), t, kind, threshold=0.4, logits=0)
        assert np.allclose(a, b, atol=1e-12), kind


def test_standalone_state_accumulates_and_resets(rng):
    p, t = _data(rng, binary=True)
    m = M.Precision()
    m.update_state(t[:10], p[:10])
    m.update_state(t[10:], p[10:])
    assert abs(m.result() - ref.metric("precision", p, t)) < 1e-12
    m.reset_state()
    assert m.result() == 0.0


def _classifier(final="softmax"):
    cnnbp.set_seed(3)
    x = Input((6, 6, 1))
    y = Dense(K, activation=final)(Flatten()(Conv2D(4, 3, activation="relu")(x)))
    return cnnbp.Model(x, y)


@pytest.mark.parametrize("loss,final", [("categorical_crossentropy", "softmax"),       # fused: logits
                                        ("binary_crossentropy", "sigmoid"),            # fused: logits
                                        ("mse", "softmax")])                           # probabilities
def test_fit_and_evaluate_report_each_metric_under_its_name(rng, loss, final):
    x = rng.standard_normal((64, 6, 6, 1)).astype(np.float32)
    y = np.eye(K, dtype=np.float32)[rng.integers(0, K, 64)]
    model = _classifier(final)
    asked = ["acc", "mae", M.Precision(), M.AUC(), M.F1Score(average="macro"), M.TopKCategoricalAccuracy(k=2),
             "categorical_accuracy", M.RootMeanSquaredError()]
    model.compile(optimizer="adam", loss=loss, metrics=asked)
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y))
    names = ["acc", "mae", "precision", "auc", "f1_score", "top_k_categorical_accuracy", "categorical_accuracy",
             "root_mean_squared_error"]
    assert list(hist.history) == ["loss"] + names + ["val_loss"] + ["val_" + n for n in names]
    # evaluate: [loss, metrics...] equal to the metrics of predict()'s probabilities
    values = model.evaluate(x, y, batch_size=24, verbose=0)
    p = model.predict(x)
    expect = [ref.metric("accuracy", p, y), ref.metric("mae", p, y), ref.metric("precision", p, y),
              ref.metric("auc", p, y), ref.f1(p, y, "macro"), ref.metric("top_k", p, y, k=2),
              ref.metric("accuracy", p, y), np.sqrt(ref.metric("mse", p, y))]
    assert np.allclose(values[1:], expect, atol=1e-5)
    assert np.isclose(hist.history["val_loss"][-1], values[0], rtol=1e-5)
    assert np.allclose([hist.history["val_" + n][-1] for n in names], expect, atol=1e-5)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss"] + names
    tb = model.test_on_batch(x[:16], y[:16], return_dict=True)
    assert np.isclose(tb["mae"], ref.metric("mae", p[:16], y[:16]), atol=1e-5)
    before = model.predict(x[:16])
    tr = model.train_on_batch(x[:16], y[:16])
    assert len(tr) == 1 + len(names) and np.isclose(tr[2], ref.metric("mae", before, y[:16]), atol=1e-5)
    assert np.array_equal(model.predict_on_batch(x[:5]), model.predict(x[:5]))


def test_per_class_f1_is_logged_as_a_vector(rng, capsys):
    x = rng.standard_normal((32, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, K, 32)
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[M.F1Score()])
    hist = model.fit(x, y, epochs=1, verbose=2)
    assert hist.history["f1_score"][0].shape == (K,)
    assert "f1_score: [" in capsys.readouterr().out


def test_metrics_survive_save_and_load(tmp_path, rng):
    model = _classifier()
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=["acc", M.AUC(num_thresholds=50), M.Recall(class_id=1, name="recall_1")])
    model.save(tmp_path / "m.cnnbp")
    back = cnnbp.load_model(tmp_path / "m.cnnbp")
    assert [m.name for m in back._metrics] == ["acc", "auc", "recall_1"]
    assert back._metrics[1].num_thresholds == 50 and back._metrics[2].class_id == 1
    x = rng.standard_normal((8, 6, 6, 1)).astype(np.float32)
    y = np.eye(K, dtype=np.float32)[rng.integers(0, K, 8)]
    assert model.evaluate(x, y, verbose=0) == back.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("bad,err,match", [
    (["accuracy", "accuracy"], ValueError, "distinct"), (["aucc"], ValueError, "unknown metric 'aucc'"),
    ([lambda a, b: 0], TypeError, "Python function"), ("acc", None, None),
    ([M.AUC(num_thresholds=2)], None, None)])
def test_compile_metric_arguments(bad, err, match):
    model = _classifier()
    if err is None:
        model.compile(optimizer="adam", loss="mse", metrics=bad)
        return
    with pytest.raises(err, match=match):
        model.compile(optimizer="adam", loss="mse", metrics=bad)


@pytest.mark.parametrize("make,match", [
    (lambda: M.TopKCategoricalAccuracy(k=0), "k must be"), (lambda: M.BinaryAccuracy(threshold=2), "threshold"),
    (lambda: M.AUC(num_thresholds=1), "num_thresholds"), (lambda: M.AUC(curve="PR"), "curve"),
    (lambda: M.F1Score(average="samples"), "average"), (lambda: M.Precision(class_id=-1), "class_id"),
    (lambda: M.Precision(top_k=2), "top_k")])
def test_metric_arguments_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_class_id_out_of_range_names_the_outputs():
    model = _classifier()
    with pytest.raises(ValueError, match=r"class_id must be in \[0, 5\)"):
        model.compile(optimizer="adam", loss="mse", metrics=[M.Precision(class_id=7)])
