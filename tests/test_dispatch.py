"""Runtime ISA dispatch: CNNBP_CPU_CAPABILITY lowers the path (never raises it), every path trains,
and the same seed, thread count and path give bit-identical weights after 20 training steps.
Each case runs in a fresh interpreter, since the path is chosen once at import."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cnnbp
from cnnbp import _core

from conftest import ISAS

PATHS = [i for i in ISAS if i in ("baseline", "avx2", "avx512")]

SCRIPT = r"""
import json, sys
import numpy as np
import cnnbp
from cnnbp.layers import Input, Conv2D, MaxPooling2D, Flatten, Dense, Dropout
threads = int(sys.argv[1])
cnnbp.set_num_threads(threads)
out = {"capability": cnnbp.cpu_capability(), "runs": []}
rng = np.random.default_rng(0)
x = rng.random((64, 12, 12, 3), dtype=np.float32)
y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 64)]
for run in range(2):
    cnnbp.set_seed(42)
    m = cnnbp.Sequential([Input((12, 12, 3)), Conv2D(16, 3, padding="same", activation="relu"), MaxPooling2D(),
                          Conv2D(20, 3, activation="relu"), Flatten(), Dropout(0.2), Dense(5, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    for step in range(20):
        a = (step * 16) % 64
        m.network.train_step(x[a:a + 16], y[a:a + 16])
    out["runs"].append(np.concatenate([w.ravel() for w in m.get_weights()]).tolist())
print(json.dumps(out))
"""


def run(capability, threads):
    env = dict(os.environ, CNNBP_CPU_CAPABILITY=capability)
    env.pop("OMP_NUM_THREADS", None)
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(threads)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results():
    return {(c, t): run(c, t) for c in PATHS for t in (1, 2)}


@pytest.mark.parametrize("capability", PATHS)
def test_environment_variable_selects_the_path(results, capability):
    assert results[(capability, 1)]["capability"] == capability


@pytest.mark.parametrize("capability", PATHS)
@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_threads_and_path_give_bit_identical_weights(results, capability, threads):
    a, b = results[(capability, threads)]["runs"]
    assert np.array_equal(np.array(a), np.array(b))


def test_paths_and_thread_counts_agree_closely(results):
    ref = np.array(results[("baseline", 1)]["runs"][0])
    for key, r in results.items():
        w = np.array(r["runs"][0])
        err = np.linalg.norm(w - ref) / np.linalg.norm(ref)
        assert err < 1e-4, f"{key}: relative difference {err:.2e} from baseline/1 thread"


def test_capability_can_only_be_lowered():
    best = _core.detected_capability()
    env = dict(os.environ, CNNBP_CPU_CAPABILITY="avx512")
    p = subprocess.run([sys.executable, "-c", "import cnnbp; print(cnnbp.cpu_capability())"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == best
    env["CNNBP_CPU_CAPABILITY"] = "nonsense"
    p = subprocess.run([sys.executable, "-c", "import cnnbp; print(cnnbp.cpu_capability())"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == best


def test_unsupported_isa_is_refused_not_run():
    order = ["baseline", "avx2", "avx512"]
    higher = order[order.index(_core.detected_capability()) + 1:]
    for isa in higher:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            cnnbp.ops.dense(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), isa=isa)


def test_the_build_under_test_is_the_one_asked_for():
    """.ci/compilers runs the suite against other builds (clang; no OpenMP) put first on
    PYTHONPATH and says which through these variables: the suite must really be running that build."""
    info = _core.build_info()
    compiler = os.environ.get("CNNBP_EXPECT_COMPILER")
    if compiler:
        assert compiler in info["compiler"].lower(), info
    if os.environ.get("CNNBP_EXPECT_OPENMP") == "0":
        assert info["openmp"] is None, info
        assert cnnbp.get_num_threads() == 1  # no OpenMP: every kernel on the calling thread
    elif info["openmp"] is None:
        pytest.fail("this build has no OpenMP although none was asked for (CNNBP_OPENMP=AUTO found none?)")
