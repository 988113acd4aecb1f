"""cnnbp.distributed: data-parallel fit over MPI, checked with real ``mpiexec -n 2`` runs.

Each scenario lives in tests/mpi_worker.py; the ranks write their results to a temporary folder and
these tests compare them with the same script run as one process. Without mpi4py the MPI runs are
skipped, unless CNNBP_REQUIRE_MPI=1 (set by .ci/run), which turns the skip into a failure."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import cnnbp
from cnnbp import layers as L

WORKER = os.path.join(os.path.dirname(__file__), "mpi_worker.py")


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        if os.environ.get("CNNBP_REQUIRE_MPI") == "1":
            pytest.fail("CNNBP_REQUIRE_MPI=1 but mpi4py is not installed (pip install \".[mpi]\")")
        pytest.skip("mpi4py is not installed (pip install \".[mpi]\")")
    here = os.path.dirname(sys.executable)
    exe = shutil.which("mpiexec", path=here) or shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpi4py is installed but no mpiexec was found next to python or on PATH")
    return exe


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               # Open MPI refuses to start as root without these (CI runs as root); MPICH ignores them.
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_tcp_if_include="lo")
    env.update(extra)
    return env


def run_mpi(scenario, out, n=2, timeout=120, **env):
    cmd = [_mpiexec(), "-n", str(n), sys.executable, WORKER, scenario, str(out)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(**env))
    return r, time.monotonic() - t0


def run_single(scenario, out):
    r = subprocess.run([sys.executable, WORKER, scenario, str(out), "single"], capture_output=True, text=True,
                       timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    return dict(np.load(os.path.join(out, f"{scenario}-rank0.npz")))


def load(out, scenario, rank):
    return dict(np.load(os.path.join(out, f"{scenario}-rank{rank}.npz")))


def reports(out, name):
    return [(out / f"{name}-rank{k}.txt").read_text() for k in (0, 1)]


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def single_equivalence(tmp_path_factory):
    return run_single("equivalence", tmp_path_factory.mktemp("eq1"))


# bucketed: layer-sized buckets (0.001 MiB), each reduced while the backward pass goes on;
# default: 1 MiB buckets (this small model's gradient is one bucket); blocking: one all-reduce.
@pytest.fixture(scope="module", params=["0.001", "1", "0"], ids=["bucketed", "default", "blocking"])
def equivalence(tmp_path_factory, single_equivalence, request):
    d2 = tmp_path_factory.mktemp("eq2")
    r, _ = run_mpi("equivalence", d2, CNNBP_TEST_BUCKET_MB=request.param)
    assert r.returncode == 0, r.stdout + r.stderr
    return [load(d2, "equivalence", k) for k in (0, 1)], single_equivalence


@pytest.mark.parametrize("opt", ["sgd", "adam", "reg"])
def test_two_ranks_of_32_match_one_process_of_64(equivalence, opt):
    """reg: a cosine schedule, clipnorm, an L2 regularizer, label smoothing and sample weights."""
    ranks, single = equivalence
    for res in ranks:
        assert int(res[f"{opt}_iterations"]) == int(single[f"{opt}_iterations"]) == 10
        # The weights moved (a test that cannot fail is no test) and match the single process.
        assert rel_err(res[f"{opt}_final"], res[f"{opt}_init"]) > 1e-2
        err = rel_err(res[f"{opt}_final"], single[f"{opt}_final"])
        assert err < 1e-5, f"{opt}: relative weight difference {err:.2e}"
        np.testing.assert_allclose(res[f"{opt}_loss"], single[f"{opt}_loss"], rtol=1e-5)
        np.testing.assert_allclose(res[f"{opt}_accuracy"], single[f"{opt}_accuracy"], rtol=0, atol=1e-12)
    # Every rank ends with exactly the same weights: they all apply the same reduced gradient.
    np.testing.assert_array_equal(ranks[0][f"{opt}_final"], ranks[1][f"{opt}_final"])


def test_initial_weights_are_broadcast_from_rank_0(equivalence):
    ranks, single = equivalence
    for opt in ("sgd", "adam"):
        # rank 1 was seeded differently; after fit(distributed=True) it holds rank 0's weights
        np.testing.assert_array_equal(ranks[1][f"{opt}_init"], ranks[0][f"{opt}_init"])
        np.testing.assert_array_equal(ranks[0][f"{opt}_init"], single[f"{opt}_init"])


def test_batch_norm_and_residual_graph_keep_the_ranks_identical(tmp_path):
    r, _ = run_mpi("residual_bn", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    ranks = [load(tmp_path, "residual_bn", k) for k in (0, 1)]
    np.testing.assert_array_equal(ranks[0]["init"], ranks[1]["init"])  # rank 0's weights and statistics
    assert rel_err(ranks[0]["final"], ranks[0]["init"]) > 1e-2
    np.testing.assert_array_equal(ranks[0]["final"], ranks[1]["final"])
    np.testing.assert_array_equal(ranks[0]["stats"], ranks[1]["stats"])
    assert np.any(ranks[0]["stats"][:6] != 0)  # the moving means moved


def test_metrics_and_validation_equal_the_single_process(tmp_path):
    d2, d1 = tmp_path / "two", tmp_path / "one"
    d2.mkdir(), d1.mkdir()
    r, _ = run_mpi("metrics", d2)
    assert r.returncode == 0, r.stdout + r.stderr
    single = run_single("metrics", d1)
    for k in (0, 1):
        res = load(d2, "metrics", k)
        for key in ("loss", "val_loss", "evaluate", "others"):   # others: mae, AUC, F1 (and val_)
            np.testing.assert_allclose(res[key], single[key], rtol=1e-4, err_msg=key)
        for key in ("accuracy", "val_accuracy"):
            np.testing.assert_allclose(res[key], single[key], rtol=0, atol=1e-12, err_msg=key)
        assert rel_err(res["weights"], single["weights"]) < 1e-4
    # CSVLogger wrote once (rank 0 only): a header and one row per epoch
    assert len((d2 / "metrics.csv").read_text().splitlines()) == 3


def test_a_rank_with_a_different_model_fails_on_every_rank_quickly(tmp_path):
    r, seconds = run_mpi("mismatch", tmp_path, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    for k, text in enumerate(reports(tmp_path, "mismatch")):
        assert text.startswith(f"rank {k} DistributedError"), text
        assert "rank 1 model layer 5 (Dense): units=6 (rank 0: 5)" in text
        assert "rank 1 parameters 2666 != rank 0 parameters 2649" in text
    assert seconds < 30


def test_a_rank_that_never_arrives_aborts_the_job_after_the_timeout(tmp_path):
    r, seconds = run_mpi("absent", tmp_path, timeout=60, CNNBP_DISTRIBUTED_TIMEOUT="2")
    assert r.returncode != 0
    assert "never arrived" in r.stderr + r.stdout, r.stdout + r.stderr
    assert seconds < 30  # rank 1 sleeps 60 s: the abort ended the job, not the sleep


def test_a_nan_on_one_rank_raises_on_every_rank_before_any_update(tmp_path):
    r, _ = run_mpi("nan_on_one_rank", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for k, text in enumerate(reports(tmp_path, "nan")):
        assert text.startswith(f"rank {k} NumericalError"), text
        assert "loss is nan" in text
    assert reports(tmp_path, "nan-weights") == ["weights unchanged: True"] * 2


def test_only_rank_0_prints_and_a_stop_on_any_rank_stops_all(tmp_path):
    r, _ = run_mpi("progress", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("Epoch 1/3") == 1
    assert r.stdout.count(" - loss: ") == 1  # rank 0's one epoch line (verbose=2)
    # rank 1 asked to stop after batch 2; both ranks stopped there
    assert reports(tmp_path, "progress") == ["epochs run 1, steps 2"] * 2


def test_cli_train_distributed(tmp_path):
    exe = _mpiexec()
    cmd = [exe, "-n", "2", sys.executable, "-m", "cnnbp", "train", "--distributed", "--data", "bundled",
           "--epochs", "1", "--quiet", "--threads", "1", "--out", "run"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("test accuracy:") == 1 and "batch 32 per rank x 2 ranks" in r.stdout
    assert float(r.stdout.split("test accuracy:")[1].split()[0]) > 0.6
    assert "model.cnnbp" in os.listdir(tmp_path / "run")
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 2


def test_weights_that_drift_apart_are_restored_from_rank_0(tmp_path):
    r, _ = run_mpi("drift", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    a, b = load(tmp_path, "drift", 0), load(tmp_path, "drift", 1)
    np.testing.assert_array_equal(a["weights"], b["weights"])
    assert bool(a["warned"]) and not bool(b["warned"])  # rank 0 says so, once


# ---- without MPI ------------------------------------------------------------------------------
@pytest.mark.parametrize("nbytes", [1, 200, 1000, 1 << 20])
def test_gradient_buckets_cover_the_buffer_in_backward_order(nbytes):
    from cnnbp.distributed import _buckets
    m = _tiny()
    m2 = cnnbp.Sequential([L.Input((8, 8, 2)), L.Conv2D(5, 3), L.Conv2D(7, 3, use_bias=False), L.Flatten(),
                           L.Dense(9), L.Dense(3, use_bias=False)])
    for net in (m.network, m2.network):
        b = _buckets(net, nbytes)
        total = net.flat_grads().size
        assert b[0][1] == total and b[-1][0] == 0
        assert all(hi == lo2 for (lo2, _), (_, hi) in zip(b[:-1], b[1:]))  # contiguous, descending
        assert all((hi - lo) * 4 >= nbytes for lo, hi in b[:-1])
        starts = {min(p[2] for p in info["params"]) for info in net.layer_info() if info["params"]}
        assert all(lo in starts for lo, _ in b)  # buckets end on layer boundaries
        if nbytes == 1:
            assert len(b) == len(starts)  # one per layer with parameters


def test_grads_ready_reports_each_layer_once_last_layer_first():
    m = cnnbp.Sequential([L.Input((8, 8, 2)), L.Conv2D(5, 3), L.MaxPooling2D(2), L.Conv2D(7, 3, use_bias=False),
                          L.Flatten(), L.Dense(9, activation="relu"), L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).standard_normal((4, 8, 8, 2)).astype(np.float32)
    seen = []
    snapshot = {}

    def ready(b, e):
        seen.append((b, e))
        snapshot[(b, e)] = m.network.flat_grads()[b:e].copy()

    m.network.compute_gradients(x, np.arange(4, dtype=np.float32) % 3, 0.25, ready)
    layers = [info["params"] for info in m.network.layer_info() if info["params"]]
    expect = [(min(p[2] for p in ps), max(p[2] + p[3] for p in ps)) for ps in layers][::-1]
    assert seen == expect
    g = m.network.flat_grads()
    for (b, e), v in snapshot.items():  # final when reported: later layers do not touch them
        np.testing.assert_array_equal(g[b:e], v)
    with pytest.raises(ValueError, match="callable"):
        m.network.compute_gradients(x, np.zeros(4, np.float32), 1.0, 42)

    def boom(b, e):
        raise KeyError("from the hook")

    with pytest.raises(KeyError, match="from the hook"):
        m.network.compute_gradients(x, np.zeros(4, np.float32), 1.0, boom)
    m.network.compute_gradients(x, np.zeros(4, np.float32), 1.0)  # the network still works


def test_init_rejects_a_bad_bucket_size():
    from cnnbp import distributed
    with pytest.raises(ValueError, match="bucket_mb"):
        distributed.init(bucket_mb=-1)
def _tiny(dropout=0.0):
    cnnbp.set_seed(3)
    layers = [L.Input((6, 6, 1)), L.Conv2D(3, 3, activation="relu"), L.Flatten()]
    if dropout:
        layers.append(L.Dropout(dropout))
    m = cnnbp.Sequential(layers + [L.Dense(4, activation="softmax")])
    m.compile(optimizer=cnnbp.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    return m


def test_compute_gradients_then_apply_update_is_train_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 4, 10)
    a, b = _tiny(), _tiny()
    la, ca = a.network.train_step(x, y.astype(np.float32))
    lb, cb = b.network.compute_gradients(x, y.astype(np.float32), 1.0)
    g = b.network.flat_grads().copy()
    b.network.apply_update()
    assert (la, ca) == (lb, cb)
    np.testing.assert_array_equal(a.network.flat_params(), b.network.flat_params())
    # grad_scale multiplies the gradient: the sum of two half-batches scaled by 1/2 is the full mean
    b.network.compute_gradients(x[:5], y[:5].astype(np.float32), 0.5)
    g1 = b.network.flat_grads().copy()
    b.network.compute_gradients(x[5:], y[5:].astype(np.float32), 0.5)
    g2 = b.network.flat_grads().copy()
    b2 = _tiny()
    b2.network.compute_gradients(x, y.astype(np.float32), 1.0)
    np.testing.assert_allclose(g, b2.network.flat_grads(), rtol=0, atol=0)
    b2.set_weights(b.get_weights())
    b2.network.compute_gradients(x, y.astype(np.float32), 1.0)
    np.testing.assert_allclose(g1 + g2, b2.network.flat_grads(), rtol=1e-5, atol=1e-7)


def test_compute_gradients_leaves_a_nan_loss_to_the_caller():
    x = np.full((2, 6, 6, 1), np.nan, np.float32)
    m = _tiny()
    w = m.network.flat_params().copy()
    loss, _ = m.network.compute_gradients(x, np.zeros(2, np.float32), 1.0)
    assert np.isnan(loss)
    np.testing.assert_array_equal(m.network.flat_params(), w)
    with pytest.raises(ValueError, match="grad_scale must be finite"):
        m.network.compute_gradients(x, np.zeros(2, np.float32), float("inf"))


def test_dropout_stream_changes_the_masks_and_0_is_the_default():
    x = np.ones((4, 6, 6, 1), np.float32)
    y = np.zeros(4, np.float32)
    grads = {}
    for stream in (0, 1, 0):
        m = _tiny(dropout=0.5)
        assert m.network.rng_stream == 0
        m.network.rng_stream = stream
        m.network.compute_gradients(x, y, 1.0)
        grads.setdefault(stream, []).append(m.network.flat_grads().copy())
    np.testing.assert_array_equal(grads[0][0], grads[0][1])
    assert not np.array_equal(grads[0][0], grads[1][0])


def test_distributed_module_without_mpi4py_says_how_to_install(monkeypatch):
    import builtins
    from cnnbp import distributed
    real = builtins.__import__

    def no_mpi(name, *a, **k):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    monkeypatch.setattr(distributed, "_comm", None)
    with pytest.raises(ImportError, match=r"cnnbp\[mpi\]"):
        distributed.rank()


def test_cli_distributed_without_mpi4py_exits_1_with_the_install_hint(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None; from cnnbp.cli import main; "
            "sys.exit(main(['train', '--distributed', '--data', 'bundled', '--epochs', '1']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert 'cnnbp train: --distributed: cnnbp.distributed needs mpi4py' in r.stderr and 'cnnbp[mpi]' in r.stderr
